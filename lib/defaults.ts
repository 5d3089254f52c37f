/**
 * The one table of defaults: what every construct applies when a prop is unset, keyed exactly like the stage config in
 * cdk.json (`sse.minTasks`, `ticketApi.throttleRateLimit`, ...). The constructs read their defaults from here, and
 * `test/infra/stage-config.test.ts` checks the configuration table of docs/DEPLOY.md against it, key by key. A stage key
 * that is absent here is unset by default (the construct or the runtime then decides, as the docs say).
 *
 * A key that becomes a runtime variable (`sse.heartbeatMs` → `HEARTBEAT_MS`, `ticketTtlSeconds` → `TICKET_TTL_SECONDS`)
 * takes its row's default from contract/settings.ts, written nowhere else; `STAGE_SETTINGS` below names those rows.
 *
 * Keys follow the construct props; where the prop takes a CDK type, the stage key names the unit or the reference:
 * `<prop>Seconds` for a `Duration` (`idleTimeoutSeconds` → `idleTimeout`), `<prop>Days` for a log retention,
 * `<prop>Arn` for an imported resource (`certificateArn` → `certificate`).
 */
import { CORE_SETTINGS, LAMBDA_SETTINGS, SERVICE_SETTINGS, type Setting } from '../contract/settings';

/** Engine version by engine, when `redis.engineVersion` is unset. */
export const REDIS_ENGINE_VERSION_DEFAULTS = { valkey: '8.0', redis: '7.1' } as const;

export const DEFAULTS = {
  network: {
    maxAzs: 2,
    natGateways: 1,
    flowLogs: true,
    interfaceEndpoints: false,
  },
  redis: {
    engine: 'valkey',
    nodeType: 'cache.t4g.micro',
    nodes: 2,
    shards: 1,
    port: 6379,
    keyPrefix: CORE_SETTINGS.keyPrefix.default,
    snapshotRetentionDays: 1,
    removalPolicy: 'snapshot',
  },
  sse: {
    cpu: 256,
    memoryMiB: 512,
    minTasks: 2,
    maxTasks: 10,
    targetConnectionsPerTask: 10_000,
    targetCpuPercent: 60,
    heartbeatMs: SERVICE_SETTINGS.heartbeatMs.default,
    pollTimeoutMs: SERVICE_SETTINGS.pollTimeoutMs.default,
    maxWriteDelayMs: SERVICE_SETTINGS.maxWriteDelayMs.default,
    latencyBudgetMs: SERVICE_SETTINGS.latencyBudgetMs.default,
    writeDelayMs: SERVICE_SETTINGS.writeDelayMs.default,
    idleTimeoutSeconds: 60,
    deregistrationDelaySeconds: 30,
    stickinessDurationSeconds: 3600,
    nofileLimit: 65_536,
    containerInsights: true,
    deletionProtection: false,
  },
  webSocket: {
    mode: 'tasks',
    stageName: 'live',
    throttleRateLimit: 500,
    throttleBurstLimit: 1000,
    accessLogs: false,
  },
  webSocketFanout: {
    /** The stack's own choice: the runtime's default (`WS_FANOUT_SHARDS` unset) is 1, no sharding. */
    shards: 4,
    inlineMax: LAMBDA_SETTINGS.wsFanoutInlineMax.default,
    replayInlineMax: LAMBDA_SETTINGS.wsReplayInlineMax.default,
    maxReceiveCount: 5,
    batchSize: 10,
  },
  ticketApi: {
    auth: { type: 'iam' },
    throttleRateLimit: 100,
    throttleBurstLimit: 200,
  },
  publishApi: {
    throttleRateLimit: 200,
    throttleBurstLimit: 400,
  },
  backendEvents: {
    enabled: true,
    debounceMs: SERVICE_SETTINGS.occupancyDebounceMs.default,
    exampleQueue: true,
  },
  waf: {
    enabled: true,
    rateLimit: 1000,
    rateLimitWindowSeconds: 300,
    healthCheckRateLimit: 100,
  },
  canary: {
    enabled: false,
    intervalMinutes: 1,
    burst: 10,
    latencyThresholdMs: 1000,
    namespace: 'chat',
  },
  trustedPrincipals: [],
  allowedOrigins: [],
  ticketTtlSeconds: CORE_SETTINGS.ticketTtlSeconds.default,
  maxPayloadBytes: CORE_SETTINGS.maxPayloadBytes.default,
  logLevel: CORE_SETTINGS.logLevel.default,
  logRetentionDays: 30,
} as const;

/**
 * The stage keys that become a runtime variable, with the row that variable is: the construct passes the key's value
 * (or its `DEFAULTS` entry, the row's default) as that variable. `test/infra/stage-config.test.ts` checks that the default
 * in docs/DEPLOY.md, the variable in the synthesised template and the runtime's parsed default are the row's.
 */
export const STAGE_SETTINGS: Readonly<Record<string, Setting>> = {
  'redis.keyPrefix': CORE_SETTINGS.keyPrefix,
  'sse.heartbeatMs': SERVICE_SETTINGS.heartbeatMs,
  'sse.pollTimeoutMs': SERVICE_SETTINGS.pollTimeoutMs,
  'sse.maxWriteDelayMs': SERVICE_SETTINGS.maxWriteDelayMs,
  'sse.latencyBudgetMs': SERVICE_SETTINGS.latencyBudgetMs,
  'sse.writeDelayMs': SERVICE_SETTINGS.writeDelayMs,
  'webSocketFanout.inlineMax': LAMBDA_SETTINGS.wsFanoutInlineMax,
  'webSocketFanout.replayInlineMax': LAMBDA_SETTINGS.wsReplayInlineMax,
  ticketTtlSeconds: CORE_SETTINGS.ticketTtlSeconds,
  maxPayloadBytes: CORE_SETTINGS.maxPayloadBytes,
  'limits.userPublishPerMinute': CORE_SETTINGS.userPublishPerMinute,
  'limits.userNewChannelsPerHour': CORE_SETTINGS.userNewChannelsPerHour,
  'limits.userRetainedBytes': CORE_SETTINGS.userRetainedBytes,
  logLevel: CORE_SETTINGS.logLevel,
  'backendEvents.debounceMs': SERVICE_SETTINGS.occupancyDebounceMs,
};
