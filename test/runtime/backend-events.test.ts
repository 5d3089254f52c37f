import { EventBridgeBus, PUT_EVENTS_MAX_BYTES } from '../../core/aws/eventbridge';
import type { BackendEvent } from '../../core/backend-events';
import { LocalEventBridge, type DeliveredEvent } from '../../local/eventbridge';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { OCCUPANCY_LEASE_MS, OCCUPANCY_TICK_MS } from '../../service/occupancy';
import type { RealtimeServer } from '../../service/realtime-server';
import { eventually, RawStream, spawnTask, startService, TEST_NAMESPACES, uid, useRedis } from '../support/harness';
import { sdkAuthorization } from '../support/aws-stand-ins';
import { WsClient } from './ws-support';

/**
 * Backend events end to end (issue 25, item 2): two tasks (two RealtimeServers on one Redis) and the API Gateway
 * stand-in hold channels; the occupancy ticks and relay rounds are driven by the test on a virtual clock (no timers);
 * the EventBridge stand-in (local/eventbridge.ts) receives `PutEvents` signed by our signer and fails on demand.
 */

const cleanup = useRedis(() => undefined);
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const DEBOUNCE = 5000;

const creds = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' };
const busFor = (eb: LocalEventBridge) => new EventBridgeBus({ eventBusName: 'test-bus', endpoint: eb.url, region: eb.region, credentials: async () => creds, backoffMs: 1 });

const of = (eb: LocalEventBridge, type: string, channel?: string): DeliveredEvent[] => eb.ofType(type).filter((e) => channel === undefined || e.detail.channel === channel);

async function startEventBridge(): Promise<LocalEventBridge> {
  const eb = await LocalEventBridge.start();
  cleanup.push(() => eb.close());
  return eb;
}

/** Two tasks on one Redis and one key prefix, sharing a virtual clock. */
async function twoTasks(eb: LocalEventBridge, prefix: string, clock: { now: number }): Promise<{ a: RealtimeServer; b: RealtimeServer; baseA: string; baseB: string }> {
  const env = { KEY_PREFIX: prefix, BACKEND_EVENTS: 'true', OCCUPANCY_DEBOUNCE_MS: String(DEBOUNCE), METRICS_INTERVAL_MS: '0' };
  const started = await Promise.all(
    [0, 1].map(async () => {
      const bus = busFor(eb);
      const { service, base } = await startService(env, { eventBus: bus, eventTimers: false, now: () => clock.now });
      cleanup.push(async () => {
        await service.close();
        bus.destroy();
      });
      return { service, base };
    }),
  );
  return { a: started[0].service, b: started[1].service, baseA: started[0].base, baseB: started[1].base };
}

/** The EventBridge stand-in, a virtual clock, two tasks and a fresh public channel. */
async function twoTasksOnOneChannel() {
  const eb = await startEventBridge();
  const clock = { now: Date.now() };
  return { eb, clock, ...(await twoTasks(eb, `e${uid()}:`, clock)), ch: `scores:${uid()}` };
}

/** One round of every task (lease renewal and sweep), then their relays: the counts of the channel's events on the bus. */
async function round(eb: LocalEventBridge, ch: string, ...tasks: RealtimeServer[]): Promise<{ occupied: number; vacated: number }> {
  for (const t of tasks) await t.events!.tick();
  for (const t of tasks) await t.events!.relayOnce();
  return { occupied: of(eb, 'channel.occupied', ch).length, vacated: of(eb, 'channel.vacated', ch).length };
}

async function openStream(base: string, channel: string): Promise<RawStream> {
  const s = new RawStream(`${base}/events?channels=${channel}`);
  cleanup.push(() => s.close());
  await s.until(ready);
  return s;
}

/** Closes a stream and waits until its task's hub let the channel go and the task applied it to Redis. */
async function closeStream(s: RawStream, task: RealtimeServer): Promise<void> {
  const before = task.hub.channelCount;
  s.close();
  await eventually(() => task.hub.channelCount < before, 10_000, 'the hub to drop the channel');
  await task.events!.flush();
}

