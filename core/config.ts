import * as z from 'zod/mini';
import { en } from 'zod/locales';
import type { $ZodType, output } from 'zod/v4/core';
import { CORE_ENV, CORE_SETTINGS, type Setting, type SettingsTable, type SettingsValues } from '../contract/settings';
import { MAX_HISTORY_BYTES_PER_CHANNEL, MAX_HISTORY_SIZE } from '../contract/limits';

/*
 * zod/mini, not zod: the same checks and messages over tree-shakable functions, so a Lambda bundle carries about
 * 25 KB of validator instead of 450 KB (docs/BENCHMARKS.md, "Lambda bundles and cold start"). zod/mini loads no
 * locale by itself: English is set here, the messages of full zod. Every runtime parser uses it (one style: the
 * Lambdas, the SSE service and the local stack read `contract/settings.ts` through {@link readSettings}).
 */
z.config(en());

/** Who may subscribe to the channels of a namespace. */
export const SubscribePolicy = z.enum(['public', 'authenticated', 'owner', 'granted']);
/** Who may publish to the channels of a namespace (`server` = IAM-signed backends only). */
export const PublishPolicy = z.enum(['server', 'authenticated']);

/** A Lambda function (name, partial or full ARN, optionally qualified) asked synchronously about one namespace's subscribes or publishes. */
export const HookSchema = z.strictObject({
  /** The function: `name`, `name:alias`, `123456789012:function:name` or its ARN (Lambda's `FunctionName`). */
  function: z.string().check(z.regex(/^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_:-]{1,140}$/, 'a Lambda function name or ARN')),
  /** Milliseconds to wait for the answer before the failure policy applies (50 to 10000). Defaults to 1000. */
  timeoutMs: z._default(z.number().check(z.int(), z.minimum(50), z.maximum(10_000)), 1000),
  /** When the hook fails, times out or answers nonsense: `deny` (fail closed: the subscribe or publish is refused with 503) or `allow`. Defaults to `deny`. */
  onError: z._default(z.enum(['deny', 'allow']), 'deny'),
});
export type Hook = z.infer<typeof HookSchema>;

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
  /**
   * Hooks (core/hooks.ts): `subscribe`, asked when a ticket names the namespace's channels (allow, deny, or narrow the
   * channels); `publish`, asked for each client publish (WebSocket `publish` frames: accept, reject with a code, or
   * replace `data`). Defaults to none.
   */
  hooks: z.optional(z.strictObject({ subscribe: z.optional(HookSchema), publish: z.optional(HookSchema) })),
  /**
   * Who may post the client SDK's delivery stats of this namespace to `POST /client-metrics`: `anonymous` anyone,
   * `authenticated` a ticket holder granted a channel of it, `off` nobody. Unset: `authenticated`.
   */
  clientMetrics: z.optional(z.enum(['off', 'authenticated', 'anonymous'])),
  /**
   * Presence (core/presence.ts, docs/DESIGN.md "Presence"): `members` keeps who is on each channel (a snapshot and
   * `presence.join` / `presence.leave` events in the channel's stream), `count` how many (coalesced counts), `off`
   * nothing. Unset: `off`.
   */
  presence: z.optional(z.enum(['off', 'members', 'count'])),
}).check(
  // Public channels open without a ticket: a subscribe hook there would never be asked.
  z.refine((ns) => !(ns.subscribe === 'public' && ns.hooks?.subscribe), { message: 'a subscribe hook needs tickets: it cannot be set on a "public" namespace (no ticket is asked for)', path: ['hooks', 'subscribe'] }),
);

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

/** An unset or empty variable takes the row's default. */
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);

/** The zod/mini schema of one row of `contract/settings.ts`: its type, range or pattern, and default. */
export function settingSchema(row: Setting): z.ZodMiniType {
  let schema: z.ZodMiniType;
  switch (row.kind) {
    case 'int':
      schema = z.coerce.number().check(z.int(), z.minimum(row.min), z.maximum(row.max));
      break;
    case 'boolean':
      schema = z.pipe(z.enum(['true', 'false', '1', '0']), z.transform((v) => v === 'true' || v === '1'));
      break;
    case 'enum':
      schema = row.message ? z.enum(row.values, { error: row.message }) : z.enum(row.values);
      break;
    case 'string': {
      const checks = [
        ...(row.minLength !== undefined ? [z.minLength(row.minLength)] : []),
        ...(row.maxLength !== undefined ? [z.maxLength(row.maxLength)] : []),
        ...(row.pattern ? [z.regex(row.pattern, row.message)] : []),
      ];
      const base = row.required ? z.string({ error: row.required }) : z.string();
      schema = checks.length ? base.check(...checks) : base;
      break;
    }
  }
  const given = row.default !== undefined ? z._default(schema, row.default) : row.kind === 'string' && row.required ? schema : z.optional(schema);
  return z.pipe(z.transform(unsetIfEmpty), given);
}

