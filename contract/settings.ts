/**
 * Every runtime setting, once: its environment variable, type, range, default and one-line doc, in one dependency-free
 * table (STYLE 9e). Everything else reads it:
 *
 * - the runtime parsers (`core/config.ts` builds one zod/mini schema per table: {@link CORE_SETTINGS} for every runtime,
 *   {@link LAMBDA_SETTINGS} for the handlers, {@link SERVICE_SETTINGS} for the SSE service);
 * - the constructs (`lib/defaults.ts` takes the defaults of the settings a stage may set from here, `checkSetting` in
 *   `lib/errors.ts` the ranges, and the functions' and task's environment the names: `CORE_ENV`, `LAMBDA_ENV` and
 *   `SERVICE_ENV` below);
 * - the cost planner (`cost/stage.ts`, through the stage schema and `lib/defaults.ts`);
 * - the docs: README's configuration table (`test/infra/env-contract.test.ts`) and docs/DEPLOY.md's defaults
 *   (`test/infra/stage-config.test.ts`, with the template's values and the runtime's parsed defaults) are tested against it.
 *
 * To add a setting: add a row to the table of who reads it (a `kind`, the `env` name, `min`/`max` for whole numbers,
 * a `default` unless unset means something, and a one-line `doc`), read it from the parsed config, add its README row,
 * and, if a stage may set it, a `DEFAULTS` key in `lib/defaults.ts` that takes the row's default and its pair in
 * `STAGE_SETTINGS`. docs/DESIGN.md, "Each setting once", says the same.
 */

interface Row {
  /** The environment variable. */
  readonly env: string;
  /** One line: what it sets, with its unit. */
  readonly doc: string;
}
/** A whole number from `min` to `max` (both inclusive). */
export interface IntSetting extends Row {
  readonly kind: 'int';
  readonly min: number;
  readonly max: number;
  readonly default?: number;
}
/** A string; `pattern` (with `message`, said when it does not match) and lengths when set. */
export interface StringSetting extends Row {
  readonly kind: 'string';
  readonly pattern?: RegExp;
  readonly message?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly default?: string;
  /** Unset is an error, with this message. */
  readonly required?: string;
}
/** One of `values`. */
export interface EnumSetting extends Row {
  readonly kind: 'enum';
  readonly values: readonly [string, ...string[]];
  readonly default?: string;
  /** Said when the value is not one of `values`. */
  readonly message?: string;
}
/** `true`/`false`/`1`/`0`. */
export interface BooleanSetting extends Row {
  readonly kind: 'boolean';
  readonly default?: boolean;
}
export type Setting = IntSetting | StringSetting | EnumSetting | BooleanSetting;
/** A table of settings: key (the config field it becomes) → row. */
export type SettingsTable = Readonly<Record<string, Setting>>;

/** The value a row parses to. */
export type SettingValue<S extends Setting> = S extends IntSetting ? number : S extends BooleanSetting ? boolean : S extends EnumSetting ? S['values'][number] : string;
type Given<S> = S extends { readonly default: unknown } ? true : S extends { readonly required: string } ? true : false;
/** What a table parses to: one field per row, optional when the row has no default and is not required. */
export type SettingsValues<T extends SettingsTable> = { readonly [K in keyof T as Given<T[K]> extends true ? K : never]: SettingValue<T[K]> } & {
  readonly [K in keyof T as Given<T[K]> extends true ? never : K]?: SettingValue<T[K]>;
};

const HTTP_URL = /^https?:\/\/[^\s]+$/;
const FIFO_QUEUE_URL = /^https?:\/\/[^\s]+\.fifo$/;

/** Rows two tables share (the publishers and, in `webSocket.mode` `both`, the tasks), as plain constants: a table that
 * read them from the other (`LAMBDA_SETTINGS.x`) could not be dropped from a bundle that uses only the other. */
const WS_FANOUT_QUEUE_URL = { kind: 'string', env: 'WS_FANOUT_QUEUE_URL', pattern: FIFO_QUEUE_URL, message: 'must be the http(s) URL of a FIFO queue (ending in .fifo)', doc: 'The fan-out queue; unset: every fan-out is inline.' } as const;
const WS_FANOUT_SHARDS = { kind: 'int', env: 'WS_FANOUT_SHARDS', min: 1, max: 256, default: 1, doc: 'Shards (FIFO message groups, parallel workers) of the fan-out.' } as const;

