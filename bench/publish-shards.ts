/**
 * `npm run bench:publish [-- --seconds 5] [--channels 240] [--concurrency 64] [--shards 1,2,3] [--size 100] [--rounds 1]
 *   [--brokers worktree,REV] [--write-figures]`: publish
 * throughput of the per-channel broker (`RedisChannelBroker`, each publish one single-slot script on its channel's
 * shard, live delivery by SPUBLISH there) on one Redis node and on local Redis Clusters of 1, 2 and 3 primaries
 * (issue 23, item 7). Channels are spread over slots, an equal number owned by each primary. Reports publishes/s,
 * Redis CPU per publish (INFO's used_cpu_sys + used_cpu_user deltas of each primary) overall and per shard, how evenly
 * the publishes and the CPU spread over the shards, and this process's own CPU (the publisher).
 *
 * One process publishes (`concurrency` publishes in flight): on a small machine it, not Redis, bounds the throughput,
 * so what grows with shards is the Redis CPU a publish costs and how it spreads, read beside the publisher's CPU.
 * `--write-figures` writes the 1-shard cluster's process CPU per publish to cost/figures.json (`redisPublishCpuUs`),
 * which the cost planner prices shards from (`npm run cost`): a cluster-mode node with the cores to itself, as a
 * shard's node has on ElastiCache (the 2- and 3-shard rows share this machine's two cores among the primaries).
 * Delivery is as in production: each publish SPUBLISHes (PUBLISH on one node) to one subscriber connection per shard
 * (`RedisSubscriber`, subscribed to every channel).
 *
 * Beside the process CPU, each primary's INFO commandstats (reset before the timed run): the publish script's
 * `usec_per_call` (time inside the script, which is what the script itself costs and what sharing the cores inflates
 * least), and, for one node, every command the script ran per publish and its time. The difference between
 * the process CPU and the script's time is the node's own work around it: reading the requests, writing the replies
 * and the sharded delivery, the event loop.
 *
 * `--brokers worktree,REV[,sequence@REV]`: the per-channel broker (and the envelope it publishes) of the working tree
 * and of git revision REV (its core/ from `git archive`, bundled here), and the removed sequence's broker of a revision
 * that had it (one node only), alternated in every setup, `--rounds` times (the order reversed every other round): a
 * before / after of the publish script in one run. Medians over the rounds when there are several.
 */
import { execSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { buildSync } from 'esbuild';
import Redis, { type Cluster } from 'ioredis';
import { REDIS_ENGINE_TARGET } from '../cost/model';
import { DEFAULT_NAMESPACES, type CoreConfig } from '../core/config';
import { parseChannel, type ParsedChannel } from '../core/channels';
import { preparePublish } from '../core/events';
import { RedisChannelBroker } from '../core/redis/channel-broker';
import { createRedisCluster, waitReady } from '../core/redis/client';
import { Keys } from '../core/redis/keys';
import { RedisSubscriber } from '../core/redis/subscriber';
import { RedisCluster, RedisServer } from '../local/redis';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    channels: { type: 'string' },
    concurrency: { type: 'string' },
    shards: { type: 'string' },
    size: { type: 'string' },
    rounds: { type: 'string' },
    brokers: { type: 'string' },
    'write-figures': { type: 'boolean', default: false },
  },
});
const seconds = Number(args.seconds ?? 5);
const channelCount = Number(args.channels ?? 240);
const concurrency = Number(args.concurrency ?? 64);
const shardCounts = (args.shards ?? '1,2,3').split(',').map(Number);
const payload = 'x'.repeat(Number(args.size ?? 100));
const rounds = Number(args.rounds ?? 1);
const ROOT = resolve(__dirname, '..');

/** A publish path under test: the broker and the envelope of the working tree or of a git revision. */
interface Variant {
  readonly label: string;
  readonly Broker: typeof RedisChannelBroker;
  readonly prepare: typeof preparePublish;
  /** The deployment-wide sequence's broker: its script spans slots, so it runs on one node only. */
  readonly oneNodeOnly: boolean;
}

/**
 * `worktree`; git revision `REV`'s per-channel broker; or `sequence@REV`, the sequence's broker (`RedisBroker`) of a
 * revision before it was removed (e.g. `sequence@0dd50a7^`). A revision's core/ is extracted with `git archive` and
 * bundled with its own preparePublish (the envelope its script expects).
 */
