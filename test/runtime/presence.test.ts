import Redis, { Cluster } from 'ioredis';
import { parseChannel, type ParsedChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { applyPresenceEvent, membersOf, presenceJson, type PresenceSnapshot } from '../../core/presence';
import { preparePublish } from '../../core/events';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';
import { PRESENCE_COUNT_INTERVAL_MS, PRESENCE_SCRIPTS, RedisPresence } from '../../core/redis/presence';
import type { RedisLike } from '../../core/redis/client';
import { allKeys, connectRedis, connectSubscriber, coreConfig, eventually, TEST_NAMESPACES, uid, useRedisCluster } from '../support/harness';
import { RedisSubscriber } from '../../core/redis/subscriber';
import { prng } from '../support/prng';

/**
 * Issue 24, item 1: presence in the channel's slot (docs/DESIGN.md, "Presence"). A join or leave changes the member set
 * and appends its event to the channel's stream in one script; a snapshot reads the members and the channel's position
 * in one script. So snapshot + the events after its position is the membership, checked against a model over random
 * operations on one node and on the local three-primary cluster.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 1000, historyTtlSeconds: 600, presence: 'members' },
  crowd: { subscribe: 'authenticated', publish: 'authenticated', historySize: 1000, historyTtlSeconds: 600, presence: 'count' },
};
const ch = (name: string): ParsedChannel => parseChannel(name, NAMESPACES);
const T0 = 1_800_000_000_000;
const LEASE = 30_000;
const GRACE = 5_000;

interface Env {
  readonly id: string;
  readonly type: string;
  readonly data: { sub: string; info?: unknown };
}

/** The channel's `presence.*` events after `position`, from its history (the broker's replay). */
async function eventsAfter(broker: RedisChannelBroker, c: ParsedChannel, position: number): Promise<Env[]> {
  const page = await broker.replay([{ channel: c, cursor: position }], { maxEvents: 10_000, maxBytes: 10_000_000, entryBytes: 33_000 });
  if (page === 'invalid') throw new Error('invalid');
  expect(page.resets).toEqual([false]);
  return page.events.map((e) => JSON.parse(e) as Env).filter((e) => e.type.startsWith('presence.'));
}

/** Snapshot + the events after its position. */
async function rebuilt(broker: RedisChannelBroker, c: ParsedChannel, snap: PresenceSnapshot): Promise<Map<string, unknown>> {
  const m = membersOf(snap);
  for (const e of await eventsAfter(broker, c, snap.position)) applyPresenceEvent(m, e);
  return m;
}

/**
 * Random joins, leaves, ordinary publishes, grace periods, settles and dead holders on `channels`, with a model of the
 * membership beside it (the ground truth). Every snapshot taken on the way must equal the model at that moment, and at
 * the end must, with the events after its position, equal the final membership.
 */
async function randomRun(redis: RedisLike, broker: RedisChannelBroker, presence: RedisPresence, channels: ParsedChannel[], seed: number): Promise<void> {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const holders = ['task:a', 'task:b', 'gw:c1'];
  const subs = ['ann', 'bob', 'cat', 'dan'];
  let now = T0;
  for (const h of holders) expect(await presence.lease(h, now + LEASE)).toBe(true);
  const dead = new Set<string>();
  /** The model: per channel, live connections `holder/id` → sub, and members in grace → grace end. */
  const live = channels.map(() => new Map<string, { holder: string; sub: string }>());
  const graced = channels.map(() => new Map<string, number>());
  const infos = new Map(subs.map((s) => [s, { name: s.toUpperCase() }]));
  const model = (k: number) => {
    const m = new Map<string, number>();
    for (const { sub } of live[k].values()) m.set(sub, (m.get(sub) ?? 0) + 1);
    for (const s of graced[k].keys()) if (!m.has(s)) m.set(s, 0);
    return m;
  };
  const snaps: { k: number; snap: PresenceSnapshot }[] = [];
  let nextConn = 0;
  for (let step = 0; step < 120; step++) {
    const k = Math.floor(r() * channels.length);
    const c = channels[k];
    const op = r();
    if (op < 0.35) {
      const holder = pick(holders.filter((h) => !dead.has(h)));
      if (!holder) continue;
      const connection = `${holder}/${nextConn++}`;
      const sub = pick(subs);
      await presence.join(c, { holder, connection, sub, info: infos.get(sub) }, now);
      live[k].set(connection, { holder, sub });
      graced[k].delete(sub);
    } else if (op < 0.6) {
      const conns = [...live[k].entries()];
      if (!conns.length) continue;
      const [connection, { holder, sub }] = pick(conns);
      const grace = r() < 0.5 ? GRACE : 0;
      await presence.leave(c, { holder, connection }, now, grace);
      live[k].delete(connection);
      if (![...live[k].values()].some((x) => x.sub === sub)) {
        if (grace) graced[k].set(sub, now + grace);
        else graced[k].delete(sub);
      }
    } else if (op < 0.7) {
      await broker.publish({ channel: c, head: `{"channel":${JSON.stringify(c.channel)},"id":"`, tail: `","type":"chat","data":${step},"ts":` });
    } else if (op < 0.8) {
      now += Math.floor(r() * 4_000);
      for (const h of holders) if (!dead.has(h)) expect(await presence.renew(h, now + LEASE)).toBe(true);
      await presence.sweep(now, GRACE);
      for (const g of graced) for (const [s, end] of g) if (end <= now) g.delete(s);
    } else if (op < 0.85 && dead.size < holders.length - 1) {
      // A holder stops renewing (a killed task, a lost $disconnect): after its lease the sweep takes its connections
      // into grace, and after the grace they leave. An API Gateway holder is never taken by the tasks' sweep: the
      // gateway sweeper finds its lease ended and ends it once GetConnection answers 410 (core/presence-gateway.ts).
      const holder = pick(holders.filter((h) => !dead.has(h)));
      dead.add(holder);
      now += LEASE + 1;
      for (const h of holders) if (!dead.has(h)) expect(await presence.renew(h, now + LEASE)).toBe(true);
      await presence.sweep(now, GRACE);
      for (const h of await presence.gatewayLeasesEnded(now, 0, 100)) await presence.endHolder(h, now, GRACE);
      for (let j = 0; j < channels.length; j++) {
        for (const g of graced) for (const [s, end] of g) if (end <= now) g.delete(s);
        for (const [conn, x] of [...live[j]]) {
          if (x.holder !== holder) continue;
          live[j].delete(conn);
          if (![...live[j].values()].some((y) => y.sub === x.sub)) graced[j].set(x.sub, now + GRACE);
        }
      }
    } else {
      const snap = await presence.snapshot(c);
      const got = new Map(snap.members.map((m) => [m.sub, m.connections]));
      expect({ seed, step, members: got }).toEqual({ seed, step, members: model(k) });
      for (const m of snap.members) expect(m.info).toEqual(infos.get(m.sub));
      snaps.push({ k, snap });
    }
  }
  for (const { k, snap } of snaps) {
    const m = await rebuilt(broker, channels[k], snap);
    expect({ seed, members: [...m.keys()].sort() }).toEqual({ seed, members: [...model(k).keys()].sort() });
  }
  void redis;
}

test('in a namespace with presence on, nobody may publish a presence.* type (the member set would disagree with its events); elsewhere it is an ordinary type', () => {
  const config = coreConfig({ namespaces: NAMESPACES });
  const server = { kind: 'server', principal: 'arn:aws:iam::1:role/backend' } as const;
  for (const type of ['presence.join', 'presence.leave', 'presence.count', 'presence.x']) {
    expect(() => preparePublish({ channel: 'room:a', type, data: { sub: 'eve' } }, server, config)).toThrow(expect.objectContaining({ code: 'invalid_type' }));
    expect(() => preparePublish({ channel: 'crowd:a', type, data: 1 }, server, config)).toThrow(expect.objectContaining({ code: 'invalid_type' }));
    expect(preparePublish({ channel: 'chat:a', type, data: 1 }, server, config).ch.channel).toBe('chat:a');
  }
  expect(preparePublish({ channel: 'room:a', type: 'presenceful', data: 1 }, server, config).ch.channel).toBe('room:a');
});

describe('presence on one node', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
  });
  afterAll(() => redis.disconnect());
  function isolated() {
    const keys = new Keys(`pr${uid()}:`);
    const config = { keyPrefix: keys.prefix, namespaces: NAMESPACES };
    return { keys, broker: new RedisChannelBroker(redis, config), presence: new RedisPresence(redis, config) };
  }

  test("a user's connections are one member: the first joins, the last leaves; the events are the channel's, with its positions", async () => {
    const { broker, presence } = isolated();
    const c = ch(`room:${uid()}`);
    expect(await presence.lease('task:a', T0 + LEASE)).toBe(true);
    expect(await presence.snapshot(c)).toEqual({ members: [], position: 0 });
    await presence.join(c, { holder: 'task:a', connection: 'task:a/1', sub: 'ann', info: { name: 'Ann' } }, T0);
    await presence.join(c, { holder: 'task:a', connection: 'task:a/2', sub: 'ann', info: { name: 'Other tab' } }, T0);
    const snap = await presence.snapshot(c);
    expect(snap.members).toEqual([{ sub: 'ann', info: { name: 'Ann' }, connections: 2 }]);
    const [join] = await eventsAfter(broker, c, 0);
    expect(join).toMatchObject({ type: 'presence.join', data: { sub: 'ann', info: { name: 'Ann' } } });
    expect(snap.position).toBe(Number(join.id));
    expect(await broker.positions([c])).toEqual([snap.position]);
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/1' }, T0, 0);
    expect((await presence.snapshot(c)).members).toEqual([{ sub: 'ann', info: { name: 'Ann' }, connections: 1 }]);
    expect(await eventsAfter(broker, c, snap.position)).toEqual([]);
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/2' }, T0, 0);
    const [leave] = await eventsAfter(broker, c, snap.position);
    expect(leave).toMatchObject({ type: 'presence.leave', data: { sub: 'ann' } });
    expect(Number(leave.id)).toBeGreaterThan(snap.position);
    expect(await presence.snapshot(c)).toEqual({ members: [], position: Number(leave.id) });
    // A join or leave repeated (a retry) changes nothing.
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/2' }, T0, 0);
    expect(await eventsAfter(broker, c, Number(leave.id))).toEqual([]);
  });

  test('a join and a leave are delivered live like any event (the same envelope on the channel)', async () => {
    const { keys, presence } = isolated();
    const c = ch(`room:${uid()}`);
    // A hub's subscriber: SUBSCRIBE on one node, SSUBSCRIBE on a cluster (REDIS_CLUSTER=1).
    const sub = await connectSubscriber('presence-live');
    const got: string[] = [];
    const subscriber = new RedisSubscriber(sub, keys);
    subscriber.onMessage((_ch, m) => got.push(m));
    await subscriber.subscribe([c.channel]);
    try {
      await presence.lease('task:a', T0 + LEASE);
      await presence.join(c, { holder: 'task:a', connection: 'task:a/1', sub: 'bob' }, T0);
      await presence.leave(c, { holder: 'task:a', connection: 'task:a/1' }, T0, 0);
      await eventually(() => got.length === 2, 5_000, 'two live events');
      expect(got.map((m) => (JSON.parse(m) as Env).type)).toEqual(['presence.join', 'presence.leave']);
      expect((JSON.parse(got[0]) as Env).data).toEqual({ sub: 'bob' });
    } finally {
      sub.disconnect();
    }
  });

  test('grace: a reconnect within the grace period makes no event; after it, a sweep leaves the member', async () => {
    const { broker, presence } = isolated();
    const c = ch(`room:${uid()}`);
    await presence.lease('task:a', T0 + LEASE);
    await presence.lease('task:b', T0 + LEASE);
    await presence.join(c, { holder: 'task:a', connection: 'task:a/1', sub: 'cat' }, T0);
    const at = (await presence.snapshot(c)).position;
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/1' }, T0, GRACE);
    // In grace: still a member (with no connection), nothing said.
    expect((await presence.snapshot(c)).members).toEqual([{ sub: 'cat', connections: 0 }]);
    await presence.sweep(T0 + GRACE - 1, GRACE);
    expect(await eventsAfter(broker, c, at)).toEqual([]);
    // Back through another task within the grace: nothing said either.
    await presence.join(c, { holder: 'task:b', connection: 'task:b/9', sub: 'cat' }, T0 + 1000);
    await presence.sweep(T0 + GRACE + 1, GRACE);
    expect(await eventsAfter(broker, c, at)).toEqual([]);
    expect((await presence.snapshot(c)).members).toEqual([{ sub: 'cat', connections: 1 }]);
    // Gone for good: the sweep after the grace leaves it.
    await presence.leave(c, { holder: 'task:b', connection: 'task:b/9' }, T0 + 2000, GRACE);
    await presence.sweep(T0 + 2000 + GRACE - 1, GRACE);
    expect(await eventsAfter(broker, c, at)).toEqual([]);
    await presence.sweep(T0 + 2000 + GRACE, GRACE);
    expect((await eventsAfter(broker, c, at)).map((e) => [e.type, e.data.sub])).toEqual([['presence.leave', 'cat']]);
    expect((await presence.snapshot(c)).members).toEqual([]);
  });

  test('a holder whose lease ended (a killed task) loses its connections at the next sweep, then its members leave after the grace; a holder that renews after it was swept is told so', async () => {
    const { broker, keys, presence } = isolated();
    const a = ch(`room:${uid()}`);
    const b = ch(`room:${uid()}`);
    await presence.lease('task:dead', T0 + LEASE);
    await presence.lease('task:live', T0 + LEASE);
    await presence.join(a, { holder: 'task:dead', connection: 'task:dead/1', sub: 'ann' }, T0);
    await presence.join(b, { holder: 'task:dead', connection: 'task:dead/2', sub: 'bob' }, T0);
    await presence.join(b, { holder: 'task:live', connection: 'task:live/1', sub: 'bob' }, T0);
    const at = [(await presence.snapshot(a)).position, (await presence.snapshot(b)).position];
    // task:live renews, task:dead does not. Before the lease end nothing happens.
    expect(await presence.renew('task:live', T0 + 20_000 + LEASE)).toBe(true);
    await presence.sweep(T0 + LEASE, GRACE);
    expect((await presence.snapshot(a)).members).toEqual([{ sub: 'ann', connections: 1 }]);
    // Past it: its connections go; ann (no other connection) waits out the grace, bob stays (task:live holds him).
    await presence.sweep(T0 + LEASE + 1, GRACE);
    expect((await presence.snapshot(a)).members).toEqual([{ sub: 'ann', connections: 0 }]);
    expect((await presence.snapshot(b)).members).toEqual([{ sub: 'bob', connections: 1 }]);
    await presence.sweep(T0 + LEASE + 1 + GRACE, GRACE);
    expect((await eventsAfter(broker, a, at[0])).map((e) => [e.type, e.data.sub])).toEqual([['presence.leave', 'ann']]);
    expect(await eventsAfter(broker, b, at[1])).toEqual([]);
    // The dead holder's bookkeeping is gone; a renewal now says the lease was lost (the holder starts a new generation).
    expect(await presence.renew('task:dead', T0 + 2 * LEASE)).toBe(false);
    expect(await redis.keys(`${keys.prefix}*task:dead*`)).toEqual([]);
  });

  test('a holder that renews after the sweep listed its ended lease, before the sweep ends it, keeps its lease and its members', async () => {
    const keys = new Keys(`pr${uid()}:`);
    const config = { keyPrefix: keys.prefix, namespaces: NAMESPACES };
    const c = ch(`room:${uid()}`);
    // The renewal lands between ENDED (which lists the holder) and END (which would end it): injected when END is sent.
    let renewed = false;
    const racing = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === 'evalsha') {
          return async (sha: string, ...rest: (string | number)[]) => {
            if (sha === PRESENCE_SCRIPTS.END.sha && !renewed) {
              renewed = true;
              expect(await new RedisPresence(redis, config).renew('task:slow', T0 + 2 * LEASE)).toBe(true);
            }
            return target.evalsha(sha, ...(rest as [number, ...string[]]));
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const presence = new RedisPresence(racing, config);
    await presence.lease('task:slow', T0 + LEASE);
    await presence.join(c, { holder: 'task:slow', connection: 'task:slow/1', sub: 'ann' }, T0);
    await presence.sweep(T0 + LEASE + 1, GRACE);
    expect(renewed).toBe(true);
    expect((await presence.snapshot(c)).members).toEqual([{ sub: 'ann', connections: 1 }]);
    expect(await presence.renew('task:slow', T0 + 3 * LEASE)).toBe(true);
  });

  test('info is size-limited: a larger info is refused with a clear error and nothing is written', async () => {
    const { keys, presence } = isolated();
    const c = ch(`room:${uid()}`);
    await presence.lease('task:a', T0 + LEASE);
    const before = await allKeys(redis, `${keys.prefix}*`);
    await expect(presence.join(c, { holder: 'task:a', connection: 'task:a/1', sub: 'ann', info: { name: 'x'.repeat(2000) } }, T0)).rejects.toMatchObject({ code: 'payload_too_large' });
    expect(await allKeys(redis, `${keys.prefix}*`)).toEqual(before);
  });

  test('count mode: joins and leaves append no event; a settle appends one presence.count per interval per channel when the count changed, whatever the number of joins', async () => {
    const { broker, presence } = isolated();
    const c = ch(`crowd:${uid()}`);
    await presence.lease('task:a', T0 + LEASE);
    for (let i = 0; i < 50; i++) await presence.join(c, { holder: 'task:a', connection: `task:a/${i}`, sub: `u${i % 40}` }, T0);
    const count = async (from: number) => (await broker.replay([{ channel: c, cursor: from }], { maxEvents: 1000, maxBytes: 1e7, entryBytes: 33_000 }) as { events: string[] }).events.map((e) => JSON.parse(e) as Env);
    expect(await count(0)).toEqual([]);
    await presence.sweep(T0, GRACE);
    const first = await count(0);
    expect(first.map((e) => [e.type, e.data])).toEqual([['presence.count', { count: 40 }]]);
    // More joins and leaves within the interval: nothing until it passed, then one event with the count then.
    for (let i = 50; i < 60; i++) await presence.join(c, { holder: 'task:a', connection: `task:a/${i}`, sub: `v${i}` }, T0 + 10);
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/0' }, T0 + 10, 0);
    await presence.sweep(T0 + PRESENCE_COUNT_INTERVAL_MS - 1, GRACE);
    expect(await count(Number(first[0].id))).toEqual([]);
    await presence.sweep(T0 + PRESENCE_COUNT_INTERVAL_MS, GRACE);
    const second = await count(Number(first[0].id));
    expect(second.map((e) => [e.type, e.data])).toEqual([['presence.count', { count: 50 }]]);
    // Unchanged count: no event.
    await presence.join(c, { holder: 'task:a', connection: 'task:a/99' , sub: 'u1' }, T0 + 20);
    await presence.sweep(T0 + 3 * PRESENCE_COUNT_INTERVAL_MS, GRACE);
    expect(await count(Number(second[0].id))).toEqual([]);
    expect((await presence.snapshot(c)).count).toBe(50);
  });

  test('count mode: a snapshot is the number of members and the position, read without the members (flat in the room’s size)', async () => {
    const { presence } = isolated();
    const c = ch(`crowd:${uid()}`);
    await presence.lease('task:a', T0 + LEASE);
    for (let i = 0; i < 1000; i++) await presence.join(c, { holder: 'task:a', connection: `task:a/${i}`, sub: `u${i}` }, T0);
    await presence.leave(c, { holder: 'task:a', connection: 'task:a/0' }, T0, GRACE);
    const snap = await presence.snapshot(c);
    // The member in grace still counts, as in the presence.count events (HLEN of the member set).
    expect(snap).toEqual({ members: [], count: 1000, position: snap.position });
    expect(presenceJson(c, snap)).toBe(JSON.stringify({ channel: c.channel, count: 1000, position: String(snap.position) }));
  });

  test.each([1, 2, 3, 4, 5, 6, 7, 8])('random joins, leaves, graces and dead holders: every snapshot is the membership, and snapshot + later events the final one (seed %i)', async (seed) => {
    const { broker, presence } = isolated();
    const channels = [ch(`room:${uid()}`), ch(`room:${uid()}`)];
    await randomRun(redis, broker, presence, channels, seed);
  });
});

describe('presence on a three-primary Redis Cluster (keys in the channel slot)', () => {
  const local = useRedisCluster();
  let cluster: Cluster;
  beforeAll(() => {
    cluster = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  });
  afterAll(() => cluster.disconnect());

  test.each([11, 12, 13])('the random run on channels of every shard (seed %i)', async (seed) => {
    const keys = new Keys(`pr${uid()}:`);
    const config = { keyPrefix: keys.prefix, namespaces: NAMESPACES };
    const broker = new RedisChannelBroker(cluster as unknown as Redis, config);
    const presence = new RedisPresence(cluster as unknown as Redis, config);
    // Channels until every primary owns one.
    const channels: ParsedChannel[] = [];
    const owners = new Set<number>();
    while (owners.size < 3) {
      const c = ch(`room:${uid()}`);
      const owner = local.cluster.primaryOf(Number(await cluster.cluster('KEYSLOT', keys.history(c.channel)))).port;
      if (!owners.has(owner)) {
        owners.add(owner);
        channels.push(c);
      }
    }
    await randomRun(cluster as unknown as RedisLike, broker, presence, channels, seed);
  });
});
