import { z } from 'zod';
import { CORE_ENV, SERVICE_ENV } from '../contract/env';
import { ConfigError, CoreEnvSchema, coreConfigFromEnv, DEFAULT_USER_CONNECTIONS, parseEnv, type CoreConfig } from '../core/config';
import { parseTargetGroupArn } from '../core/aws/elb';
import { MAX_SHARDS } from '../core/shard';

const envBoolean = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/**
 * The service's variables (names from contract/env.ts), on top of the core ones. The core's schemas are zod/mini
 * (`core/config.ts`, kept small for the Lambdas); a full zod object takes them as they are, with the same messages.
 */
const ServiceEnvSchema = z.object({
  ...CoreEnvSchema.shape,
  [SERVICE_ENV.port]: z.coerce.number().int().min(0).max(65535).default(8080),
  [SERVICE_ENV.host]: z.string().default('0.0.0.0'),
  /** Comma-separated HMAC secrets for the reconnect cookie; the first signs, all verify (rotation). */
  [SERVICE_ENV.sessionSecret]: z
    .string({ error: 'is required (32+ random characters; on AWS it comes from Secrets Manager)' })
    .refine((v) => v.split(',').every((s) => s.length >= 32), 'each secret must be at least 32 characters'),
  [SERVICE_ENV.sessionTtlSeconds]: z.coerce.number().int().min(60).max(86400).default(900),
  [SERVICE_ENV.sessionMaxAgeSeconds]: z.coerce.number().int().min(60).max(7 * 86400).default(43200),
  [SERVICE_ENV.heartbeatMs]: z.coerce.number().int().min(1000).max(300_000).default(15_000),
  [SERVICE_ENV.retryMs]: z.coerce.number().int().min(100).max(60_000).default(3000),
  [SERVICE_ENV.pollTimeoutMs]: z.coerce.number().int().min(1000).max(120_000).default(25_000),
  [SERVICE_ENV.allowedOrigins]: z.string().default(''),
  [SERVICE_ENV.cookieSecure]: envBoolean.default(true),
  [SERVICE_ENV.cookieSameSite]: z.enum(['None', 'Lax', 'Strict']).optional(),
  [SERVICE_ENV.streamFraming]: z.enum(['close', 'chunked']).default('close'),
  [SERVICE_ENV.writeDelayMs]: z.coerce.number().int().min(0).max(1000).default(0),
  [SERVICE_ENV.maxWriteDelayMs]: z.coerce.number().int().min(0).max(1000).default(100),
  [SERVICE_ENV.latencyBudgetMs]: z.coerce.number().int().min(1).max(5000).default(100),
  [SERVICE_ENV.maxQueuedBytes]: z.coerce.number().int().min(16_384).max(64 * 1024 * 1024).default(1024 * 1024),
  [SERVICE_ENV.maxConnections]: z.coerce.number().int().min(1).max(1_000_000).default(20_000),
  [SERVICE_ENV.drainTimeoutMs]: z.coerce.number().int().min(0).max(3_600_000).default(20_000),
  [SERVICE_ENV.metricsIntervalMs]: z.coerce.number().int().min(0).max(3_600_000).default(60_000),
  [SERVICE_ENV.metricsNamespace]: z.string().min(1).max(255).default('RealtimeBlueprint'),
  [CORE_ENV.logLevel]: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Set by ECS on Fargate (task metadata endpoint v4); polled to learn the task is being stopped. */
  [SERVICE_ENV.ecsMetadataUri]: z.url({ protocol: /^https?$/, error: 'must be an http:// URL (ECS sets it)' }).optional(),
  [SERVICE_ENV.stopPollMs]: z.coerce.number().int().min(50).max(60_000).default(2000),
  [SERVICE_ENV.targetHealthPollMs]: z.coerce.number().int().min(50).max(3_600_000).default(10_000),
  /** Set by the stack: the task polls its own target's health there to learn it is being drained. */
  [SERVICE_ENV.targetGroupArn]: z
    .string()
    .refine((v) => parseTargetGroupArn(v) !== undefined, 'must be a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>)')
    .optional(),
  [SERVICE_ENV.wsFanoutQueueUrl]: z.string().regex(/^https?:\/\/[^\s]+\.fifo$/, 'must be the http(s) URL of a FIFO queue (ending in .fifo)').optional(),
  [SERVICE_ENV.wsFanoutShards]: z.coerce.number().int().min(1).max(MAX_SHARDS).default(1),
  [SERVICE_ENV.anonRequestsPerMinute]: z.coerce.number().int().min(0).max(1_000_000).default(120),
  [SERVICE_ENV.trustProxyHops]: z.coerce.number().int().min(0).max(10).default(0),
  [SERVICE_ENV.anonConnectionsPerIp]: z.coerce.number().int().min(0).max(1_000_000).default(100),
  [SERVICE_ENV.anonChannelsPerIp]: z.coerce.number().int().min(0).max(1_000_000).default(200),
  [SERVICE_ENV.headersTimeoutMs]: z.coerce.number().int().min(1000).max(120_000).default(10_000),
  [SERVICE_ENV.replayMaxEvents]: z.coerce.number().int().min(1).max(100_000).default(1000),
  [SERVICE_ENV.maxChannelsPerTask]: z.coerce.number().int().min(1).max(10_000_000).default(50_000),
  [SERVICE_ENV.catchupConcurrency]: z.coerce.number().int().min(1).max(1024).default(16),
  [SERVICE_ENV.maxHeldEvents]: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  [SERVICE_ENV.eventBusName]: z.string().min(1).max(1600).optional(),
  [SERVICE_ENV.occupancyDebounceMs]: z.coerce.number().int().min(0).max(600_000).default(5000),
});

