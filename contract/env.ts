/**
 * The runtime's environment contract: every variable name, in one dependency-free module.
 *
 * Infrastructure (`lib/`) imports it to set variables on functions and containers; the runtime
 * (`core/`, `lambda/`, `service/`) imports it to parse them once at cold start. Neither side
 * spells a name as a string literal, so a rename is one edit here. Meanings, defaults and ranges
 * live with the parsers (`core/config.ts`, `service/config.ts`) and in the README's table.
 */

/** Read by every runtime (Lambdas, SSE service, local stack). */
export const CORE_ENV = {
  redisUrl: 'REDIS_URL',
  redisPassword: 'REDIS_PASSWORD',
  redisSecretArn: 'REDIS_SECRET_ARN',
  /** `cluster` when REDIS_URL is a cluster-mode configuration endpoint (set by the construct for redis.shards >= 2). */
  redisMode: 'REDIS_MODE',
  keyPrefix: 'KEY_PREFIX',
  namespacesJson: 'NAMESPACES_JSON',
  ticketTtlSeconds: 'TICKET_TTL_SECONDS',
  maxPayloadBytes: 'MAX_PAYLOAD_BYTES',
  maxChannelsPerConnection: 'MAX_CHANNELS_PER_CONNECTION',
  userPublishPerMinute: 'USER_PUBLISH_PER_MINUTE',
  userNewChannelsPerHour: 'USER_NEW_CHANNELS_PER_HOUR',
  replayMaxBytes: 'REPLAY_MAX_BYTES',
  userRetainedBytes: 'USER_RETAINED_BYTES',
  userTicketsPerMinute: 'USER_TICKETS_PER_MINUTE',
  /** Per task on the tasks (service/quotas.ts); across the deployment on API Gateway (the connection registry). */
  userConnections: 'USER_CONNECTIONS',
  /** `true`: write backend events to the outbox the tasks relay to EventBridge (core/backend-events.ts). */
  backendEvents: 'BACKEND_EVENTS',
  logLevel: 'LOG_LEVEL',
} as const;

/** Read by the Lambda handlers (HTTP and WebSocket APIs). */
export const LAMBDA_ENV = {
  sseUrl: 'SSE_URL',
  wsUrl: 'WS_URL',
  wsManagementEndpoint: 'WS_MANAGEMENT_ENDPOINT',
  wsFanoutConcurrency: 'WS_FANOUT_CONCURRENCY',
  wsGoneGraceMs: 'WS_GONE_GRACE_MS',
  /** The SQS FIFO queue of fan-out work items (publishers send, the fan-out worker receives). */
  wsFanoutQueueUrl: 'WS_FANOUT_QUEUE_URL',
  wsFanoutShards: 'WS_FANOUT_SHARDS',
  wsFanoutInlineMax: 'WS_FANOUT_INLINE_MAX',
  wsReplayInlineMax: 'WS_REPLAY_INLINE_MAX',
  trustedPrincipals: 'TRUSTED_PRINCIPALS',
} as const;

/** Read by the SSE service (Fargate task). */
export const SERVICE_ENV = {
  port: 'PORT',
  host: 'HOST',
  sessionSecret: 'SESSION_SECRET',
  sessionTtlSeconds: 'SESSION_TTL_SECONDS',
  sessionMaxAgeSeconds: 'SESSION_MAX_AGE_SECONDS',
  heartbeatMs: 'HEARTBEAT_MS',
  retryMs: 'RETRY_MS',
  pollTimeoutMs: 'POLL_TIMEOUT_MS',
  allowedOrigins: 'ALLOWED_ORIGINS',
  cookieSecure: 'COOKIE_SECURE',
  cookieSameSite: 'COOKIE_SAMESITE',
  streamFraming: 'STREAM_FRAMING',
  writeDelayMs: 'WRITE_DELAY_MS',
  maxWriteDelayMs: 'MAX_WRITE_DELAY_MS',
  latencyBudgetMs: 'LATENCY_BUDGET_MS',
  maxQueuedBytes: 'MAX_QUEUED_BYTES',
  maxConnections: 'MAX_CONNECTIONS',
  maxChannelsPerTask: 'MAX_CHANNELS_PER_TASK',
  anonRequestsPerMinute: 'ANON_REQUESTS_PER_MINUTE',
  anonConnectionsPerIp: 'ANON_CONNECTIONS_PER_IP',
  anonChannelsPerIp: 'ANON_CHANNELS_PER_IP',
  headersTimeoutMs: 'HEADERS_TIMEOUT_MS',
  trustProxyHops: 'TRUST_PROXY_HOPS',
  replayMaxEvents: 'REPLAY_MAX_EVENTS',
  catchupConcurrency: 'CATCHUP_CONCURRENCY',
  maxHeldEvents: 'MAX_HELD_EVENTS',
  drainTimeoutMs: 'DRAIN_TIMEOUT_MS',
  stopPollMs: 'STOP_POLL_MS',
  /** The `DescribeTargetHealth` poll interval: computed by the stack from `maxTasks` and the ELB API budget. */
  targetHealthPollMs: 'TARGET_HEALTH_POLL_MS',
  /** Set by ECS itself on every task; never by the stack. */
  ecsMetadataUri: 'ECS_CONTAINER_METADATA_URI_V4',
  /** The ALB target group the tasks register in: each task polls its own target's health there (drain signal). */
  targetGroupArn: 'TARGET_GROUP_ARN',
  /**
   * `webSocket.mode` `both` only: the fan-out queue and its shard count, the same variables the publishers read, so a
   * publish on `/live` reaches the connections still on API Gateway (through the fan-out worker).
   */
  wsFanoutQueueUrl: LAMBDA_ENV.wsFanoutQueueUrl,
  wsFanoutShards: LAMBDA_ENV.wsFanoutShards,
  metricsIntervalMs: 'METRICS_INTERVAL_MS',
  metricsNamespace: 'METRICS_NAMESPACE',
  /** The stage's EventBridge bus: the task relays the backend events' outbox to it (none: no relay). */
  eventBusName: 'EVENT_BUS_NAME',
  /** Milliseconds a channel stays empty before `channel.vacated`. */
  occupancyDebounceMs: 'OCCUPANCY_DEBOUNCE_MS',
} as const;

export type CoreEnvName = (typeof CORE_ENV)[keyof typeof CORE_ENV];
export type LambdaEnvName = (typeof LAMBDA_ENV)[keyof typeof LAMBDA_ENV];
export type ServiceEnvName = (typeof SERVICE_ENV)[keyof typeof SERVICE_ENV];
/** Every variable the runtime reads. */
export type RuntimeEnvName = CoreEnvName | LambdaEnvName | ServiceEnvName;
