/**
 * `npm run cost -- --connections N --rate R [--size B] [--fanout F] [--stage NAME] [--region us-east-1] [--json]`
 *                  `[--presence members|count --room-size N [--churn J]]` (every connection a member of a channel of N,
 *                  joining J times an hour, each join followed by a leave)
 *
 * What each transport costs per month for this load, with the breakdown per AWS item, the Fargate
 * tasks and Redis node it implies, and where API Gateway WebSockets stop being cheaper than SSE on
 * the tasks. Needs no AWS account: prices come from cost/prices.json, capacity from cost/figures.json.
 * Bad input: one line on stderr, exit code 2.
 */
import { parseArgs } from 'node:util';
import { crossover, estimate, fmt, type Estimate, type Load, type PresenceLoad } from '../cost/model';
import pricesFile from '../cost/prices.json';
import { loadStage } from '../cost/stage';
import { idleTable, readmeTable } from '../cost/tables';

export class UsageError extends Error {}

const USAGE = 'usage: npm run cost -- --connections N --rate R [--size BYTES] [--fanout F] [--presence members|count --room-size N [--churn JOINS_PER_MEMBER_HOUR]] [--stage NAME] [--region us-east-1] [--json]';

function number(name: string, raw: string | undefined, opts: { min: number; integer?: boolean; fallback?: number }): number {
  if (raw === undefined) {
    if (opts.fallback !== undefined) return opts.fallback;
    throw new UsageError(`--${name} is required (${USAGE})`);
  }
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new UsageError(`--${name} must be a number, got "${raw}"`);
  if (v < opts.min) throw new UsageError(`--${name} must be at least ${opts.min}, got ${raw}`);
  if (opts.integer && !Number.isInteger(v)) throw new UsageError(`--${name} must be a whole number, got ${raw}`);
  return v;
}

export interface CostArgs {
  readonly load: Load;
  readonly stage: string;
  readonly json: boolean;
}

export function parseCostArgs(argv: readonly string[]): CostArgs {
  let values: Record<string, string | boolean | undefined>;
  // `--rate -1` reads as an option without a value to parseArgs: join negative numbers to their option.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--') && !argv[i].includes('=') && /^-\d/.test(argv[i + 1] ?? '')) args.push(`${argv[i]}=${argv[++i]}`);
    else args.push(argv[i]);
  }
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        connections: { type: 'string' },
        rate: { type: 'string' },
        size: { type: 'string' },
        fanout: { type: 'string' },
        stage: { type: 'string' },
        region: { type: 'string' },
        json: { type: 'boolean', default: false },
        presence: { type: 'string' },
        'room-size': { type: 'string' },
        churn: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (${USAGE})`);
  }
  const region = (values.region as string | undefined) ?? pricesFile.region;
  if (region !== pricesFile.region) throw new UsageError(`no prices for region "${region}": cost/prices.json holds ${pricesFile.region} only`);
  const connections = number('connections', values.connections as string | undefined, { min: 0, integer: true });
  const rate = number('rate', values.rate as string | undefined, { min: 0 });
  const size = number('size', values.size as string | undefined, { min: 1, integer: true, fallback: 1024 });
  if (size > 131072) throw new UsageError(`--size must be at most 131072 (API Gateway's 128 KB message limit), got ${size}`);
  const fanout = number('fanout', values.fanout as string | undefined, { min: 1, integer: true, fallback: Math.max(1, connections) });
  if (connections > 0 && fanout > connections) throw new UsageError(`--fanout (${fanout}) cannot exceed --connections (${connections})`);
  const presence = parsePresence(values, connections);
  return { load: { connections, rate, size, fanout, ...(presence ? { presence } : {}) }, stage: (values.stage as string | undefined) ?? 'dev', json: values.json === true };
}

/** `--presence members|count --room-size N [--churn J]` (joins per member per hour, default 1). */
function parsePresence(values: Record<string, string | boolean | undefined>, connections: number): PresenceLoad | undefined {
  const mode = values.presence as string | undefined;
  if (mode === undefined) {
    if (values['room-size'] !== undefined || values.churn !== undefined) throw new UsageError(`--room-size and --churn need --presence (${USAGE})`);
    return undefined;
  }
  if (mode !== 'members' && mode !== 'count') throw new UsageError(`--presence must be "members" or "count", got "${mode}"`);
  const roomSize = number('room-size', values['room-size'] as string | undefined, { min: 1, integer: true });
  if (connections > 0 && roomSize > connections) throw new UsageError(`--room-size (${roomSize}) cannot exceed --connections (${connections})`);
  const churnPerHour = number('churn', values.churn as string | undefined, { min: 0, fallback: 1 });
  return { mode, roomSize, churnPerHour };
}

const mib = (n: number) => (Number.isFinite(n) ? `${(n / (1024 * 1024)).toFixed(n < 10 * 1024 * 1024 ? 1 : 0)} MiB` : 'unbounded');
const usd = (n: number) => `$${n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2)}`;

