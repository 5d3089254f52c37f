/**
 * `npm run bench:publish [-- --seconds 5] [--channels 256] [--concurrency 64]`: publish throughput of the real publish
 * path (`core/events.ts` `publish` → `RedisChannelBroker`, the CHANNEL_PUBLISH script) on one Redis node and on a local three-primary
 * Redis Cluster (issue 23, item 7). Reports publishes/s, Redis CPU per publish (INFO's used_cpu_sys+user of each
 * primary), the share of the load per shard, and this process's own CPU (the publisher).
 *
 * With the deployment-wide sequence still in place, every publish touches the `{seq}` slot beside its channel's, so on
 * a cluster the script is refused (CROSSSLOT) and no publish succeeds: the cluster rows report the refusals, not a
 * throughput. They become the comparison of the issue once positions per channel land (item 2). `redis-cli --cluster
 * create` needs at least three primaries, so the 1- and 2-shard cluster rows are not made here.
 */
import { parseArgs } from 'node:util';
import Redis, { type Cluster } from 'ioredis';
import { publish } from '../core/events';
import { createRedisCluster, waitReady } from '../core/redis/client';
import { RedisCluster, RedisServer } from '../local/redis';
import { DEFAULT_NAMESPACES, type CoreConfig } from '../core/config';

const { values: args } = parseArgs({ options: { seconds: { type: 'string' }, channels: { type: 'string' }, concurrency: { type: 'string' } } });
const seconds = Number(args.seconds ?? 5);
const channelCount = Number(args.channels ?? 256);
const concurrency = Number(args.concurrency ?? 64);

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
const ns = Object.keys(DEFAULT_NAMESPACES)[0];
const channels = Array.from({ length: channelCount }, (_, i) => `${ns}:bench-${i}`);

async function redisCpu(port: number): Promise<number> {
  const r = new Redis(port, '127.0.0.1');
  const info = await r.info('cpu');
  r.disconnect();
  return Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)![1]);
}

interface Row {
  readonly setup: string;
  readonly ok: number;
  readonly refused: number;
  readonly firstError?: string;
  readonly redisCpuUsPerPublish: number[];
  readonly publisherCpuPercent: number;
}

async function run(setup: string, redis: Redis | Cluster, ports: number[]): Promise<Row> {
  // The default broker (`brokerOf`): positions per channel, SPUBLISH on a cluster.
  const deps = { redis: redis as unknown as Redis, config };
  const before = await Promise.all(ports.map(redisCpu));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const end = Date.now() + seconds * 1000;
  let ok = 0;
  let refused = 0;
  let firstError: string | undefined;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const channel = channels[n++ % channels.length];
        try {
          await publish({ channel, type: 'bench', data: { n } }, { kind: 'server', principal: 'bench' }, deps);
          ok++;
        } catch (err) {
          refused++;
          firstError ??= String(err instanceof Error ? err.message : err).slice(0, 100);
        }
      }
    }),
  );
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const after = await Promise.all(ports.map(redisCpu));
  const attempts = ok + refused;
  return {
    setup,
    ok: ok / wall,
    refused: refused / wall,
    firstError,
    redisCpuUsPerPublish: ports.map((_, i) => ((after[i] - before[i]) * 1e6) / Math.max(attempts, 1)),
    publisherCpuPercent: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
  };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const single = await RedisServer.start();
  try {
    const r = new Redis(single.port, '127.0.0.1');
    await waitReady(r);
    rows.push(await run('one node', r, [single.port]));
    r.disconnect();
  } finally {
    await single.destroy();
  }
  const cluster = await RedisCluster.start({ primaries: 3, replicasPerPrimary: 0 });
  try {
    const c = createRedisCluster({ url: `redis://127.0.0.1:${cluster.nodes[0].port}`, name: 'bench' });
    await waitReady(c);
    const primaries = cluster.topology().filter((x) => x.role === 'primary').map((x) => x.port);
    rows.push(await run('cluster, 3 shards', c, primaries));
    c.disconnect();
  } finally {
    await cluster.destroy();
  }
  console.log(`publish throughput: ${seconds} s per setup, ${channelCount} channels, ${concurrency} in flight (Node ${process.version})`);
  console.log('| setup | publishes/s | refused/s | Redis CPU µs per attempt, per primary | publisher CPU % | first refusal |');
  console.log('|---|---|---|---|---|---|');
  for (const row of rows) {
    console.log(
      `| ${row.setup} | ${row.ok.toFixed(0)} | ${row.refused.toFixed(0)} | ${row.redisCpuUsPerPublish.map((x) => x.toFixed(1)).join(' / ')} | ${row.publisherCpuPercent.toFixed(0)} | ${row.firstError ?? ''} |`,
    );
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
