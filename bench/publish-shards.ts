/**
 * `npm run bench:publish [-- --seconds 5] [--rounds 5] [--rate 3000] [--channels-per-shard 80] [--burst 10] [--shards 1,2,3]
 *   [--size 100] [--diagnose] [--max [--concurrency 64] [--channels 240]] [--brokers worktree,REV] [--write-figures]`:
 * publish throughput and Redis CPU per publish of the per-channel broker (`RedisChannelBroker`, each publish one
 * single-slot script on its channel's shard, live delivery by SPUBLISH there) on one Redis node and on local Redis
 * Clusters of 1, 2 and 3 primaries (issue 23, item 7), and the verdict on issue 23's criterion: Redis CPU per publish
 * per shard within 15 % of one node's, the publishes spread over the shards within ±20 % of even.
 *
 * **Paced (the default, the criterion's method).** Every setup runs at the same rate per shard (`--rate`, publishes/s;
 * the whole run is `rate × shards`) on the same number of channels per shard (`--channels-per-shard`), every channel's
 * history filled to its size before the first timed run: each shard then does the same work at the same pace as one
 * node does (the same publishes per second per channel, the same history to trim, about the same commands per read),
 * and the machine stays well under its two cores, so no primary waits for a core. At most `--burst` publishes per shard
 * leave at once: what a stall of the publisher made it miss is skipped, not sent in one batch (a batch is cheaper per
 * publish for Redis, one read for many); a run more than 5 % short of its rate is "off pace" and its pair not judged.
 * All servers are started first, and in every round each setup runs right beside a run of one node (one node first in
 * even rounds, second in odd ones; the setups' order rotated), so a drift of the machine (these VMs move by 40 % between
 * quiet runs) hits both runs of a pair alike. The criterion is judged on the median over the rounds of each pair's
 * ratio: the highest shard's process CPU per publish against the one-node run beside it.
 *
 * **`--max`** (the earlier method): one publisher at `--concurrency` publishes in flight, as fast as it goes, over
 * `--channels` channels in all. Each setup then runs at its own rate per shard (so reads batch differently) and, with 3
 * primaries, four busy processes share two cores; it measures throughput, not the per-shard criterion.
 *
 * Per primary it reads INFO (reset by RESETSTAT before each timed run): `used_cpu_sys + used_cpu_user` (process CPU)
 * and `used_cpu_*_main_thread` (the command thread, what an ElastiCache engine's CPU metric follows), the publish
 * script's median and mean time (latencystats, commandstats), `total_reads_processed` (reads per publish: how many
 * publishes one read of the socket brings, i.e. the pipelining depth the client produced), and the node's involuntary
 * context switches (/proc). `--diagnose` adds two setups that split the cluster's cost: one node sending `SPUBLISH`
 * (to an `SSUBSCRIBE`d connection) instead of `PUBLISH`, and the 1-shard cluster's node reached by a plain client
 * (`SPUBLISH`, no ioredis `Cluster`): one node → SPUBLISH is the publish command, SPUBLISH → cluster node the server's
 * cluster mode, cluster node → 1-shard cluster the `Cluster` client.
 *
 * `--write-figures` writes the 1-shard cluster's process CPU per publish to cost/figures.json (`redisPublishCpuUs`),
 * which the cost planner prices shards from (`npm run cost`); it is taken from the `--max` method (a shard's engine
 * busy, its reads batched as an engine at its target is), so it needs `--max`.
 *
 * `--brokers worktree,REV[,sequence@REV]`: the per-channel broker (and the envelope it publishes) of the working tree
 * and of git revision REV (its core/ from `git archive`, bundled here), and the removed sequence's broker of a revision
 * that had it (one node only), run in every setup: a before / after of the publish script in one run.
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
    rounds: { type: 'string' },
    rate: { type: 'string' },
    burst: { type: 'string' },
    'channels-per-shard': { type: 'string' },
    max: { type: 'boolean', default: false },
    channels: { type: 'string' },
    concurrency: { type: 'string' },
    shards: { type: 'string' },
    size: { type: 'string' },
    diagnose: { type: 'boolean', default: false },
    brokers: { type: 'string' },
    'write-figures': { type: 'boolean', default: false },
  },
});
const seconds = Number(args.seconds ?? 5);
const maxMode = args.max === true;
const rounds = Number(args.rounds ?? (maxMode ? 1 : 5));
const ratePerShard = Number(args.rate ?? 3000);
const channelsPerShard = Number(args['channels-per-shard'] ?? 80);
const burst = Number(args.burst ?? 10);
const channelTotal = Number(args.channels ?? 240);
const concurrency = Number(args.concurrency ?? 64);
const shardCounts = (args.shards ?? '1,2,3').split(',').map(Number);
const payload = 'x'.repeat(Number(args.size ?? 100));
const ROOT = resolve(__dirname, '..');
const usage = (message: string): never => {
  console.error(`bench:publish: ${message}`);
  process.exit(2);
};
if (args['write-figures'] && !maxMode) usage('--write-figures takes the planner figure from the --max method: add --max');
if (![ratePerShard, channelsPerShard, burst, seconds, rounds].every((x) => x > 0)) usage('--rate, --channels-per-shard, --burst, --seconds and --rounds must be positive numbers');

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

/** A node's counters that a run's deltas are taken from (INFO, /proc). */
interface NodeSample {
  /** used_cpu_sys + used_cpu_user, seconds: the whole process. */
  readonly cpu: number;
  /** used_cpu_sys_main_thread + used_cpu_user_main_thread: the command thread. */
  readonly mainCpu: number;
  /** total_reads_processed: reads of a client socket. */
  readonly reads: number;
  /** Involuntary context switches (/proc/PID/status): how often the scheduler took the core away. */
  readonly preempted: number;
}

