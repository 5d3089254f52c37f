import * as z from 'zod/mini';
import { en } from 'zod/locales';
import type { $ZodType, output } from 'zod/v4/core';
import { CORE_ENV } from '../contract/env';
import { DEFAULT_MAX_CHANNELS_PER_CONNECTION, MAX_HISTORY_BYTES_PER_CHANNEL, MAX_HISTORY_SIZE } from '../contract/limits';

/*
 * zod/mini, not zod: the same checks and messages over tree-shakable functions, so a Lambda bundle carries about
 * 25 KB of validator instead of 450 KB (docs/BENCHMARKS.md, "Lambda bundles and cold start"). zod/mini loads no
 * locale by itself: English is set here, the messages of full zod (which the SSE service also loads).
 */
z.config(en());

/** Who may subscribe to the channels of a namespace. */
export const SubscribePolicy = z.enum(['public', 'authenticated', 'owner', 'granted']);
/** Who may publish to the channels of a namespace (`server` = IAM-signed backends only). */
export const PublishPolicy = z.enum(['server', 'authenticated']);

export const NamespacePolicySchema = z.strictObject({
  /**
   * `public`: anyone, no ticket needed; `authenticated`: any ticket holder; `owner`: channel `ns:{sub}`
   * for that sub only; `granted`: only with a ticket a trusted backend (IAM) asked for, naming the channel.
   */
  subscribe: SubscribePolicy,
  /** Defaults to `server`. */
  publish: z._default(PublishPolicy, 'server'),
  /**
   * Events kept per channel for resume. 0 keeps none (a resuming client is told `reset`). At most 10000, and at most
   * 64 MiB per channel with MAX_PAYLOAD_BYTES (contract/limits.ts). Defaults to 1000.
   */
  historySize: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(MAX_HISTORY_SIZE)), 1000),
  /**
   * Seconds an event stays in its channel's history: it leaves at the channel's next publish after that, or with the
   * whole history this long after the channel's last event. Defaults to 86400.
   */
  historyTtlSeconds: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(30 * 86400)), 86400),
  /**
   * Emit a `client.publish` backend event (EventBridge) for every event a client (a ticket holder, not a backend)
   * publishes here; needs BACKEND_EVENTS. Defaults to false.
   */
  clientEvents: z.optional(z.boolean()),
});

export type NamespacePolicy = z.infer<typeof NamespacePolicySchema>;
export type Namespaces = Readonly<Record<string, NamespacePolicy>>;

export const NAMESPACE_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

export const NamespacesSchema = z
  .record(z.string().check(z.regex(NAMESPACE_PATTERN, 'namespace names are lowercase letters, digits and "-", 1-32 chars, starting with a letter')), NamespacePolicySchema)
  .check(z.refine((v) => Object.keys(v).length > 0, 'at least one namespace is required'));

/**
 * The namespaces shipped by default: one of each subscribe kind.
 * - `scores`: public feed, server publishes (e.g. `scores:42`).
 * - `chat`: any authenticated user subscribes and publishes (e.g. `chat:room-1`).
 * - `user`: private per-user channel `user:{sub}`, server publishes (notifications).
 */
export const DEFAULT_NAMESPACES: Namespaces = {
  scores: { subscribe: 'public', publish: 'server', historySize: 1000, historyTtlSeconds: 86400 },
  chat: { subscribe: 'authenticated', publish: 'authenticated', historySize: 200, historyTtlSeconds: 3600 },
  user: { subscribe: 'owner', publish: 'server', historySize: 100, historyTtlSeconds: 86400 },
};

/** The part of a zod error (full or mini) {@link formatIssues} reads. */
export interface ValidationIssues {
  readonly issues: readonly { readonly path: readonly PropertyKey[]; readonly message: string }[];
}

/** Formats zod issues as one readable line: `KEY: message; KEY2: message`. */
export function formatIssues(error: ValidationIssues, prefix = ''): string {
  return error.issues
    .map((i) => {
      const path = i.path.length ? i.path.join('.') : '(root)';
      return `${prefix}${path}: ${i.message}`;
    })
    .join('; ');
}

/** Thrown when configuration is invalid; the message is one line naming the bad keys. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses NAMESPACES_JSON (or returns the defaults when unset). */
export function parseNamespaces(json: string | undefined): Namespaces {
  if (json === undefined || json.trim() === '') return DEFAULT_NAMESPACES;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new ConfigError(`${CORE_ENV.namespacesJson}: not valid JSON`);
  }
  const parsed = NamespacesSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, `${CORE_ENV.namespacesJson}.`));
  return parsed.data;
}