export interface ServiceConfig {
  readonly core: CoreConfig;
  readonly port: number;
  readonly host: string;
  readonly sessionSecrets: readonly string[];
  /** Lifetime of the reconnect cookie in seconds; streams are recycled before it ends. Defaults to 900. */
  readonly sessionTtlSeconds: number;
  /**
   * Absolute lifetime of a session in seconds, counted from the ticket's issue time (or up to the
   * caller's JWT `exp` when sooner): renewals never pass it; then the client needs a new ticket.
   * At most 604800 (7 days). Defaults to 43200 (12 h).
   */
  readonly sessionMaxAgeSeconds: number;
  /** Heartbeat comment interval in milliseconds. Defaults to 15000 (the ALB idle timeout defaults to 60 s). */
  readonly heartbeatMs: number;
  /** Reconnect delay sent as `retry:` in milliseconds. Defaults to 3000. */
  readonly retryMs: number;
  /** Longest wait of a long-poll request in milliseconds. Defaults to 25000. */
  readonly pollTimeoutMs: number;
  /** Origins allowed to read streams (CORS with credentials). Empty: same-origin and non-browser clients only. `*`: any (local development). */
  readonly allowedOrigins: readonly string[];
  readonly cookieSecure: boolean;
  /** Defaults to `None` when ALLOWED_ORIGINS lists origins (cross-site pages) and the cookie is Secure, `Lax` otherwise. */
  readonly cookieSameSite: 'None' | 'Lax' | 'Strict';
  /**
   * How an HTTP/1.1 stream body is delimited: `close` (the connection's end; no per-write chunk
   * framing, frames written straight to the socket) or `chunked` (Node's default). Defaults to `close`.
   */
  readonly streamFraming: 'close' | 'chunked';
  /**
   * Fixed batching window for socket writes in milliseconds (a manual override of the adaptive
   * window): every window waits this long after its first event. 0 leaves it to the adaptive window
   * (MAX_WRITE_DELAY_MS). Defaults to 0.
   */
  readonly writeDelayMs: number;
  /**
   * Longest wait of the adaptive write window in milliseconds (service/flush-window.ts): with spare
   * time the service writes at the end of the current event-loop turn; under load a window waits
   * what LATENCY_BUDGET_MS leaves, at most this. 0 turns adaptation off (always the end of the turn).
   * Ignored when WRITE_DELAY_MS > 0. Defaults to 100.
   */
  readonly maxWriteDelayMs: number;
  /**
   * Queueing delay in milliseconds the adaptive write window keeps each event under, from its own
   * measurement (first event of a window to the end of its flush: the wait, the event loop's lag and
   * the flush). Defaults to 100.
   */
  readonly latencyBudgetMs: number;
  /** Bytes a stream may have waiting for a slow reader before it is closed. Defaults to 1048576. */
  readonly maxQueuedBytes: number;
  /** Open streams plus waiting long polls per task; beyond it new ones are turned away. Defaults to 20000. */
  readonly maxConnections: number;
  /**
   * Time to move every stream elsewhere once the task is stopping (ECS task metadata says
   * `DesiredStatus: STOPPED`, or SIGTERM), in milliseconds. Must end before the ALB deregistration
   * delay does (the ALB cuts what is left at its end). Defaults to 20000.
   */
  readonly drainTimeoutMs: number;
  /**
   * ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`, set by ECS); its `/task` is polled
   * to start the drain when the task is being stopped, before SIGTERM. Unset: SIGTERM alone drains.
   */
  readonly ecsMetadataUri?: string;
  /** Interval of that poll in milliseconds. Defaults to 2000. */
  readonly stopPollMs: number;
  /**
   * Interval of the `DescribeTargetHealth` poll in milliseconds (`TARGET_HEALTH_POLL_MS`): set by the stack from
   * `maxTasks` so the fleet stays within its share of the account's ELB API rate (`lib/drain-timing.ts`); the first
   * call is jittered over one interval and throttled answers back off beyond it. Defaults to 10000 (10 tasks at 1/s).
   */
  readonly targetHealthPollMs: number;
  /**
   * The target group the task registers in (`TARGET_GROUP_ARN`, set by the stack): with the metadata endpoint, the task
   * also polls its own target's health there (`DescribeTargetHealth`, signed with the task role) and drains when it is
   * `draining`, whichever signal comes first. Unset: the metadata alone.
   */
  readonly targetGroupArn?: string;
  /**
   * The API Gateway fan-out queue (`WS_FANOUT_QUEUE_URL`, `webSocket.mode` `both` only): a publish on `/live` is handed
   * to it, one work item per shard, so the connections still on API Gateway get it from the fan-out worker. Unset:
   * `/live` publishes reach SSE, long polls and `/live` only.
   */
  readonly wsFanoutQueueUrl?: string;
  /** Shards of that queue (`WS_FANOUT_SHARDS`, the worker's). Defaults to 1. */
  readonly wsFanoutShards: number;
  /**
   * Requests per minute per client IP that need no ticket or cookie (only public channels), on
   * `/events` and `/poll` together; past it 429 (an EventSource: 200 + `retry:`). 0 disables. Defaults to 120.
   */
  readonly anonRequestsPerMinute: number;
  /**
   * Streams and polls without a ticket (public channels only) one client IP may hold at once on a task;
   * past it 429 + Retry-After (an EventSource: 200 + `retry:`). 0 disables. Defaults to 100.
   */
  readonly anonConnectionsPerIp: number;
  /**
   * Distinct channels the streams and polls without a ticket of one client IP may subscribe to at once on
   * a task (each costs the task a Redis subscription); past it answered as above. 0 disables. Defaults to 200.
   */
  readonly anonChannelsPerIp: number;
  /**
   * Streams, polls and `/live` sockets one user (ticket or reconnect cookie) may hold at once on a task;
   * past it answered as above (an EventSource keeps its reconnect cookie). 0 disables. Defaults to 32.
   */
  readonly userConnections: number;
  /**
   * Proxies in front of the task that append to X-Forwarded-For: 0 takes the socket's address,
   * 1 (behind the ALB) the right-most X-Forwarded-For entry, n the n-th from the right. Defaults to 0.
   */
  readonly trustProxyHops: number;
  /**
   * Time a client has to send a request's headers (and the whole request: every route is a GET), in
   * milliseconds, on every path including WebSocket upgrades; past it node:http answers 408 and closes
   * the socket, which otherwise holds a file descriptor outside MAX_CONNECTIONS. Admitted streams are no
   * longer subject to it. Defaults to 10000.
   */
  readonly headersTimeoutMs: number;
  /** Most events in one long-poll answer (then `"more": true`) or one write of a stream's replay. Defaults to 1000. */
  readonly replayMaxEvents: number;
  /** Distinct channels this task subscribes to in Redis; a request needing more gets 503 (EventSource: 200 + `retry:`). Defaults to 50000. */
  readonly maxChannelsPerTask: number;
  /** Streams caught up at once after the Redis subscriber reconnects. Defaults to 16. */
  readonly catchupConcurrency: number;
  /** Live events a stream may hold while its replay runs; past it the stream is closed with `retry:` and resumes by id. Defaults to 1000. */
  readonly maxHeldEvents: number;
  /** Interval of the embedded-metric-format lines in milliseconds; 0 disables. Defaults to 60000. */
  readonly metricsIntervalMs: number;
  readonly metricsNamespace: string;
  readonly logLevel: string;
  /** The stage's EventBridge bus (name or ARN): the task relays the backend events' outbox to it. Defaults to none (no relay). */
  readonly eventBusName?: string;
  /** Milliseconds a channel stays without subscribers before `channel.vacated`. Defaults to 5000. */
  readonly occupancyDebounceMs: number;
}

