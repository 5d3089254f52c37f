import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICE_SETTINGS } from '../contract/settings';
import { parseNamespaces } from '../core/config';
import { DEFAULTS } from '../lib/defaults';
import { parseStageConfig } from '../lib/stage-config';
import type { StageSettings } from './model';

/**
 * The settings of a stage that drive its cost: `cdk.json` `stages.<name>`, parsed by the stage schema `cdk synth` uses
 * (lib/stage-config.ts: the same keys, types and one-line errors), over the constructs' own defaults (`lib/defaults.ts`,
 * the table docs/DEPLOY.md is checked against). Three are not stage keys: the reconnect cookie's life (the runtime's
 * SESSION_TTL_SECONDS default, contract/settings.ts), the Lambda memory size and the alarm count (what the constructs
 * create).
 */
export const STAGE_DEFAULTS: Omit<StageSettings, 'name'> = {
  taskCpu: DEFAULTS.sse.cpu,
  taskMemoryMiB: DEFAULTS.sse.memoryMiB,
  minTasks: DEFAULTS.sse.minTasks,
  maxTasks: DEFAULTS.sse.maxTasks,
  targetConnectionsPerTask: DEFAULTS.sse.targetConnectionsPerTask,
  targetCpuPercent: DEFAULTS.sse.targetCpuPercent,
  heartbeatMs: DEFAULTS.sse.heartbeatMs,
  sessionTtlSeconds: SERVICE_SETTINGS.sessionTtlSeconds.default,
  redisEngine: DEFAULTS.redis.engine,
  redisNodeType: DEFAULTS.redis.nodeType,
  redisNodes: DEFAULTS.redis.nodes,
  redisShards: DEFAULTS.redis.shards,
  natGateways: DEFAULTS.network.natGateways,
  maxAzs: DEFAULTS.network.maxAzs,
  lambdaMemoryMiB: 256,
  alarms: 14,
};

/** Thrown for a stage that does not exist; the message is one line. */
export class UnknownStageError extends Error {}

/** Reads a stage from cdk.json (`root` is the repository); a stage the schema refuses throws its `StageConfigError`. */
export function loadStage(name: string, root = join(__dirname, '..')): StageSettings {
  const cdk = JSON.parse(readFileSync(join(root, 'cdk.json'), 'utf8')) as { context?: { stages?: Record<string, unknown> } };
  const stages = cdk.context?.stages ?? {};
  if (!Object.prototype.hasOwnProperty.call(stages, name)) {
    throw new UnknownStageError(`unknown stage "${name}": cdk.json defines ${Object.keys(stages).join(', ') || 'no stages'}`);
  }
  const s = parseStageConfig(name, stages[name]);
  const d = STAGE_DEFAULTS;
  const canaryOn = s.canary?.enabled ?? DEFAULTS.canary.enabled;
  const wsMode = s.webSocket?.mode ?? DEFAULTS.webSocket.mode;
  return {
    ...d,
    name,
    taskCpu: s.sse?.cpu ?? d.taskCpu,
    taskMemoryMiB: s.sse?.memoryMiB ?? d.taskMemoryMiB,
    minTasks: s.sse?.minTasks ?? d.minTasks,
    maxTasks: s.sse?.maxTasks ?? d.maxTasks,
    targetConnectionsPerTask: s.sse?.targetConnectionsPerTask ?? d.targetConnectionsPerTask,
    targetCpuPercent: s.sse?.targetCpuPercent ?? d.targetCpuPercent,
    heartbeatMs: s.sse?.heartbeatMs ?? d.heartbeatMs,
    redisEngine: s.redis?.engine ?? d.redisEngine,
    redisNodeType: s.redis?.nodeType ?? d.redisNodeType,
    redisNodes: s.redis?.nodes ?? d.redisNodes,
    redisShards: s.redis?.shards ?? d.redisShards,
    natGateways: s.network?.natGateways ?? d.natGateways,
    maxAzs: s.network?.maxAzs ?? d.maxAzs,
    // The runtime's parser: its defaults (historySize, historyTtlSeconds) and checks, as NAMESPACES_JSON would be read.
    namespaces: s.namespaces === undefined ? undefined : parseNamespaces(JSON.stringify(s.namespaces)),
    limits: s.limits,
    maxPayloadBytes: s.maxPayloadBytes,
    // The canary's loss and latency alarms (lib/canary.ts).
    alarms: d.alarms + (canaryOn ? 2 : 0),
    canary: canaryOn
      ? {
          intervalMinutes: s.canary?.intervalMinutes ?? DEFAULTS.canary.intervalMinutes,
          burst: s.canary?.burst ?? DEFAULTS.canary.burst,
          // SSE and long poll always; `/live` unless the mode is `apigateway`; the API Gateway WebSocket unless it is `tasks`.
          transports: 2 + (wsMode === 'both' ? 2 : 1),
          apiGateway: wsMode !== 'tasks',
        }
      : undefined,
  };
}
