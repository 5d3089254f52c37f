import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../lib/defaults';
import type { StageSettings } from './model';

/**
 * The settings of a stage that drive its cost: `cdk.json` `stages.<name>` over the constructs' own
 * defaults (`lib/defaults.ts`, the table docs/DEPLOY.md is checked against). Three are not stage keys:
 * the reconnect cookie's life (the runtime's SESSION_TTL_SECONDS default), the Lambda memory size and
 * the alarm count (what the constructs create).
 */
export const STAGE_DEFAULTS: Omit<StageSettings, 'name'> = {
  taskCpu: DEFAULTS.sse.cpu,
  taskMemoryMiB: DEFAULTS.sse.memoryMiB,
  minTasks: DEFAULTS.sse.minTasks,
  maxTasks: DEFAULTS.sse.maxTasks,
  targetConnectionsPerTask: DEFAULTS.sse.targetConnectionsPerTask,
  targetCpuPercent: DEFAULTS.sse.targetCpuPercent,
  heartbeatMs: DEFAULTS.sse.heartbeatMs,
  sessionTtlSeconds: 900,
  redisEngine: DEFAULTS.redis.engine,
  redisNodeType: DEFAULTS.redis.nodeType,
  redisNodes: DEFAULTS.redis.nodes,
  natGateways: DEFAULTS.network.natGateways,
  maxAzs: DEFAULTS.network.maxAzs,
  lambdaMemoryMiB: 256,
  alarms: 13,
};

/** Thrown for a stage that does not exist; the message is one line. */
export class UnknownStageError extends Error {}

interface RawStage {
  network?: { natGateways?: number; maxAzs?: number };
  redis?: { engine?: 'valkey' | 'redis'; nodeType?: string; nodes?: number };
  sse?: { cpu?: number; memoryMiB?: number; minTasks?: number; maxTasks?: number; targetConnectionsPerTask?: number; targetCpuPercent?: number; heartbeatMs?: number };
  namespaces?: StageSettings['namespaces'];
  limits?: StageSettings['limits'];
  maxPayloadBytes?: number;
  canary?: { enabled?: boolean };
}

/** Reads a stage from cdk.json (`root` is the repository). */
export function loadStage(name: string, root = join(__dirname, '..')): StageSettings {
  const cdk = JSON.parse(readFileSync(join(root, 'cdk.json'), 'utf8')) as { context?: { stages?: Record<string, RawStage> } };
  const stages = cdk.context?.stages ?? {};
  if (!Object.prototype.hasOwnProperty.call(stages, name)) {
    throw new UnknownStageError(`unknown stage "${name}": cdk.json defines ${Object.keys(stages).join(', ') || 'no stages'}`);
  }
  const s = stages[name];
  const d = STAGE_DEFAULTS;
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
    natGateways: s.network?.natGateways ?? d.natGateways,
    maxAzs: s.network?.maxAzs ?? d.maxAzs,
    namespaces: s.namespaces,
    limits: s.limits,
    maxPayloadBytes: s.maxPayloadBytes,
    // The canary's loss and latency alarms (lib/canary.ts).
    alarms: d.alarms + ((s.canary?.enabled ?? DEFAULTS.canary.enabled) ? 2 : 0),
  };
}