describe('channel.occupied / channel.vacated across two tasks', () => {
  test('first subscriber anywhere: one occupied; last one gone: one vacated after the debounce, not before', async () => {
    const { eb, clock, a, b, baseA, baseB, ch } = await twoTasksOnOneChannel();

    const s1 = await openStream(baseA, ch);
    await a.events!.flush();
    await a.events!.relayOnce();
    expect(of(eb, 'channel.occupied', ch)).toHaveLength(1);
    expect(of(eb, 'channel.occupied', ch)[0]).toMatchObject({ source: 'realtime', bus: 'test-bus', detail: { type: 'channel.occupied', channel: ch, id: expect.any(String), at: expect.any(Number) } });

    // A second subscriber on the other task: the channel was occupied already.
    const s2 = await openStream(baseB, ch);
    await b.events!.flush();
    await closeStream(s1, a);
    expect(await round(eb, ch, a, b)).toEqual({ occupied: 1, vacated: 0 });

    // The last one leaves: nothing within the debounce, one vacated after it.
    await closeStream(s2, b);
    clock.now += DEBOUNCE - 1;
    expect(await round(eb, ch, a)).toEqual({ occupied: 1, vacated: 0 });
    clock.now += 1;
    expect(await round(eb, ch, b, a)).toEqual({ occupied: 1, vacated: 1 });
    expect(of(eb, 'channel.vacated', ch)[0].detail).toMatchObject({ type: 'channel.vacated', channel: ch });
    expect(of(eb, 'channel.vacated', ch)[0].detail.id).not.toBe(of(eb, 'channel.occupied', ch)[0].detail.id);
  });

  test('debounce: a channel left and taken again within the window (on another task) says nothing', async () => {
    const { eb, clock, a, b, baseA, baseB, ch } = await twoTasksOnOneChannel();
    const s1 = await openStream(baseA, ch);
    await a.events!.flush();
    await closeStream(s1, a);
    clock.now += DEBOUNCE - 1;
    const s2 = await openStream(baseB, ch);
    await b.events!.flush();
    clock.now += DEBOUNCE * 3;
    expect(await round(eb, ch, a, b)).toEqual({ occupied: 1, vacated: 0 });
    await closeStream(s2, b);
    clock.now += DEBOUNCE;
    expect(await round(eb, ch, a)).toEqual({ occupied: 1, vacated: 1 });
  });

  test('a paused task whose lease ended: swept by the other task, it takes its channels back at its next renewal, and nothing is said', async () => {
    const { eb, clock, a, b, baseA, ch } = await twoTasksOnOneChannel();
    await openStream(baseA, ch);
    await a.events!.flush();
    await a.events!.relayOnce();
    expect(of(eb, 'channel.occupied', ch)).toHaveLength(1);
    // A does not renew (paused) past its lease: B's sweep releases A's channel.
    clock.now += OCCUPANCY_LEASE_MS + 1;
    await b.events!.tick();
    // A wakes within the debounce: its renewal finds the lease new and acquires the channel again.
    await a.events!.tick();
    clock.now += DEBOUNCE * 2;
    expect(await round(eb, ch, b, a)).toEqual({ occupied: 1, vacated: 0 });
  });

  test('a killed task (SIGKILL, no release): its channel is vacated once its lease ended and the sweep ran, within lease + 2 ticks + debounce', async () => {
    const eb = await startEventBridge();
    const prefix = `e${uid()}:`;
    const clock = { now: Date.now() };
    const bus = busFor(eb);
    const { service: b } = await startService({ KEY_PREFIX: prefix, BACKEND_EVENTS: 'true', OCCUPANCY_DEBOUNCE_MS: String(DEBOUNCE) }, { eventBus: bus, eventTimers: false, now: () => clock.now });
    cleanup.push(async () => {
      await b.close();
      bus.destroy();
    });
    // The child has no bus: this task relays what the child appends.
    const { proc, base } = await spawnTask({ METRICS_INTERVAL_MS: '0', KEY_PREFIX: prefix, BACKEND_EVENTS: 'true', NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES) }, cleanup);
    const ch = `scores:${uid()}`;
    const s = await openStream(base, ch);
    await eventually(async () => (await b.events!.relayOnce(), of(eb, 'channel.occupied', ch).length === 1), 10_000, 'occupied from the child task');

    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
    s.close();
    // Its lease still runs: a sweep now leaves the channel occupied.
    expect(await round(eb, ch, b)).toEqual({ occupied: 1, vacated: 0 });
    // The child renewed its lease at most at the kill (its own clock: `Date.now()` then, at or before `clock.now`).
    clock.now = Date.now() + OCCUPANCY_LEASE_MS + 1;
    // This sweep drops the dead holder; the channel starts its debounce.
    expect(await round(eb, ch, b)).toEqual({ occupied: 1, vacated: 0 });
    clock.now += Math.max(DEBOUNCE, OCCUPANCY_TICK_MS);
    expect(await round(eb, ch, b)).toEqual({ occupied: 1, vacated: 1 });
  }, 60_000);
});

