import Redis, { Cluster } from 'ioredis';
import type { BrokerPageBudget, ChannelCursor, PositionBroker } from '../../core/broker';
import { parseChannel, type ParsedChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { preparePublish } from '../../core/events';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';
import { allKeys, connectRedis, coreConfig, delKeys, eventually, TEST_NAMESPACES, uid, useRedisCluster } from '../support/harness';
import { runPublisher } from '../support/redis-publisher';

/**
 * Issue 23, item 2: positions per channel (docs/DESIGN.md, "Positions per channel"). The broker's scripts on one
 * channel's slot each: ids per channel above the channel's base (its epoch), and the reset, horizon, gap and roll-back
 * rules per channel. On one node, then on the local three-primary cluster.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  brief: { subscribe: 'public', publish: 'server', historySize: 10, historyTtlSeconds: 60 },
  flash: { subscribe: 'public', publish: 'server', historySize: 0, historyTtlSeconds: 60 },
};
const SERVER = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
const BUDGET: BrokerPageBudget = { maxEvents: 1000, maxBytes: 1_000_000, entryBytes: 32 * 1024 + 128 };
const ch = (name: string): ParsedChannel => parseChannel(name, NAMESPACES);
const idOf = (env: string) => Number((JSON.parse(env) as { id: string }).id);
const dataOf = (env: string) => (JSON.parse(env) as { data: unknown }).data;

async function publish(broker: PositionBroker, channel: ParsedChannel, data: unknown): Promise<number> {
  const config = coreConfig({ namespaces: NAMESPACES });
  const { head, tail } = preparePublish({ channel: channel.channel, type: 't', data }, SERVER, config);
  const r = await broker.publish({ channel, head, tail });
  if (r.kind !== 'published') throw new Error(`not published: ${r.kind}`);
  return Number(r.id);
}

async function replayOk(broker: PositionBroker, reads: readonly ChannelCursor[], budget = BUDGET) {
  const page = await broker.replay(reads, budget);
  if (page === 'invalid') throw new Error('invalid cursor');
  return page;
}

describe('positions per channel on one node', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
  });
  afterAll(() => redis.disconnect());
  function isolated() {
    const keys = new Keys(`p${uid()}:`);
    return { keys, broker: new RedisChannelBroker(redis, { keyPrefix: keys.prefix }) };
  }

  test('ids grow per channel above its base; every key written is in the channel\'s slot', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const [from] = await broker.positions([a]);
    expect(from).toBe(0);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await publish(broker, a, i));
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]);
    // The first publish wrote the base (Redis time then): every id of the epoch is above it.
    const base = Number(await redis.get(keys.base(a.channel)));
    expect(base).toBeGreaterThan(0);
    expect(ids[0]).toBeGreaterThan(base);
    expect(await broker.positions([a])).toEqual([ids[4]]);
    expect((await allKeys(redis, `${keys.prefix}*`)).filter((k) => !k.endsWith(`{${a.channel}}`))).toEqual([]);
  });

  test('a reader of an empty channel is at 0 and writes nothing; the first publish does not reset it', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const [p] = await broker.positions([a]);
    expect(p).toBe(0);
    expect((await replayOk(broker, [{ channel: a, cursor: 0 }])).resets).toEqual([false]);
    expect(await allKeys(redis, `${keys.prefix}*`)).toEqual([]);
    const id = await publish(broker, a, 'first');
    const page = await replayOk(broker, [{ channel: a, cursor: p }]);
    expect(page.resets).toEqual([false]);
    expect(page.events.map(idOf)).toEqual([id]);
    expect(page.positions).toEqual([id]);
  });

  test('channels resume from their own cursors, merged in id order; paging loses and repeats nothing', async () => {
    const { broker } = isolated();
    const channels = [ch(`chat:${uid()}`), ch(`chat:${uid()}`), ch(`chat:${uid()}`)];
    const start = await broker.positions(channels);
    const sent: number[] = [];
    for (let i = 0; i < 30; i++) sent.push(await publish(broker, channels[i % 3], i));
    let reads: ChannelCursor[] = channels.map((c, i) => ({ channel: c, cursor: start[i] }));
    const got: number[] = [];
    for (let pages = 0; pages < 40; pages++) {
      const page = await replayOk(broker, reads, { ...BUDGET, maxEvents: 4 });
      expect(page.resets).toEqual([false, false, false]);
      got.push(...page.events.map(idOf));
      reads = channels.map((c, i) => ({ channel: c, cursor: page.positions[i] }));
      if (!page.more) break;
    }
    expect(got).toEqual(sent);
    // Caught up: nothing more, each channel at its last id.
    const end = await replayOk(broker, reads);
    expect(end.events).toEqual([]);
    expect(end.positions).toEqual(channels.map((_, i) => sent[27 + i]));
  });

  test('one busy channel among idle ones fills the page (a later read round takes the idle channels\' share)', async () => {
    const { broker } = isolated();
    const channels = Array.from({ length: 8 }, () => ch(`chat:${uid()}`));
    const start = await broker.positions(channels);
    const sent: number[] = [];
    for (let i = 0; i < 40; i++) sent.push(await publish(broker, channels[5], i));
    const page = await replayOk(broker, channels.map((channel, i) => ({ channel, cursor: start[i] })), { ...BUDGET, maxEvents: 20 });
    expect(page.events.map(idOf)).toEqual(sent.slice(0, 20));
    expect(page.more).toBe(true);
    expect(page.positions[5]).toBe(sent[19]);
    expect(page.positions.filter((_, i) => i !== 5)).toEqual(start.filter((_, i) => i !== 5));
  });

  test('trimmed: a cursor below the horizon resets that channel only', async () => {
    const { broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const b = ch(`brief:${uid()}`);
    const [pa, pb] = await broker.positions([a, b]);
    for (let i = 0; i < 12; i++) await publish(broker, a, i);
    const onB = await publish(broker, b, 'b');
    const page = await replayOk(broker, [
      { channel: a, cursor: pa },
      { channel: b, cursor: pb },
    ]);
    expect(page.resets).toEqual([true, false]);
    expect(page.events.map(idOf)).toEqual([onB]);
  });

  test('lost epoch: every key of the channel gone (Redis lost its data), a cursor from before is reset; a new reader is not', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const seen = await publish(broker, a, 'before');
    await delKeys(redis, await allKeys(redis, `${keys.prefix}*`));
    const page = await replayOk(broker, [{ channel: a, cursor: seen }]);
    expect(page.resets).toEqual([true]);
    const after = await publish(broker, a, 'after');
    expect(after).toBeGreaterThan(seen);
    // Another reader from the old epoch, after the new events: reset, and given what the new epoch holds.
    const old = await replayOk(broker, [{ channel: a, cursor: seen - 1 }]);
    expect(old.resets).toEqual([true]);
    expect(old.events.map(dataOf)).toEqual(['after']);
    expect((await replayOk(broker, [{ channel: a, cursor: old.positions[0] }])).resets).toEqual([false]);
  });

  test('roll-back on one channel (a failover lost its last writes): that reader is reset, the next id passes its cursor, readers in the lost range reset, earlier readers not', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const b = ch(`brief:${uid()}`);
    const kept = await publish(broker, a, 'replicated');
    const onB = await publish(broker, b, 'b');
    const lost1 = await publish(broker, a, 'lost');
    const seen = await publish(broker, a, 'lost too');
    // The new primary has a's state as it was after `kept`.
    await redis.xtrim(keys.history(a.channel), 'MAXLEN', 1);
    await redis.set(keys.lastId(a.channel), String(kept));
    const page = await replayOk(broker, [
      { channel: a, cursor: seen },
      { channel: b, cursor: onB },
    ]);
    expect(page.resets).toEqual([true, false]);
    expect(page.positions[0]).toBeGreaterThan(seen);
    const next = await publish(broker, a, 'after');
    expect(next).toBeGreaterThan(seen);
    expect(await replayOk(broker, [{ channel: a, cursor: page.positions[0] }])).toMatchObject({ resets: [false], positions: [next] });
    expect((await broker.claim({ channel: a, cursor: lost1 })) as object).toMatchObject({ reset: true });
    expect((await replayOk(broker, [{ channel: a, cursor: kept }])).resets).toEqual([false]);
  });

  test('a shared cursor (one number for every channel, as before the upgrade) above a quiet channel resets nothing', async () => {
    const { broker } = isolated();
    const quiet = ch(`brief:${uid()}`);
    const busy = ch(`brief:${uid()}`);
    const old = await publish(broker, quiet, 'old');
    const cursor = await publish(broker, busy, 'seen');
    const next = await publish(broker, busy, 'missed');
    const later = await publish(broker, busy, 'missed too');
    const shared = [
      { channel: quiet, cursor, shared: true },
      { channel: busy, cursor, shared: true },
    ];
    const page = await replayOk(broker, shared);
    expect(page.resets).toEqual([false, false]);
    expect(page.events.map(idOf)).toEqual([next, later]);
    // Each channel continues from its own position (the quiet one's is its last id, not the shared number), so the
    // positions, now per channel, resume without a reset, on a whole page and on one cut by its budget.
    expect(page.positions).toEqual([old, later]);
    expect(await replayOk(broker, [{ channel: quiet, cursor: page.positions[0] }, { channel: busy, cursor: page.positions[1] }])).toMatchObject({ resets: [false, false], events: [] });
    const cut = await replayOk(broker, shared, { ...BUDGET, maxEvents: 1 });
    expect(cut).toMatchObject({ more: true, positions: [old, next] });
    const never = ch(`brief:${uid()}`);
    expect(await replayOk(broker, [{ channel: never, cursor, shared: true }])).toMatchObject({ resets: [false], positions: [0] });
    // The same number as the quiet channel's own cursor is a roll-back.
    expect((await broker.claim({ channel: quiet, cursor })) as object).toMatchObject({ reset: true });
  });

  test('upgrade: a shared cursor on a channel that never had events is not reset, nor after its first events; a channel\'s own cursor there is (a lost epoch)', async () => {
    const { keys, broker } = isolated();
    const [sec] = (await redis.time()) as unknown as [string, string];
    const before = (Number(sec) - 60) * 1_000_000;
    const never = ch(`brief:${uid()}`);
    expect((await replayOk(broker, [{ channel: never, cursor: before, shared: true }])).resets).toEqual([false]);
    const id = await publish(broker, never, 'first');
    expect(await replayOk(broker, [{ channel: never, cursor: before, shared: true }])).toMatchObject({ resets: [false], positions: [id] });
    const lost = ch(`brief:${uid()}`);
    expect(await replayOk(broker, [{ channel: lost, cursor: before }])).toMatchObject({ resets: [true], positions: [0] });
    // Readers of channels without keys wrote none.
    expect((await allKeys(redis, `${keys.prefix}*`)).filter((k) => !k.includes(never.channel))).toEqual([]);
  });

  test('upgrade: a channel with history but no base (written by the sequence) counts as base 0; its cursors keep working', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    // What the sequence's publish left (the same stream entries and last id, no base), written as it wrote them.
    const t = await redis.time();
    const first = { id: String(Number(t[0]) * 1_000_000 + Number(t[1]) - 10) };
    const second = String(Number(first.id) + 1);
    for (const id of [first.id, second]) await redis.xadd(keys.history(a.channel), `${id}-0`, 'e', `{"channel":"${a.channel}","id":"${id}","type":"t","data":1,"ts":1}`);
    await redis.set(keys.lastId(a.channel), second);
    const page = await replayOk(broker, [{ channel: a, cursor: Number(first.id), shared: true }]);
    expect(page.resets).toEqual([false]);
    expect(page.events).toHaveLength(1);
    // The read wrote nothing; the first publish on positions per channel writes base 0 (the epoch began before).
    expect(await redis.get(keys.base(a.channel))).toBeNull();
    await publish(broker, a, 2);
    expect(await redis.get(keys.base(a.channel))).toBe('0');
    expect((await replayOk(broker, [{ channel: a, cursor: Number(first.id) }])).resets).toEqual([false]);
  });

  test('expired and created again: a cursor before the gap is reset and given what the stream holds now', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const before = await publish(broker, a, 'seen');
    await publish(broker, a, 'missed');
    expect(await redis.pexpire(keys.history(a.channel), 1)).toBe(1);
    await eventually(async () => (await redis.exists(keys.history(a.channel))) === 0, 5000, 'the history to expire');
    const late = await publish(broker, a, 'late');
    const page = await replayOk(broker, [{ channel: a, cursor: before }]);
    expect(page.resets).toEqual([true]);
    expect(page.events.map(idOf)).toEqual([late]);
    expect((await replayOk(broker, [{ channel: a, cursor: late }])).resets).toEqual([false]);
  });

  test('an idempotent retry on a channel is a duplicate with the first id (the publish path shared with the sequence broker)', async () => {
    const { broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const config = coreConfig({ namespaces: NAMESPACES });
    const { head, tail } = preparePublish({ channel: a.channel, type: 't', data: 1 }, SERVER, config);
    const idempotency = { principal: 'p', key: 'k', eventHash: 'h' };
    const first = await broker.publish({ channel: a, head, tail, idempotency });
    expect(first.kind).toBe('published');
    expect(await broker.publish({ channel: a, head, tail, idempotency })).toEqual({ kind: 'duplicate', id: (first as { id: string }).id });
  });

  test('a cursor more than 1 s ahead of Redis time is invalid and writes nothing', async () => {
    const { keys, broker } = isolated();
    const a = ch(`brief:${uid()}`);
    const [sec] = (await redis.time()) as unknown as [string, string];
    const ahead = (Number(sec) + 10) * 1_000_000;
    expect(await broker.replay([{ channel: a, cursor: ahead }], BUDGET)).toBe('invalid');
    expect(await broker.claim({ channel: a, cursor: ahead })).toBe('invalid');
    expect(await allKeys(redis, `${keys.prefix}*`)).toEqual([]);
  });

  test('history disabled (size 0): a cursor below the last id is reset, the last id is not', async () => {
    const { broker } = isolated();
    const a = ch(`flash:${uid()}`);
    const [p] = await broker.positions([a]);
    const id = await publish(broker, a, 'x');
    expect((await replayOk(broker, [{ channel: a, cursor: p }])).resets).toEqual([true]);
    expect(await replayOk(broker, [{ channel: a, cursor: id }])).toMatchObject({ resets: [false], positions: [id] });
  });
});

describe('positions per channel on a three-primary Redis Cluster', () => {
  const local = useRedisCluster();
  let cluster: Cluster;
  beforeAll(() => {
    cluster = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  });
  afterAll(() => cluster.disconnect());

  /** Channels of namespace `chat` until they cover every primary. */
  async function channelsOnEveryShard(): Promise<ParsedChannel[]> {
    const keys = new Keys('rt:');
    const byShard = new Map<number, ParsedChannel>();
    for (let i = 0; byShard.size < 3 && i < 200; i++) {
      const c = ch(`chat:${uid()}`);
      const owner = local.cluster.primaryOf(Number(await cluster.cluster('KEYSLOT', keys.history(c.channel)))).port;
      if (!byShard.has(owner)) byShard.set(owner, c);
    }
    expect(byShard.size).toBe(3);
    return [...byShard.values()];
  }

  test('publish and replay across channels on every shard', async () => {
    const config = coreConfig({ namespaces: NAMESPACES });
    const channels = await channelsOnEveryShard();
    const broker = new RedisChannelBroker(cluster as unknown as Redis, config);
    const start = await broker.positions(channels);
    const sent: number[][] = channels.map(() => []);
    for (let i = 0; i < 12; i++) sent[i % 3].push(await publish(broker, channels[i % 3], i));
    let reads: ChannelCursor[] = channels.map((c, i) => ({ channel: c, cursor: start[i] }));
    const got: number[][] = channels.map(() => []);
    for (let pages = 0; pages < 20; pages++) {
      const page = await replayOk(broker, reads, { ...BUDGET, maxEvents: 5 });
      expect(page.resets).toEqual([false, false, false]);
      for (const env of page.events) got[channels.findIndex((c) => c.channel === (JSON.parse(env) as { channel: string }).channel)].push(idOf(env));
      reads = channels.map((c, i) => ({ channel: c, cursor: page.positions[i] }));
      if (!page.more) break;
    }
    // Per channel: every event once, in order.
    expect(got).toEqual(sent);
    expect(await broker.claim(reads[1])).toEqual({ reset: false, position: sent[1][3] });
  });

  test('a shard primary killed under a running publisher: per channel, ids keep growing and a reader either resumes whole or is reset', async () => {
    // History large enough that nothing of this test is trimmed.
    const config = coreConfig({ namespaces: { ...NAMESPACES, chat: { ...NAMESPACES.chat, historySize: 1000, historyTtlSeconds: 600 } } });
    const channels = await channelsOnEveryShard();
    const keys = new Keys(config.keyPrefix);
    const broker = new RedisChannelBroker(cluster as unknown as Redis, config);
    // Each channel is published to until it has this many acknowledged events; raised for the failover.
    const limit = [10, 10, 10];
    const publisher = runPublisher(broker, channels, limit, config);
    const { acked } = publisher;
    try {
      await eventually(() => acked.every((a, i) => a.length >= limit[i]), 20_000, 'publishes on every shard');
      const victim = local.cluster.primaryOf(Number(await cluster.cluster('KEYSLOT', keys.history(channels[0].channel)))).port;
      const seen = acked.map((a) => a[a.length - 1]);
      for (let i = 0; i < 3; i++) limit[i] += 20;
      await local.cluster.killPrimary(victim);
      await eventually(() => acked.every((a, i) => a.length >= limit[i]), 60_000, `publishes after the failover (failures so far ${publisher.failures})`);
      // The killed node comes back as a replica of the promoted one (the cluster whole again for the next test).
      await local.cluster.server(victim).restart();
      await local.cluster.waitHealthy();
      await publisher.stop();
      for (let i = 0; i < 3; i++) for (let j = 1; j < acked[i].length; j++) expect(acked[i][j]).toBeGreaterThan(acked[i][j - 1]);
      // Each reader that held the last id acknowledged before the kill: on the failed shard's channel, either what it
      // saw survived and it gets every later acknowledged event, once, in order, or it is reset; never a silent gap.
      const page = await replayOk(broker, channels.map((channel, i) => ({ channel, cursor: seen[i] })));
      expect(page.more).toBe(false);
      const got = (i: number) => page.events.map((e) => JSON.parse(e) as { channel: string; id: string }).filter((e) => e.channel === channels[i].channel).map((e) => Number(e.id));
      if (!page.resets[0]) {
        expect((await cluster.xrange(keys.history(channels[0].channel), `${seen[0]}-0`, `${seen[0]}-0`)).length).toBe(1);
        expect(got(0).filter((id) => acked[0].includes(id))).toEqual(acked[0].filter((id) => id > seen[0]));
      }
      // The other shards' channels were not touched: no reset, every acknowledged event after the cursor.
      expect(page.resets.slice(1)).toEqual([false, false]);
      for (const i of [1, 2]) expect(got(i)).toEqual(acked[i].filter((id) => id > seen[i]));
    } finally {
      await publisher.stop();
    }
  }, 120_000);

  test('a publish is delivered live by SPUBLISH on the shard of its channel', async () => {
    const config = coreConfig({ namespaces: NAMESPACES });
    const [c] = await channelsOnEveryShard();
    const keys = new Keys(config.keyPrefix);
    const owner = local.cluster.primaryOf(Number(await cluster.cluster('KEYSLOT', keys.live(c.channel))));
    const sub = new Redis(owner.port, '127.0.0.1');
    const received: string[] = [];
    try {
      sub.on('smessage', (_ch: string, msg: string) => received.push(msg));
      await sub.ssubscribe(keys.live(c.channel));
      const id = await publish(new RedisChannelBroker(cluster as unknown as Redis, config), c, 'live');
      await eventually(() => received.length === 1, 10_000, 'the live event');
      expect(idOf(received[0])).toBe(id);
    } finally {
      sub.disconnect();
    }
  });
});
