import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { PresenceKeys, RedisPresence } from '../../core/redis/presence';
import { PRESENCE_GRACE_MS } from '../../core/presence';
import { OCCUPANCY_LEASE_MS } from '../../service/occupancy';
import { WsClient } from './ws-support';
import { coreConfig, eventually, RawStream, spawnTask, startService, TEST_NAMESPACES, ticketFor, uid, useRedis } from '../support/harness';

/**
 * Issue 24, items 2 (joins from the sessions of a task) and 3 (leaves within a bound): the sessions of a task join the
 * presence of their channels and leave it when they end; a task killed with SIGKILL stops renewing its lease, and a
 * live task's sweep takes its members out within lease + tick + grace. Sweeps are driven by the test on a virtual
 * clock (`presence.tick()`), so nothing here waits for a timer.
 */
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
  crowd: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'count' },
};
let redis: Redis;
const cleanup = useRedis((r) => (redis = r));
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');

function env(prefix: string): Record<string, string> {
  return { KEY_PREFIX: prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), METRICS_INTERVAL_MS: '0' };
}

async function openStream(base: string, prefix: string, sub: string, channel: string, path = 'events'): Promise<RawStream> {
  const ticket = await ticketFor(redis, sub, [channel], 'sse', coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES }));
  const s = new RawStream(`${base}/${path}?channels=${channel}&ticket=${ticket}`);
  cleanup.push(() => s.close());
  if (path === 'events') await s.until(ready);
  return s;
}

/** A task in this process on a fresh key prefix, its timers off and its clock the returned one (tests drive the ticks). */
async function startTask() {
  const prefix = `pt${uid()}:`;
  const clock = { now: Date.now() };
  const { service, base } = await startService(env(prefix), { eventTimers: false, now: () => clock.now });
  cleanup.push(() => service.close());
  return { prefix, clock, service, base };
}

function members(presence: RedisPresence, channel: string): Promise<[string, number][]> {
  return presence.snapshot(parseChannel(channel, NAMESPACES)).then((s) => s.members.map((m) => [m.sub, m.connections] as [string, number]));
}

test("a task's SSE streams join the channel's presence (one member per user), and leave it after the grace when they close", async () => {
  const { prefix, clock, service, base } = await startTask();
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
  const room = `room:${uid()}`;
  const chat = `chat:${uid()}`;
  const a1 = await openStream(base, prefix, 'ann', room);
  const a2 = await openStream(base, prefix, 'ann', room);
  const b = await openStream(base, prefix, 'bob', room);
  await openStream(base, prefix, 'cat', chat);
  await eventually(async () => JSON.stringify(await members(presence, room)) === JSON.stringify([['ann', 2], ['bob', 1]]), 10_000, 'ann (two streams) and bob present');
  // A namespace without presence keeps nothing.
  expect(await members(presence, chat)).toEqual([]);
  expect(await redis.keys(`${prefix}pc:{${chat}}`)).toEqual([]);
  // bob hears ann and himself join, in the channel's stream.
  await b.until(() => b.text.includes('"sub":"bob"'));
  a1.close();
  await eventually(async () => JSON.stringify(await members(presence, room)) === JSON.stringify([['ann', 1], ['bob', 1]]), 10_000, 'one of ann’s streams gone');
  a2.close();
  await eventually(async () => JSON.stringify(await members(presence, room)) === JSON.stringify([['ann', 0], ['bob', 1]]), 10_000, 'ann in grace');
  expect(b.text).not.toContain('presence.leave');
  clock.now += PRESENCE_GRACE_MS;
  await service.presence!.tick();
  expect(await members(presence, room)).toEqual([['bob', 1]]);
  await b.until(() => b.text.includes('presence.leave'));
  expect(b.text).toMatch(/"type":"presence.leave","data":\{"sub":"ann"\}/);
}, 30_000);

test('a task killed with SIGKILL: its members leave within lease + tick + grace of its last renewal; members it shared with a live task stay', async () => {
  const prefix = `pt${uid()}:`;
  const keys = new PresenceKeys(prefix);
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
  const clock = { now: Date.now() };
  const { service: live, base: liveBase } = await startService(env(prefix), { eventTimers: false, now: () => clock.now });
  cleanup.push(() => live.close());
  const { proc, base } = await spawnTask(env(prefix), cleanup);
  const room = `room:${uid()}`;
  await openStream(base, prefix, 'ann', room);
  await openStream(base, prefix, 'bob', room);
  const watcher = await openStream(liveBase, prefix, 'bob', room);
  await eventually(async () => JSON.stringify(await members(presence, room)) === JSON.stringify([['ann', 1], ['bob', 2]]), 10_000, 'ann and bob present');
  const [child] = (await redis.zrange(keys.presenceLeases, 0, -1)).filter((h) => h !== live.presence!.holder);
  expect(child).toMatch(/^task:[0-9a-f]{12}~1$/);

  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGKILL');
  const killedAt = Date.now();
  await exited;
  // The child's lease ends at most one lease after the kill (it renewed at the latest then, by its own clock).
  const leaseEnd = Number(await redis.zscore(keys.presenceLeases, child));
  expect(leaseEnd).toBeLessThanOrEqual(killedAt + OCCUPANCY_LEASE_MS);
  // A sweep while the lease runs changes nothing.
  clock.now = leaseEnd;
  await live.presence!.tick();
  expect(await members(presence, room)).toEqual([['ann', 1], ['bob', 2]]);
  // The first sweep after it (the next tick on any live task): the dead task's connections go; ann waits out the grace,
  // bob stays (the live task holds him).
  clock.now = leaseEnd + 1;
  await live.presence!.tick();
  expect(await members(presence, room)).toEqual([['ann', 0], ['bob', 1]]);
  // The sweep after the grace: ann leaves, and the live task's reader hears it.
  clock.now = leaseEnd + 1 + PRESENCE_GRACE_MS;
  await live.presence!.tick();
  expect(await members(presence, room)).toEqual([['bob', 1]]);
  await watcher.until(() => watcher.text.includes('presence.leave'));
  expect(watcher.text).toMatch(/"type":"presence.leave","data":\{"sub":"ann"\}/);
  expect(await redis.zscore(keys.presenceLeases, child)).toBeNull();
}, 60_000);