/** One admin connection per node for INFO, so the samples add one read per run, not a connection's worth. */
const admins = new Map<number, Redis>();
function admin(port: number): Redis {
  let r = admins.get(port);
  if (!r) {
    admins.set(port, (r = new Redis(port, '127.0.0.1')));
    r.on('error', () => undefined);
  }
  return r;
}

const field = (info: string, name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)![1]);

async function sample(port: number): Promise<NodeSample> {
  const info = await admin(port).info('everything');
  const pid = field(info, 'process_id');
  return {
    cpu: field(info, 'used_cpu_sys') + field(info, 'used_cpu_user'),
    mainCpu: field(info, 'used_cpu_sys_main_thread') + field(info, 'used_cpu_user_main_thread'),
    reads: field(info, 'total_reads_processed'),
    preempted: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]),
  };
}

/** INFO commandstats of a node, by command: calls and microseconds (since the last RESETSTAT). */
async function commandStats(port: number): Promise<Map<string, { calls: number; usec: number }>> {
  const info = await admin(port).info('commandstats');
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
  const info = await admin(port).info('latencystats');
  const m = /^latency_percentiles_usec_(?:evalsha|eval|fcall):p50=([\d.]+)/m.exec(info);
  return m ? Number(m[1]) : NaN;
}

/** The commands that are the publish path (the script, and what it calls) as opposed to the bench's own INFO etc. */
const SCRIPT_CALLS = ['evalsha', 'eval', 'fcall'];

/** `per` chat channels on each primary (by the slot of the channel's keys), interleaved so a round robin visits the shards in turn. */
function channelsFor(owner: (slot: number) => number, primaries: number[], per: number): ParsedChannel[] {
  const byPrimary = new Map(primaries.map((p) => [p, [] as ParsedChannel[]]));
  for (let i = 0; [...byPrimary.values()].some((l) => l.length < per); i++) {
    const c = parseChannel(`chat:bench-${i}`, config.namespaces);
    const list = byPrimary.get(owner(calculateSlot(keys.history(c.channel))))!;
    if (list.length < per) list.push(c);
  }
  const out: ParsedChannel[] = [];
  for (let k = 0; k < per; k++) for (const p of primaries) out.push(byPrimary.get(p)![k]);
  return out;
}