/** The table a person reads. */
export function render(e: Estimate, cross: number | undefined): string {
  const lines: string[] = [];
  const { load, stage } = e;
  lines.push(`${load.connections.toLocaleString('en-US')} connections × ${load.rate} msg/s of ${load.size} B, fan-out ${load.fanout.toLocaleString('en-US')}; stage ${stage.name} (${stage.taskCpu / 1024} vCPU/${stage.taskMemoryMiB} MiB tasks, ${stage.redisShards > 1 ? `${stage.redisShards} shards × ` : ''}${stage.redisNodes} × ${stage.redisNodeType}, ${stage.natGateways} NAT); ${e.region} list prices of ${e.pricesChecked}, per month, egress excluded`);
  lines.push('');
  lines.push('| transport | per month | Fargate tasks |');
  lines.push('| --- | ---: | ---: |');
  const sorted = [...e.transports].sort((a, b) => a.total - b.total);
  for (const t of sorted) lines.push(`| ${t.name} | ${usd(t.total)} | ${t.tasks === undefined ? '–' : `${t.tasks} (${t.tasksBoundBy})`} |`);
  lines.push('');
  lines.push(`Data transfer out, the same for every transport: ${usd(e.egress.monthly)} (${e.egress.basis}).`);
  lines.push(`Redis: the load needs ~${Math.ceil(e.redis.neededMiB)} MiB: ${e.redis.stageNodeEnough ? `the stage's ${stage.redisNodeType} is enough` : `needs ${e.redis.nodeType}`}.`);
  lines.push(`Redis shards: ${e.redis.shards} (the publishes need ${e.redis.shardsNeeded}; stage redis.shards ${stage.redisShards}), each engine ~${e.redis.engineCpuPercent.toFixed(e.redis.engineCpuPercent < 1 ? 2 : 0)} % busy with publishes${e.presence ? ' and presence' : ''}.`);
  for (const r of e.retainedPerUser) {
    const budget = r.budgetBytes === 0 ? 'no USER_RETAINED_BYTES budget' : `3 windows of USER_RETAINED_BYTES ${mib(r.budgetBytes)} per ${r.windowSeconds} s`;
    lines.push(`Retained bytes per user, worst case, namespace ${r.namespace}: ${mib(r.worstBytes)} (${budget}; the publish rate alone would allow ${mib(r.rateBoundBytes)}).`);
  }
  const p = e.presence;
  if (p) {
    const what = p.mode === 'members' ? 'join/leave events delivered per second (2 × joins × room size: a room\'s grows as the square of its size)' : 'count events delivered per second (at most one per 2 s per room: flat in the room\'s size)';
    lines.push(
      `Presence (${p.mode}, rooms of ${p.roomSize.toLocaleString('en-US')}, ${p.churnPerHour} joins per member per hour): ${fmt(p.eventDeliveriesPerSecond)} ${what}; ${fmt(p.snapshotsPerSecond)} snapshots/s; Redis ${fmt(p.redisUsPerSecond / 1000)} ms of engine time per second; tasks ${fmt(p.taskCpuUsPerSecond / 1e6)} vCPU (priced in the totals).`,
    );
  }
  lines.push(cross === undefined ? 'Crossover: API Gateway WebSockets are not cheaper than SSE on the tasks at this rate and size for any audience up to 10 M.' : `Crossover: below ~${cross.toLocaleString('en-US')} connections (same rate and size, one broadcast channel) API Gateway WebSockets cost less than SSE on the tasks.`);
  for (const t of sorted) {
    lines.push('');
    lines.push(`${t.name}: ${usd(t.total)}`);
    for (const i of t.items) lines.push(`  ${usd(i.monthly).padStart(10)}  ${i.item}: ${i.basis}`);
    for (const n of t.notes) lines.push(`  note: ${n}`);
  }
  return lines.join('\n');
}

export function run(argv: readonly string[]): { code: number; stdout: string; stderr: string } {
  // The tables the docs carry, printed by the same code (tests keep README.md and docs/DEPLOY.md equal to them).
  if (argv[0] === '--readme-table') return { code: 0, stdout: readmeTable(), stderr: '' };
  if (argv[0] === '--idle-table') return { code: 0, stdout: idleTable(), stderr: '' };
  try {
    const a = parseCostArgs(argv);
    const stage = loadStage(a.stage);
    const e = estimate(a.load, stage);
    const cross = crossover({ rate: a.load.rate, size: a.load.size }, stage);
    return { code: 0, stdout: a.json ? JSON.stringify({ ...e, crossoverConnections: cross ?? null }, null, 2) : render(e, cross), stderr: '' };
  } catch (err) {
    if (err instanceof UsageError || (err instanceof Error && err.name !== 'Error') || (err instanceof Error && /unknown stage/.test(err.message))) {
      return { code: 2, stdout: '', stderr: `npm run cost: ${err.message}` };
    }
    throw err;
  }
}

if (require.main === module) {
  const r = run(process.argv.slice(2));
  if (r.stdout) process.stdout.write(`${r.stdout}\n`);
  if (r.stderr) process.stderr.write(`${r.stderr}\n`);
  process.exitCode = r.code;
}
