import calculateSlot from 'cluster-key-slot';
import Redis, { Cluster } from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { CoreConfig, Namespaces } from '../../core/config';
import { addSubscription, registerConnection, removeConnection, removeSubscription } from '../../core/connections';
import { claimCursor, preparePublish, publish, replay } from '../../core/events';
import { revokeUser } from '../../core/revocation';
import { BROKER_SCRIPTS } from '../../core/redis/broker';
import { CHANNEL_SCRIPTS, RedisChannelBroker } from '../../core/redis/channel-broker';
import { isCluster, type Script } from '../../core/redis/client';
import { Keys } from '../../core/redis/keys';
import { PRESENCE_COUNT_INTERVAL_MS, PRESENCE_SCRIPTS, RedisPresence } from '../../core/redis/presence';
import * as registryScripts from '../../core/redis/scripts';
import { issueTicket, redeemTicket } from '../../core/tickets';
import { RedisServer } from '../../local/redis';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid, useRedisCluster } from '../support/harness';

/**
 * Issue 23, item 1: every Lua script touches keys of one hash slot, so it runs on a Redis Cluster, and declares every
 * key it touches. Publish, replay and claim run on positions per channel (`CHANNEL_*`, core/redis/channel-broker.ts,
 * issue 23 item 2): one channel's slot per script; the WebSocket connection registry's floors are the channels'
 * positions, read beside each channel's subscriber set (`CHANNEL_JOIN`), and its record and user set are changed by
 * scripts of their own (DESIGN "Redis Cluster: what runs single-slot today"). No exception is left.
 *
 * Part 1 runs every operation that uses a script against the one-node Redis, records each script call's keys and
 * asks the local cluster for their slots (CLUSTER KEYSLOT). Part 2 runs the single-slot operations on the cluster
 * itself, which refuses a script that declares keys of two slots (CROSSSLOT) or reaches an undeclared key of another
 * slot. Part 3 (issue 24: presence, whose deployment-wide keys share one slot, so the cluster would not refuse an
 * undeclared one) watches a private redis-server with MONITOR and checks that every key each script call touches is
 * one it declared.
 */
const local = useRedisCluster();

/** Presence's scripts, named `PRESENCE_…` here (their own names, e.g. `JOIN`, say little beside the others). */
const PRESENCE = Object.fromEntries(Object.entries(PRESENCE_SCRIPTS).map(([name, s]) => [`PRESENCE_${name}`, s]));
const SCRIPTS = Object.entries({ ...registryScripts, ...BROKER_SCRIPTS, ...CHANNEL_SCRIPTS, ...PRESENCE }).filter((e): e is [string, Script] => typeof (e[1] as Script).sha === 'string');
/** Every script by SHA-1 (EVALSHA) and by source (EVAL, after NOSCRIPT). */
const ALL = new Map(SCRIPTS.map(([name, s]) => [s.sha, name]));
const SOURCES = new Map(SCRIPTS.map(([name, s]) => [s.source, name]));

interface Call {
  readonly script: string;
  readonly keys: string[];
}

/**
 * A real connection whose script calls are recorded (name and KEYS), everything else passed through. With `mark`, each
 * call is bracketed by `ECHO audit:begin:N` and `ECHO audit:end:N` on that connection (awaited), so MONITOR shows which
 * commands each call ran.
 */