function variantOf(spec: string): Variant {
  if (spec === 'worktree') return { label: 'worktree', Broker: RedisChannelBroker, prepare: preparePublish, oneNodeOnly: false };
  const sequence = spec.startsWith('sequence@');
  const rev = sequence ? spec.slice('sequence@'.length) : spec;
  const commit = execSync(`git -C '${ROOT}' rev-parse --verify '${rev}^{commit}'`, { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), `bench-publish-${commit.slice(0, 7)}-`));
  const src = join(dir, 'src');
  mkdirSync(src);
  const tar = spawnSync('bash', ['-c', `git -C '${ROOT}' archive ${commit} core contract | tar -x -C '${src}'`], { stdio: 'inherit' });
  if (tar.status !== 0) throw new Error(`git archive ${rev} failed`);
  if (!existsSync(join(src, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const entry = join(src, 'bench-entry.ts');
  writeFileSync(entry, `export { ${sequence ? 'RedisBroker as Broker' : 'RedisChannelBroker as Broker'} } from './core/redis/${sequence ? 'broker' : 'channel-broker'}';\nexport { preparePublish } from './core/events';\n`);
  const out = join(src, 'variant.js');
  buildSync({ bundle: true, platform: 'node', target: 'node22', format: 'cjs', logLevel: 'warning', entryPoints: [entry], outfile: out, external: ['ioredis'] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const m = require(out) as { Broker: typeof RedisChannelBroker; preparePublish: typeof preparePublish };
  return { label: `${sequence ? 'sequence ' : ''}${rev} (${commit.slice(0, 7)})`, Broker: m.Broker, prepare: m.preparePublish, oneNodeOnly: sequence };
}
const variants = (args.brokers ?? 'worktree').split(',').map((r) => variantOf(r.trim()));

const config: CoreConfig = {
  redisUrl: 'redis://unused',
  keyPrefix: 'rt:',
  namespaces: DEFAULT_NAMESPACES,
  ticketTtlSeconds: 30,
  maxPayloadBytes: 32768,
  maxChannelsPerConnection: 16,
  userTicketsPerMinute: 0,
  userConnections: 0,
};
const keys = new Keys(config.keyPrefix);
const SERVER = { kind: 'server', principal: 'bench' } as const;

async function redisCpu(port: number): Promise<number> {
  const r = new Redis(port, '127.0.0.1');
  const info = await r.info('cpu');
  r.disconnect();
  return Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)![1]);
}

/** INFO commandstats of a node, by command: calls and microseconds. */
async function commandStats(port: number, reset = false): Promise<Map<string, { calls: number; usec: number }>> {
  const r = new Redis(port, '127.0.0.1');
  if (reset) await r.config('RESETSTAT');
  const info = await r.info('commandstats');
  r.disconnect();
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
}

/**
 * The median time of the publish script on a node (INFO latencystats, Redis 7: a histogram per command since the last
 * RESETSTAT). Like usec_per_call it is wall-clock time inside the command, but a median is not moved by the few calls
 * during which the scheduler took the core away (a time slice is milliseconds, a call tens of microseconds), which
 * inflate the mean on a shared machine.
 */
async function scriptMedianUs(port: number): Promise<number> {
  const r = new Redis(port, '127.0.0.1');
  const info = await r.info('latencystats');
  r.disconnect();
  const m = /^latency_percentiles_usec_(?:evalsha|eval|fcall):p50=([\d.]+)/m.exec(info);
  return m ? Number(m[1]) : NaN;
}

/** Involuntary context switches of a node's process (/proc/PID/status): how often the scheduler took its core away. */
async function preempted(port: number): Promise<number> {
  const r = new Redis(port, '127.0.0.1');
  const pid = /process_id:(\d+)/.exec(await r.info('server'))![1];
  r.disconnect();
  return Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** The commands that are the publish path (the script, and what it calls) as opposed to the bench's own INFO etc. */
const SCRIPT_CALLS = ['evalsha', 'eval', 'fcall'];

/** `count` chat channels, an equal number on each primary (by the slot of the channel's keys). */
function channelsFor(owner: (slot: number) => number, primaries: number[]): ParsedChannel[] {
  const per = Math.ceil(channelCount / primaries.length);
  const byPrimary = new Map(primaries.map((p) => [p, [] as ParsedChannel[]]));
  for (let i = 0; [...byPrimary.values()].some((l) => l.length < per); i++) {
    const c = parseChannel(`chat:bench-${i}`, config.namespaces);
    const list = byPrimary.get(owner(calculateSlot(keys.history(c.channel))))!;
    if (list.length < per) list.push(c);
  }
  // Interleaved, so the round robin below visits the shards in turn.
  const out: ParsedChannel[] = [];
  for (let k = 0; k < per; k++) for (const p of primaries) out.push(byPrimary.get(p)![k]);
  return out;
}

interface Row {
  readonly setup: string;
  readonly variant: string;
  readonly shards: number;
  readonly publishes: number;
  readonly perSecond: number;
  readonly failed: number;
  readonly firstError?: string;
  /** Per primary: publishes that went to it, and its Redis CPU per publish it served (µs). */
  readonly perShard: { publishes: number; cpuUs: number; cpuUsPerPublish: number; scriptUsPerCall: number; scriptP50Us: number; preemptedPerKPublish: number }[];
  /** The script's time per call over all shards (commandstats), and every command's calls and µs per publish. */
  readonly scriptUsPerCall: number;
  readonly commands: { name: string; perPublish: number; usPerPublish: number }[];
  readonly redisCpuUsPerPublish: number;
  readonly publisherCpuPercent: number;
  readonly delivered: number;
}

async function run(setup: string, v: Variant, redis: Redis | Cluster, sub: Redis | Cluster, ports: number[], owner: (slot: number) => number): Promise<Row> {
  // A revision before the publish command was derived from the client takes it as an option (`sharded`); ours ignores it.
  const Broker = v.Broker as unknown as new (...args: unknown[]) => RedisChannelBroker;
  const broker = new Broker(redis as unknown as Redis, config, { sharded: ports.length > 0 && setup !== 'one node' });
  const channels = channelsFor(owner, ports);
  const shardOf = channels.map((c) => ports.indexOf(owner(calculateSlot(keys.history(c.channel)))));
  const subscriber = new RedisSubscriber(sub, keys);
  let delivered = 0;
  subscriber.onMessage(() => delivered++);
  await subscriber.subscribe(channels.map((c) => c.channel));
  const prepared = channels.map((c) => v.prepare({ channel: c.channel, type: 'bench', data: payload }, SERVER, config));
  // Warm up: every script loaded on every shard, every channel's keys made.
  await Promise.all(channels.map((c, i) => broker.publish({ channel: c, head: prepared[i].head, tail: prepared[i].tail })));
  delivered = 0;
  const counts = ports.map(() => 0);
  await Promise.all(ports.map((p) => commandStats(p, true)));
  const switches0 = await Promise.all(ports.map(preempted));
  const before = await Promise.all(ports.map(redisCpu));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const end = Date.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const i = n++ % channels.length;
        try {
          const r = await broker.publish({ channel: channels[i], head: prepared[i].head, tail: prepared[i].tail });
          if (r.kind !== 'published') throw new Error(r.kind);
          ok++;
          counts[shardOf[i]]++;
        } catch (err) {
          failed++;
          firstError ??= String(err instanceof Error ? err.message : err).slice(0, 100);
        }
      }
    }),
  );
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const after = await Promise.all(ports.map(redisCpu));
  const switches1 = await Promise.all(ports.map(preempted));
  const stats = await Promise.all(ports.map((p) => commandStats(p)));
  const p50 = await Promise.all(ports.map(scriptMedianUs));
  await subscriber.unsubscribe(channels.map((c) => c.channel));
  const cpuUs = ports.map((_, k) => (after[k] - before[k]) * 1e6);
  const script = stats.map((m) => SCRIPT_CALLS.reduce((a, c) => ({ calls: a.calls + (m.get(c)?.calls ?? 0), usec: a.usec + (m.get(c)?.usec ?? 0) }), { calls: 0, usec: 0 }));
  const names = [...new Set(stats.flatMap((m) => [...m.keys()]))].filter((c) => !['info', 'config'].includes(c));
  const commands = names
    .map((name) => {
      const t = stats.reduce((a, m) => ({ calls: a.calls + (m.get(name)?.calls ?? 0), usec: a.usec + (m.get(name)?.usec ?? 0) }), { calls: 0, usec: 0 });
      return { name, perPublish: t.calls / Math.max(ok, 1), usPerPublish: t.usec / Math.max(ok, 1) };
    })
    .sort((a, b) => b.usPerPublish - a.usPerPublish);
  const all = script.reduce((a, s) => ({ calls: a.calls + s.calls, usec: a.usec + s.usec }), { calls: 0, usec: 0 });
  return {
    setup,
    variant: v.label,
    shards: ports.length,
    publishes: ok,
    perSecond: ok / wall,
    failed,
    firstError,
    perShard: ports.map((_, k) => ({
      publishes: counts[k],
      cpuUs: cpuUs[k],
      cpuUsPerPublish: cpuUs[k] / Math.max(counts[k], 1),
      scriptUsPerCall: script[k].usec / Math.max(script[k].calls, 1),
      scriptP50Us: p50[k],
      preemptedPerKPublish: ((switches1[k] - switches0[k]) * 1000) / Math.max(counts[k], 1),
    })),
    scriptUsPerCall: all.usec / Math.max(all.calls, 1),
    commands,
    redisCpuUsPerPublish: cpuUs.reduce((a, b) => a + b, 0) / Math.max(ok, 1),
    publisherCpuPercent: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
    delivered,
  };
}

