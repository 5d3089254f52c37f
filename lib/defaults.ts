/**
 * The one table of defaults: what every construct applies when a prop is unset, keyed exactly like the stage config in
 * cdk.json (`sse.minTasks`, `ticketApi.throttleRateLimit`, ...). The constructs read their defaults from here, and
 * `test/infra/stage-config.test.ts` checks the configuration table of docs/DEPLOY.md against it, key by key. A stage key
 * that is absent here is unset by default (the construct or the runtime then decides, as the docs say).
 *
 * Keys follow the construct props; where the prop takes a CDK type, the stage key names the unit or the reference:
 * `<prop>Seconds` for a `Duration` (`idleTimeoutSeconds` → `idleTimeout`), `<prop>Days` for a log retention,
 * `<prop>Arn` for an imported resource (`certificateArn` → `certificate`).
 */

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
    keyPrefix: 'rt:',
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
    heartbeatMs: 15_000,
    pollTimeoutMs: 25_000,
    maxWriteDelayMs: 100,
    latencyBudgetMs: 100,
    writeDelayMs: 0,
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
    shards: 4,
    inlineMax: 200,
    replayInlineMax: 100,
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
    debounceMs: 5000,
    exampleQueue: true,
  },
  waf: {
    enabled: true,
    rateLimit: 1000,
    rateLimitWindowSeconds: 300,
    healthCheckRateLimit: 100,
  },
  trustedPrincipals: [],
  allowedOrigins: [],
  ticketTtlSeconds: 30,
  maxPayloadBytes: 32_768,
  logLevel: 'info',
  logRetentionDays: 30,
} as const;