function recording(redis: Redis, mark?: Redis): { redis: Redis; calls: Call[] } {
  const calls: Call[] = [];
  // Marked calls run one at a time (an operation may run several scripts at once), so their markers do not interleave.
  let queue: Promise<unknown> = Promise.resolve();
  const proxy = new Proxy(redis, {
    get(target, prop, receiver) {
      if (prop === 'evalsha' || prop === 'eval') {
        return (first: string, numKeys: number, ...rest: (string | number)[]) => {
          const name = prop === 'eval' ? SOURCES.get(first) : ALL.get(first);
          const call = () => (target[prop] as (...a: unknown[]) => Promise<unknown>).call(target, first, numKeys, ...rest);
          const n = calls.push({ script: name ?? `unknown script ${String(first).slice(0, 40)}`, keys: rest.slice(0, numKeys).map(String) }) - 1;
          if (!mark) return call();
          const marked = queue.then(async () => {
            await mark.echo(`audit:begin:${n}`);
            try {
              return await call();
            } finally {
              await mark.echo(`audit:end:${n}`);
            }
          });
          queue = marked.catch(() => undefined);
          return marked;
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { redis: proxy, calls };
}

/** Every operation that runs a script, once, on channels `a` and `b` for user `sub`. */
async function everyOperation(redis: Redis, sub: string, a: string, b: string): Promise<void> {
  const config = coreConfig({ userTicketsPerMinute: 100, userConnections: 10, userPublishPerMinute: 100, userNewChannelsPerHour: 100, userRetainedBytes: 1_000_000 });
  const deps = { redis, config };
  const user = { kind: 'user', sub } as const;
  await publish({ channel: a, type: 't', data: 1, idempotencyKey: `k-${uid()}` }, { kind: 'server', principal: 'test' }, deps);
  await publish({ channel: b, type: 't', data: 2 }, user, deps, { channels: [b], byBackend: false });
  await replay([parseChannel(a, TEST_NAMESPACES), parseChannel(b, TEST_NAMESPACES)], [1, 1], deps);
  await claimCursor(parseChannel(a, TEST_NAMESPACES), 1, deps);
  // The broker on positions per channel (issue 23, item 2): one channel's slot per script.
  const positions = new RedisChannelBroker(redis, config);
  const [pa, pb] = [parseChannel(a, TEST_NAMESPACES), parseChannel(b, TEST_NAMESPACES)];
  const [ca, cb] = await positions.positions([pa, pb]);
  await positions.publish({ channel: pa, head: `{"channel":"${a}","id":"`, tail: '","type":"t","data":1,"ts":', idempotency: { principal: 'test', key: `k-${uid()}`, eventHash: 'h' } });
  await positions.replay([{ channel: pa, cursor: ca }, { channel: pb, cursor: cb }], { maxEvents: 10, maxBytes: 100_000, entryBytes: 1000 });
  await positions.claim({ channel: pa, cursor: ca });
  const { ticket } = await issueTicket({ identity: user, channels: [a], transport: 'sse' }, deps);
  await redeemTicket(ticket, 'sse', deps);
  const conn = `c-${uid()}`;
  await registerConnection(conn, { sub, grant: [a, b], channels: [a] }, deps);
  await addSubscription(conn, b, deps);
  await removeSubscription(conn, a, deps);
  await removeConnection(conn, deps);
  await revokeUser(sub, deps);
}

/** Presence's namespaces (issue 24) beside the others: a members channel and a count channel. */
const PRESENCE_NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
  crowd: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'count' },
};
/** A config of its own key prefix: a sweep here must not take the holders of other suites sharing the Redis. */
const presenceConfig = (): CoreConfig => coreConfig({ keyPrefix: `ss${uid()}:`, namespaces: PRESENCE_NAMESPACES });

/**
 * Every presence operation (core/redis/presence.ts), on a clock of its own: leases taken and renewed, joins in both
 * modes, a snapshot, a leave into grace, the settle that ends it and announces a count, the sweep of two holders whose
 * lease ended (their channels dropped) and a holder ended at once.
 */
async function everyPresenceOperation(redis: Redis, config: CoreConfig, channels = 2): Promise<void> {
  const presence = new RedisPresence(redis, config, { sharded: isCluster(redis) });
  const rooms = Array.from({ length: channels }, () => parseChannel(`room:${uid()}`, PRESENCE_NAMESPACES));
  const crowds = Array.from({ length: channels }, () => parseChannel(`crowd:${uid()}`, PRESENCE_NAMESPACES));
  const t0 = Date.now();
  const lease = 30_000;
  const grace = 5_000;
  const [a, b, c] = [`task:${uid()}~1`, `task:${uid()}~1`, `gw:${uid()}`];
  expect(await presence.lease(a, t0 + lease)).toBe(true);
  expect(await presence.renew(a, t0 + lease)).toBe(true);
  await presence.lease(b, t0 + lease);
  for (const [i, ch] of [...rooms, ...crowds].entries()) {
    await presence.join(ch, { holder: a, connection: `${a}/${i}`, sub: 'ann', info: { name: 'Ann' } }, t0);
    await presence.join(ch, { holder: b, connection: `${b}/${i}`, sub: `bob${i}` }, t0);
  }
  expect((await presence.snapshot(rooms[0])).members.map((m) => m.sub)).toEqual(['ann', 'bob0']);
  await presence.leave(rooms[0], { holder: a, connection: `${a}/0` }, t0, grace);
  await presence.settle(t0 + grace + PRESENCE_COUNT_INTERVAL_MS);
  expect((await presence.snapshot(rooms[0])).members.map((m) => m.sub)).toEqual(['bob0']);
  await presence.sweep(t0 + lease + 1, grace);
  await presence.settle(t0 + lease + grace + PRESENCE_COUNT_INTERVAL_MS + 2);
  for (const ch of [...rooms, ...crowds]) expect((await presence.snapshot(ch)).members).toEqual([]);
  await presence.lease(c, t0 + 10 * lease);
  await presence.join(rooms[0], { holder: c, connection: `${c}/0`, sub: 'cat' }, t0);
  await presence.endHolder(c, t0, 0);
  expect((await presence.snapshot(rooms[0])).members).toEqual([]);
}

describe('key slots of every script', () => {
  let redis: Redis;
  let admin: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
    admin = new Redis(local.cluster.nodes[0].port, '127.0.0.1');
  });
  afterAll(() => {
    redis.disconnect();
    admin.disconnect();
  });
  const slot = async (key: string) => Number(await admin.cluster('KEYSLOT', key));

  test('each script keeps its keys in one slot', async () => {
    const rec = recording(redis);
    await everyOperation(rec.redis, `u-${uid()}`, `chat:${uid()}`, `chat:${uid()}`);
    await everyPresenceOperation(rec.redis, presenceConfig());
    const seen = new Set(rec.calls.map((c) => c.script));
    expect([...seen].filter((s) => s.startsWith('unknown'))).toEqual([]);
    const spans: string[] = [];
    for (const call of rec.calls) {
      const slots = new Set(await Promise.all(call.keys.map(slot)));
      if (slots.size > 1) spans.push(`${call.script}: ${call.keys.join(' ')} in ${slots.size} slots`);
    }
    expect(spans).toEqual([]);
    // Every script was exercised, so a new one cannot slip past this test.
    expect([...ALL.values()].filter((n) => !seen.has(n))).toEqual([]);
  });
});

describe('on the cluster', () => {
  let cluster: Cluster;
  beforeAll(() => {
    cluster = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  });
  afterAll(() => cluster.disconnect());

  test('tickets, their rate limit, redemption with the revocation epoch, revocation and cursor claims run on a cluster', async () => {
    const config = coreConfig({ userTicketsPerMinute: 100 });
    const deps = { redis: cluster as unknown as Redis, config };
    // Several users and tickets: their keys land on different shards, so an undeclared or cross-slot key would be refused.
    for (let i = 0; i < 6; i++) {
      const sub = `u-${uid()}`;
      const { ticket } = await issueTicket({ identity: { kind: 'user', sub }, channels: [`chat:${uid()}`], transport: 'sse' }, deps);
      const grant = await redeemTicket(ticket, 'sse', deps);
      expect(grant.sub).toBe(sub);
      await revokeUser(sub, deps);
      await expect(issueTicket({ identity: { kind: 'user', sub }, channels: [`chat:${uid()}`], transport: 'sse' }, deps).then((t) => redeemTicket(t.ticket, 'sse', deps))).resolves.toMatchObject({ sub });
    }
    // A cursor of a channel without any key (its events are gone): reset, continue from 0, in the channel's slot.
    await expect(claimCursor(parseChannel(`chat:${uid()}`, TEST_NAMESPACES), 1, deps)).resolves.toEqual({ reset: true, position: 0 });
  });

  test('positions per channel: publish, replay, claim and positions run on the cluster, every script in one channel\'s slot', async () => {
    const config = coreConfig({ userPublishPerMinute: 100, userNewChannelsPerHour: 100, userRetainedBytes: 1_000_000 });
    const broker = new RedisChannelBroker(cluster as unknown as Redis, config, { sharded: true });
    const sub = `u-${uid()}`;
    // Several channels: their slots fall on different shards, so a cross-slot or undeclared key would be refused.
    const channels = Array.from({ length: 6 }, () => parseChannel(`chat:${uid()}`, TEST_NAMESPACES));
    const start = await broker.positions(channels);
    const ids: string[] = [];
    for (const c of channels) {
      const { head, tail } = preparePublish({ channel: c.channel, type: 't', data: 1 }, { kind: 'user', sub }, config, { channels: [c.channel], byBackend: false });
      const r = await broker.publish({ channel: c, head, tail, user: { sub, publishesPerMinute: 100, newChannelsPerHour: 100, retainedBytes: 1_000_000 } });
      if (r.kind !== 'published') throw new Error(r.kind);
      ids.push(r.id);
    }
    const page = await broker.replay(channels.map((channel, i) => ({ channel, cursor: start[i] })), { maxEvents: 100, maxBytes: 1_000_000, entryBytes: 33_000 });
    expect(page).toMatchObject({ resets: channels.map(() => false), positions: ids.map(Number), more: false });
    await expect(broker.claim({ channel: channels[0], cursor: Number(ids[0]) })).resolves.toEqual({ reset: false, position: Number(ids[0]) });
    expect(await cluster.get(new Keys('rt:').userPublishes(sub))).toBe('6');
  });

  test('the WebSocket registry runs on the cluster: register, subscribe, unsubscribe and remove over channels on every shard, each floor the channel\'s own position', async () => {
    const config = coreConfig({ userConnections: 4, maxChannelsPerConnection: 8 });
    const deps = { redis: cluster as unknown as Redis, config };
    const keys = new Keys('rt:');
    const broker = new RedisChannelBroker(cluster as unknown as Redis, config, { sharded: true });
    // A channel on each of the three shards (by the primary that owns its slot), and one more.
    const byPrimary = new Map<number, string>();
    while (byPrimary.size < 3) {
      const c = `chat:${uid()}`;
      const port = local.cluster.primaryOf(calculateSlot(keys.channelSubscribers(c))).port;
      if (!byPrimary.has(port)) byPrimary.set(port, c);
    }
    const channels = [...byPrimary.values(), `chat:${uid()}`];
    const parsed = channels.map((c) => parseChannel(c, TEST_NAMESPACES));
    // Each channel gets events of its own, so the positions differ per channel.
    for (const p of parsed) {
      const { head, tail } = preparePublish({ channel: p.channel, type: 't', data: 1 }, { kind: 'server', principal: 'test' }, config);
      await broker.publish({ channel: p, head, tail });
    }
    const positions = await broker.positions(parsed);
    const sub = `u-${uid()}`;
    const conn = `c-${uid()}`;
    const [first, ...later] = channels;
    const floors = await registerConnection(conn, { sub, grant: channels, channels: [first] }, deps);
    expect([...floors]).toEqual([[first, positions[0]]]);
    for (const [i, c] of later.entries()) {
      await expect(addSubscription(conn, c, deps)).resolves.toEqual({ floor: positions[i + 1], added: true });
      // Again: kept, with its floor.
      await expect(addSubscription(conn, c, deps)).resolves.toEqual({ floor: positions[i + 1], added: false });
    }
    for (const [i, c] of channels.entries()) expect(await cluster.smembers(keys.channelSubscribers(c))).toEqual([`${conn}|${positions[i]}`]);
    expect(await cluster.smembers(keys.userConnections(sub))).toEqual([conn]);
    await expect(removeSubscription(conn, later[0], deps)).resolves.toBe(true);
    expect(await cluster.exists(keys.channelSubscribers(later[0]))).toBe(0);
    await expect(removeConnection(conn, deps)).resolves.toBe(true);
    for (const c of channels) expect(await cluster.exists(keys.channelSubscribers(c))).toBe(0);
    expect([await cluster.exists(keys.userConnections(sub)), await cluster.exists(keys.connection(conn))]).toEqual([0, 0]);
  });

  test('a publish by a user through core/events.ts runs on the cluster: user limits on the user slot, the event on its channel\'s, replayed from there', async () => {
    const config = coreConfig({ userPublishPerMinute: 100, userNewChannelsPerHour: 100, userRetainedBytes: 1_000_000 });
    const deps = { redis: cluster as unknown as Redis, config };
    const ch = `chat:${uid()}`;
    const sub = `u-${uid()}`;
    const r = await publish({ channel: ch, type: 't', data: 1 }, { kind: 'user', sub }, deps, { channels: [ch], byBackend: false });
    expect(r.duplicate).toBe(false);
    // USER_RESERVE ran on the cluster (its three keys in the user's slot) and counted the event and the new channel.
    const keys = new Keys('rt:');
    expect(await cluster.get(keys.userPublishes(sub))).toBe('1');
    expect(await cluster.get(keys.userNewChannels(sub))).toBe('1');
    expect(Number(await cluster.get(keys.userRetained('chat', sub)))).toBeGreaterThan(0);
    const page = await replay([parseChannel(ch, TEST_NAMESPACES)], [0], deps);
    expect(page.events.map((e) => JSON.parse(e).id)).toEqual([r.id]);
    expect(page.positions).toEqual([Number(r.id)]);
  });

  test('presence: leases, joins in both modes, snapshots, leaves, settles, sweeps and an ended holder run on the cluster, over channels on every shard', async () => {
    await everyPresenceOperation(cluster as unknown as Redis, presenceConfig(), 6);
  });
});

describe('every key a script touches is declared (MONITOR on a private redis-server)', () => {
  let server: RedisServer;
  let redis: Redis;
  let mark: Redis;
  let watcher: Redis;
  let monitor: Redis;
  const log: { args: string[]; source: string }[] = [];
  beforeAll(async () => {
    server = await RedisServer.start();
    [redis, mark] = [new Redis(server.url), new Redis(server.url)];
    watcher = new Redis(server.url);
    monitor = await watcher.monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => log.push({ args, source }));
  });
  afterAll(async () => {
    for (const c of [redis, mark, watcher, monitor]) c?.disconnect();
    await server?.destroy();
  });

  test('each script call reaches only the keys it declared: every operation, presence included', async () => {
    const rec = recording(redis, mark);
    await everyOperation(rec.redis, `u-${uid()}`, `chat:${uid()}`, `chat:${uid()}`);
    await everyPresenceOperation(rec.redis, presenceConfig());
    await mark.echo('audit:done');
    for (let i = 0; i < 100 && !log.some((l) => l.args[1] === 'audit:done'); i++) await new Promise((r) => setTimeout(r, 50));
    // The commands the scripts ran (MONITOR shows them with source `lua`), by call, between the call's two markers.
    const inner = new Map<number, string[][]>();
    let current = -1;
    for (const l of log) {
      const m = l.args[0]?.toLowerCase() === 'echo' ? /^audit:(begin|end):(\d+)$/.exec(l.args[1] ?? '') : null;
      if (m) current = m[1] === 'begin' ? Number(m[2]) : -1;
      else if (l.source === 'lua' && current >= 0) inner.set(current, [...(inner.get(current) ?? []), l.args]);
    }
    expect(inner.size).toBeGreaterThan(0);
    const undeclared = new Set<string>();
    for (const [n, commands] of inner) {
      const declared = new Set(rec.calls[n].keys);
      for (const args of commands) {
        // PUBLISH names a channel, not a key: COMMAND GETKEYS has none for it.
        const keys = (await redis.call('COMMAND', 'GETKEYS', ...args).catch(() => [])) as string[];
        for (const k of keys) if (!declared.has(k)) undeclared.add(`${rec.calls[n].script}: ${args[0]} ${k}`);
      }
    }
    expect([...undeclared]).toEqual([]);
    // Every presence script ran here, so a new one cannot slip past.
    const seen = new Set(rec.calls.map((c) => c.script));
    expect(Object.keys(PRESENCE).filter((n) => !seen.has(n))).toEqual([]);
  });
});
