import type Redis from 'ioredis';
import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { PRESENCE_GRACE_MS } from '../../core/presence';
import { RedisPresence } from '../../core/redis/presence';
import { decodeCursor } from '../../client/src/cursor';
import { createClient, type Client, type ClientOptions, type Presence, type TicketAnswer, type TicketRequest, type Transport } from '../../client/src/index';
import { FakeClock, fakeClientOptions, FakeWebSocket, FakeWindow, openWs as open, settle, sseServer } from '../support/client-fakes';
import { nodeClient, Relay, until } from '../support/client-kit';
import { coreConfig, eventually, RawStream, startService, TEST_NAMESPACES, ticketFor, uid, useRedis } from '../support/harness';

/**
 * Issue 24, items 2 and 5: the long poll's presence snapshot and the client SDK's `presence(channel)`. The rule
 * (docs/DESIGN.md, "Presence"): a channel's `presence.*` events are kept until its snapshot arrives, those above the
 * snapshot's position are applied, and after a `reset` of the channel a new snapshot is taken. The rule's orderings are
 * driven frame by frame on a fake WebSocket (no server can be made to interleave them on cue); the transports, the
 * grace and a reset across a transport switch run against a real task and Redis.
 */

describe('the snapshot/position rule (a WebSocket the test drives)', () => {
  let clock: FakeClock;
  let client: Client | undefined;
  beforeEach(() => {
    clock = new FakeClock();
    FakeWebSocket.all = [];
  });
  afterEach(() => client?.close());

  const make = () => (client = createClient(fakeClientOptions(clock, new FakeWindow())));
  const ev = (id: string, type: string, data: unknown) => ({ channel: 'room:a', id, type, data, ts: 0 });
  const subs = (p: Presence) => p.members().map((m) => m.sub);
  /** The joins (+sub) and leaves (-sub) `p` tells, in order. */
  const told = (p: Presence) => {
    const seen: string[] = [];
    p.onJoin((m) => seen.push(`+${m.sub}`));
    p.onLeave((m) => seen.push(`-${m.sub}`));
    return seen;
  };

  it('events before the snapshot are kept; those above its position apply, those at or below do not; later events apply; joins and leaves are told', async () => {
    const c = make();
    const p = c.presence('room:a');
    const seen = told(p);
    const ws = await open();
    // The channel is subscribed first, then its snapshot asked for.
    expect(ws.actions()).toEqual(['subscribe', 'presence']);
    expect(ws.sent[1]).toEqual({ action: 'presence', channel: 'room:a' });
    expect(p.synced).toBe(false);
    // Events reach the client before the snapshot: bob's join and ann's leave are in it (150, 180 <= 200: ann came back
    // since), cat's join is not (250).
    ws.receive(ev('150', 'presence.join', { sub: 'bob' }));
    ws.receive(ev('180', 'presence.leave', { sub: 'ann' }));
    ws.receive(ev('250', 'presence.join', { sub: 'cat', info: { name: 'Cat' } }));
    expect(subs(p)).toEqual([]);
    ws.receive({ type: 'presence', channel: 'room:a', position: '200', members: [{ sub: 'ann', connections: 2 }, { sub: 'bob', connections: 0 }] });
    await settle();
    expect(p.synced).toBe(true);
    expect(subs(p).sort()).toEqual(['ann', 'bob', 'cat']);
    // bob is in his grace period (no connection): still a member.
    expect(p.members().find((m) => m.sub === 'bob')).toEqual({ sub: 'bob', connections: 0 });
    expect(p.members().find((m) => m.sub === 'cat')).toEqual({ sub: 'cat', info: { name: 'Cat' }, connections: 1 });
    expect(p.count()).toBe(3);
    ws.receive(ev('300', 'presence.leave', { sub: 'bob' }));
    ws.receive(ev('310', 'message', { text: 'hi' }));
    expect(subs(p).sort()).toEqual(['ann', 'cat']);
    expect(seen).toEqual(['+ann', '+bob', '+cat', '-bob']);
    // A second call is the same object.
    expect(c.presence('room:a')).toBe(p);
  });

  it('a reset of the channel takes a new snapshot: asked again, the members replaced, the difference told as joins and leaves', async () => {
    const c = make();
    const p = c.presence('room:a');
    const seen = told(p);
    const ws = await open();
    ws.receive({ type: 'presence', channel: 'room:a', position: '100', members: [{ sub: 'ann', connections: 1 }, { sub: 'bob', connections: 1 }] });
    await settle();
    expect(subs(p)).toEqual(['ann', 'bob']);
    ws.receive({ type: 'reset', channel: 'room:a' });
    await settle();
    expect(ws.sent.filter((f) => f.action === 'presence')).toHaveLength(2);
    expect(p.synced).toBe(false);
    // Until the new snapshot the old members stay; an event now is kept for it.
    expect(subs(p)).toEqual(['ann', 'bob']);
    ws.receive(ev('900', 'presence.join', { sub: 'dan' }));
    ws.receive({ type: 'presence', channel: 'room:a', position: '800', members: [{ sub: 'bob', connections: 1 }, { sub: 'cat', connections: 1 }] });
    await settle();
    expect(subs(p).sort()).toEqual(['bob', 'cat', 'dan']);
    expect(seen).toEqual(['+ann', '+bob', '+cat', '-ann', '+dan']);
  });

  it('a reconnect resumes by id without a new snapshot; a snapshot nobody asked for changes nothing', async () => {
    const c = make();
    const p = c.presence('room:a');
    let ws = await open();
    ws.receive({ type: 'presence', channel: 'room:a', position: '100', members: [{ sub: 'ann', connections: 1 }] });
    ws.receive(ev('120', 'presence.join', { sub: 'bob' }));
    await settle();
    ws.close();
    await settle();
    await clock.advance(2000);
    ws = await open('120');
    // Resumed after 120: no new snapshot asked.
    expect(ws.actions()).toEqual(['subscribe']);
    expect(ws.sent[0]).toMatchObject({ since: '120' });
    ws.receive(ev('130', 'presence.leave', { sub: 'ann' }));
    ws.receive({ type: 'presence', channel: 'room:a', position: '50', members: [] });
    expect(subs(p)).toEqual(['bob']);
  });

  it('SSE: the stream\'s snapshot applies; a reset after the stream went live reconnects it (a new stream sends a new snapshot), a reset in a new stream\'s replay waits for its snapshot', async () => {
    const sse = sseServer();
    const c = (client = createClient({ ...fakeClientOptions(clock, new FakeWindow()), transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events' }) }));
    const p = c.presence('room:a');
    const seen = told(p);
    await settle();
    const snapshot = (position: string, ...subs: string[]) => `event: presence\ndata: ${JSON.stringify({ channel: 'room:a', members: subs.map((sub) => ({ sub, connections: 1 })), position })}\n\n`;
    sse.send('id: 100\nevent: ready\ndata: {"cursor":"100"}\n\n');
    sse.send(snapshot('100', 'ann'));
    await settle();
    expect(subs(p)).toEqual(['ann']);
    sse.send('event: reset\ndata: {"channel":"room:a"}\n\n');
    await settle();
    expect(sse.urls).toHaveLength(2);
    expect(p.synced).toBe(false);
    // The new stream: its replay resets the channel again (before `ready`): no third stream, the snapshot comes.
    sse.send('event: reset\ndata: {"channel":"room:a"}\n\n');
    sse.send('id: 300\nevent: ready\ndata: {"cursor":"300"}\n\n');
    sse.send(snapshot('300', 'bob'));
    await settle();
    expect(sse.urls).toHaveLength(2);
    expect(subs(p)).toEqual(['bob']);
    expect(seen).toEqual(['+ann', '+bob', '-ann']);
  });

  it('WebSocket: an event whose `prev` is above the last one delivered (on API Gateway two producers’ posts may cross) waits for the missing one: both apply in the channel’s order, no new snapshot', async () => {
    const c = make();
    const p = c.presence('room:a');
    const ws = await open();
    const at = (id: string, prev: string, type: string, data: unknown) => ({ ...ev(id, type, data), prev });
    ws.receive({ type: 'presence', channel: 'room:a', position: '100', members: [{ sub: 'ann', connections: 1 }] });
    await settle();
    ws.receive(at('110', '100', 'message', { text: 'hi' }));
    ws.receive(at('120', '110', 'presence.join', { sub: 'bob' }));
    // cat's join (140) names 130, posted later by another producer: it waits.
    ws.receive(at('140', '130', 'presence.join', { sub: 'cat' }));
    await settle();
    expect(subs(p).sort()).toEqual(['ann', 'bob']);
    ws.receive(at('130', '120', 'presence.leave', { sub: 'bob' }));
    await settle();
    expect([subs(p).sort(), p.synced, ws.sent.filter((f) => f.action === 'presence').length]).toEqual([['ann', 'cat'], true, 1]);
  });

  it('SSE: an event whose `prev` is above what the members are known at (one was missed) takes a new snapshot; a snapshot below the missed event is asked again; events in order take none', async () => {
    const sse = sseServer();
    const c = (client = createClient({ ...fakeClientOptions(clock, new FakeWindow()), transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events' }) }));
    const p = c.presence('room:a');
    await settle();
    const at = (id: string, prev: string, type: string, data: unknown) => `event: m\ndata: ${JSON.stringify({ ...ev(id, type, data), prev })}\n\n`;
    const snapshot = (position: string, ...subs: string[]) => `event: presence\ndata: ${JSON.stringify({ channel: 'room:a', members: subs.map((sub) => ({ sub, connections: 1 })), position })}\n\n`;
    sse.send('id: 100\nevent: ready\ndata: {"cursor":"100"}\n\n');
    sse.send(snapshot('100', 'ann'));
    // In order (a message, then a join, each naming the one before): applied, no snapshot asked.
    sse.send(at('110', '100', 'message', { text: 'hi' }));
    sse.send(at('120', '110', 'presence.join', { sub: 'bob' }));
    await settle();
    expect([subs(p).sort(), sse.urls.length]).toEqual([['ann', 'bob'], 1]);
    // cat's join (140) names 130, which never came: a new snapshot (an SSE stream sends one when it starts: a new stream).
    sse.send(at('140', '130', 'presence.join', { sub: 'cat' }));
    await settle();
    expect([p.synced, sse.urls.length]).toEqual([false, 2]);
    // The new stream's snapshot is below the missed event (read before it): asked again.
    sse.send('id: 140\nevent: ready\ndata: {"cursor":"140"}\n\n');
    sse.send(snapshot('125', 'ann', 'bob'));
    await settle();
    expect([p.synced, sse.urls.length]).toEqual([false, 3]);
    sse.send('id: 140\nevent: ready\ndata: {"cursor":"140"}\n\n');
    sse.send(snapshot('140', 'ann', 'cat'));
    await settle();
    expect([p.synced, subs(p).sort()]).toEqual([true, ['ann', 'cat']]);
  });

  it('count mode: the snapshot is a count, then presence.count events set it', async () => {
    const c = make();
    const counts: number[] = [];
    const p = c.presence('room:a');
    p.onCount((n) => counts.push(n));
    const ws = await open();
    ws.receive(ev('150', 'presence.count', { count: 7 }));
    ws.receive({ type: 'presence', channel: 'room:a', position: '200', count: 5 });
    await settle();
    expect([p.count(), p.members()]).toEqual([5, []]);
    ws.receive(ev('250', 'presence.count', { count: 9 }));
    expect(counts).toEqual([5, 9]);
  });

  it('close() stops following and unsubscribes a channel only the presence had subscribed', async () => {
    const c = make();
    const p = c.presence('room:a');
    const ws = await open();
    p.close();
    await settle();
    // Its only channel gone, the connection ends.
    expect(ws.readyState).toBe(3);
    const q = c.presence('room:a');
    expect(q).not.toBe(p);
    await settle();
    expect(FakeWebSocket.all).toHaveLength(2);
    // A channel the app subscribed stays subscribed after the presence closes.
    await open();
    c.subscribe('room:b', { onEvent: () => undefined });
    c.presence('room:b').close();
    const ws3 = await open();
    expect(ws3.sent.filter((f) => f.action === 'subscribe').map((f) => f.channel).sort()).toEqual(['room:a', 'room:b']);
  });
});

const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' },
  crowd: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'count' },
  // Two events of history: a resume across three joins or leaves is reset.
  tiny: { subscribe: 'authenticated', publish: 'authenticated', historySize: 2, historyTtlSeconds: 600, presence: 'members' },
};

describe('presence against a real task and Redis', () => {
  let redis: Redis;
  const cleanup = useRedis((r) => (redis = r));
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  /** A task on a fresh key prefix, its timers off and its clock the test's (the grace runs out when the test says). */
  async function startTask() {
    const prefix = `cp${uid()}:`;
    const clock = { now: Date.now() };
    const config = coreConfig({ keyPrefix: prefix, namespaces: NAMESPACES });
    const { service, base } = await startService({ KEY_PREFIX: prefix, NAMESPACES_JSON: JSON.stringify(NAMESPACES), METRICS_INTERVAL_MS: '0' }, { eventTimers: false, now: () => clock.now });
    cleanup.push(() => service.close());
    /** Ends the grace of members whose last connection closed, as the settle of a running task does. */
    const graceOver = async () => {
      clock.now += PRESENCE_GRACE_MS + 1;
      await service.presence!.tick();
    };
    return { prefix, config, service, base, clock, graceOver };
  }

  function sdk(base: string, config: ReturnType<typeof coreConfig>, sub: string, transports: Transport[], o: Partial<ClientOptions> = {}): Client {
    const ticket = async (req: TicketRequest): Promise<TicketAnswer> => {
      const t = await ticketFor(redis, sub, req.channels, req.transport, config);
      return { ticket: t, sseUrl: o.sseUrl ? undefined : `${base}/events`, wsUrl: `${base.replace(/^http/, 'ws')}/live?ticket=${encodeURIComponent(t)}` };
    };
    const c = nodeClient({ ticket, transports, ...o });
    cleanup.push(() => c.close());
    return c;
  }

  test('long poll: `presence=1` answers the snapshots of its channels that keep presence, positioned at or above its events; without it, none', async () => {
    const { config, base } = await startTask();
    const room = `room:${uid()}`;
    const crowd = `crowd:${uid()}`;
    const chat = `chat:${uid()}`;
    const ann = new RawStream(`${base}/events?channels=${room}&ticket=${await ticketFor(redis, 'ann', [room], 'sse', config)}`);
    cleanup.push(() => ann.close());
    await ann.until(() => ann.text.includes('presence.join'));
    const poll = async (channels: string[], flag: boolean) => {
      const t = await ticketFor(redis, 'bob', channels, 'sse', config);
      const r = await fetch(`${base}/poll?channels=${channels.join(',')}&ticket=${t}&cursor=0&wait=0${flag ? '&presence=1' : ''}`);
      expect(r.status).toBe(200);
      return (await r.json()) as { events: { id: string; type: string }[]; presence?: { channel: string; members?: { sub: string; connections: number }[]; count?: number; position: string }[] };
    };
    const without = await poll([room], false);
    expect(without).not.toHaveProperty('presence');
    let b = await poll([chat, crowd, room], true);
    // bob's own poll joined too; its join may or may not be in the snapshot, but the snapshot is read after the answer's events.
    expect(b.presence!.map((s) => s.channel)).toEqual([crowd, room]);
    const [c, r] = b.presence!;
    expect(Object.keys(c).sort()).toEqual(['channel', 'count', 'position']);
    expect(Object.keys(r).sort()).toEqual(['channel', 'members', 'position']);
    expect(r.members!.map((m) => m.sub)).toContain('ann');
    for (const e of b.events) expect(BigInt(e.id) <= BigInt(r.position) || BigInt(e.id) <= BigInt(c.position)).toBe(true);
    await eventually(async () => {
      b = await poll([room], true);
      return JSON.stringify(b.presence![0].members!.map((m) => m.sub).sort()) === JSON.stringify(['ann', 'bob']);
    }, 10_000, 'bob in the snapshot');
    const roomEvents = b.events.filter((e) => e.type.startsWith('presence.'));
    expect(roomEvents.length).toBeGreaterThan(0);
    for (const e of roomEvents) expect(BigInt(e.id) <= BigInt(b.presence![0].position)).toBe(true);
  }, 30_000);

  /**
   * A client's long polls as its `fetch` sees them: the position (one channel) of the poll it waits on now, sent and not
   * answered, if any (not a first poll, `wait=0`, which answers at once).
   */
  function pollWatch(): { fetch: typeof fetch; waitingAt(): number | undefined } {
    let waiting: URL | undefined;
    const f: typeof fetch = async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.pathname !== '/poll') return fetch(input, init);
      waiting = url;
      try {
        return await fetch(input, init);
      } finally {
        if (waiting === url) waiting = undefined;
      }
    };
    return { fetch: f, waitingAt: () => (waiting && !waiting.searchParams.has('wait') ? decodeCursor(waiting.searchParams.get('cursor'), 1)?.[0] : undefined) };
  }

  test.each([['ws'], ['sse'], ['poll']] as [Transport][])('SDK over %s: two users see each other join; one closes, and after its grace the other sees it leave', async (transport) => {
    const { config, service, base, graceOver } = await startTask();
    const room = `room:${uid()}`;
    const [annPolls, bobPolls] = [pollWatch(), pollWatch()];
    const ann = sdk(base, config, 'ann', [transport], { fetch: annPolls.fetch });
    const bob = sdk(base, config, 'bob', [transport], { fetch: bobPolls.fetch });
    const pa = ann.presence(room);
    const left: string[] = [];
    const joined: string[] = [];
    pa.onJoin((m) => joined.push(m.sub));
    pa.onLeave((m) => left.push(m.sub));
    const pb = bob.presence(room);
    const subsOf = (p: Presence) => JSON.stringify(p.members().map((m) => m.sub).sort());
    await until(() => subsOf(pa) === '["ann","bob"]' && subsOf(pb) === '["ann","bob"]', 'both see ann and bob', 20_000, () => [pa.members(), pb.members()]);
    expect(ann.transport).toBe(transport);
    expect(joined.sort()).toEqual(['ann', 'bob']);
    const pc = `${config.keyPrefix}pc:{${room}}`;
    if (transport === 'poll') {
      // Between two polls a user is in a grace of its own (its last connection ended), so `bob` at 0 in Redis may be
      // that, with his next poll still to join and leave. Both polls wait at the channel's position (nothing answers
      // them before the next event) and the task holds both: each client polls once at a time and the task lets go of a
      // poll as it answers it, so these are ann's and bob's, and bob's is his only request (his client sends none after
      // close()).
      const ch = parseChannel(room, NAMESPACES);
      const presence = new RedisPresence(redis, config);
      await eventually(async () => {
        const at = (await presence.snapshot(ch)).position;
        return service.polls === 2 && annPolls.waitingAt() === at && bobPolls.waitingAt() === at;
      }, 10_000, 'both polls waiting at the position');
    }
    bob.close();
    // bob's connection is gone, his grace not yet: he stays (connections 0 once the task let go of him). The task's
    // presence applies changes one at a time, in order, so after a tick (at this clock: nothing is due) every join and
    // leave it queued before has been applied: bob's last leave, counted from this clock, and ann's waiting connection.
    await eventually(async () => {
      await service.presence!.tick();
      return (await redis.hget(pc, 'bob')) === '0' && (await redis.hget(pc, 'ann')) === '1';
    }, 10_000, 'bob in grace, ann connected');
    expect(subsOf(pa)).toBe('["ann","bob"]');
    await graceOver();
    await until(() => subsOf(pa) === '["ann"]', 'ann sees bob leave', 20_000, () => pa.members());
    expect(left).toEqual(['bob']);
  }, 60_000);

  test("a connection's grace counts from when it ended, not from when the task's presence queue gets to its leave", async () => {
    const { config, service, clock } = await startTask();
    const room = parseChannel(`room:${uid()}`, NAMESPACES);
    const pc = `${config.keyPrefix}pc:{${room.channel}}`;
    const presence = service.presence!;
    const bob = {};
    await presence.join(bob, [room], 'bob');
    expect(await redis.hget(pc, 'bob')).toBe('1');
    // bob's connection ends while the task's presence queue is busy (another connection joining: changes apply one at a
    // time, in order), and the grace passes before the queue gets to his leave.
    const busy = presence.join({}, [room], 'ann');
    const left = presence.leave(bob);
    clock.now += PRESENCE_GRACE_MS + 1;
    await Promise.all([busy, left]);
    expect(await redis.hget(pc, 'bob')).toBe('0');
    // The next sweep: his grace ended a millisecond ago.
    await presence.tick();
    expect(await redis.hget(pc, 'bob')).toBeNull();
  }, 30_000);

  test('count mode over a long poll: the snapshot is a count, then the coalesced presence.count events; no members', async () => {
    const { config, service, base } = await startTask();
    const crowd = `crowd:${uid()}`;
    const ann = sdk(base, config, 'ann', ['poll']);
    const p = ann.presence(crowd);
    const counts: number[] = [];
    p.onCount((n) => counts.push(n));
    await until(() => p.synced, 'the snapshot');
    for (const sub of ['bob', 'cat']) {
      const s = new RawStream(`${base}/events?channels=${crowd}&ticket=${await ticketFor(redis, sub, [crowd], 'sse', config)}`);
      cleanup.push(() => s.close());
      await s.until(() => s.events().some((e) => e.event === 'presence'));
    }
    await eventually(async () => (await redis.hlen(`${config.keyPrefix}pc:{${crowd}}`)) === 3, 10_000, 'three members');
    // The settle a running task does every second: one presence.count for the three.
    await service.presence!.settle();
    await until(() => p.count() === 3, 'the count of three', 20_000, () => counts);
    expect(p.members()).toEqual([]);
    expect(counts[counts.length - 1]).toBe(3);
  }, 30_000);

  test('a resume whose history is gone (reset) across a switch SSE → long poll: the poll takes a new snapshot, and the members are right', async () => {
    const { config, base, graceOver } = await startTask();
    const room = `tiny:${uid()}`;
    // ann's SSE and her long poll each go through a relay of their own.
    const [sseRelay, pollRelay] = [new Relay(Number(new URL(base).port)), new Relay(Number(new URL(base).port))];
    for (const r of [sseRelay, pollRelay]) {
      await r.start();
      cleanup.push(() => r.close());
    }
    const ann = sdk(base, config, 'ann', ['sse', 'poll'], { sseUrl: sseRelay.via(`${base}/events`), pollUrl: pollRelay.via(`${base}/poll`) });
    const resets: string[] = [];
    ann.subscribe(room, { onEvent: () => undefined, onReset: (c) => resets.push(c) });
    const pa = ann.presence(room);
    const subsOf = () => JSON.stringify(pa.members().map((m) => m.sub).sort());
    await until(() => pa.synced && subsOf() === '["ann"]' && ann.transport === 'sse', 'ann on SSE sees herself', 20_000, () => pa.members());
    sseRelay.cut();
    pollRelay.cut();
    // While ann is away: bob, cat and dan join, bob leaves (four events: more than the channel's history of two).
    const streams: RawStream[] = [];
    for (const sub of ['bob', 'cat', 'dan']) {
      const s = new RawStream(`${base}/events?channels=${room}&ticket=${await ticketFor(redis, sub, [room], 'sse', config)}`);
      cleanup.push(() => s.close());
      streams.push(s);
      await s.until(() => s.text.includes(`"sub":"${sub}"`));
    }
    streams[0].close();
    await eventually(async () => (await redis.hget(`${config.keyPrefix}pc:{${room}}`, 'bob')) === '0', 10_000, 'bob in grace');
    await graceOver();
    await streams[1].until(() => streams[1].text.includes('"presence.leave","data":{"sub":"bob"}'));
    // ann comes back on the long poll (SSE stays cut): her cursor is below the channel's history.
    pollRelay.restore();
    await until(() => ann.transport === 'poll' && resets.length > 0 && pa.synced && subsOf() === '["ann","cat","dan"]', 'ann on the long poll, reset, with a new snapshot', 30_000, () => [ann.transport, resets, pa.synced, pa.members()]);
  }, 60_000);
});