/** The schema of a table: one key per environment variable. */
export function envSchema(table: SettingsTable) {
  return z.object(Object.fromEntries(Object.values(table).map((row) => [row.env, settingSchema(row)])));
}

/**
 * Reads a table from the environment (one style for every runtime: zod/mini over the rows of `contract/settings.ts`),
 * by key; throws {@link ConfigError} with one line naming every bad variable.
 */
export function readSettings<T extends SettingsTable>(table: T, env: NodeJS.ProcessEnv): SettingsValues<T> {
  const e = parseEnv(envSchema(table), env) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(table).map(([key, row]) => [key, e[row.env]])) as SettingsValues<T>;
}

/**
 * Checks settings given as an object (the local stack, tests: no environment), by key, against the same rows; throws
 * {@link ConfigError} naming the key. Numbers and booleans are checked as their environment strings would be.
 */
export function checkSettings<T extends SettingsTable>(table: T, values: Partial<Record<keyof T, unknown>>): SettingsValues<T> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, row] of Object.entries(table)) {
    const value = values[key as keyof T];
    const parsed = z.safeParse(settingSchema(row), value === undefined ? undefined : String(value));
    if (parsed.success) out[key] = parsed.data;
    else problems.push(`${key}: ${row.kind === 'int' ? `a whole number from ${row.min} to ${row.max}` : parsed.error.issues.map((i) => i.message).join(', ')} (got ${String(value)})`);
  }
  if (problems.length) throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  return out as SettingsValues<T>;
}

/**
 * The core settings, parsed. Meaning, range and default of each field: its row in `CORE_SETTINGS`
 * (contract/settings.ts). Fields a caller may leave out of a hand-built config (the local stack, tests) are optional
 * here and take the row's default where they are read.
 */
export interface CoreConfig {
  readonly redisUrl: string;
  /** REDIS_MODE: `single` (one primary) or `cluster` (a Redis Cluster). Optional for configs built in code; absent means `single`. */
  readonly redisMode?: 'single' | 'cluster';
  readonly redisPassword?: string;
  readonly redisSecretArn?: string;
  readonly keyPrefix: string;
  readonly namespaces: Namespaces;
  /** Seconds a ticket stays redeemable. */
  readonly ticketTtlSeconds: number;
  /** Largest serialised event envelope in bytes. */
  readonly maxPayloadBytes: number;
  /** Channels one ticket or connection may name. */
  readonly maxChannelsPerConnection: number;
  /**
   * Events one user (a ticket holder, not a backend) may publish per one-minute window, counted from
   * the first publish of the window; 0 disables the limit.
   */
  readonly userPublishPerMinute?: number;
  /**
   * Channels one user may start (publish the first event of) per one-hour window; 0 disables the
   * limit. A channel counts as new when it has no event within its history TTL plus
   * {@link LAST_ID_TAIL_SECONDS}.
   */
  readonly userNewChannelsPerHour?: number;
  /**
   * Bytes of events one user may publish to one namespace within one window of that namespace's history TTL (counted
   * from the window's first publish; envelopes as stored); 0 disables. Events leave history once older than the TTL
   * (at the channel's next publish, or with the stream), so what one user keeps in Redis per namespace is at most
   * three windows' worth.
   */
  readonly userRetainedBytes?: number;
  /**
   * Bytes in one replay page: a page ends at this many bytes of envelopes (plus 128 per event for framing) or at its
   * event count, whichever comes first; the first event of a page is taken whatever its size.
   */
  readonly replayMaxBytes?: number;
  /**
   * Tickets one user may get per one-minute window (counted from the first of the window, whoever asks
   * for them: the user or a backend naming the user); 0 disables the limit.
   */
  readonly userTicketsPerMinute?: number;
  /**
   * Connections one user may hold at once; 0 disables the cap. On the tasks it is counted per task (streams, polls and
   * `/live` sockets, service/quotas.ts); on API Gateway across the deployment, in the connection registry at `$connect`
   * (a registration that expired without `$disconnect` no longer counts).
   */
  readonly userConnections?: number;
  /** Milliseconds a presence member whose last connection closed stays a member (core/presence.ts). */
  readonly presenceGraceMs?: number;
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

/** The core rows this parser reads: all but `LOG_LEVEL`, which each runtime reads in its logger's vocabulary. */
const { logLevel: _logLevel, ...CORE_PARSED } = CORE_SETTINGS;

export function coreConfigFromEnv(env: NodeJS.ProcessEnv = process.env): CoreConfig {
  const { namespacesJson, ...settings } = readSettings(CORE_PARSED, env);
  const namespaces = parseNamespaces(namespacesJson);
  checkHistoryBytes(namespaces, settings.maxPayloadBytes);
  return { ...settings, namespaces };
}