/** Largest distance from an even share, in % of the even share. */
function spread(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return mean === 0 ? 0 : Math.max(...values.map((v) => Math.abs(v - mean) / mean)) * 100;
}

async function main(): Promise<void> {
  const load = loadavg()[0];
  const rows: Row[] = [];
  /** Every variant in each setup, `rounds` times, the order reversed every other round. */
  const each = async (go: (v: Variant) => Promise<Row>, cluster = true) => {
    const here = variants.filter((v) => !cluster || !v.oneNodeOnly);
    for (let r = 0; r < rounds; r++) for (const v of r % 2 ? [...here].reverse() : here) rows.push(await go(v));
  };
  const single = await RedisServer.start();
  try {
    const r = new Redis(single.port, '127.0.0.1');
    const s = new Redis(single.port, '127.0.0.1');
    await Promise.all([waitReady(r), waitReady(s)]);
    await each((v) => run('one node', v, r, s, [single.port], () => single.port), false);
    r.disconnect();
    s.disconnect();
  } finally {
    await single.destroy();
  }
  for (const shards of shardCounts) {
    const cluster = await RedisCluster.start({ primaries: shards, replicasPerPrimary: 0 });
    try {
      const url = `redis://127.0.0.1:${cluster.nodes[0].port}`;
      const c = createRedisCluster({ url, name: 'bench' });
      const s = createRedisCluster({ url, name: 'bench-sub', subscriber: true, failFast: false });
      await Promise.all([waitReady(c), waitReady(s)]);
      const topology = cluster.topology();
      const primaries = topology.filter((x) => x.role === 'primary').map((x) => x.port);
      const owner = (slot: number) => topology.find((x) => x.role === 'primary' && x.slots.some(([a, b]) => slot >= a && slot <= b))!.port;
      const setup = `cluster, ${shards} shard${shards > 1 ? 's' : ''}`;
      await each((v) => run(setup, v, c, s, primaries, owner));
      await Promise.all([c.quit(), s.quit()]).catch(() => undefined);
    } finally {
      await cluster.destroy();
    }
  }
  const loadEnd = loadavg()[0];

  // Medians over the rounds, per setup and variant (per shard: element by element).
  const med = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    const m = Math.floor(v.length / 2);
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  const groups = [...new Set(rows.map((r) => `${r.setup}\u0000${r.variant}`))].map((key) => {
    const rs = rows.filter((r) => `${r.setup}\u0000${r.variant}` === key);
    const shardMed = (get: (s: Row['perShard'][number]) => number) => rs[0].perShard.map((_, k) => med(rs.map((r) => get(r.perShard[k]))));
    return {
      setup: rs[0].setup,
      variant: rs[0].variant,
      runs: rs.length,
      perSecond: med(rs.map((r) => r.perSecond)),
      cpu: med(rs.map((r) => r.redisCpuUsPerPublish)),
      script: med(rs.map((r) => r.scriptUsPerCall)),
      shardCpu: shardMed((s) => s.cpuUsPerPublish),
      shardScript: shardMed((s) => s.scriptUsPerCall),
      shardP50: shardMed((s) => s.scriptP50Us),
      shardPreempted: shardMed((s) => s.preemptedPerKPublish),
      spreadPublishes: med(rs.map((r) => spread(r.perShard.map((s) => s.publishes)))),
      spreadCpu: med(rs.map((r) => spread(r.perShard.map((s) => s.cpuUs)))),
      publisher: med(rs.map((r) => r.publisherCpuPercent)),
      failed: rs.reduce((a, r) => a + r.failed, 0),
      firstError: rs.find((r) => r.firstError)?.firstError,
      delivered: med(rs.map((r) => r.delivered / Math.max(r.publishes, 1))),
      commands: rs[rs.length - 1].commands,
    };
  });
  const oneNode = (variant: string) => groups.find((g) => g.setup === 'one node' && g.variant === variant)!;
  const pct = (v: number, base: number) => `${v >= base ? '+' : ''}${(((v - base) / base) * 100).toFixed(0)} %`;
  const list = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ');

  console.log(`publish throughput (RedisChannelBroker): ${seconds} s per run, ${rounds} round${rounds > 1 ? 's' : ''} (medians), ${channelCount} channels spread evenly over the shards, ${concurrency} publishes in flight from one process, ${payload.length}-byte data, one subscriber connection per shard; Node ${process.version}, load average ${load.toFixed(1)} at start, ${loadEnd.toFixed(1)} at the end`);
  console.log(`broker variants: ${variants.map((v) => v.label).join(', ')}`);
  console.log('');
  console.log('Process CPU: INFO used_cpu_sys + used_cpu_user of each primary per publish it served (everything the node did). Script mean: commandstats usec_per_call of EVALSHA/EVAL/FCALL; script p50: INFO latencystats median (both wall-clock time inside the publish script; the median is not moved by the calls the scheduler interrupted). Outside = process CPU − script p50 (requests, replies, delivery, event loop). Preempted: involuntary context switches of the node per 1,000 publishes.');
  console.log('');
  console.log('| setup | broker | publishes/s | process CPU µs / publish (vs one node) | per shard: process µs | per shard: script p50 µs (highest vs one node) | per shard: script mean µs | outside the script µs | preempted / 1k publishes per shard | spread of publishes / CPU from even | publisher CPU % | failed | delivered per publish |');
  console.log('|---|---|---:|---:|---|---|---|---:|---|---:|---:|---:|---:|');
  for (const g of groups) {
    const one = oneNode(g.variant);
    console.log(
      `| ${g.setup} | ${g.variant} | ${g.perSecond.toFixed(0)} | ${g.cpu.toFixed(1)} (${pct(g.cpu, one.cpu)}) | ${list(g.shardCpu)} | ${list(g.shardP50)} (${pct(Math.max(...g.shardP50), one.shardP50[0])}) | ${list(g.shardScript)} | ${(g.cpu - med(g.shardP50)).toFixed(1)} | ${g.shardPreempted.map((x) => x.toFixed(0)).join(' / ')} | ±${g.spreadPublishes.toFixed(0)} % / ±${g.spreadCpu.toFixed(0)} % | ${g.publisher.toFixed(0)} | ${g.failed}${g.firstError ? ` (${g.firstError})` : ''} | ${g.delivered.toFixed(2)} |`,
    );
  }
  for (const v of variants) {
    const one = oneNode(v.label);
    console.log('');
    console.log(`Commands per publish on one node, ${v.label} (commandstats of the last round; the script's own line includes the commands it ran):`);
    console.log('');
    console.log('| command | calls / publish | µs / publish |');
    console.log('|---|---:|---:|');
    for (const c of one.commands) console.log(`| ${c.name} | ${c.perPublish.toFixed(2)} | ${c.usPerPublish.toFixed(2)} |`);
  }
  // The figure the planner prices a shard by: the 1-shard cluster's process CPU per publish (a cluster-mode node doing
  // SPUBLISH with the cores to itself, as an ElastiCache shard's node has), of the first variant. The 2- and 3-shard
  // rows are not used: there three primaries and the publisher share this machine's two cores.
  const shard1 = groups.find((g) => g.setup === 'cluster, 1 shard' && g.variant === variants[0].label) ?? groups.find((g) => g.variant === variants[0].label)!;
  const perPublish = shard1.cpu;
  const shardsFor1M = Math.ceil((1e6 * perPublish) / (1e6 * REDIS_ENGINE_TARGET));
  console.log('');
  console.log(`Shards for 1,000,000 publishes/s at ${perPublish.toFixed(1)} µs of a shard engine per publish (${shard1.setup}, ${shard1.variant}: the node's process CPU), each engine at most ${REDIS_ENGINE_TARGET * 100} % busy (the cost planner's target): ${shardsFor1M}.`);
  if (args['write-figures']) {
    const file = join(__dirname, '..', 'cost', 'figures.json');
    const figures = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number; from: string }> };
    const rev = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    figures.measured.redisPublishCpuUs = {
      value: Number(perPublish.toFixed(1)),
      from: `npm run bench:publish -- ${process.argv.slice(2).join(' ')} at ${rev} on ${new Date().toISOString().slice(0, 10)}, load average ${load.toFixed(1)}: the 1-shard cluster's process CPU per publish (median of the rounds)`,
    };
    writeFileSync(file, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`wrote redisPublishCpuUs ${perPublish.toFixed(1)} to cost/figures.json`);
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