/** Snapshot + the `presence.*` events above its position, from an SSE stream's text (the client's rule). */
function membershipOf(s: RawStream, channel: string): string[] | undefined {
  const evs = s.events();
  const at = evs.findIndex((e) => e.event === 'presence' && (JSON.parse(e.data) as { channel: string }).channel === channel);
  if (at < 0) return undefined;
  const snap = JSON.parse(evs[at].data) as { members: { sub: string }[]; position: string };
  const m = new Set(snap.members.map((x) => x.sub));
  for (const e of evs) {
    if (!e.event?.startsWith('presence.') || Number(JSON.parse(e.data).id) <= Number(snap.position)) continue;
    const sub = (JSON.parse(e.data) as { data: { sub: string } }).data.sub;
    if (e.event === 'presence.join') m.add(sub);
    else m.delete(sub);
  }
  return [...m].sort();
}

test('SSE: a stream of a presence channel starts with its snapshot (`event: presence`), and snapshot + the events above its position is the membership; /live answers a `presence` action for a subscribed channel', async () => {
  const { prefix, clock, service, base } = await startTask();
  const room = `room:${uid()}`;
  const ann = await openStream(base, prefix, 'ann', room);
  const bob = await openStream(base, prefix, 'bob', room);
  await eventually(() => JSON.stringify(membershipOf(bob, room)) === JSON.stringify(['ann', 'bob']), 10_000, "bob's view: ann and bob");
  await eventually(() => JSON.stringify(membershipOf(ann, room)) === JSON.stringify(['ann', 'bob']), 10_000, "ann's view: ann and bob");
  ann.close();
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
  await eventually(async () => JSON.stringify(await members(presence, room)) === JSON.stringify([['ann', 0], ['bob', 1]]), 10_000, 'ann in grace');
  clock.now += PRESENCE_GRACE_MS;
  await service.presence!.tick();
  await eventually(() => JSON.stringify(membershipOf(bob, room)) === JSON.stringify(['bob']), 10_000, "bob's view after ann left");

  const ticket = await ticketFor(redis, 'cat', [room], 'ws', coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES }));
  const ws = new WsClient(`${base.replace(/^http/, 'ws')}/live?ticket=${ticket}`);
  cleanup.push(() => ws.ws.terminate());
  await ws.opened;
  const other = `room:${uid()}`;
  ws.ws.send(JSON.stringify({ action: 'presence', channel: other }));
  await ws.until((c) => c.frames.some((f) => f.type === 'error'));
  expect(ws.frames.find((f) => f.type === 'error')).toMatchObject({ error: { code: 'channel_not_granted' } });
  await eventually(async () => {
    ws.ws.send(JSON.stringify({ action: 'presence', channel: room }));
    await ws.until((c) => c.frames.some((f) => f.type === 'presence'));
    const f = ws.frames.filter((x) => x.type === 'presence').pop() as { members: { sub: string }[] };
    ws.frames.length = 0;
    return JSON.stringify(f.members.map((m) => m.sub)) === JSON.stringify(['bob', 'cat']);
  }, 10_000, 'the /live snapshot: bob and cat');
}, 30_000);

test('count mode on SSE: the snapshot is a count, then coalesced `presence.count` events (no join or leave events)', async () => {
  const { prefix, service, base } = await startTask();
  const crowd = `crowd:${uid()}`;
  const first = await openStream(base, prefix, 'u0', crowd);
  await first.until(() => first.events().some((e) => e.event === 'presence'));
  for (let i = 1; i < 6; i++) await openStream(base, prefix, `u${i}`, crowd);
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES });
  await eventually(async () => (await presence.snapshot(parseChannel(crowd, NAMESPACES))).count === 6, 10_000, 'six members');
  await service.presence!.settle();
  await first.until(() => first.events().some((e) => e.event === 'presence.count'));
  const counts = first.events().filter((e) => e.event === 'presence.count').map((e) => (JSON.parse(e.data) as { data: { count: number } }).data.count);
  expect(counts).toEqual([6]);
  expect(first.text).not.toContain('presence.join');
  const snap = JSON.parse(first.events().find((e) => e.event === 'presence')!.data) as Record<string, unknown>;
  expect(Object.keys(snap).sort()).toEqual(['channel', 'count', 'position']);
}, 30_000);