/** What receives a setup's live events during a run: subscribed before it, unsubscribed after. */
interface Listener {
  readonly delivered: () => number;
  readonly stop: () => Promise<void>;
}

/** A setup: where the publishes go and how. */
interface Setup {
  readonly label: string;
  readonly shards: number;
  /** The primaries, in shard order. */
  readonly ports: number[];
  readonly client: Redis | Cluster;
  readonly channels: ParsedChannel[];
  /** The shard (index into `ports`) of each channel. */
  readonly shardOf: number[];
  /** The publish command, when a diagnostic setup sends another than the broker derives from the client. */
  readonly command?: 'SPUBLISH';
  readonly listen: () => Promise<Listener>;
  /** A `--diagnose` setup: reported, not judged. */
  readonly diagnostic: boolean;
}

/** Our subscriber (one connection, or one per shard on a cluster), on every channel of the setup; made once per setup. */
function ourListener(sub: Redis | Cluster, channels: ParsedChannel[]): () => Promise<Listener> {
  const subscriber = new RedisSubscriber(sub, keys);
  let n = 0;
  subscriber.onMessage(() => n++);
  return async () => {
    await subscriber.subscribe(channels.map((c) => c.channel));
    return { delivered: () => n, stop: () => subscriber.unsubscribe(channels.map((c) => c.channel)) };
  };
}

/** A plain connection `SSUBSCRIBE`d to every channel (a diagnostic setup's `SPUBLISH` to one node). */
function shardedListener(port: number, channels: ParsedChannel[]): () => Promise<Listener> {
  return async () => {
    const s = new Redis(port, '127.0.0.1');
    let n = 0;
    s.on('smessage', () => n++);
    const lives = channels.map((c) => keys.live(c.channel));
    // One channel a command: SSUBSCRIBE refuses channels of different slots, on one node too (CROSSSLOT).
    await Promise.all(lives.map((l) => s.ssubscribe(l)));
    return {
      delivered: () => n,
      stop: async () => {
        await Promise.all(lives.map((l) => s.sunsubscribe(l)));
        s.disconnect();
      },
    };
  };
}

function makeBroker(v: Variant, setup: Setup): RedisChannelBroker {
  // A revision before the publish command was derived from the client takes it as an option (`sharded`); ours ignores it.
  const Broker = v.Broker as unknown as new (...args: unknown[]) => RedisChannelBroker;
  const broker = new Broker(setup.client as unknown as Redis, config, { sharded: setup.command === 'SPUBLISH' || setup.label.startsWith('cluster') });
  // A diagnostic setup's command in place of the one derived from the client (the field is read at each publish).
  if (setup.command) Object.defineProperty(broker, 'publishCommand', { value: setup.command });
  return broker;
}

/** Fills every channel's history to its size (200 for chat), so every timed run trims as a full history does. */
async function prefill(setup: Setup): Promise<void> {
  const broker = makeBroker(variants[0], setup);
  const prepared = setup.channels.map((c) => preparePublish({ channel: c.channel, type: 'bench', data: payload }, SERVER, config));
  const size = setup.channels[0].policy.historySize;
  let n = 0;
  const total = setup.channels.length * (size + 1);
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (n < total) {
        const i = n++ % setup.channels.length;
        await broker.publish({ channel: setup.channels[i], head: prepared[i].head, tail: prepared[i].tail });
      }
    }),
  );
}