/** Reads and validates the service configuration; throws ConfigError with one line naming the bad keys. */
export function serviceConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const e = parseEnv(ServiceEnvSchema, env);
  const secure = e[SERVICE_ENV.cookieSecure];
  const allowedOrigins = e[SERVICE_ENV.allowedOrigins].split(',').map((s) => s.trim()).filter(Boolean);
  // Lax unless pages of other origins read the streams (a cross-site page sends only SameSite=None cookies).
  const sameSite = e[SERVICE_ENV.cookieSameSite] ?? (secure && allowedOrigins.length > 0 ? 'None' : 'Lax');
  if (sameSite === 'None' && !secure) throw new ConfigError(`Invalid configuration: ${SERVICE_ENV.cookieSameSite}: None requires ${SERVICE_ENV.cookieSecure}=true`);
  const core = coreConfigFromEnv(env);
  return {
    // A replay page is written at once: it never passes what a stream may hold for its reader (MAX_QUEUED_BYTES).
    core: { ...core, replayMaxBytes: Math.min(core.replayMaxBytes ?? e[SERVICE_ENV.maxQueuedBytes], e[SERVICE_ENV.maxQueuedBytes]) },
    port: e[SERVICE_ENV.port],
    host: e[SERVICE_ENV.host],
    sessionSecrets: e[SERVICE_ENV.sessionSecret].split(','),
    sessionTtlSeconds: e[SERVICE_ENV.sessionTtlSeconds],
    sessionMaxAgeSeconds: e[SERVICE_ENV.sessionMaxAgeSeconds],
    heartbeatMs: e[SERVICE_ENV.heartbeatMs],
    retryMs: e[SERVICE_ENV.retryMs],
    pollTimeoutMs: e[SERVICE_ENV.pollTimeoutMs],
    allowedOrigins,
    cookieSecure: secure,
    cookieSameSite: sameSite,
    streamFraming: e[SERVICE_ENV.streamFraming],
    writeDelayMs: e[SERVICE_ENV.writeDelayMs],
    maxWriteDelayMs: e[SERVICE_ENV.maxWriteDelayMs],
    latencyBudgetMs: e[SERVICE_ENV.latencyBudgetMs],
    maxQueuedBytes: e[SERVICE_ENV.maxQueuedBytes],
    maxConnections: e[SERVICE_ENV.maxConnections],
    drainTimeoutMs: e[SERVICE_ENV.drainTimeoutMs],
    metricsIntervalMs: e[SERVICE_ENV.metricsIntervalMs],
    metricsNamespace: e[SERVICE_ENV.metricsNamespace],
    eventBusName: e[SERVICE_ENV.eventBusName],
    occupancyDebounceMs: e[SERVICE_ENV.occupancyDebounceMs],
    logLevel: e[CORE_ENV.logLevel],
    ecsMetadataUri: e[SERVICE_ENV.ecsMetadataUri],
    stopPollMs: e[SERVICE_ENV.stopPollMs],
    targetHealthPollMs: e[SERVICE_ENV.targetHealthPollMs],
    targetGroupArn: e[SERVICE_ENV.targetGroupArn],
    wsFanoutQueueUrl: e[SERVICE_ENV.wsFanoutQueueUrl],
    wsFanoutShards: e[SERVICE_ENV.wsFanoutShards],
    anonRequestsPerMinute: e[SERVICE_ENV.anonRequestsPerMinute],
    anonConnectionsPerIp: e[SERVICE_ENV.anonConnectionsPerIp],
    anonChannelsPerIp: e[SERVICE_ENV.anonChannelsPerIp],
    userConnections: core.userConnections ?? DEFAULT_USER_CONNECTIONS,
    trustProxyHops: e[SERVICE_ENV.trustProxyHops],
    headersTimeoutMs: e[SERVICE_ENV.headersTimeoutMs],
    replayMaxEvents: e[SERVICE_ENV.replayMaxEvents],
    maxChannelsPerTask: e[SERVICE_ENV.maxChannelsPerTask],
    catchupConcurrency: e[SERVICE_ENV.catchupConcurrency],
    maxHeldEvents: e[SERVICE_ENV.maxHeldEvents],
  };
}
