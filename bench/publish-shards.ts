/**
 * `npm run bench:publish [-- --seconds 5] [--channels 240] [--concurrency 64] [--shards 1,2,3] [--size 100] [--write-figures]`: publish
 * throughput of the per-channel broker (`RedisChannelBroker`, each publish one single-slot script on its channel's
 * shard, live delivery by SPUBLISH there) on one Redis node and on local Redis Clusters of 1, 2 and 3 primaries
 * (issue 23, item 7). Channels are spread over slots, an equal number owned by each primary. Reports publishes/s,
 * Redis CPU per publish (INFO's used_cpu_sys + used_cpu_user deltas of each primary) overall and per shard, how evenly
 * the publishes and the CPU spread over the shards, and this process's own CPU (the publisher).
 *
 * One process publishes (`concurrency` publishes in flight): on a small machine it, not Redis, bounds the throughput,
 * so what grows with shards is the Redis CPU a publish costs and how it spreads, read beside the publisher's CPU.
 * `--write-figures` writes the highest per-shard cost of the cluster rows to cost/figures.json (`redisPublishCpuUs`),
 * which the cost planner prices shards from (`npm run cost`).
 * Delivery is as in production: each publish SPUBLISHes (PUBLISH on one node) to one subscriber connection per shard
 * (`RedisSubscriber`, subscribed to every channel).
 */
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import calculateSlot from 'cluster-key-slot';
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
    'write-figures': { type: 'boolean', default: false },
  },
});
const seconds = Number(args.seconds ?? 5);
const channelCount = Number(args.channels ?? 240);
const concurrency = Number(args.concurrency ?? 64);
const shardCounts = (args.shards ?? '1,2,3').split(',').map(Number);
const payload = 'x'.repeat(Number(args.size ?? 100));

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
  readonly shards: number;
  readonly publishes: number;
  readonly perSecond: number;
  readonly failed: number;
  readonly firstError?: string;
  /** Per primary: publishes that went to it, and its Redis CPU per publish it served (µs). */
  readonly perShard: { publishes: number; cpuUs: number; cpuUsPerPublish: number }[];
  readonly redisCpuUsPerPublish: number;
  readonly publisherCpuPercent: number;
  readonly delivered: number;
}

async function run(setup: string, redis: Redis | Cluster, sub: Redis | Cluster, ports: number[], owner: (slot: number) => number): Promise<Row> {
  const broker = new RedisChannelBroker(redis as unknown as Redis, config);
  const channels = channelsFor(owner, ports);
  const shardOf = channels.map((c) => ports.indexOf(owner(calculateSlot(keys.history(c.channel)))));
  const subscriber = new RedisSubscriber(sub, keys);
  let delivered = 0;
  subscriber.onMessage(() => delivered++);
  await subscriber.subscribe(channels.map((c) => c.channel));
  const prepared = channels.map((c) => preparePublish({ channel: c.channel, type: 'bench', data: payload }, SERVER, config));
  // Warm up: every script loaded on every shard, every channel's keys made.
  await Promise.all(channels.map((c, i) => broker.publish({ channel: c, head: prepared[i].head, tail: prepared[i].tail })));
  delivered = 0;
  const counts = ports.map(() => 0);
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
  await subscriber.unsubscribe(channels.map((c) => c.channel));
  const cpuUs = ports.map((_, k) => (after[k] - before[k]) * 1e6);
  return {
    setup,
    shards: ports.length,
    publishes: ok,
    perSecond: ok / wall,
    failed,
    firstError,
    perShard: ports.map((_, k) => ({ publishes: counts[k], cpuUs: cpuUs[k], cpuUsPerPublish: cpuUs[k] / Math.max(counts[k], 1) })),
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
  const single = await RedisServer.start();
  try {
    const r = new Redis(single.port, '127.0.0.1');
    const s = new Redis(single.port, '127.0.0.1');
    await Promise.all([waitReady(r), waitReady(s)]);
    rows.push(await run('one node', r, s, [single.port], () => single.port));
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
      rows.push(await run(`cluster, ${shards} shard${shards > 1 ? 's' : ''}`, c, s, primaries, owner));
      await Promise.all([c.quit(), s.quit()]).catch(() => undefined);
    } finally {
      await cluster.destroy();
    }
  }
  const one = rows[0].redisCpuUsPerPublish;
  console.log(`publish throughput (RedisChannelBroker): ${seconds} s per setup, ${channelCount} channels spread evenly over the shards, ${concurrency} publishes in flight from one process, ${payload.length}-byte data, one subscriber connection per shard; Node ${process.version}, load average ${load.toFixed(1)} at start`);
  console.log('');
  console.log('| setup | publishes/s | Redis CPU µs per publish (vs one node) | per shard: µs per publish | per shard: share of publishes | spread of publishes / CPU from even | publisher CPU % | failed | delivered |');
  console.log('|---|---:|---:|---|---|---:|---:|---:|---:|');
  for (const row of rows) {
    const share = row.perShard.map((s) => `${((s.publishes / Math.max(row.publishes, 1)) * 100).toFixed(0)} %`).join(' / ');
    console.log(
      `| ${row.setup} | ${row.perSecond.toFixed(0)} | ${row.redisCpuUsPerPublish.toFixed(1)} (${(((row.redisCpuUsPerPublish - one) / one) * 100).toFixed(0)} %) | ${row.perShard.map((s) => s.cpuUsPerPublish.toFixed(1)).join(' / ')} | ${share} | ±${spread(row.perShard.map((s) => s.publishes)).toFixed(0)} % / ±${spread(row.perShard.map((s) => s.cpuUs)).toFixed(0)} % | ${row.publisherCpuPercent.toFixed(0)} | ${row.failed}${row.firstError ? ` (${row.firstError})` : ''} | ${row.delivered} |`,
    );
  }
  const perPublish = Math.max(...rows.filter((r) => r.setup !== 'one node').flatMap((r) => r.perShard.map((s) => s.cpuUsPerPublish)));
  const shardsFor1M = Math.ceil((1e6 * perPublish) / (1e6 * REDIS_ENGINE_TARGET));
  console.log('');
  console.log(`Shards for 1,000,000 publishes/s at the highest per-shard cost measured (${perPublish.toFixed(1)} µs of a shard engine per publish), each engine at most ${REDIS_ENGINE_TARGET * 100} % busy (the cost planner's target): ${shardsFor1M}.`);
  if (args['write-figures']) {
    const file = join(__dirname, '..', 'cost', 'figures.json');
    const figures = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number; from: string }> };
    const rev = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    figures.measured.redisPublishCpuUs = {
      value: Number(perPublish.toFixed(1)),
      from: `npm run bench:publish -- ${process.argv.slice(2).join(' ')} at ${rev} on ${new Date().toISOString().slice(0, 10)}, load average ${load.toFixed(1)}: the highest per-shard Redis CPU per publish of the 1-, 2- and 3-shard cluster rows`,
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