/** Default of USER_PUBLISH_PER_MINUTE: events one user may publish per minute. */
export const DEFAULT_USER_PUBLISH_PER_MINUTE = 300;
/** Default of USER_NEW_CHANNELS_PER_HOUR: channels one user may start per hour. */
export const DEFAULT_USER_NEW_CHANNELS_PER_HOUR = 50;
/** Default of USER_RETAINED_BYTES: bytes of events one user may publish per namespace per history TTL (8 MiB). */
export const DEFAULT_USER_RETAINED_BYTES = 8 * 1024 * 1024;
/** Default of REPLAY_MAX_BYTES: bytes in one replay page (every replay: /poll, /events, /live, the API Gateway subscribe). */
export const DEFAULT_REPLAY_MAX_BYTES = 1024 * 1024;
/** Default of USER_TICKETS_PER_MINUTE: tickets one user may get per minute. */
export const DEFAULT_USER_TICKETS_PER_MINUTE = 60;
/** Default of USER_CONNECTIONS: connections one user may hold at once (per task on the tasks, per deployment on API Gateway). */
export const DEFAULT_USER_CONNECTIONS = 32;

/** A whole number from a variable (`z.coerce.number().int().min(min).max(max)`), `dflt` when unset. */
export function envInt(min: number, max: number, dflt: number) {
  return z._default(z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max)), dflt);
}

