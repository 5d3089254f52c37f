/**
 * The client's timing rules, deterministic: an injected clock (timers run only when the test moves
 * it; the wall clock can jump without them, like a background tab or a sleeping laptop), a WebSocket
 * and a fetch the test drives. No real time passes and nothing depends on machine load.
 */
import { backoff, createClient, LATENCY_BUCKETS, RealtimeClientError, type Client, type ClientOptions, type Envelope, type TicketAnswer } from '../../client/src/index';
import { decodeCursor as serverDecode, encodeCursor as serverEncode } from '../../core/cursor';
import { FakeClock, fakeClientOptions, FakeWebSocket, FakeWindow, openWs, settle, sseServer } from '../support/client-fakes';
import { prng } from '../support/prng';

let clock: FakeClock;
let win: FakeWindow;
let client: Client | undefined;

beforeEach(() => {
  clock = new FakeClock();
  win = new FakeWindow();
  FakeWebSocket.all = [];
});
afterEach(() => client?.close());

const env = (e: Partial<Envelope> & { id: string }): Envelope => ({ channel: 'chat:a', type: 'm', data: {}, ts: 0, ...e });
const wsTicket = async (): Promise<TicketAnswer> => ({ ticket: 't', wsUrl: 'ws://test/live?ticket=t' });

function make(o: Partial<ClientOptions> = {}): Client {
  client = createClient({ ...fakeClientOptions(clock, win), ...o });
  return client;
}

describe('backoff', () => {
  it('is min(20 s, 0.5 s + U(0, min(20 s, 0.5 s·2^n)))', () => {
    for (let n = 0; n < 12; n++) {
      for (const r of [0, 0.25, 0.5, 0.999]) {
        const d = backoff(n, () => r);
        expect(d).toBeCloseTo(Math.min(20000, 500 + r * Math.min(20000, 500 * 2 ** n)), 6);
        expect(d).toBeGreaterThanOrEqual(500);
        expect(d).toBeLessThanOrEqual(20000);
      }
    }
    expect(backoff(30, () => 1)).toBe(20000);
  });

  it('failed attempts back off with growing full-jitter delays', async () => {
    let calls = 0;
    make({ ticket: async () => (calls++, Promise.reject(new RealtimeClientError('internal', 'x', 500))) });
    const states: string[] = [];
    client!.on('state', (s) => states.push(s));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const sleeps: number[] = [];
    for (let i = 0; i < 8; i++) {
      await settle();
      expect(clock.pendingDelays()).toHaveLength(1);
      sleeps.push(clock.pendingDelays()[0]);
      await clock.advance(clock.pendingDelays()[0]);
    }
    expect(sleeps).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoff(n, () => 0.5)));
    expect(sleeps).toEqual([750, 1000, 1500, 2500, 4500, 8500, 10500, 10500]);
    expect(calls).toBe(9);
    expect(states).toEqual(['connecting', 'reconnecting']);
  });

  it('Retry-After from the ticket call is a floor', async () => {
    make({ ticket: () => Promise.reject(new RealtimeClientError('rate_limited', 'x', 429, 7000)) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    expect(clock.pendingDelays()).toEqual([7000]);
  });

  it.each([401, 403])('%i from the ticket call closes the client', async (status) => {
    const errors: string[] = [];
    make({ ticket: () => Promise.reject(new RealtimeClientError('unauthorized', 'x', status)) });
    client!.on('error', (e) => errors.push(e.code));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    expect(client!.state).toBe('closed');
    expect(errors).toEqual(['unauthorized']);
    expect(clock.pendingDelays()).toEqual([]);
  });

  it('first retry after a live drop within U(0, reconnectSpreadMs); quick drops back off; 5 s of uptime resets the backoff', async () => {
    make();
    client!.subscribe('chat:a', { onEvent: () => undefined });
    let ws = await openWs();
    expect(client!.state).toBe('open');
    await clock.advance(6000);
    ws.close();
    await settle();
    expect(client!.state).toBe('reconnecting');
    const sleep = () => clock.pendingDelays().filter((d) => d <= 20000);
    expect(sleep()).toEqual([500]); // U(0, 1 s) (reconnectSpreadMs 1000) with random 0.5
    await clock.advance(500);
    ws = await openWs();
    ws.close(); // up for 0 s
    await settle();
    expect(sleep()).toEqual([backoff(1, () => 0.5)]);
    await clock.advance(sleep()[0]);
    await settle();
    await clock.advance(4000); // never opens: the open timeout
    expect(sleep()).toEqual([backoff(2, () => 0.5)]);
    await clock.advance(sleep()[0]);
    ws = await openWs();
    await clock.advance(5000);
    ws.close();
    await settle();
    expect(sleep()).toEqual([500]);
  });
});