interface Row {
  readonly setup: Setup;
  readonly variant: string;
  readonly round: number;
  /** The run of one node beside this one (same round, same broker), which its ratio is taken against. */
  readonly base?: Row;
  readonly publishes: number;
  readonly perSecond: number;
  /** The paced rate asked for in all (NaN with --max). */
  readonly target: number;
  readonly failed: number;
  readonly firstError?: string;
  /** Per primary: publishes that went to it, its process and main-thread CPU (µs), reads, script calls and time. */
  readonly perShard: {
    publishes: number;
    cpuUs: number;
    mainUs: number;
    reads: number;
    scriptCalls: number;
    scriptUsec: number;
    scriptP50Us: number;
    preempted: number;
  }[];
  readonly commands: Map<string, { calls: number; usec: number }>;
  readonly publisherCpuPercent: number;
  readonly delivered: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(setup: Setup, v: Variant, round: number): Promise<Row> {
  const broker = makeBroker(v, setup);
  const { channels, shardOf, ports } = setup;
  const prepared = channels.map((c) => v.prepare({ channel: c.channel, type: 'bench', data: payload }, SERVER, config));
  const listener = await setup.listen();
  // Warm up: every script loaded on every shard.
  await Promise.all(channels.map((c, i) => broker.publish({ channel: c, head: prepared[i].head, tail: prepared[i].tail })));
  await sleep(100);
  const counts = ports.map(() => 0);
  await Promise.all(ports.map((p) => admin(p).config('RESETSTAT')));
  const before = await Promise.all(ports.map(sample));
  const delivered0 = listener.delivered();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let n = 0;
  const one = async (i: number) => {
    try {
      const r = await broker.publish({ channel: channels[i], head: prepared[i].head, tail: prepared[i].tail });
      if (r.kind !== 'published') throw new Error(r.kind);
      ok++;
      counts[shardOf[i]]++;
    } catch (err) {
      failed++;
      firstError ??= String(err instanceof Error ? err.message : err).slice(0, 100);
    }
  };
  const target = maxMode ? NaN : ratePerShard * setup.shards;
  if (maxMode) {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) await one(n++ % channels.length);
      }),
    );
  } else {
    // Paced: about every millisecond, the publishes due by now, round robin over the channels (so over the shards), at
    // most `burst` per shard at once: after a stall of this process the publishes it missed are skipped rather than
    // sent together, which would batch them into fewer reads on the shards than at an even pace (the run then falls
    // short of its rate and its pair is left out of the medians).
    const inFlight = new Set<Promise<void>>();
    let slots = 0;
    for (let now = t0; now < end; now = performance.now()) {
      const due = Math.floor(((now - t0) / 1000) * target);
      slots = Math.max(slots, due - burst * setup.shards);
      for (; slots < due && inFlight.size < 1024; slots++) {
        const p = one(n++ % channels.length).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      await sleep(1);
    }
    await Promise.all(inFlight);
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const after = await Promise.all(ports.map(sample));
  // Every publish of the run delivered (the subscriber's last messages may still be in flight).
  for (let k = 0; k < 100 && listener.delivered() - delivered0 < ok; k++) await sleep(10);
  const delivered = listener.delivered() - delivered0;
  const stats = await Promise.all(ports.map(commandStats));
  const p50 = await Promise.all(ports.map(scriptMedianUs));
  await listener.stop();
  const script = stats.map((m) => SCRIPT_CALLS.reduce((a, c) => ({ calls: a.calls + (m.get(c)?.calls ?? 0), usec: a.usec + (m.get(c)?.usec ?? 0) }), { calls: 0, usec: 0 }));
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const m of stats) for (const [name, c] of m) if (!['info', 'config'].includes(name)) commands.set(name, { calls: (commands.get(name)?.calls ?? 0) + c.calls, usec: (commands.get(name)?.usec ?? 0) + c.usec });
  return {
    setup,
    variant: v.label,
    round,
    publishes: ok,
    perSecond: ok / (maxMode ? wall : seconds),
    target,
    failed,
    firstError,
    perShard: ports.map((_, k) => ({
      publishes: counts[k],
      cpuUs: (after[k].cpu - before[k].cpu) * 1e6,
      mainUs: (after[k].mainCpu - before[k].mainCpu) * 1e6,
      reads: after[k].reads - before[k].reads,
      scriptCalls: script[k].calls,
      scriptUsec: script[k].usec,
      scriptP50Us: p50[k],
      preempted: after[k].preempted - before[k].preempted,
    })),
    commands,
    publisherCpuPercent: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
    delivered,
  };
}