/** Settings shared by every runtime (Lambdas, SSE service, local stack), read from the environment (names: `contract/env.ts`). */
export const CoreEnvSchema = z.object({
  [CORE_ENV.redisUrl]: z._default(z.string().check(z.regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')), 'redis://127.0.0.1:6379'),
  /** Redis AUTH token; on AWS injected as a secret (ECS) or read from REDIS_SECRET_ARN (Lambda). */
  [CORE_ENV.redisPassword]: z.optional(z.string().check(z.minLength(1))),
  [CORE_ENV.redisSecretArn]: z.optional(z.string().check(z.startsWith('arn:'))),
  /**
   * `single` (one primary; the default). `cluster` (ElastiCache cluster mode, set by the construct for redis.shards >= 2)
   * is refused by this runtime until publishes and replays run single-slot (positions per channel, issue 23): it fails
   * at start with this line rather than on the first publish.
   */
  [CORE_ENV.redisMode]: z._default(
    z.enum(['single'], { error: 'only "single" runs today: a Redis Cluster (redis.shards >= 2) needs positions per channel (issue 23); deploy with redis.shards = 1' }),
    'single',
  ),
  [CORE_ENV.keyPrefix]: z._default(z.string().check(z.regex(/^[A-Za-z0-9:_-]{1,32}$/, 'letters, digits, ":", "_" or "-", up to 32 chars')), 'rt:'),
  [CORE_ENV.namespacesJson]: z.optional(z.string()),
  [CORE_ENV.ticketTtlSeconds]: envInt(5, 300, 30),
  [CORE_ENV.maxPayloadBytes]: envInt(256, 32768, 32768),
  [CORE_ENV.maxChannelsPerConnection]: envInt(1, 64, DEFAULT_MAX_CHANNELS_PER_CONNECTION),
  [CORE_ENV.userPublishPerMinute]: envInt(0, 1_000_000, DEFAULT_USER_PUBLISH_PER_MINUTE),
  [CORE_ENV.userNewChannelsPerHour]: envInt(0, 1_000_000, DEFAULT_USER_NEW_CHANNELS_PER_HOUR),
  [CORE_ENV.userRetainedBytes]: envInt(0, 1024 * 1024 * 1024, DEFAULT_USER_RETAINED_BYTES),
  [CORE_ENV.replayMaxBytes]: envInt(16_384, 16 * 1024 * 1024, DEFAULT_REPLAY_MAX_BYTES),
  [CORE_ENV.userTicketsPerMinute]: envInt(0, 1_000_000, DEFAULT_USER_TICKETS_PER_MINUTE),
  [CORE_ENV.userConnections]: envInt(0, 1_000_000, DEFAULT_USER_CONNECTIONS),
  [CORE_ENV.backendEvents]: z._default(z.enum(['true', 'false']), 'false'),
});

export interface CoreConfig {
  readonly redisUrl: string;
  /** REDIS_MODE: `single` (one primary). Optional for configs built in code; absent means `single`. */
  readonly redisMode?: 'single';
  readonly redisPassword?: string;
  readonly redisSecretArn?: string;
  readonly keyPrefix: string;
  readonly namespaces: Namespaces;
  /** Seconds a ticket stays redeemable. Defaults to 30. */
  readonly ticketTtlSeconds: number;
  /** Largest serialised event envelope in bytes. Defaults to 32768 (API Gateway's WebSocket frame size). */
  readonly maxPayloadBytes: number;
  /** Channels one ticket or connection may name. Defaults to 16. */
  readonly maxChannelsPerConnection: number;
  /**
   * Events one user (a ticket holder, not a backend) may publish per one-minute window, counted from
   * the first publish of the window; 0 disables the limit. Defaults to 300.
   */
  readonly userPublishPerMinute?: number;
  /**
   * Channels one user may start (publish the first event of) per one-hour window; 0 disables the
   * limit. A channel counts as new when it has no event within its history TTL plus
   * {@link LAST_ID_TAIL_SECONDS}. Defaults to 50.
   */
  readonly userNewChannelsPerHour?: number;
  /**
   * Bytes of events one user may publish to one namespace within one window of that namespace's history TTL (counted
   * from the window's first publish; envelopes as stored); 0 disables. Events leave history once older than the TTL
   * (at the channel's next publish, or with the stream), so what one user keeps in Redis per namespace is at most
   * three windows' worth. Defaults to 8388608 (8 MiB).
   */
  readonly userRetainedBytes?: number;
  /**
   * Bytes in one replay page: a page ends at this many bytes of envelopes (plus 128 per event for framing) or at its
   * event count, whichever comes first; the first event of a page is taken whatever its size. Defaults to 1048576.
   */
  readonly replayMaxBytes?: number;
  /**
   * Tickets one user may get per one-minute window (counted from the first of the window, whoever asks
   * for them: the user or a backend naming the user); 0 disables the limit. Defaults to 60.
   */
  readonly userTicketsPerMinute?: number;
  /**
   * Connections one user may hold at once; 0 disables the cap. On the tasks it is counted per task (streams, polls and
   * `/live` sockets, service/quotas.ts); on API Gateway across the deployment, in the connection registry at `$connect`
   * (a registration that expired without `$disconnect` no longer counts). Defaults to 32.
   */
  readonly userConnections?: number;
  /**
   * Write backend events (channel occupancy, `user.revoked`, `client.publish`) to the outbox the tasks relay to the
   * stage's EventBridge bus (`core/backend-events.ts`). Defaults to false.
   */
  readonly backendEvents?: boolean;
}

/** Seconds a channel's last id (and history horizon) outlive its history: 7 days. */
export const LAST_ID_TAIL_SECONDS = 7 * 86400;

/** Parses a schema against the environment; one line naming every bad key. */
export function parseEnv<T extends $ZodType>(schema: T, env: NodeJS.ProcessEnv): output<T> {
  const parsed = z.safeParse(schema, env);
  if (!parsed.success) throw new ConfigError(`Invalid configuration: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** Throws when a namespace's full history per channel would pass {@link MAX_HISTORY_BYTES_PER_CHANNEL} with events of `maxPayloadBytes`. */
export function checkHistoryBytes(namespaces: Namespaces, maxPayloadBytes: number): void {
  const over = Object.entries(namespaces).filter(([, p]) => p.historySize * maxPayloadBytes > MAX_HISTORY_BYTES_PER_CHANNEL);
  if (over.length === 0) return;
  throw new ConfigError(
    `Invalid configuration: ${over
      .map(([ns, p]) => `${CORE_ENV.namespacesJson}.${ns}.historySize: ${p.historySize} events of up to ${maxPayloadBytes} bytes (${CORE_ENV.maxPayloadBytes}) is over ${MAX_HISTORY_BYTES_PER_CHANNEL} bytes per channel; keep at most ${Math.floor(MAX_HISTORY_BYTES_PER_CHANNEL / maxPayloadBytes)}`)
      .join('; ')}`,
  );
}

export function coreConfigFromEnv(env: NodeJS.ProcessEnv = process.env): CoreConfig {
  const e = parseEnv(CoreEnvSchema, env);
  checkHistoryBytes(parseNamespaces(e[CORE_ENV.namespacesJson]), e[CORE_ENV.maxPayloadBytes]);
  return {
    redisUrl: e[CORE_ENV.redisUrl],
    redisMode: e[CORE_ENV.redisMode],
    redisPassword: e[CORE_ENV.redisPassword],
    redisSecretArn: e[CORE_ENV.redisSecretArn],
    keyPrefix: e[CORE_ENV.keyPrefix],
    namespaces: parseNamespaces(e[CORE_ENV.namespacesJson]),
    ticketTtlSeconds: e[CORE_ENV.ticketTtlSeconds],
    maxPayloadBytes: e[CORE_ENV.maxPayloadBytes],
    maxChannelsPerConnection: e[CORE_ENV.maxChannelsPerConnection],
    userPublishPerMinute: e[CORE_ENV.userPublishPerMinute],
    userNewChannelsPerHour: e[CORE_ENV.userNewChannelsPerHour],
    userRetainedBytes: e[CORE_ENV.userRetainedBytes],
    replayMaxBytes: e[CORE_ENV.replayMaxBytes],
    userTicketsPerMinute: e[CORE_ENV.userTicketsPerMinute],
    userConnections: e[CORE_ENV.userConnections],
    backendEvents: e[CORE_ENV.backendEvents] === 'true',
  };
}

