import type Redis from 'ioredis';
import { publish } from '../../core/events';
import { issueTicket } from '../../core/tickets';
import { createRedisCluster, waitReady } from '../../core/redis/client';
import { channelsOnShards, coreConfig, RawStream, spawnTask, TEST_NAMESPACES, useRedisCluster } from '../support/harness';

/**
 * REDIS_MODE=cluster end to end (issue 23, step 7 of "Switching over"): a real task process (`service/main.ts`) given
 * only its environment, as ECS starts it for `redis.shards` >= 2 (REDIS_URL one node of the cluster, as the configuration
 * endpoint), makes its own Cluster clients, serves a stream over channels on the three shards, and resumes it by the
 * connection's cursor. Before: the task refused to start ("REDIS_MODE: only \"single\" runs today").
 */
const local = useRedisCluster();
const cleanup: (() => unknown)[] = [];
let redis: Redis;
let url: string;

beforeAll(async () => {
  url = `redis://127.0.0.1:${local.cluster.nodes[0].port}`;
  redis = createRedisCluster({ url, name: 'test' }) as unknown as Redis;
  await waitReady(redis);
});
afterAll(async () => {
  for (const c of cleanup.splice(0)) await c();
  redis.disconnect();
});

test('a task started with REDIS_MODE=cluster streams channels of three shards and resumes them by the cursor, nothing lost or twice', async () => {
  const task = await spawnTask({ REDIS_URL: url, REDIS_MODE: 'cluster', NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), COOKIE_SECURE: 'false' }, cleanup);
  const config = coreConfig({ redisUrl: url, redisMode: 'cluster' });
  const deps = { redis, config };
  const channels = channelsOnShards('chat');
  const ticket = async () => (await issueTicket({ identity: { kind: 'user', sub: 'kim' }, channels, transport: 'sse' }, deps)).ticket;
  const sent: string[] = [];
  const sentTo: string[] = [];
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const channel = channels[(sent.length * 7) % 3 === 0 ? 2 : sent.length % 2];
      sentTo.push(channel);
      sent.push((await publish({ channel, type: 'update', data: sent.length }, { kind: 'server', principal: 'test' }, deps)).id);
    }
  };
  const ids = (s: RawStream) => s.events().filter((e) => e.event === 'update').map((e) => e.id);
  const channelOf = (s: RawStream) => s.events().filter((e) => e.event === 'update').map((e) => (JSON.parse(e.data) as { channel: string }).channel);
  /** Each channel's ids in the order they came: order holds per channel, not across shards (each shard's pub/sub is its own connection). */
  const perChannel = (idList: (string | undefined)[], of: string[]) => Object.fromEntries(channels.map((c) => [c, idList.filter((_, i) => of[i] === c)]));

  const first = new RawStream(`${task.base}/events?channels=${channels.join(',')}&ticket=${await ticket()}`);
  await first.until((s) => s.events().some((e) => e.event === 'ready'), 20_000);
  expect(first.status).toBe(200);
  await send(9);
  await first.until((s) => ids(s).length === 9, 20_000);
  const cursor = first.lastCursor()!;
  first.close();

  await send(6);
  const second = new RawStream(`${task.base}/events?channels=${channels.join(',')}&ticket=${await ticket()}`, { 'last-event-id': cursor });
  await second.until((s) => s.events().some((e) => e.event === 'ready'), 20_000);
  await send(3);
  await second.until((s) => ids(s).length === 9, 20_000);
  second.close();
  expect(perChannel([...ids(first), ...ids(second)], [...channelOf(first), ...channelOf(second)])).toEqual(perChannel(sent, sentTo));
  expect(second.events().filter((e) => e.event === 'reset')).toEqual([]);
  expect(task.output()).not.toMatch(/CROSSSLOT|refused|Invalid configuration/);
}, 90_000);