describe('a reconnect storm, as the SDK spreads it (client/README.md "Reconnect")', () => {
  it('by default the first retry after the server or the path ended a stable connection is U(0, 10 s); one the client found dead is U(0, 1 s)', async () => {
    make({ reconnectSpreadMs: undefined, pingMs: 60000, pongTimeoutMs: 10000 });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    let ws = await openWs();
    const sleep = () => clock.pendingDelays().filter((d) => d <= 20000);
    await clock.advance(6000);
    ws.close(); // closed by the server (1012, 1013, 1001) or cut: the whole task's clients see it at once
    await settle();
    expect(sleep()).toEqual([5000]); // U(0, 10 s) with random 0.5
    await clock.advance(5000);
    ws = await openWs();
    // A dead path the client noticed itself (no pong): its own, not a storm; back soon.
    await clock.advance(60000 + 10000);
    expect(client!.state).toBe('reconnecting');
    expect(sleep()).toEqual([500]);
  });

  it('SSE: a stream the server ended (no `retry:`) waits U(0, 10 s) before the next request', async () => {
    const { urls, streams: controllers, f: fetchFake } = sseServer();
    make({ reconnectSpreadMs: undefined, random: () => 0.25, transports: ['sse'], fetch: fetchFake, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?channels=chat%3Aa&ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    controllers[0].enqueue(new TextEncoder().encode('id: 10\nevent: ready\ndata: {"cursor":"10","channels":["chat:a"]}\n\n'));
    await settle();
    expect(client!.state).toBe('open');
    await clock.advance(6000);
    controllers[0].close();
    await settle();
    expect(client!.state).toBe('reconnecting');
    expect(clock.pendingDelays().filter((d) => d <= 20000)).toEqual([2500]);
    await clock.advance(2499);
    expect(urls).toHaveLength(1);
    await clock.advance(1);
    await settle();
    expect(urls[1]).toBe('http://sse/events?channels=chat%3Aa&ticket=t&lastEventId=10');
  });

  it('first retries after drops of a stable connection are uniform over 10 s: 1,000 clients in ten 1-s slices of 100 ± 30', async () => {
    make({ random: prng(27), reconnectSpreadMs: undefined });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    let ws = await openWs();
    const delays: number[] = [];
    for (let i = 0; i < 1000; i++) {
      await clock.advance(6000); // stable: the backoff restarts
      ws.close();
      await settle();
      const pending = clock.pendingDelays().filter((d) => d < 20000);
      expect(pending).toHaveLength(1);
      delays.push(pending[0]);
      await clock.advance(pending[0]);
      ws = await openWs();
    }
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThan(10000);
    const slices = Array(10).fill(0) as number[];
    for (const d of delays) slices[Math.floor(d / 1000)]++;
    // 1,000 clients dropped together reconnect at about 100 per second, never in one spike (±3 standard deviations):
    // a task's 10,000 at about 1,000 per second, the storm `npm run bench -- --storm` measures.
    for (const n of slices) {
      expect(n).toBeGreaterThanOrEqual(70);
      expect(n).toBeLessThanOrEqual(130);
    }
  });

  it('when the storm is refused (503), the retries of each attempt spread over [0.5 s, 0.5 s + 0.5 s·2^n]', () => {
    const rnd = prng(7);
    for (let n = 0; n < 6; n++) {
      const hi = Math.min(20000, 500 * 2 ** n);
      const xs = Array.from({ length: 2000 }, () => backoff(n, rnd));
      expect(Math.min(...xs)).toBeGreaterThanOrEqual(500);
      expect(Math.max(...xs)).toBeLessThanOrEqual(500 + hi);
      // Full jitter: the mean sits in the middle of the range, not at an edge.
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(mean).toBeGreaterThan(500 + hi * 0.45);
      expect(mean).toBeLessThan(500 + hi * 0.55);
    }
  });
});

describe('resume and dedupe (WebSocket)', () => {
  it('subscribes with since, holds events until subscribed, delivers in id order once, and resumes from the last id', async () => {
    make();
    const got: string[] = [];
    const resets: string[] = [];
    client!.subscribe('chat:a', { onEvent: (e) => got.push(e.id), onReset: (c) => resets.push(c), since: '50' });
    await settle();
    const ws = FakeWebSocket.last;
    ws.open();
    await settle();
    expect(ws.sent).toEqual([{ action: 'subscribe', channel: 'chat:a', since: '50' }]);
    // Live and replayed events interleave until `subscribed`.
    ws.receive(env({ id: '105' }));
    ws.receive({ type: 'reset', channel: 'chat:a', reason: 'history_unavailable' });
    ws.receive(env({ id: '51' }));
    ws.receive(env({ id: '52' }));
    expect(got).toEqual([]);
    ws.receive({ type: 'subscribed', channel: 'chat:a', cursor: '104' });
    expect(got).toEqual(['51', '52', '105']);
    expect(resets).toEqual(['chat:a']);
    ws.receive(env({ id: '105' }));
    ws.receive(env({ id: '52' }));
    ws.receive(env({ id: '106' }));
    expect(got).toEqual(['51', '52', '105', '106']);
    ws.close();
    await settle();
    await clock.advance(500);
    const ws2 = await openWs();
    expect(ws2.sent[0]).toEqual({ action: 'subscribe', channel: 'chat:a', since: '106' });
  });

  it('a subscribe the server could not serve (unavailable) reconnects from the unchanged cursor instead of leaving a gap', async () => {
    make();
    const got: string[] = [];
    client!.subscribe('chat:a', { onEvent: (e) => got.push(e.id), since: '50' });
    await settle();
    const ws = FakeWebSocket.last;
    ws.open();
    await settle();
    ws.receive(env({ id: '60' })); // live, while the replay of 51..59 failed
    ws.receive({ type: 'error', error: { code: 'unavailable', message: 'The event store is unreachable; retry shortly.' } });
    await settle();
    expect(got).toEqual([]);
    expect(client!.state).toBe('reconnecting');
    await clock.advance(500);
    const ws2 = await openWs();
    expect(ws2.sent[0]).toEqual({ action: 'subscribe', channel: 'chat:a', since: '50' });
  });

  it('publish frames are answered one at a time and resent after a drop with the same idempotency key', async () => {
    make();
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    const p1 = client!.publish('chat:a', 'm', { n: 1 });
    const p2 = client!.publish('chat:a', 'm', { n: 2 }, { idempotencyKey: 'k2' });
    await settle();
    expect(ws.actions().filter((a) => a === 'publish')).toHaveLength(1);
    ws.receive({ type: 'published', id: '200', channel: 'chat:a' });
    await expect(p1).resolves.toEqual({ id: '200', channel: 'chat:a' });
    expect(ws.actions().filter((a) => a === 'publish')).toHaveLength(2);
    ws.close();
    await settle();
    await clock.advance(500);
    const ws2 = await openWs();
    const resent = ws2.sent.filter((f) => f.action === 'publish');
    expect(resent).toEqual([{ action: 'publish', channel: 'chat:a', type: 'm', data: { n: 2 }, idempotencyKey: 'k2' }]);
    ws2.receive({ type: 'error', error: { code: 'rate_limited', message: 'slow down' } });
    await expect(p2).rejects.toMatchObject({ code: 'rate_limited' });
  });
});

describe('stats()', () => {
  it('per channel: received, duplicates and late events dropped by position, resets, reconnects, latency from ts', async () => {
    make();
    client!.subscribe('chat:a', { onEvent: () => undefined });
    client!.subscribe('chat:b', { onEvent: () => undefined });
    let ws = await openWs('100');
    // One subscribe in flight at a time: answer the second.
    ws.ackSubscribes('100');
    // Ground truth: 3 new events on a (latencies 5, 120, 700 ms), one of them again, one older than the position; 1 on b; a reset on b.
    ws.receive(env({ id: '101', ts: clock.now() - 5 }));
    ws.receive(env({ id: '102', ts: clock.now() - 120 }));
    ws.receive(env({ id: '102', ts: clock.now() - 120 }));
    ws.receive(env({ id: '99', ts: clock.now() - 700 }));
    ws.receive(env({ id: '103', ts: clock.now() - 700 }));
    ws.receive(env({ channel: 'chat:b', id: '104', ts: clock.now() + 50 }));
    ws.receive({ type: 'reset', channel: 'chat:b', reason: 'history_unavailable' });
    // Two drops, two reconnects on the same transport.
    for (let i = 0; i < 2; i++) {
      ws.close();
      await settle();
      await clock.advance(20000);
      ws = await openWs('104');
    }
    const bucket = (ms: number) => LATENCY_BUCKETS.findIndex((b) => ms <= b);
    const hist = (...ms: number[]) => LATENCY_BUCKETS.map((_, i) => ms.filter((m) => bucket(m) === i).length);
    const st = client!.stats();
    expect(st['chat:a']).toEqual({ received: 3, duplicates: 2, gaps: 0, resets: 0, reconnects: 2, switches: 0, transport: 'ws', latency: hist(5, 120, 700), p50: 250, p99: 1000 });
    // A clock behind the server's: the negative latency counts as 0.
    expect(st['chat:b']).toEqual({ received: 1, duplicates: 0, gaps: 0, resets: 1, reconnects: 2, switches: 0, transport: 'ws', latency: hist(0), p50: 10, p99: 10 });
    // A copy: the caller cannot change the client's counts.
    st['chat:a'].latency[0] = 99;
    expect(client!.stats()['chat:a'].latency[0]).toBe(1);
  });

  it('gaps (SSE: one producer per connection, so an event out of the chain is lost, not late): an event whose prev is not the last event received on its channel; not across a reset, not before the first event, not without prev', async () => {
    const sse = sseServer();
    make({ transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    client!.subscribe('chat:b', { onEvent: () => undefined });
    await settle();
    sse.send('id: 100\nevent: ready\ndata: {"cursor":"100"}\n\n');
    const a = (id: string, prev?: string) => sse.send(`event: m\ndata: ${JSON.stringify(env({ id, prev }))}\n\n`);
    // Ground truth on a: 104 and 107 are missing (2 gaps); 110 follows a reset (the reset says it); 130 has no prev.
    a('101', '95'); // the first event of the subscription: nothing to compare with
    a('102', '101');
    a('103', '102');
    a('103', '102'); // a duplicate is dropped, not compared
    a('105', '104'); // gap 1
    a('106', '105');
    a('108', '107'); // gap 2
    sse.send('event: reset\ndata: {"channel":"chat:a"}\n\n');
    a('110', '109'); // after the reset: not a gap
    a('111', '110');
    a('130'); // a server that does not send prev
    a('131', '130');
    // b: an unbroken chain from its first event ("0": the channel's first).
    sse.send(`event: m\ndata: ${JSON.stringify(env({ channel: 'chat:b', id: '200', prev: '0' }))}\n\n`);
    sse.send(`event: m\ndata: ${JSON.stringify(env({ channel: 'chat:b', id: '201', prev: '200' }))}\n\n`);
    await settle();
    expect(client!.stats()['chat:a']).toMatchObject({ received: 10, duplicates: 1, gaps: 2, resets: 1 });
    expect(client!.stats()['chat:b']).toMatchObject({ received: 2, gaps: 0 });
  });

  it('WebSocket (API Gateway: two producers’ posts may cross): an event whose prev is above the last one delivered waits for it; the events come out once each, in id order, and no gap is counted', async () => {
    make();
    const got: string[] = [];
    client!.subscribe('chat:a', { onEvent: (e) => got.push(e.id) });
    const ws = await openWs('100');
    const a = (id: string, prev?: string) => ws.receive(env({ id, prev }));
    a('101', '100');
    a('103', '102'); // 102 was posted later by another producer: 103 waits
    a('103', '102'); // a second copy of a waiting event: a duplicate
    a('104', '103');
    expect(got).toEqual(['101']);
    a('102', '101'); // the crossed post: 102, 103, 104 in order
    expect(got).toEqual(['101', '102', '103', '104']);
    a('102', '101');
    expect(client!.stats()['chat:a']).toMatchObject({ received: 4, duplicates: 2, gaps: 0, reconnects: 0 });
    expect(FakeWebSocket.all).toHaveLength(1);
    // Waiting ended by the missing event, its timer too: the clock moving on does not reconnect.
    await clock.advance(10_000);
    expect(FakeWebSocket.all).toHaveLength(1);
  });

  it('WebSocket: a missing event that does not come within gapWaitMs: the client reconnects from the last event delivered; the replay fills the gap, in order; a replay that lacks it (lost) is delivered with the gap counted, and waits no more', async () => {
    make({ gapWaitMs: 500 });
    const got: string[] = [];
    client!.subscribe('chat:a', { onEvent: (e) => got.push(e.id) });
    const ws = await openWs('100');
    /** After `ms` more, the wait ends: the socket after `before` (the client opens it at once: planned), its replay of `ids`, `subscribed`. */
    const resumed = async (before: FakeWebSocket, ms: number, ...ids: [string, string][]) => {
      await clock.advance(ms);
      await settle();
      const next = FakeWebSocket.last;
      expect(next).not.toBe(before);
      next.open();
      await settle();
      const subscribe = next.sent.filter((f) => f.action === 'subscribe');
      for (const [id, prev] of ids) next.receive(env({ id, prev }));
      next.ackSubscribes(ids.at(-1)![0]);
      await settle();
      return { next, subscribe };
    };
    ws.receive(env({ id: '101', prev: '100' }));
    ws.receive(env({ id: '103', prev: '102' }));
    await clock.advance(499);
    expect([got, FakeWebSocket.all.length]).toEqual([['101'], 1]);
    // At 500 ms, at once (planned): a new connection resumes from 101; its replay brings 102 and 103, then 104 live.
    const { next: ws2, subscribe } = await resumed(ws, 1, ['102', '101'], ['103', '102']);
    expect(subscribe).toEqual([{ action: 'subscribe', channel: 'chat:a', since: '101' }]);
    ws2.receive(env({ id: '104', prev: '103' }));
    expect(got).toEqual(['101', '102', '103', '104']);
    expect(client!.stats()['chat:a']).toMatchObject({ received: 4, duplicates: 0, gaps: 0, reconnects: 1 });
    // 106 names 105, which never comes, and the replay does not have it either (lost): delivered after it, one gap.
    ws2.receive(env({ id: '106', prev: '105' }));
    const { next: ws3 } = await resumed(ws2, 500, ['106', '105']);
    expect(got).toEqual(['101', '102', '103', '104', '106']);
    expect(client!.stats()['chat:a']).toMatchObject({ received: 5, duplicates: 0, gaps: 1, reconnects: 2 });
    await clock.advance(10_000);
    expect(FakeWebSocket.all.at(-1)).toBe(ws3);
  });


  it('a transport switch is counted on the channels of the connection that opened on the other transport', async () => {
    const fetchFake = (async () => new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('id: 5\nevent: ready\ndata: {"cursor":"5"}\n\n')) }), { status: 200 })) as unknown as typeof fetch;
    make({ transports: ['ws', 'sse'], fetch: fetchFake, ticket: async (r) => ({ ticket: 't', wsUrl: 'ws://test/live?ticket=t', sseUrl: r.transport === 'sse' ? 'http://sse/events?ticket=t' : undefined }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    ws.close();
    await settle();
    await clock.advance(500);
    // The WebSocket does not open this time: after the open timeout SSE does.
    await settle();
    await clock.advance(4000);
    await settle();
    expect(client!.transport).toBe('sse');
    expect(client!.stats()['chat:a']).toMatchObject({ reconnects: 1, switches: 1, transport: 'sse' });
  });
});

describe('publish on a connection that is not a WebSocket', () => {
  it('a publish waiting for a connection is rejected with not_websocket when SSE wins the fallback', async () => {
    const fetchFake = (async () => new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('id: 5\nevent: ready\ndata: {"cursor":"5"}\n\n')) }), { status: 200 })) as unknown as typeof fetch;
    make({ transports: ['ws', 'sse'], fetch: fetchFake, ticket: async (r) => ({ ticket: 't', wsUrl: r.transport === 'ws' ? 'ws://x/live?ticket=t' : null, sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const p = client!.publish('chat:a', 'm', {}).catch((e: unknown) => e);
    await settle();
    FakeWebSocket.last.close(); // the WebSocket never opens
    await settle();
    expect(client!.transport).toBe('sse');
    expect(await p).toMatchObject({ code: 'not_websocket' });
  });
});

describe('deadlines', () => {
  it('keepalive ping inside the idle limit; an unanswered ping means a dead socket', async () => {
    make({ pingMs: 60000, pongTimeoutMs: 10000 });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    await clock.advance(60000);
    expect(ws.actions().filter((a) => a === 'ping')).toHaveLength(1);
    ws.receive({ type: 'pong' });
    await clock.advance(10000);
    expect(client!.state).toBe('open');
    await clock.advance(50000);
    expect(ws.actions().filter((a) => a === 'ping')).toHaveLength(2);
    await clock.advance(10000);
    expect(client!.state).toBe('reconnecting');
  });

  it('background tab: timers never ran, visibilitychange checks the wall clock (ping now, then dead) and reconnects when the backoff is due', async () => {
    const errors: string[] = [];
    make({ pingMs: 60000, pongTimeoutMs: 10000 });
    client!.on('error', (e) => errors.push(e.code));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    clock.jump(120000);
    expect(ws.actions()).not.toContain('ping');
    win.dispatch('visibilitychange');
    expect(ws.actions()).toContain('ping');
    clock.jump(10000);
    win.dispatch('visibilitychange');
    await settle();
    expect(client!.state).toBe('reconnecting');
    expect(errors).toEqual(['dead']);
    const before = FakeWebSocket.all.length;
    clock.jump(1000);
    win.dispatch('visibilitychange');
    await settle();
    expect(FakeWebSocket.all.length).toBe(before + 1);
  });

  it('online wakes a backoff sleep at once', async () => {
    let calls = 0;
    make({ ticket: async () => (calls++, Promise.reject(new RealtimeClientError('network', 'offline'))) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    expect(calls).toBe(1);
    win.dispatch('visibilitychange'); // not due yet: no new attempt
    await settle();
    expect(calls).toBe(1);
    win.dispatch('online');
    await settle();
    expect(calls).toBe(2);
  });

  it('reconnects before the connection age cap without a state change, resuming with since', async () => {
    make({ maxConnectionMs: 30000 });
    const states: string[] = [];
    client!.on('state', (s) => states.push(s));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs('300');
    await clock.advance(30000);
    expect(ws.readyState).toBe(3);
    const ws2 = await openWs();
    expect(ws2.sent[0]).toEqual({ action: 'subscribe', channel: 'chat:a', since: '300' });
    expect(states).toEqual(['connecting', 'open']);
  });

  it('SSE: a stream silent past deadAfterMs is dead (checked on wake); retry: is a floor; the next request carries lastEventId', async () => {
    const { urls, streams: controllers, f: fetchFake } = sseServer();
    make({ transports: ['sse'], fetch: fetchFake, deadAfterMs: 25000, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?channels=chat%3Aa&ticket=t' }) });
    const got: string[] = [];
    client!.subscribe('chat:a', { onEvent: (e) => got.push(e.id) });
    await settle();
    const enc = new TextEncoder();
    controllers[0].enqueue(enc.encode('retry: 3000\n\nid: 10\nevent: ready\ndata: {"cursor":"10","channels":["chat:a"]}\n\n: hb\n\nid: 11\nevent: m\ndata: {"channel":"chat:a","id":"11","type":"m","data":{},"ts":1}\n\n'));
    await settle();
    expect(client!.state).toBe('open');
    expect(got).toEqual(['11']);
    clock.jump(24000);
    win.dispatch('visibilitychange');
    await settle();
    expect(client!.state).toBe('open');
    clock.jump(1000);
    win.dispatch('visibilitychange');
    await settle();
    expect(client!.state).toBe('reconnecting');
    expect(clock.pendingDelays()).toContain(3000);
    await clock.advance(3000);
    expect(urls[1]).toBe('http://sse/events?channels=chat%3Aa&ticket=t&lastEventId=11');
  });
});

/** A fetch that answers polls like the server: a poll asking not to wait answers at once with the position; any other waits (here: until aborted). */
const pollServer = () => {
  const urls: string[] = [];
  const f = (async (url: string, init?: RequestInit) => {
    urls.push(url);
    const u = new URL(url);
    if (u.searchParams.get('wait') === '0') return new Response(`{"events":[],"cursor":"${u.searchParams.get('cursor') ?? '42'}","resets":[]}`, { status: 200 });
    return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
  }) as unknown as typeof fetch;
  return { urls, f };
};

describe('one start, one ticket', () => {
  it('subscribes made in one tick share one ticket naming every channel', async () => {
    const reqs: { transport: string; channels: string[] }[] = [];
    make({ ticket: async (r) => (reqs.push(r), wsTicket()) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    client!.subscribe('user:alice', { onEvent: () => undefined });
    await settle();
    expect(reqs).toEqual([{ transport: 'ws', channels: ['chat:a', 'user:alice'] }]);
    expect(FakeWebSocket.all).toHaveLength(1);
  });
});

describe('state events', () => {
  it.each(['ws', 'sse', 'poll'] as const)('%s: the first subscribe emits connecting, then open', async (transport) => {
    const sse = (async () => new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('id: 5\nevent: ready\ndata: {"cursor":"5"}\n\n')) }), { status: 200 })) as unknown as typeof fetch;
    make({ transports: [transport], fetch: transport === 'poll' ? pollServer().f : sse, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: 't', wsUrl: 'ws://x/live?ticket=t', sseUrl: 'http://sse/events?ticket=t' }) });
    const states: string[] = [];
    client!.on('state', (s) => states.push(s));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    expect(states).toEqual([]);
    if (transport === 'ws') await openWs();
    await settle();
    expect(states).toEqual(['connecting', 'open']);
  });
});

describe('long poll', () => {
  it('is open as soon as the server took the first poll, not when the first event comes', async () => {
    const server = pollServer();
    make({ transports: ['poll'], fetch: server.f, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: 't' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    expect(client!.state).toBe('open');
    expect(client!.transport).toBe('poll');
    // The next poll waits, from the position the first one proved.
    expect(new URL(server.urls[1]).searchParams.get('cursor')).toBe('42');
    expect(new URL(server.urls[1]).searchParams.get('wait')).toBeNull();
  });
});

describe('long poll without cookies', () => {
  it('a poll whose cookie did not come back (401 ticket_invalid) takes a new ticket at once, and one per poll from then on', async () => {
    const urls: string[] = [];
    const redeemed = new Set<string>();
    let answers = 0;
    // The server as it is when the browser drops the cookie: a spent ticket without it is refused.
    const f = (async (url: string, init?: RequestInit) => {
      urls.push(url);
      // After four answers the next poll waits (until aborted), as a quiet channel's does.
      if (answers === 4) return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
      const t = new URL(url).searchParams.get('ticket')!;
      if (redeemed.has(t)) return new Response('{"error":{"code":"ticket_invalid","message":"spent"}}', { status: 401 });
      redeemed.add(t);
      answers++;
      return new Response(`{"events":[],"cursor":"${40 + answers}","resets":[]}`, { status: 200 });
    }) as unknown as typeof fetch;
    let n = 0;
    make({ transports: ['poll'], fetch: f, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: `t${++n}` }) });
    const errors: string[] = [];
    client!.on('error', (e) => errors.push(e.code));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    const tickets = urls.map((u) => new URL(u).searchParams.get('ticket'));
    // t1 answered, t1 again refused, then a fresh ticket per poll, without a backoff in between.
    expect(tickets).toEqual(['t1', 't1', 't2', 't3', 't4', 't5']);
    expect(errors).toEqual([]);
    expect(clock.pendingDelays().filter((d) => d < 20000)).toEqual([]);
  });
});

describe('liveness (WebSocket)', () => {
  it('a ping interval shorter than the pong timeout: the next ping follows the answer by pingMs, not by the pong timeout', async () => {
    make({ pingMs: 500, pongTimeoutMs: 10_000 });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    for (let i = 1; i <= 4; i++) {
      await clock.advance(500);
      expect(ws.actions().filter((a) => a === 'ping')).toHaveLength(i);
      ws.receive({ type: 'pong' });
    }
  });

  it('defaults: a silent dead path is noticed 30 s after the last frame heard (ping at 20 s, 10 s for the pong)', async () => {
    const errors: string[] = [];
    make();
    client!.on('error', (e) => errors.push(e.code));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    await clock.advance(19_999);
    expect(ws.actions()).not.toContain('ping');
    await clock.advance(1);
    expect(ws.actions().filter((a) => a === 'ping')).toHaveLength(1);
    await clock.advance(9_999);
    expect(client!.state).toBe('open');
    await clock.advance(1);
    expect(client!.state).toBe('reconnecting');
    expect(errors).toEqual(['dead']);
  });

  it('no ping while frames keep coming (the /live heartbeat every 15 s, or events); one after 9 min without sending, inside API Gateway’s 10-min idle limit', async () => {
    make();
    client!.subscribe('chat:a', { onEvent: () => undefined });
    const ws = await openWs();
    const pingsAt: number[] = [];
    for (let t = 15_000; t <= 10 * 60_000; t += 15_000) {
      await clock.advance(15_000);
      ws.receive({ type: 'heartbeat' });
      if (ws.actions().filter((a) => a === 'ping').length > pingsAt.length) {
        pingsAt.push(t);
        ws.receive({ type: 'pong' });
      }
    }
    // The client sent nothing since its subscribe at 0: one ping at 9 min, none for liveness.
    expect(pingsAt).toEqual([9 * 60_000]);
    expect(client!.state).toBe('open');
  });
});

const ev = (e: Partial<Envelope> & { id: string; channel: string }) => `event: m\ndata: ${JSON.stringify(env(e))}\n\n`;
const T = 1_796_000_000_000_000;

describe('one cursor per connection (positions per channel)', () => {
  it('SSE: lastEventId is the connection cursor of every channel (sorted): its last event, else where ready put it; it decodes on the server to those positions', async () => {
    const sse = sseServer();
    make({ transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('user:zoe', { onEvent: () => undefined });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    expect(sse.lastEventId(0)).toBeNull();
    // ready: chat:a at T+100, user:zoe quiet since T-5000 (the server's order: sorted).
    const ready = serverEncode([T + 100, T - 5000]);
    sse.send(`id: ${ready}\nevent: ready\ndata: ${JSON.stringify({ cursor: ready, channels: ['chat:a', 'user:zoe'] })}\n\n`);
    sse.send(ev({ channel: 'chat:a', id: String(T + 250), prev: String(T + 100) }));
    await settle();
    expect(client!.state).toBe('open');
    sse.streams[0].close();
    await settle();
    await clock.advance(1000);
    await settle();
    const sent = sse.lastEventId(1);
    expect(sent).toBe(serverEncode([T + 250, T - 5000]));
    expect(serverDecode(sent, 2)).toEqual({ positions: [T + 250, T - 5000], shared: false });
  });

  it('SSE: a ready or reset whose data has no cursor: the block\'s id: line is the connection cursor', async () => {
    const sse = sseServer();
    make({ transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    client!.subscribe('chat:b', { onEvent: () => undefined });
    await settle();
    sse.send(`id: ${serverEncode([T + 1, T + 2])}\nevent: ready\ndata: {"channels":["chat:a","chat:b"]}\n\n`);
    sse.send(`id: ${serverEncode([T + 1, T + 9])}\nevent: reset\ndata: {"channel":"chat:b"}\n\n`);
    await settle();
    sse.streams[0].close();
    await settle();
    await clock.advance(1000);
    await settle();
    expect(sse.lastEventId(1)).toBe(serverEncode([T + 1, T + 9]));
  });

  it('SSE: a reset moves the channel to the position its cursor gives (no gap is counted across it)', async () => {
    const sse = sseServer();
    make({ transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined, since: String(T) });
    await settle();
    // No server has sent this client a connection cursor yet: the plain decimal (every server reads it).
    expect(sse.lastEventId(0)).toBe(String(T));
    const after = serverEncode([T + 900]);
    sse.send(`id: ${after}\nevent: reset\ndata: ${JSON.stringify({ channel: 'chat:a', cursor: after })}\n\nid: ${after}\nevent: ready\ndata: ${JSON.stringify({ cursor: after })}\n\n`);
    sse.send(ev({ channel: 'chat:a', id: String(T + 950), prev: String(T + 900) }));
    await settle();
    sse.streams[0].close();
    await settle();
    await clock.advance(1000);
    await settle();
    expect(sse.lastEventId(1)).toBe(serverEncode([T + 950]));
    expect(client!.stats()['chat:a']).toMatchObject({ received: 1, resets: 1, gaps: 0 });
  });

  it('long poll: the next poll of a connection sends the answer\'s cursor as it came (opaque); a new connection sends its own, of the same positions', async () => {
    const urls: string[] = [];
    // The server keeps its own anchor (below every position): a cursor the client would not write itself.
    const answers = [serverEncode([T + 10, T + 20], T), serverEncode([T + 30, T + 20], T)];
    const f = (async (url: string, init?: RequestInit) => {
      urls.push(url);
      const i = urls.length - 1;
      if (i === 0) return new Response(JSON.stringify({ events: [], cursor: answers[0], resets: [] }), { status: 200 });
      if (i === 1) return new Response(JSON.stringify({ events: [env({ channel: 'chat:a', id: String(T + 30), prev: String(T + 10) })], cursor: answers[1], resets: [] }), { status: 200 });
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }) as unknown as typeof fetch;
    make({ transports: ['poll'], fetch: f, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: 't' }) });
    client!.subscribe('chat:b', { onEvent: () => undefined });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    const cursorOf = (i: number) => new URL(urls[i]).searchParams.get('cursor');
    expect(cursorOf(0)).toBeNull();
    expect(cursorOf(1)).toBe(answers[0]);
    expect(cursorOf(2)).toBe(answers[1]);
    expect(answers[1]).not.toBe(serverEncode([T + 30, T + 20]));
    // The waiting poll times out: a new connection, whose first poll encodes the positions itself.
    await clock.advance(35000);
    await settle();
    await clock.advance(1000);
    await settle();
    expect(cursorOf(3)).toBe(serverEncode([T + 30, T + 20]));
    expect(client!.stats()['chat:a']).toMatchObject({ received: 1, gaps: 0 });
  });

  it('long poll: a reset with a cursor below the position held (the channel lost everything) moves the channel down to it', async () => {
    const urls: string[] = [];
    const f = (async (url: string, init?: RequestInit) => {
      urls.push(url);
      const i = urls.length - 1;
      if (i === 0) return new Response(JSON.stringify({ events: [env({ channel: 'chat:a', id: String(T + 500), prev: '0' })], cursor: serverEncode([T + 500]), resets: [] }), { status: 200 });
      if (i === 1) return new Response(JSON.stringify({ events: [], cursor: serverEncode([0]), resets: ['chat:a'] }), { status: 200 });
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }) as unknown as typeof fetch;
    make({ transports: ['poll'], fetch: f, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: 't' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    await clock.advance(35000);
    await settle();
    await clock.advance(1000);
    await settle();
    expect(new URL(urls[3]).searchParams.get('cursor')).toBe(serverEncode([0]));
    expect(client!.stats()['chat:a']).toMatchObject({ received: 1, resets: 1, gaps: 0 });
  });

  it('SSE → WebSocket → SSE: the positions the socket gave (subscribed, events) become the next SSE cursor', async () => {
    const sse = sseServer();
    const f = (async (url: string) => (sse.urls.length === 1 ? (sse.urls.push(url), new Response('{"error":{"code":"unavailable","message":"draining"}}', { status: 503 })) : sse.f(url))) as unknown as typeof fetch;
    make({ transports: ['sse', 'ws'], fetch: f, ticket: async (r) => ({ ticket: 't', wsUrl: 'ws://test/live?ticket=t', sseUrl: r.transport === 'sse' ? 'http://sse/events?ticket=t' : undefined }) });
    client!.subscribe('chat:b', { onEvent: () => undefined });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    const ready = serverEncode([T + 5, T + 5]);
    sse.send(`event: ready\ndata: ${JSON.stringify({ cursor: ready })}\n\n`);
    await settle();
    sse.streams[0].close();
    await settle();
    // The next stream is refused (503): the WebSocket opens instead, resuming each channel from its position.
    await clock.advance(1000);
    const ws = await openWs(String(T + 5));
    expect(ws.sent).toContainEqual({ action: 'subscribe', channel: 'chat:a', since: String(T + 5) });
    ws.ackSubscribes(String(T + 5));
    ws.receive(env({ channel: 'chat:b', id: String(T + 70), prev: String(T + 5) }));
    ws.close();
    await settle();
    await clock.advance(1000);
    await settle();
    await clock.advance(4000); // the socket does not open again: SSE after the open timeout
    await settle();
    expect(sse.urls).toHaveLength(3);
    expect(sse.lastEventId(2)).toBe(serverEncode([T + 5, T + 70]));
  });

  it('a channel without a position yet (subscribed while connected), or a server on the sequence: a plain decimal, the oldest position', async () => {
    const sse = sseServer();
    make({ transports: ['sse'], fetch: sse.f, ticket: async () => ({ ticket: 't', sseUrl: 'http://sse/events?ticket=t' }) });
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    const ready = serverEncode([T + 100]);
    sse.send(`event: ready\ndata: ${JSON.stringify({ cursor: ready })}\n\n`);
    await settle();
    client!.subscribe('chat:b', { onEvent: () => undefined });
    await settle();
    // A new connection for both: chat:b has no position, so every channel reads from chat:a's (duplicates are dropped).
    expect(sse.lastEventId(1)).toBe(String(T + 100));
    sse.send(`event: ready\ndata: ${JSON.stringify({ cursor: String(T + 400) })}\n\n`);
    await settle();
    sse.streams[1].close();
    await settle();
    await clock.advance(1000);
    await settle();
    // That server spoke the sequence: it is sent a plain decimal again.
    expect(sse.lastEventId(2)).toBe(String(T + 400));
  });

  it('a server before positions per channel refuses a p1 cursor (400 invalid_cursor, a rollback after one that sent p1): the client asks again at once with the plain decimal, no error, not closed', async () => {
    const urls: string[] = [];
    const f = (async (url: string, init?: RequestInit) => {
      urls.push(url);
      const c = new URL(url).searchParams.get('cursor');
      if (urls.length === 1) return new Response(JSON.stringify({ events: [], cursor: serverEncode([T]), resets: [] }), { status: 200 });
      if (c?.startsWith('p1.')) return new Response('{"error":{"code":"invalid_cursor","message":"A cursor is the decimal id of the last event received."}}', { status: 400 });
      if (urls.length < 4) return new Response(JSON.stringify({ events: [], cursor: String(T), resets: [] }), { status: 200 });
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }) as unknown as typeof fetch;
    make({ transports: ['poll'], fetch: f, pollUrl: 'http://sse/poll', ticket: async () => ({ ticket: 't' }) });
    const errors: string[] = [];
    client!.on('error', (e) => errors.push(e.code));
    client!.subscribe('chat:a', { onEvent: () => undefined });
    await settle();
    const cursors = urls.map((u) => new URL(u).searchParams.get('cursor'));
    expect(cursors).toEqual([null, serverEncode([T]), String(T), String(T)]);
    expect(client!.state).toBe('open');
    expect(errors).toEqual([]);
  });
});
