import { SERVICE_ENV, CORE_SETTINGS, SERVICE_SETTINGS } from '../contract/settings';
import { ConfigError, coreConfigFromEnv, readSettings, type CoreConfig } from '../core/config';

/** What the service reads: the core rows, `LOG_LEVEL` included, and its own (contract/settings.ts). */
const SERVICE_TABLE = { ...CORE_SETTINGS, ...SERVICE_SETTINGS };

/**
 * The service's configuration. Meaning, range and default of each field read from a variable: its row in
 * `SERVICE_SETTINGS` (contract/settings.ts); the notes here say what the row's one line cannot.
 */
export interface ServiceConfig {
  readonly core: CoreConfig;
  readonly port: number;
  readonly host: string;
  readonly sessionSecrets: readonly string[];
  /** Lifetime of the reconnect cookie in seconds; streams are recycled before it ends. */
  readonly sessionTtlSeconds: number;
  /**
   * Absolute lifetime of a session in seconds, counted from the ticket's issue time (or up to the
   * caller's JWT `exp` when sooner): renewals never pass it; then the client needs a new ticket.
   * At most 604800 (7 days).
   */
  readonly sessionMaxAgeSeconds: number;
  /** Heartbeat comment interval in milliseconds. */
  readonly heartbeatMs: number;
  /** Reconnect delay sent as `retry:` in milliseconds. */
  readonly retryMs: number;
  /** Longest wait of a long-poll request in milliseconds. */
  readonly pollTimeoutMs: number;
  /** Origins allowed to read streams (CORS with credentials). Empty: same-origin and non-browser clients only. `*`: any (local development). */
  readonly allowedOrigins: readonly string[];
  readonly cookieSecure: boolean;
  readonly cookieSameSite: 'None' | 'Lax' | 'Strict';
  /**
   * How an HTTP/1.1 stream body is delimited: `close` (the connection's end; no per-write chunk
   * framing, frames written straight to the socket) or `chunked` (Node's default).
   */
  readonly streamFraming: 'close' | 'chunked';
  /**
   * Fixed batching window for socket writes in milliseconds (a manual override of the adaptive
   * window): every window waits this long after its first event. 0 leaves it to the adaptive window
   * (MAX_WRITE_DELAY_MS).
   */
  readonly writeDelayMs: number;
  /**
   * Longest wait of the adaptive write window in milliseconds (service/flush-window.ts): while the
   * event loop spends under 30 % of its time flushing, the service writes at the end of the current
   * event-loop turn; above that a window waits what LATENCY_BUDGET_MS leaves, at most this. 0 turns
   * adaptation off (always the end of the turn).
   * Ignored when WRITE_DELAY_MS > 0.
   */
  readonly maxWriteDelayMs: number;
  /**
   * Queueing delay in milliseconds the adaptive write window keeps each event under, from its own
   * measurement (first event of a window to the end of its flush: the wait, the event loop's lag and
   * the flush).
   */
  readonly latencyBudgetMs: number;
  /** Bytes a stream may have waiting for a slow reader before it is closed. */
  readonly maxQueuedBytes: number;
  /** Open streams plus waiting long polls per task; beyond it new ones are turned away. */
  readonly maxConnections: number;
  /**
   * Time to move every stream elsewhere once the task is stopping (ECS task metadata says
   * `DesiredStatus: STOPPED`, or SIGTERM), in milliseconds. Must end before the ALB deregistration
   * delay does (the ALB cuts what is left at its end).
   */
  readonly drainTimeoutMs: number;
  /**
   * ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`, set by ECS); its `/task` is polled
   * to start the drain when the task is being stopped, before SIGTERM. Unset: SIGTERM alone drains.
   */
  readonly ecsMetadataUri?: string;
  /** Interval of that poll in milliseconds. */
  readonly stopPollMs: number;
  /**
   * Interval of the `DescribeTargetHealth` poll in milliseconds (`TARGET_HEALTH_POLL_MS`): set by the stack from
   * `maxTasks` so the fleet stays within its share of the account's ELB API rate (`lib/drain-timing.ts`); the first
   * call is jittered over one interval and throttled answers back off beyond it.
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
  /** Shards of that queue (`WS_FANOUT_SHARDS`, the worker's). */
  readonly wsFanoutShards: number;
  /**
   * Requests per minute per client IP that need no ticket or cookie (only public channels), on
   * `/events` and `/poll` together; past it 429 (an EventSource: 200 + `retry:`). 0 disables.
   */
  readonly anonRequestsPerMinute: number;
  /**
   * Streams and polls without a ticket (public channels only) one client IP may hold at once on a task;
   * past it 429 + Retry-After (an EventSource: 200 + `retry:`). 0 disables.
   */
  readonly anonConnectionsPerIp: number;
  /**
   * Distinct channels the streams and polls without a ticket of one client IP may subscribe to at once on
   * a task (each costs the task a Redis subscription); past it answered as above. 0 disables.
   */
  readonly anonChannelsPerIp: number;
  /**
   * Streams, polls and `/live` sockets one user (ticket or reconnect cookie) may hold at once on a task;
   * past it answered as above (an EventSource keeps its reconnect cookie). 0 disables.
   */
  readonly userConnections: number;
  /**
   * Proxies in front of the task that append to X-Forwarded-For: 0 takes the socket's address,
   * 1 (behind the ALB) the right-most X-Forwarded-For entry, n the n-th from the right.
   */
  readonly trustProxyHops: number;
  /**
   * Time a client has to send a request's headers (and the whole request: every route is a GET), in
   * milliseconds, on every path including WebSocket upgrades; past it node:http answers 408 and closes
   * the socket, which otherwise holds a file descriptor outside MAX_CONNECTIONS. Admitted streams are no
   * longer subject to it.
   */
  readonly headersTimeoutMs: number;
  /**
   * A burst's ticket redemptions in one write (service/ticket-batch.ts): a redemption within this many milliseconds of
   * the last GETDEL waits for the window's end and goes with the others in one script run; the first after a quiet
   * window goes at once. 0 = each alone. One Redis node only (a cluster's tickets live in different slots).
   */
  readonly ticketBatchMs: number;
  /** Most events in one long-poll answer (then `"more": true`) or one write of a stream's replay. */
  readonly replayMaxEvents: number;
  /** Distinct channels this task subscribes to in Redis; a request needing more gets 503 (EventSource: 200 + `retry:`). */
  readonly maxChannelsPerTask: number;
  /** Streams caught up at once after the Redis subscriber reconnects. */
  readonly catchupConcurrency: number;
  /** Live events a stream may hold while its replay runs; past it the stream is closed with `retry:` and resumes by id. */
  readonly maxHeldEvents: number;
  /** `POST /client-metrics`: reports per minute per user (with a ticket) or client IP (anonymous); 0 turns the route off (404). Defaults to 6. */
  readonly clientMetricsPerMinute: number;
  /** `POST /client-metrics`: largest body in bytes (413 past it). Defaults to 8192. */
  readonly clientMetricsMaxBytes: number;
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
  const e = readSettings(SERVICE_TABLE, env);
  const allowedOrigins = e.allowedOrigins.split(',').map((s) => s.trim()).filter(Boolean);
  // Lax unless pages of other origins read the streams (a cross-site page sends only SameSite=None cookies).
  const sameSite = e.cookieSameSite ?? (e.cookieSecure && allowedOrigins.length > 0 ? 'None' : 'Lax');
  if (sameSite === 'None' && !e.cookieSecure) throw new ConfigError(`Invalid configuration: ${SERVICE_ENV.cookieSameSite}: None requires ${SERVICE_ENV.cookieSecure}=true`);
  const core = coreConfigFromEnv(env);
  const { sessionSecret, ...service } = pick(e, SERVICE_SETTINGS);
  return {
    ...service,
    // A replay page is written at once: it never passes what a stream may hold for its reader (MAX_QUEUED_BYTES).
    core: { ...core, replayMaxBytes: Math.min(core.replayMaxBytes ?? e.maxQueuedBytes, e.maxQueuedBytes) },
    sessionSecrets: sessionSecret.split(','),
    allowedOrigins,
    cookieSameSite: sameSite,
    userConnections: e.userConnections,
    logLevel: e.logLevel,
  };
}

/** The fields of `values` that are keys of `table`. */
function pick<V extends object, T extends object>(values: V, table: T): Pick<V, Extract<keyof T, keyof V>> {
  return Object.fromEntries(Object.keys(table).map((k) => [k, values[k as keyof V]])) as Pick<V, Extract<keyof T, keyof V>>;
}
