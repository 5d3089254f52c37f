import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import type { BrokerSubscriber } from '../../core/broker';
import { createRedisCluster, waitReady } from '../../core/redis/client';
import { Keys } from '../../core/redis/keys';
import { RedisSubscriber } from '../../core/redis/subscriber';
import { Hub, type LiveEvent } from '../../service/hub';
import { eventually, uid, useRedisCluster } from '../support/harness';

/**
 * The hub on a Redis Cluster (issue 23, item 4, the subscription part): each channel is subscribed with SSUBSCRIBE on
 * the shard that owns its slot (ioredis `shardedSubscribers`, one connection per shard), and a shard's failover lapses
 * and restores that shard's channels only. Events are sent with SPUBLISH as the publish script does in cluster mode
 * (the script itself needs positions per channel to run on a cluster: issue 23, item 2).
 */
const local = useRedisCluster();
const keys = new Keys('rt:');

let sub: Cluster;
let pub: Cluster;
let hub: Hub;
const got: LiveEvent[] = [];
const restored: (readonly string[] | undefined)[] = [];
const lapses: (readonly string[] | undefined)[] = [];
/** One channel per shard, each with the port of the primary that owns it. */
let channels: string[];

beforeAll(async () => {
  const url = `redis://127.0.0.1:${local.cluster.nodes[0].port}`;
  sub = createRedisCluster({ url, name: 'test-sub', subscriber: true, failFast: false });
  pub = createRedisCluster({ url, name: 'test-pub', failFast: false });
  await Promise.all([waitReady(sub), waitReady(pub)]);
  const subscriber = new RedisSubscriber(sub, keys);
  // What the hub is told, seen on the way.
  const seen: BrokerSubscriber = {
    subscribe: (chs) => subscriber.subscribe(chs),
    unsubscribe: (chs) => subscriber.unsubscribe(chs),
    onMessage: (h) => subscriber.onMessage(h),
    onState: (h) =>
      subscriber.onState((state, chs) => {
        if (state === 'lapsed') lapses.push(chs);
        h(state, chs);
      }),
    get ready() {
      return subscriber.ready;
    },
  };
  hub = new Hub(seen);
  hub.onResubscribed = (chs) => restored.push(chs);
  const byPrimary = new Map<number, string>();
  while (byPrimary.size < 3) {
    const ch = `chat:${uid()}`;
    byPrimary.set(local.cluster.primaryOf(calculateSlot(keys.live(ch))).port, ch);
  }
  channels = [...byPrimary.values()];
}, 60_000);
afterAll(async () => {
  // QUIT (not a bare disconnect) so no reconnect timer of a shard subscriber outlives the file.
  await Promise.all([sub?.quit(), pub?.quit()]).catch(() => undefined);
});

let n = 0;
const envelope = (channel: string) => JSON.stringify({ channel, id: String(++n), type: 't', data: n, ts: Date.now() });

/** SPUBLISHes one event on each channel (retrying while its shard has no primary) and waits for all to arrive. */
async function publishToEach(): Promise<void> {
  const want = channels.map((ch) => ({ ch, env: envelope(ch) }));
  for (const { ch, env } of want) {
    await eventually(async () => Number(await pub.spublish(keys.live(ch), env).catch(() => -1)) >= 0, 20_000, `SPUBLISH on ${ch}`);
  }
  await eventually(() => want.every((w) => got.some((e) => e.envelope === w.env)), 10_000, `events on ${want.map((w) => w.ch).join(', ')}`);
}

test('a channel on each of the three shards: a publish on each reaches the subscriber', async () => {
  expect(new Set(channels.map((c) => local.cluster.primaryOf(calculateSlot(keys.live(c))).port)).size).toBe(3);
  await hub.add(channels, { onEvent: (e) => got.push(e) });
  expect(hub.ready).toBe(true);
  await publishToEach();
  // Sharded pub/sub: each message stays on its shard (a plain PUBLISH would reach every node's subscribers).
  for (const ch of channels) {
    const owner = local.cluster.primaryOf(calculateSlot(keys.live(ch))).port;
    const numsub = local.cluster.cli(owner, 'PUBSUB', 'SHARDNUMSUB', keys.live(ch));
    expect(numsub.trim().split('\n')[1]).toBe('1');
  }
});

test("a shard primary killed: its replica is promoted, that shard's channels lapse and come back, the others never lapse", async () => {
  const victim = channels[0];
  const primary = local.cluster.primaryOf(calculateSlot(keys.live(victim))).port;
  const promoted = await local.cluster.killPrimary(primary);
  expect(promoted).not.toBe(primary);
  await eventually(() => restored.some((chs) => chs?.includes(victim)), 30_000, `the lost shard resubscribed (lapses ${JSON.stringify(lapses)}, restored ${JSON.stringify(restored)})`);
  expect(lapses).toEqual([[victim]]);
  expect(restored).toContainEqual([victim]);
  for (const chs of restored) expect(chs).toEqual([victim]);
  expect(hub.ready).toBe(true);
  await publishToEach();
}, 90_000);