/** Largest distance from an even share, in % of the even share. */
function spread(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return mean === 0 ? 0 : Math.max(...values.map((v) => Math.abs(v - mean) / mean)) * 100;
}

const med = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** Per shard of a run: process and main-thread CPU µs per publish it served, and publishes per read. */
const perPublish = (s: Row['perShard'][number]) => ({
  cpu: s.cpuUs / Math.max(s.publishes, 1),
  main: s.mainUs / Math.max(s.publishes, 1),
  perRead: s.scriptCalls / Math.max(s.reads, 1),
});

async function main(): Promise<void> {
  const load = loadavg()[0];
  const setups: Setup[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  const perPrimary = (shards: number) => (maxMode ? Math.ceil(channelTotal / shards) : channelsPerShard);
  try {
    const single = await RedisServer.start();
    cleanup.push(() => single.destroy());
    const r = new Redis(single.port, '127.0.0.1');
    const s = new Redis(single.port, '127.0.0.1');
    await Promise.all([waitReady(r), waitReady(s)]);
    cleanup.push(async () => void [r, s].forEach((c) => c.disconnect()));
    const oneChannels = channelsFor(() => single.port, [single.port], perPrimary(1));
    const oneShardOf = oneChannels.map(() => 0);
    setups.push({ label: 'one node', shards: 1, ports: [single.port], client: r, channels: oneChannels, shardOf: oneShardOf, listen: ourListener(s, oneChannels), diagnostic: false });
    if (args.diagnose) {
      setups.push({ label: 'one node, SPUBLISH', shards: 1, ports: [single.port], client: r, channels: oneChannels, shardOf: oneShardOf, command: 'SPUBLISH', listen: shardedListener(single.port, oneChannels), diagnostic: true });
    }
    for (const shards of shardCounts) {
      const cluster = await RedisCluster.start({ primaries: shards, replicasPerPrimary: 0 });
      cleanup.push(() => cluster.destroy());
      const url = `redis://127.0.0.1:${cluster.nodes[0].port}`;
      const c = createRedisCluster({ url, name: 'bench' });
      const sub = createRedisCluster({ url, name: 'bench-sub', subscriber: true, failFast: false });
      await Promise.all([waitReady(c), waitReady(sub)]);
      cleanup.unshift(async () => void (await Promise.all([c.quit(), sub.quit()]).catch(() => undefined)));
      const topology = cluster.topology();
      const primaries = topology.filter((x) => x.role === 'primary').map((x) => x.port);
      const owner = (slot: number) => topology.find((x) => x.role === 'primary' && x.slots.some(([a, b]) => slot >= a && slot <= b))!.port;
      const channels = channelsFor(owner, primaries, perPrimary(shards));
      const shardOf = channels.map((ch) => primaries.indexOf(owner(calculateSlot(keys.history(ch.channel)))));
      if (args.diagnose && shards === 1) {
        const plain = new Redis(primaries[0], '127.0.0.1');
        await waitReady(plain);
        cleanup.unshift(async () => plain.disconnect());
        setups.push({ label: 'cluster node, plain client', shards: 1, ports: primaries, client: plain, channels, shardOf, command: 'SPUBLISH', listen: shardedListener(primaries[0], channels), diagnostic: true });
      }
      setups.push({ label: `cluster, ${shards} shard${shards > 1 ? 's' : ''}`, shards, ports: primaries, client: c, channels, shardOf, listen: ourListener(sub, channels), diagnostic: false });
    }
    // Every history full before the first timed run (a setup that shares a node and its channels with another is filled once).
    const filled = new Set<string>();
    for (const setup of setups) {
      const key = setup.ports.join(',');
      if (filled.has(key)) continue;
      filled.add(key);
      await prefill(setup);
    }
    const rows: Row[] = [];
    // Each setup beside a run of one node, adjacent in time (one node first in even rounds, second in odd ones), so
    // each ratio compares runs a few seconds apart; the setups' order rotated each round.
    const [oneNode, ...others] = setups;
    for (let round = 0; round < rounds; round++) {
      for (const setup of others.map((_, k) => others[(k + round) % others.length])) {
        for (const v of variants.filter((x) => !x.oneNodeOnly)) {
          const first = round % 2 ? setup : oneNode;
          const a = await run(first, v, round);
          const b = await run(first === oneNode ? setup : oneNode, v, round);
          const [base, r] = first === oneNode ? [a, b] : [b, a];
          rows.push(base, { ...r, base });
        }
      }
      for (const v of variants.filter((x) => x.oneNodeOnly)) rows.push(await run(oneNode, v, round));
    }
    report(rows, setups, load, loadavg()[0]);
  } finally {
    for (const a of admins.values()) a.disconnect();
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  }
}

function report(rows: Row[], setups: Setup[], load: number, loadEnd: number): void {
  const pct = (v: number) => `${v >= 0 ? '+' : ''}${(v * 100).toFixed(0)} %`;
  const list = (xs: number[], digits = 1) => xs.map((x) => x.toFixed(digits)).join(' / ');
  /** A paced run that kept within 5 % of the rate asked (so its shards ran at the rate the criterion compares). */
  const onPace = (r: Row) => maxMode || r.perSecond >= 0.95 * r.target;
  const paired = (r: Row) => onPace(r) && (!r.base || onPace(r.base));
  /** A run's highest shard against the one-node run beside it: process CPU, main thread, script median. */
  const excess = (r: Row) => {
    const base = r.base ?? rows.find((o) => o.setup.label === 'one node' && o.variant === r.variant && o.round === r.round)!;
    const b = perPublish(base.perShard[0]);
    const shards = r.perShard.map(perPublish);
    return {
      cpu: Math.max(...shards.map((x) => x.cpu)) / b.cpu - 1,
      main: Math.max(...shards.map((x) => x.main)) / b.main - 1,
      p50: Math.max(...r.perShard.map((x) => x.scriptP50Us)) / base.perShard[0].scriptP50Us - 1,
    };
  };
  const groups = setups.flatMap((setup) =>
    variants
      .filter((v) => !v.oneNodeOnly || setup.label === 'one node')
      .map((v) => {
        const rs = rows.filter((r) => r.setup === setup && r.variant === v.label);
        const shardMed = (get: (s: Row['perShard'][number]) => number) => setup.ports.map((_, k) => med(rs.map((r) => get(r.perShard[k]))));
        return {
          setup,
          variant: v.label,
          rs,
          perSecond: med(rs.map((r) => r.perSecond)),
          target: rs[0].target,
          cpu: shardMed((s) => perPublish(s).cpu),
          main: shardMed((s) => perPublish(s).main),
          perRead: shardMed((s) => perPublish(s).perRead),
          p50: shardMed((s) => s.scriptP50Us),
          preempted: shardMed((s) => (s.preempted * 1000) / Math.max(s.publishes, 1)),
          // The ratios of the pairs on pace (both runs within 5 % of the rate asked); `pairs` lists every pair.
          excessCpu: rs.filter(paired).map((r) => excess(r).cpu),
          excessMain: rs.filter(paired).map((r) => excess(r).main),
          excessP50: rs.filter(paired).map((r) => excess(r).p50),
          pairs: rs.map((r) => ({ ...excess(r), onPace: paired(r) })),
          // Every Redis command per publish (the script and each call in it), and the scripts per publish (1: no retry).
          commandsPerPublish: med(rs.map((r) => [...r.commands.values()].reduce((a, c) => a + c.calls, 0) / Math.max(r.publishes, 1))),
          scriptsPerPublish: med(rs.map((r) => r.perShard.reduce((a, x) => a + x.scriptCalls, 0) / Math.max(r.publishes, 1))),
          spreadPublishes: med(rs.map((r) => spread(r.perShard.map((s) => s.publishes)))),
          spreadCpu: med(rs.map((r) => spread(r.perShard.map((s) => s.cpuUs)))),
          publisher: med(rs.map((r) => r.publisherCpuPercent)),
          failed: rs.reduce((a, r) => a + r.failed, 0),
          firstError: rs.find((r) => r.firstError)?.firstError,
          delivered: med(rs.map((r) => r.delivered / Math.max(r.publishes, 1))),
        };
      }),
  );
  const method = maxMode
    ? `--max: one process, ${concurrency} publishes in flight as fast as they go, ${channelTotal} channels spread evenly over the shards (each setup at its own rate per shard)`
    : `paced: ${ratePerShard} publishes/s per shard (rate × shards in all), ${channelsPerShard} channels per shard, at most ${burst} per shard at once, histories filled first, each setup paired with a one-node run beside it in every round`;
  console.log(`publish throughput (RedisChannelBroker), ${method}; ${seconds} s per run, ${rounds} round${rounds > 1 ? 's' : ''} (medians), ${payload.length}-byte data, one subscriber connection per shard; Node ${process.version}, load average ${load.toFixed(1)} at start, ${loadEnd.toFixed(1)} at the end`);
  console.log(`broker variants: ${variants.map((v) => v.label).join(', ')}`);
  console.log('');
  console.log('Per shard (primary), medians over the rounds. Process CPU: INFO used_cpu_sys + used_cpu_user per publish the primary served; main thread: used_cpu_*_main_thread. "vs one node": the median over the rounds of the highest shard against the one-node run beside it. Script p50: latencystats median of EVALSHA (wall-clock time inside the script). Per read: publishes per read of a client socket (total_reads_processed), the pipelining depth. Redis commands per publish: every command commandstats counted (the script and each call in it), all shards. Preempted: involuntary context switches per 1,000 publishes.');
  console.log('');
  console.log('| setup | broker | publishes/s (asked) | process CPU µs / publish | vs one node | main thread µs / publish | vs one node | script p50 µs | vs one node | publishes per read | Redis commands / scripts per publish | preempted / 1k | spread of publishes / CPU | publisher CPU % | failed | delivered per publish |');
  console.log('|---|---|---:|---|---:|---|---:|---|---:|---|---:|---|---:|---:|---:|---:|');
  for (const g of groups) {
    const asked = Number.isNaN(g.target) ? '' : ` (${g.target})`;
    const one = g.setup.label === 'one node';
    console.log(
      `| ${g.setup.label} | ${g.variant} | ${g.perSecond.toFixed(0)}${asked} | ${list(g.cpu)} | ${one ? '' : pct(med(g.excessCpu))} | ${list(g.main)} | ${one ? '' : pct(med(g.excessMain))} | ${list(g.p50)} | ${one ? '' : pct(med(g.excessP50))} | ${list(g.perRead, 2)} | ${g.commandsPerPublish.toFixed(2)} / ${g.scriptsPerPublish.toFixed(2)} | ${list(g.preempted, 0)} | ±${g.spreadPublishes.toFixed(0)} % / ±${g.spreadCpu.toFixed(0)} % | ${g.publisher.toFixed(0)} | ${g.failed}${g.firstError ? ` (${g.firstError})` : ''} | ${g.delivered.toFixed(2)} |`,
    );
  }
  console.log('');
  console.log('Each round, the highest shard\'s process CPU per publish against the one-node run beside it (round 1, 2, ...; "off pace": a run of the pair fell more than 5 % short of the rate asked, left out of the medians):');
  for (const g of groups) {
    if (g.setup.label === 'one node') continue;
    const each = (get: (x: (typeof g.pairs)[number]) => number) => g.pairs.map((x) => `${pct(get(x))}${x.onPace ? '' : ' off pace'}`).join(' / ');
    console.log(`- ${g.setup.label}, ${g.variant}: ${each((x) => x.cpu)} (main thread ${each((x) => x.main)}; publishes per read ${g.rs.map((r) => list(r.perShard.map((s) => perPublish(s).perRead), 1)).join(', ')} against one node's ${g.rs.map((r) => (r.base ? perPublish(r.base.perShard[0]).perRead.toFixed(1) : '-')).join(', ')})`);
  }
  for (const v of variants) {
    const last = rows.filter((r) => r.setup.label === 'one node' && r.variant === v.label).at(-1)!;
    console.log('');
    console.log(`Commands per publish on one node, ${v.label} (commandstats of the last round; the script's own line includes the commands it ran):`);
    console.log('');
    console.log('| command | calls / publish | µs / publish |');
    console.log('|---|---:|---:|');
    const n = Math.max(last.publishes, 1);
    for (const [name, c] of [...last.commands].sort((a, b) => b[1].usec - a[1].usec)) console.log(`| ${name} | ${(c.calls / n).toFixed(2)} | ${(c.usec / n).toFixed(2)} |`);
  }
  // The criterion (issue 23): every cluster setup's highest shard within 15 % of one node, publishes within ±20 % of even.
  const judged = groups.filter((g) => g.variant === variants[0].label && !g.setup.diagnostic && g.setup.label !== 'one node');
  const measured = judged.every((g) => g.excessCpu.length > 0);
  const perShardOk = judged.every((g) => med(g.excessCpu) <= 0.15);
  const spreadOk = judged.every((g) => g.spreadPublishes <= 20);
  console.log('');
  console.log(
    `VERDICT (issue 23, ${maxMode ? '--max method: not the criterion\'s, see the header' : 'paced method'}): Redis CPU per publish per shard within 15 % of one node's: ${!measured ? 'NOT MEASURED (no pair kept the pace)' : perShardOk ? 'MET' : 'NOT MET'} (${judged.map((g) => `${g.setup.label.replace('cluster, ', '')} ${pct(med(g.excessCpu))} (${g.excessCpu.length} of ${g.pairs.length} pairs on pace)`).join(', ')}; main thread ${judged.map((g) => pct(med(g.excessMain))).join(', ')}); publishes spread within ±20 % of even: ${spreadOk ? 'MET' : 'NOT MET'} (${judged.map((g) => `±${g.spreadPublishes.toFixed(0)} %`).join(', ')})`,
  );
  // The figure the planner prices a shard by: the 1-shard cluster's process CPU per publish, of the first variant.
  const shard1 = groups.find((g) => g.setup.label === 'cluster, 1 shard' && g.variant === variants[0].label) ?? groups.find((g) => g.variant === variants[0].label)!;
  const figure = shard1.cpu[0];
  const shardsFor1M = Math.ceil((1e6 * figure) / (1e6 * REDIS_ENGINE_TARGET));
  console.log('');
  console.log(`Shards for 1,000,000 publishes/s at ${figure.toFixed(1)} µs of a shard engine per publish (${shard1.setup.label}, ${shard1.variant}: the node's process CPU, ${maxMode ? '--max' : 'paced'}), each engine at most ${REDIS_ENGINE_TARGET * 100} % busy (the cost planner's target): ${shardsFor1M}.`);
  if (args['write-figures']) {
    const file = join(__dirname, '..', 'cost', 'figures.json');
    const figures = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number; from: string }> };
    const rev = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    figures.measured.redisPublishCpuUs = {
      value: Number(figure.toFixed(1)),
      from: `npm run bench:publish -- ${process.argv.slice(2).join(' ')} at ${rev} on ${new Date().toISOString().slice(0, 10)}, load average ${load.toFixed(1)}: the 1-shard cluster's process CPU per publish (median of the rounds)`,
    };
    writeFileSync(file, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`wrote redisPublishCpuUs ${figure.toFixed(1)} to cost/figures.json`);
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