/** Read by every runtime (Lambdas, SSE service, local stack). */
export const CORE_SETTINGS = {
  redisUrl: { kind: 'string', env: 'REDIS_URL', pattern: /^rediss?:\/\//, message: 'must start with redis:// or rediss://', default: 'redis://127.0.0.1:6379', doc: 'Redis to connect to; rediss:// for TLS (ElastiCache in-transit encryption).' },
  redisPassword: { kind: 'string', env: 'REDIS_PASSWORD', minLength: 1, doc: 'Redis AUTH token; on AWS an ECS secret (tasks).' },
  redisSecretArn: { kind: 'string', env: 'REDIS_SECRET_ARN', pattern: /^arn:/, message: 'must be an ARN (arn:...)', doc: 'Secrets Manager secret holding the AUTH token, read at cold start (Lambdas).' },
  /**
   * `single` (one primary, the primary endpoint). `cluster` (ElastiCache cluster mode enabled, set by the construct for
   * redis.shards >= 2): REDIS_URL is the configuration endpoint, every script runs in one channel's slot and live events
   * go by sharded pub/sub (SPUBLISH/SSUBSCRIBE).
   */
  redisMode: {
    kind: 'enum',
    env: 'REDIS_MODE',
    values: ['single', 'cluster'],
    default: 'single',
    doc: '`single` (one primary); `cluster` (ElastiCache cluster mode, set for redis.shards >= 2: REDIS_URL is the configuration endpoint, sharded pub/sub).',
  },
  keyPrefix: { kind: 'string', env: 'KEY_PREFIX', pattern: /^[A-Za-z0-9:_-]{1,32}$/, message: 'letters, digits, ":", "_" or "-", up to 32 chars', default: 'rt:', doc: 'Prefix of every Redis key and pub/sub channel.' },
  namespacesJson: { kind: 'string', env: 'NAMESPACES_JSON', doc: 'Channel namespace policies as JSON; unset: the runtime\'s (scores, chat, user).' },
  ticketTtlSeconds: { kind: 'int', env: 'TICKET_TTL_SECONDS', min: 5, max: 300, default: 30, doc: 'Seconds a ticket stays redeemable.' },
  maxPayloadBytes: { kind: 'int', env: 'MAX_PAYLOAD_BYTES', min: 256, max: 32_768, default: 32_768, doc: 'Largest serialised event envelope in bytes (32 KB is API Gateway\'s WebSocket frame size).' },
  maxChannelsPerConnection: { kind: 'int', env: 'MAX_CHANNELS_PER_CONNECTION', min: 1, max: 64, default: 16, doc: 'Channels one ticket or connection may name.' },
  userPublishPerMinute: { kind: 'int', env: 'USER_PUBLISH_PER_MINUTE', min: 0, max: 1_000_000, default: 300, doc: 'Events one user may publish per one-minute window; 0 = no limit.' },
  userNewChannelsPerHour: { kind: 'int', env: 'USER_NEW_CHANNELS_PER_HOUR', min: 0, max: 1_000_000, default: 50, doc: 'Channels one user may start per one-hour window; 0 = no limit.' },
  replayMaxBytes: { kind: 'int', env: 'REPLAY_MAX_BYTES', min: 16_384, max: 16_777_216 /* 16 MiB */, default: 1_048_576 /* 1 MiB */, doc: 'Bytes in one replay page (every replay: /poll, /events, /live, API Gateway subscribe).' },
  userRetainedBytes: { kind: 'int', env: 'USER_RETAINED_BYTES', min: 0, max: 1_073_741_824 /* 1 GiB */, default: 8_388_608 /* 8 MiB */, doc: 'Bytes one user may publish per namespace per history TTL window; 0 = no limit.' },
  userTicketsPerMinute: { kind: 'int', env: 'USER_TICKETS_PER_MINUTE', min: 0, max: 1_000_000, default: 60, doc: 'Tickets one user may get per one-minute window; 0 = no limit.' },
  /** Per task on the tasks (service/quotas.ts); across the deployment on API Gateway (the connection registry). */
  userConnections: { kind: 'int', env: 'USER_CONNECTIONS', min: 0, max: 1_000_000, default: 32, doc: 'Connections one user may hold at once (per task on the tasks, per deployment on API Gateway); 0 = no cap.' },
  presenceGraceMs: { kind: 'int', env: 'PRESENCE_GRACE_MS', min: 0, max: 600_000, default: 5_000, doc: 'Milliseconds a presence member whose last connection closed stays a member (a reconnect within it makes no leave and join); 0 = leave at once.' },
  backendEvents: { kind: 'boolean', env: 'BACKEND_EVENTS', default: false, doc: 'Write backend events to the outbox the tasks relay to EventBridge (core/backend-events.ts).' },
  logLevel: { kind: 'enum', env: 'LOG_LEVEL', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', doc: 'pino / Powertools log level.' },
} as const satisfies SettingsTable;

/** Read by the Lambda handlers (HTTP and WebSocket APIs). */
export const LAMBDA_SETTINGS = {
  sseUrl: { kind: 'string', env: 'SSE_URL', pattern: HTTP_URL, message: 'must be a http(s) URL', doc: 'The SSE endpoint a `sse` ticket\'s sseUrl names; unset: null.' },
  wsUrl: { kind: 'string', env: 'WS_URL', pattern: /^wss?:\/\/[^\s]+$/, message: 'must be a ws(s) URL', doc: 'The WebSocket URL a `ws` ticket\'s wsUrl names; unset: null.' },
  wsManagementEndpoint: { kind: 'string', env: 'WS_MANAGEMENT_ENDPOINT', pattern: HTTP_URL, message: 'must be a http(s) URL', doc: 'The API Gateway management endpoint; unset: no fan-out to API Gateway WebSockets.' },
  wsFanoutConcurrency: { kind: 'int', env: 'WS_FANOUT_CONCURRENCY', min: 1, max: 1000, default: 32, doc: 'PostToConnection calls in flight per fan-out.' },
  wsGoneGraceMs: { kind: 'int', env: 'WS_GONE_GRACE_MS', min: 0, max: 600_000, default: 10_000, doc: 'Milliseconds after registration during which a 410 keeps a connection.' },
  /** The SQS FIFO queue of fan-out work items (publishers send, the fan-out worker receives). */
  wsFanoutQueueUrl: WS_FANOUT_QUEUE_URL,
  wsFanoutShards: WS_FANOUT_SHARDS,
  wsFanoutInlineMax: { kind: 'int', env: 'WS_FANOUT_INLINE_MAX', min: 0, max: 1_000_000, default: 200, doc: 'Channels with fewer API Gateway subscribers than this are posted inline; 0 queues everything.' },
  wsReplayInlineMax: { kind: 'int', env: 'WS_REPLAY_INLINE_MAX', min: 1, max: 10_000, default: 100, doc: 'Events of a `since` replay the message handler sends before the worker takes over.' },
  trustedPrincipals: { kind: 'string', env: 'TRUSTED_PRINCIPALS', doc: 'Comma-separated IAM role/user ARNs trusted as backends; unset: none.' },
} as const satisfies SettingsTable;

/** Read by the SSE service (Fargate task), on top of {@link CORE_SETTINGS}. */
export const SERVICE_SETTINGS = {
  port: { kind: 'int', env: 'PORT', min: 0, max: 65_535, default: 8080, doc: 'Listen port.' },
  host: { kind: 'string', env: 'HOST', default: '0.0.0.0', doc: 'Listen address.' },
  sessionSecret: {
    kind: 'string',
    env: 'SESSION_SECRET',
    pattern: /^[^,]{32,}(,[^,]{32,})*$/,
    message: 'each secret must be at least 32 characters',
    required: 'is required (32+ random characters; on AWS it comes from Secrets Manager)',
    doc: 'Comma-separated HMAC secrets of the reconnect cookie; the first signs, all verify.',
  },
  sessionTtlSeconds: { kind: 'int', env: 'SESSION_TTL_SECONDS', min: 60, max: 86_400, default: 900, doc: 'Lifetime of the reconnect cookie in seconds.' },
  sessionMaxAgeSeconds: { kind: 'int', env: 'SESSION_MAX_AGE_SECONDS', min: 60, max: 604_800 /* 7 days */, default: 43_200, doc: 'Absolute lifetime of a session in seconds, from the ticket\'s issue time.' },
  heartbeatMs: { kind: 'int', env: 'HEARTBEAT_MS', min: 1000, max: 300_000, default: 15_000, doc: 'Heartbeat interval in milliseconds (SSE comments, /live heartbeats).' },
  retryMs: { kind: 'int', env: 'RETRY_MS', min: 100, max: 60_000, default: 3000, doc: 'Reconnect delay sent as `retry:`, in milliseconds.' },
  pollTimeoutMs: { kind: 'int', env: 'POLL_TIMEOUT_MS', min: 1000, max: 120_000, default: 25_000, doc: 'Longest wait of a long poll in milliseconds.' },
  allowedOrigins: { kind: 'string', env: 'ALLOWED_ORIGINS', default: '', doc: 'Comma-separated origins allowed to read streams (CORS); empty: same-origin only; `*`: any.' },
  cookieSecure: { kind: 'boolean', env: 'COOKIE_SECURE', default: true, doc: '`Secure` reconnect cookie.' },
  cookieSameSite: { kind: 'enum', env: 'COOKIE_SAMESITE', values: ['None', 'Lax', 'Strict'], doc: 'SameSite of the reconnect cookie; unset: None with ALLOWED_ORIGINS and Secure, else Lax.' },
  streamFraming: { kind: 'enum', env: 'STREAM_FRAMING', values: ['close', 'chunked'], default: 'close', doc: 'How an HTTP/1.1 stream body is delimited.' },
  writeDelayMs: { kind: 'int', env: 'WRITE_DELAY_MS', min: 0, max: 1000, default: 0, doc: 'Fixed write batching window in milliseconds; 0: the adaptive window.' },
  maxWriteDelayMs: { kind: 'int', env: 'MAX_WRITE_DELAY_MS', min: 0, max: 1000, default: 100, doc: 'Longest wait of the adaptive write window in milliseconds (once flushing takes 30 % of the event loop, it waits what LATENCY_BUDGET_MS leaves, at most this).' },
  latencyBudgetMs: { kind: 'int', env: 'LATENCY_BUDGET_MS', min: 1, max: 5000, default: 100, doc: 'Queueing delay in milliseconds the adaptive write window keeps each event under, from its own measurement.' },
  maxQueuedBytes: { kind: 'int', env: 'MAX_QUEUED_BYTES', min: 16_384, max: 67_108_864 /* 64 MiB */, default: 1_048_576 /* 1 MiB */, doc: 'Bytes a connection may have waiting for a slow reader before it is closed.' },
  maxConnections: { kind: 'int', env: 'MAX_CONNECTIONS', min: 1, max: 1_000_000, default: 20_000, doc: 'Open streams plus waiting long polls per task.' },
  maxChannelsPerTask: { kind: 'int', env: 'MAX_CHANNELS_PER_TASK', min: 1, max: 10_000_000, default: 50_000, doc: 'Distinct Redis channel subscriptions per task.' },
  anonRequestsPerMinute: { kind: 'int', env: 'ANON_REQUESTS_PER_MINUTE', min: 0, max: 1_000_000, default: 120, doc: 'Requests per minute per client IP naming only public channels; 0 = no limit.' },
  anonConnectionsPerIp: { kind: 'int', env: 'ANON_CONNECTIONS_PER_IP', min: 0, max: 1_000_000, default: 100, doc: 'Ticketless streams and polls one client IP may hold at once on a task; 0 = no cap.' },
  anonChannelsPerIp: { kind: 'int', env: 'ANON_CHANNELS_PER_IP', min: 0, max: 1_000_000, default: 200, doc: 'Distinct channels those of one client IP may subscribe to on a task; 0 = no cap.' },
  headersTimeoutMs: { kind: 'int', env: 'HEADERS_TIMEOUT_MS', min: 1000, max: 120_000, default: 10_000, doc: 'Time a client has to send a whole request, in milliseconds.' },
  ticketBatchMs: { kind: 'int', env: 'TICKET_BATCH_MS', min: 0, max: 50, default: 5, doc: 'Tickets redeemed within this many milliseconds of the last redemption are redeemed together in one script run; 0 = each alone.' },
  trustProxyHops: { kind: 'int', env: 'TRUST_PROXY_HOPS', min: 0, max: 10, default: 0, doc: 'Proxies in front that append to X-Forwarded-For.' },
  replayMaxEvents: { kind: 'int', env: 'REPLAY_MAX_EVENTS', min: 1, max: 100_000, default: 1000, doc: 'Events per replay page (one long-poll answer, one page of a replay).' },
  catchupConcurrency: { kind: 'int', env: 'CATCHUP_CONCURRENCY', min: 1, max: 1024, default: 16, doc: 'Streams caught up at once after the Redis subscriber reconnects.' },
  maxHeldEvents: { kind: 'int', env: 'MAX_HELD_EVENTS', min: 1, max: 1_000_000, default: 1000, doc: 'Live events a connection may hold while its replay runs.' },
  drainTimeoutMs: { kind: 'int', env: 'DRAIN_TIMEOUT_MS', min: 0, max: 3_600_000, default: 20_000, doc: 'Time to move every connection elsewhere once the task stops, in milliseconds.' },
  stopPollMs: { kind: 'int', env: 'STOP_POLL_MS', min: 50, max: 60_000, default: 2000, doc: 'Interval of the task metadata poll in milliseconds.' },
  /** The `DescribeTargetHealth` poll interval: computed by the stack from `maxTasks` and the ELB API budget. */
  targetHealthPollMs: { kind: 'int', env: 'TARGET_HEALTH_POLL_MS', min: 50, max: 3_600_000, default: 10_000, doc: 'Interval of the DescribeTargetHealth poll in milliseconds.' },
  /** Set by ECS itself on every task; never by the stack. */
  ecsMetadataUri: { kind: 'string', env: 'ECS_CONTAINER_METADATA_URI_V4', pattern: /^https?:\/\/\S+$/, message: 'must be an http:// URL (ECS sets it)', doc: 'ECS task metadata endpoint v4 (set by ECS); unset: SIGTERM alone drains.' },
  /** The ALB target group the tasks register in: each task polls its own target's health there (drain signal). */
  targetGroupArn: {
    kind: 'string',
    env: 'TARGET_GROUP_ARN',
    pattern: /^arn:(aws[a-z-]*):elasticloadbalancing:([a-z0-9-]+):\d{12}:targetgroup\/[^/]+\/[0-9a-f]+$/,
    message: 'must be a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>)',
    doc: 'The task\'s target group (set by the stack); unset: the metadata alone.',
  },
  /**
   * `webSocket.mode` `both` only: the fan-out queue and its shard count, the same rows the publishers read, so a
   * publish on `/live` reaches the connections still on API Gateway (through the fan-out worker).
   */
  wsFanoutQueueUrl: WS_FANOUT_QUEUE_URL,
  wsFanoutShards: WS_FANOUT_SHARDS,
  eventBusName: { kind: 'string', env: 'EVENT_BUS_NAME', minLength: 1, maxLength: 1600, doc: 'The stage\'s EventBridge bus (ARN): the task relays the backend events\' outbox to it; unset: no relay.' },
  occupancyDebounceMs: { kind: 'int', env: 'OCCUPANCY_DEBOUNCE_MS', min: 0, max: 600_000, default: 5000, doc: 'Milliseconds a channel stays empty before `channel.vacated`.' },
  clientMetricsPerMinute: { kind: 'int', env: 'CLIENT_METRICS_PER_MINUTE', min: 0, max: 600, default: 6, doc: '`POST /client-metrics` reports per minute per user (with a ticket) or client IP (anonymous); 0 turns the route off (404).' },
  clientMetricsMaxBytes: { kind: 'int', env: 'CLIENT_METRICS_MAX_BYTES', min: 512, max: 65_536, default: 8192, doc: 'Largest `POST /client-metrics` body in bytes (413 past it).' },
  metricsIntervalMs: { kind: 'int', env: 'METRICS_INTERVAL_MS', min: 0, max: 3_600_000, default: 60_000, doc: 'Interval of the embedded-metric-format lines in milliseconds; 0 disables.' },
  metricsNamespace: { kind: 'string', env: 'METRICS_NAMESPACE', minLength: 1, maxLength: 255, default: 'RealtimeBlueprint', doc: 'CloudWatch namespace of those metrics.' },
} as const satisfies SettingsTable;
/** Read by the canary Lambda (lambda/canary.ts). */
export const CANARY_SETTINGS = {
  endpoints: { kind: 'string', env: 'CANARY_ENDPOINTS', required: 'is required: the stack outputs it probes, as JSON', doc: 'The stack outputs it probes, as JSON: `{"TicketUrl","SseUrl","PollUrl","PublishUrl","LiveUrl"?,"WebSocketUrl"?}`.' },
  ticketUrl: { kind: 'string', env: 'CANARY_TICKET_URL', pattern: /^https?:\/\/\S+$/, message: 'must be an http(s) URL', doc: 'Where it mints tickets as a trusted backend (`/tickets` with IAM auth, `/backend/tickets` with JWT auth).' },
  sub: { kind: 'string', env: 'CANARY_SUB', minLength: 1, maxLength: 128, default: 'realtime-canary', doc: 'The `sub` its tickets name.' },
  namespace: { kind: 'string', env: 'CANARY_NAMESPACE', pattern: /^[a-z][a-z0-9-]{0,31}$/, message: 'must be a namespace name', default: 'chat', doc: 'Namespace of its channels: one a ticket holder subscribes to.' },
  burst: { kind: 'int', env: 'CANARY_BURST', min: 1, max: 100, default: 10, doc: 'Events published per run.' },
  timeoutMs: { kind: 'int', env: 'CANARY_TIMEOUT_MS', min: 500, max: 30_000, default: 10_000, doc: 'Longest wait for an answer, and for the burst after its last publish, in milliseconds.' },
  metricsNamespace: { kind: 'string', env: 'METRICS_NAMESPACE', minLength: 1, maxLength: 255, default: 'RealtimeBlueprint', doc: 'CloudWatch namespace of its metrics.' },
} as const satisfies SettingsTable;
// Numbers in the tables are literals, not products: esbuild keeps an unused table whose values need computing, so a
// Lambda bundle would carry SERVICE_SETTINGS.

/** The environment names of a table, by key. */
export type EnvNames<T extends SettingsTable> = { readonly [K in keyof T]: T[K]['env'] };
export function envNames<T extends SettingsTable>(table: T): EnvNames<T> {
  return Object.fromEntries(Object.entries(table).map(([key, row]) => [key, row.env])) as EnvNames<T>;
}

/** The environment names of {@link CORE_SETTINGS}, by key: what `lib/` sets and messages name (never a string literal). */
export const CORE_ENV = /* @__PURE__ */ envNames(CORE_SETTINGS);

/** The environment names of {@link LAMBDA_SETTINGS}. */
export const LAMBDA_ENV = /* @__PURE__ */ envNames(LAMBDA_SETTINGS);

/** The environment names of {@link SERVICE_SETTINGS}. */
export const SERVICE_ENV = /* @__PURE__ */ envNames(SERVICE_SETTINGS);

/** The environment names of {@link CANARY_SETTINGS}. */
export const CANARY_ENV = /* @__PURE__ */ envNames(CANARY_SETTINGS);

export type CoreEnvName = (typeof CORE_ENV)[keyof typeof CORE_ENV];
export type LambdaEnvName = (typeof LAMBDA_ENV)[keyof typeof LAMBDA_ENV];
export type ServiceEnvName = (typeof SERVICE_ENV)[keyof typeof SERVICE_ENV];
export type CanaryEnvName = (typeof CANARY_ENV)[keyof typeof CANARY_ENV];
/** Every variable the runtime reads. */
export type RuntimeEnvName = CoreEnvName | LambdaEnvName | ServiceEnvName | CanaryEnvName;