describe('PutEvents: batches, retries of failed entries only, at least once', () => {
  const events = (n: number, bytes = 10): BackendEvent[] =>
    Array.from({ length: n }, (_, i) => ({ type: 'client.publish', id: `id-${i}`, detail: JSON.stringify({ id: `id-${i}`, pad: 'x'.repeat(bytes) }) }));

  test('signed as the AWS SDK signs it: SigV4 for service events, AWS JSON 1.1, X-Amz-Target AWSEvents.PutEvents, session token signed', async () => {
    const eb = await startEventBridge();
    const session = { accessKeyId: 'ASIATEST', secretAccessKey: 'session-secret', sessionToken: 'token/with+chars=' };
    const bus = new EventBridgeBus({ eventBusName: 'test-bus', endpoint: eb.url, region: eb.region, credentials: async () => session });
    cleanup.push(() => bus.destroy());
    expect(await bus.put(events(2))).toEqual({ failed: [] });
    const [seen] = eb.requests;
    expect(seen.headers).toMatchObject({ 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AWSEvents.PutEvents', 'x-amz-security-token': session.sessionToken });
    expect(seen.headers.authorization).toMatch(new RegExp(`/${eb.region}/events/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,`));
    expect(seen.headers.authorization).toBe(await sdkAuthorization('events', eb.region, seen, session));
    expect(JSON.parse(seen.body)).toEqual({ Entries: events(2).map((e) => ({ Source: 'realtime', DetailType: e.type, Detail: e.detail, EventBusName: 'test-bus' })) });
  });

  test('at most 10 entries per call; under 256 KB of entries per call', async () => {
    const eb = await startEventBridge();
    const bus = busFor(eb);
    cleanup.push(() => bus.destroy());
    expect(await bus.put(events(25))).toEqual({ failed: [] });
    expect(eb.calls.map((c) => c.entries)).toEqual([10, 10, 5]);
    eb.calls.length = 0;
    // Ten entries of 30 KB: 300 KB, more than one call may carry.
    expect(await bus.put(events(10, 30_000))).toEqual({ failed: [] });
    expect(eb.calls.map((c) => c.entries)).toEqual([8, 2]);
    expect(eb.calls.every((c) => c.status === 200)).toBe(true);
    expect(eb.events).toHaveLength(35);
    // An entry over the limit alone is refused for good, without a call.
    eb.calls.length = 0;
    expect(await bus.put(events(1, PUT_EVENTS_MAX_BYTES))).toEqual({ failed: [{ index: 0, retryable: false, code: 'EntryTooLarge' }] });
    expect(eb.calls).toHaveLength(0);
  });

  test('FailedEntryCount: only the failed entries are sent again; a non-retryable code is reported, not retried', async () => {
    const eb = await startEventBridge();
    const bus = busFor(eb);
    cleanup.push(() => bus.destroy());
    eb.failEntries(2); // the first two entries of the next call: InternalFailure
    expect(await bus.put(events(5))).toEqual({ failed: [] });
    expect(eb.calls.map((c) => [c.entries, c.failedEntries])).toEqual([
      [5, 2],
      [2, 0],
    ]);
    expect(eb.events.map((e) => e.detail.id).sort()).toEqual(['id-0', 'id-1', 'id-2', 'id-3', 'id-4']);
    eb.calls.length = 0;
    eb.failEntries(1, 'MalformedDetail');
    expect(await bus.put(events(3))).toEqual({ failed: [{ index: 0, retryable: false, code: 'MalformedDetail' }] });
    expect(eb.calls.map((c) => c.entries)).toEqual([3]);
  });

  test('the stand-in fails N calls: the events stay in the outbox and arrive; a lost answer gives duplicates with the same id', async () => {
    const stack = await startLocalStack({ backendEvents: { timers: false }, core: { keyPrefix: `e${uid()}:` } });
    cleanup.push(() => stack.close());
    const eb = stack.eventBridge!;
    const subs = [`u-${uid()}`, `u-${uid()}`, `u-${uid()}`];
    for (const sub of subs) expect((await revoke(stack, sub)).status).toBe(202);
    eb.failCalls(5); // the bus tries 3 times per round: round 1 fails whole, round 2 succeeds on its third call
    expect(await stack.sse.events!.relayOnce()).toBe(0);
    expect(eb.events).toHaveLength(0);
    expect(await stack.sse.events!.relayOnce()).toBe(3);
    expect(eb.ofType('user.revoked').map((e) => e.detail.sub).sort()).toEqual([...subs].sort());
    expect(await stack.sse.events!.relayOnce()).toBe(0); // acknowledged: nothing sent twice

    const again = `u-${uid()}`;
    await revoke(stack, again);
    eb.failCalls(1, 'lose-answer');
    expect(await stack.sse.events!.relayOnce()).toBe(1);
    const copies = eb.ofType('user.revoked').filter((e) => e.detail.sub === again);
    expect(copies).toHaveLength(2);
    expect(copies[0].detail.id).toBe(copies[1].detail.id);
    expect(copies[0].id).not.toBe(copies[1].id); // EventBridge's own id differs per put: dedupe on detail.id
  });
});

async function revoke(stack: LocalStack, sub: string): Promise<{ status: number; body: { sub: string; epoch: number } }> {
  const r = await fetch(stack.outputs.PublishUrl.replace(/\/publish$/, '/revoke'), { method: 'POST', body: JSON.stringify({ sub }), headers: { 'content-type': 'application/json' } });
  return { status: r.status, body: (await r.json()) as { sub: string; epoch: number } };
}

async function wsTicket(stack: LocalStack, user: string, channels: string[]): Promise<string> {
  const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', body: JSON.stringify({ channels, transport: 'ws' }), headers: { 'content-type': 'application/json', 'x-local-user': user } });
  expect(r.status).toBe(201);
  return ((await r.json()) as { wsUrl: string }).wsUrl;
}

describe('on the local stack (API Gateway stand-in, handlers, relay)', () => {
  const namespaces = { ...TEST_NAMESPACES, room: { subscribe: 'authenticated' as const, publish: 'authenticated' as const, historySize: 10, historyTtlSeconds: 600, clientEvents: true } };

  test('an API Gateway connection occupies its channels; $disconnect vacates them after the debounce', async () => {
    // No debounce here (the two-task tests cover it on a virtual clock): the first sweep after `$disconnect` vacates.
    const stack = await startLocalStack({ backendEvents: { timers: false }, core: { keyPrefix: `e${uid()}:`, namespaces }, env: { OCCUPANCY_DEBOUNCE_MS: '0' } });
    cleanup.push(() => stack.close());
    const eb = stack.eventBridge!;
    const ch = `chat:${uid()}`;
    const ws = new WsClient(await wsTicket(stack, 'alice', [ch]));
    await ws.opened;
    await stack.sse.events!.relayOnce();
    expect(of(eb, 'channel.occupied', ch)).toHaveLength(1);
    // A subscribe frame occupies another channel; an unsubscribe frame vacates it (no debounce here).
    const other = `scores:${uid()}`; // public: no grant needed
    await ws.request({ action: 'subscribe', channel: other }, 'subscribed');
    await stack.sse.events!.relayOnce();
    expect(of(eb, 'channel.occupied', other)).toHaveLength(1);
    await ws.request({ action: 'unsubscribe', channel: other }, 'unsubscribed');
    await stack.sse.events!.tick();
    await stack.sse.events!.relayOnce();
    expect(of(eb, 'channel.vacated', other)).toHaveLength(1);
    expect(of(eb, 'channel.vacated', ch)).toHaveLength(0);
    ws.close();
    await ws.closed;
    // $disconnect runs after the close: wait for its release (the channel pending in the debounce set).
    const redis = stack.sse.redis;
    await eventually(async () => (await redis.zscore(`${stack.sse.config.core.keyPrefix}{be}ov`, ch)) !== null, 10_000, '$disconnect');
    await stack.sse.events!.relayOnce();
    expect(of(eb, 'channel.vacated', ch)).toHaveLength(0);
    await stack.sse.events!.tick();
    await stack.sse.events!.relayOnce();
    expect(of(eb, 'channel.vacated', ch)).toHaveLength(1);
  });

  test('user.revoked carries the sub and the epoch POST /revoke answered', async () => {
    const stack = await startLocalStack({ backendEvents: { timers: false }, core: { keyPrefix: `e${uid()}:` } });
    cleanup.push(() => stack.close());
    const sub = `u-${uid()}`;
    const r = await revoke(stack, sub);
    await stack.sse.events!.relayOnce();
    expect(stack.eventBridge!.ofType('user.revoked')).toEqual([expect.objectContaining({ source: 'realtime', detail: { id: expect.stringMatching(/^[0-9a-f]{32}$/), type: 'user.revoked', sub, epoch: r.body.epoch, at: expect.any(Number) } })]);
  });

  test('client.publish: a client publish to an opted-in namespace emits it (event id, sub, data); other namespaces and backend publishes do not', async () => {
    const stack = await startLocalStack({ backendEvents: { timers: false }, core: { keyPrefix: `e${uid()}:`, namespaces } });
    cleanup.push(() => stack.close());
    const eb = stack.eventBridge!;
    const on = `room:${uid()}`;
    const off = `chat:${uid()}`;
    const ws = new WsClient(await wsTicket(stack, 'bob', [on, off]));
    cleanup.push(() => ws.close());
    await ws.opened;
    const a = await ws.request({ action: 'publish', channel: on, type: 'msg', data: { text: 'hi' } }, 'published');
    await ws.request({ action: 'publish', channel: off, type: 'msg', data: { text: 'not told' } }, 'published');
    // A backend's publish to the opted-in namespace: not a client publish.
    const pr = await fetch(stack.outputs.PublishUrl, { method: 'POST', body: JSON.stringify({ channel: on, type: 'msg', data: { text: 'server' } }), headers: { 'content-type': 'application/json' } });
    expect(pr.status).toBe(202);
    // And on the tasks' `/live`: the same path.
    const live = new WsClient(`${stack.outputs.LiveUrl}?ticket=${(await wsTicket(stack, 'carol', [on])).split('ticket=')[1]}`);
    cleanup.push(() => live.close());
    await live.opened;
    const b = await live.request({ action: 'publish', channel: on, type: 'msg', data: { text: 'from live' } }, 'published');
    await stack.sse.events!.relayOnce();
    const got = eb.ofType('client.publish').map((e) => e.detail);
    expect(got).toEqual([
      { id: expect.any(String), type: 'client.publish', channel: on, eventId: a.id, eventType: 'msg', sub: 'bob', data: { text: 'hi' }, at: expect.any(Number) },
      { id: expect.any(String), type: 'client.publish', channel: on, eventId: b.id, eventType: 'msg', sub: 'carol', data: { text: 'from live' }, at: expect.any(Number) },
    ]);
    expect(got[0].id).not.toBe(got[1].id);
  });
});
