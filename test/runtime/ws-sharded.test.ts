import type Redis from 'ioredis';
import pino from 'pino';
import { publish } from '../../core/events';
import { preparePublish } from '../../core/events';
import { dispatchFanout, parseWork, resumeFanout } from '../../core/fanout-queue';
import { RedisChannelBroker } from '../../core/redis/channel-broker';
import { Keys } from '../../core/redis/keys';
import { shardOf } from '../../core/shard';
import type { LocalStack } from '../../local/stack';
import { connectRedis, coreConfig, eventually, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

/**
 * The sharded fan-out on the local stack: the publish handler enqueues work items on the local FIFO
 * queue (`local/queue.ts`), the fan-out worker handler consumes them with parallel invocations, the
 * gateway emulator's management API delivers to real `ws` clients. Faults are injected by counts.
 *
 * The delivery contract under test is at least once, in order per connection: a client keeps an
 * envelope only when its `id` is above the last id it kept (ids grow), which drops every redelivery.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
const SHARDS = 4;
const MAX_RECEIVES = 3;
/** The fan-out's attempts per post and its backoff caps (core/fanout.ts defaults: 6 attempts, 50 ms doubling, at most 2 s). */
const MAX_ATTEMPTS = 6;
const CAPS = [50, 100, 200, 400, 800];
/** Random draws for the storm: each cap times each is a fraction no other timer asks for. */
const DRAWS = [0.3713, 0.6127, 0.8291];

let redis: Redis;
let stack: LocalStack;
const open: WsClient[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES) },
    lambda: { wsFanoutShards: SHARDS, wsFanoutInlineMax: 10, wsReplayInlineMax: 5 },
    fanoutQueue: { workers: SHARDS, batchSize: 10, maxReceiveCount: MAX_RECEIVES },
  });
});
afterEach(async () => {
  stack.ws.setManagementThrottle(undefined);
  stack.queue!.refuseNext = 0;
  stack.queue!.loseNext = 0;
  await stack.queue!.idle();
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  await stack.close();
  redis.disconnect();
});

const postPublish = async (channel: string, data: unknown, idempotencyKey?: string) => {
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data, idempotencyKey }) });
  return { status: r.status, body: (await r.json()) as { id: string; duplicate: boolean } };
};
const pub = async (channel: string, data: unknown) => {
  const r = await postPublish(channel, data);
  expect(r.status).toBe(202);
  return r.body.id;
};

async function connectMany(s: LocalStack, channel: string, n: number): Promise<{ clients: WsClient[]; ids: string[] }> {
  const before = new Set(s.ws.connectionIds());
  const clients: WsClient[] = [];
  for (let i = 0; i < n; i += 25) {
    const tickets = await Promise.all(Array.from({ length: Math.min(25, n - i) }, (_, k) => ticketFor(redis, `u${i + k}`, [channel], 'ws')));
    clients.push(...(await Promise.all(tickets.map((t) => connectWs(`${s.outputs.WebSocketUrl}?ticket=${t}`)))));
  }
  open.push(...clients);
  const ids = s.ws.connectionIds().filter((id) => !before.has(id));
  expect(ids).toHaveLength(n);
  return { clients, ids };
}

/** What a client keeps: envelopes whose id is above the last one kept (the documented client rule). */
const kept = (c: WsClient, channel: string) => {
  let last = 0;
  const out: string[] = [];
  for (const e of c.events(channel)) {
    if (Number(e.id) > last) {
      out.push(e.id);
      last = Number(e.id);
    }
  }
  return out;
};

describe('sharded fan-out', () => {
  test(`order per connection with ${SHARDS} shards and ${SHARDS} parallel workers while two publishers run: every client gets every event once, in publish order`, async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const ca = await connectMany(stack, a, 48);
    const cb = await connectMany(stack, b, 24);
    const sentBefore = stack.queue!.stats.sent;
    // Two publishers at once, each awaiting its publish (202 once enqueued) before the next.
    const run = async (ch: string, n: number) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push(await pub(ch, { i }));
      return ids;
    };
    const [idsA, idsB] = await Promise.all([run(a, 30), run(b, 20)]);
    // One work item per (event, shard) went through the queue.
    expect(stack.queue!.stats.sent - sentBefore).toBe((30 + 20) * SHARDS);
    await stack.queue!.idle();
    await Promise.all(ca.clients.map((c) => c.until((x) => x.events(a).length >= idsA.length, 20_000, 'every event of a')));
    await Promise.all(cb.clients.map((c) => c.until((x) => x.events(b).length >= idsB.length, 20_000, 'every event of b')));
    // Nothing was redelivered here, so not even the client rule had to drop anything.
    for (const c of ca.clients) expect(c.events(a).map((e) => e.id)).toEqual(idsA);
    for (const c of cb.clients) expect(c.events(b).map((e) => e.id)).toEqual(idsB);
    expect(stack.queue!.deadLetters).toHaveLength(0);
  }, 60_000);

  test('small audiences (below WS_FANOUT_INLINE_MAX) are posted inline: nothing is enqueued', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(stack, ch, 3);
    const sentBefore = stack.queue!.stats.sent;
    const id = await pub(ch, 'small');
    // Inline: delivered before the publish answered.
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual([id]);
    expect(stack.queue!.stats.sent).toBe(sentBefore);
  });

  test('a worker crash after posting (its answer lost): the batch is redelivered, the clients of that shard see repeated ids, and the client rule keeps each event once, in order', async () => {
    const ch = `chat:${uid()}`;
    const { clients, ids: connIds } = await connectMany(stack, ch, 40);
    stack.queue!.loseNext = 1;
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await pub(ch, { i }));
    await stack.queue!.idle();
    expect(stack.queue!.stats.lost).toBeGreaterThanOrEqual(1);
    await Promise.all(clients.map((c) => c.until((x) => kept(x, ch).length === ids.length, 20_000, 'every event kept')));
    let repeated = 0;
    for (const c of clients) {
      expect(kept(c, ch)).toEqual(ids);
      const got = c.events(ch).map((e) => e.id);
      // Whatever arrived twice arrived again after the first copy, and only ids of this channel.
      expect(new Set(got)).toEqual(new Set(ids));
      repeated += got.length - ids.length;
    }
    // The lost batch held 1-6 items of one shard: its connections got those items twice, nobody else did.
    expect(repeated).toBeGreaterThan(0);
    const shardSizes = Array.from({ length: SHARDS }, (_, k) => connIds.filter((id) => shardOf(id, SHARDS) === k).length);
    expect(shardSizes.some((size) => size > 0 && repeated % size === 0 && repeated / size <= ids.length)).toBe(true);
    expect(stack.queue!.deadLetters).toHaveLength(0);
  }, 60_000);

  test('throttling storm (the first 200 management calls refused, and one connection\'s first 6): retried with backoff and jitter (a post out of attempts fails its item, redelivered to those connections only); every client gets every event once, in order', async () => {
    const ch = `chat:${uid()}`;
    const { clients, ids: connIds } = await connectMany(stack, ch, 40);
    // One connection is refused as often as a post has attempts (the fan-out's maxAttempts, 6): its first
    // post certainly runs out of them, whatever the interleaving of the storm.
    const victim = connIds[0];
    stack.ws.setManagementThrottle({ refuseFirst: 200, refuseConnection: { connectionId: victim, times: MAX_ATTEMPTS } });
    // Math.random drawn from a fixed cycle, so each backoff wait is recognisable as draw × cap; setTimeout is
    // watched (and still runs) to read the waits asked for.
    let draws = 0;
    const random = jest.spyOn(Math, 'random').mockImplementation(() => DRAWS[draws++ % DRAWS.length]);
    const timers = jest.spyOn(globalThis, 'setTimeout');
    const ids: string[] = [];
    try {
      for (let i = 0; i < 5; i++) ids.push(await pub(ch, { i }));
      await stack.queue!.idle();
    } finally {
      random.mockRestore();
    }
    const waits = timers.mock.calls.map((c) => Number(c[1]));
    timers.mockRestore();
    const calls = stack.ws.managementCalls.filter((c) => c.method === 'POST' && c.eventId !== undefined && ids.includes(c.eventId));
    expect(stack.ws.managementThrottled).toBeGreaterThanOrEqual(200);

    // Backoff and jitter: every retry waited draw × min(2000, 50 × 2^(n-1)) ms before attempt n+1 (full jitter).
    const backoffs = waits.flatMap((ms) => DRAWS.flatMap((r, di) => CAPS.map((cap, k) => ({ r: di, k, hit: Math.abs(ms - r * cap) < 1e-9 }))).filter((x) => x.hit));
    // Exponential: the victim's five retries alone asked for the caps 50, 100, 200, 400 and 800.
    expect(new Set(backoffs.map((b) => b.k))).toEqual(new Set([0, 1, 2, 3, 4]));
    // Jittered: the waits follow the random draws (more than one multiplier of the cap), not the cap itself.
    expect(new Set(backoffs.map((b) => b.r)).size).toBeGreaterThan(1);
    expect(draws).toBeGreaterThanOrEqual(backoffs.length);
    // And each wait happened: the victim's attempts of its first event are spaced at least by the smallest draw × cap.
    const first = calls.filter((c) => c.connectionId === victim && c.eventId === ids[0]);
    expect(first.slice(0, MAX_ATTEMPTS).every((c) => c.refused)).toBe(true);
    for (let n = 1; n < MAX_ATTEMPTS; n++) expect(first[n].at - first[n - 1].at).toBeGreaterThanOrEqual(Math.min(...DRAWS) * CAPS[n - 1] - 2);

    // Redelivery: the victim's post ran out of attempts, so its item failed and came back; the redelivery posted
    // the event to the victim (accepted), and to no connection that had it already.
    expect(first.length).toBeGreaterThan(MAX_ATTEMPTS);
    expect(first.filter((c) => !c.refused)).toHaveLength(1);
    expect(stack.queue!.stats.received).toBeGreaterThan(stack.queue!.stats.deleted);
    for (const id of ids) {
      for (const conn of connIds) {
        const mine = calls.filter((c) => c.connectionId === conn && c.eventId === id);
        const accepted = mine.findIndex((c) => !c.refused);
        // Exactly one accepted post per connection and event, and no call after it.
        expect({ conn, id, accepted, after: mine.length - 1 - accepted }).toEqual({ conn, id, accepted: expect.any(Number), after: 0 });
        expect(accepted).toBeGreaterThanOrEqual(0);
      }
    }
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).length >= ids.length, 30_000, 'every event')));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual(ids);
    expect(stack.queue!.deadLetters).toHaveLength(0);
  }, 60_000);

  test('a poisoned item is received maxReceiveCount times, lands in the DLQ, and its shard moves on', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(stack, ch, 20);
    const dlqBefore = stack.queue!.deadLetters.length;
    // An item no worker can run, ahead of real items in every shard's group.
    await stack.queue!.send(Array.from({ length: SHARDS }, (_, k) => ({ body: '{"v":1,"kind":"nonsense"', groupId: `shard-${k}`, deduplicationId: `poison-${uid()}` })));
    const id = await pub(ch, 'after the poison');
    await stack.queue!.idle();
    const dead = stack.queue!.deadLetters.slice(dlqBefore);
    expect(dead).toHaveLength(SHARDS);
    for (const d of dead) expect(d.receiveCount).toBe(MAX_RECEIVES);
    expect(() => parseWork(dead[0].body)).toThrow(/not JSON/);
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).length === 1)));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual([id]);
  }, 60_000);

  test('an item that reaches the DLQ: its connections are closed (DeleteConnection) and resume with since; other channels keep their sockets', async () => {
    const ch = `chat:${uid()}`;
    const calm = `chat:${uid()}`;
    const { clients } = await connectMany(stack, ch, 16);
    const bystander = (await connectMany(stack, calm, 1)).clients[0];
    const dlqBefore = stack.queue!.deadLetters.length;
    // A poster that always fails: every PostToConnection is refused (429), DeleteConnection goes through.
    stack.ws.setManagementThrottle({ refuseFirst: Number.MAX_SAFE_INTEGER, methods: ['POST'] });
    const id = await pub(ch, 'never posted');
    await stack.queue!.idle();
    expect(stack.queue!.deadLetters.length).toBeGreaterThan(dlqBefore);
    // Every client of the channel is told by a close (1000: DeleteConnection), none is left open without the event.
    await Promise.all(clients.map((c) => c.until((x) => x.closeCode !== undefined, 20_000, 'the connection to be closed')));
    expect(clients.map((c) => c.closeCode)).toEqual(Array(clients.length).fill(1000));
    for (const c of clients) expect(c.events(ch)).toEqual([]);
    await stack.deadLetterQueue!.idle();
    stack.ws.setManagementThrottle(undefined);
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
    // A client that reconnects and resumes with since gets the event it missed.
    const again = (await connectMany(stack, ch, 1)).clients[0];
    again.send({ action: 'subscribe', channel: ch, since: String(Number(id) - 1) });
    await again.until((x) => x.events(ch).some((e) => e.id === id), 20_000, 'the missed event');
  }, 60_000);

  test('an item dead-lettered with no failed post recorded (every receipt a crashed worker): the DLQ consumer closes its whole shard\'s subscribers of the channel', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(stack, ch, 12);
    const dlqBefore = stack.queue!.deadLetters.length;
    // One item per shard, each received MAX_RECEIVES times, every answer lost: no receipt records which posts failed.
    stack.queue!.loseNext = SHARDS * MAX_RECEIVES;
    await pub(ch, 'answers lost');
    await stack.queue!.idle();
    expect(stack.queue!.deadLetters.length - dlqBefore).toBe(SHARDS);
    await Promise.all(clients.map((c) => c.until((x) => x.closeCode !== undefined, 20_000, 'the connection to be closed')));
    expect(clients.map((c) => c.closeCode)).toEqual(Array(clients.length).fill(1000));
    await stack.deadLetterQueue!.idle();
  }, 60_000);

  test('an idempotent publish whose items were partly refused answers 503; its retry answers duplicate and enqueues only the missing shards: every client gets the event once', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(stack, ch, 24);
    const key = `k-${uid()}`;
    const sentBefore = stack.queue!.stats.sent;
    stack.queue!.refuseNext = 2;
    const first = await postPublish(ch, 'once', key);
    expect(first.status).toBe(503);
    expect(stack.queue!.stats.sent - sentBefore).toBe(SHARDS - 2);
    const retry = await postPublish(ch, 'once', key);
    expect(retry.status).toBe(202);
    expect(retry.body.duplicate).toBe(true);
    expect(stack.queue!.stats.sent - sentBefore).toBe(SHARDS);
    // A second retry finds the fan-out complete: nothing more is enqueued.
    expect((await postPublish(ch, 'once', key)).status).toBe(202);
    expect(stack.queue!.stats.sent - sentBefore).toBe(SHARDS);
    await stack.queue!.idle();
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).length === 1)));
    const marker = await pub(ch, 'marker');
    await stack.queue!.idle();
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).some((e) => e.id === marker))));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual([retry.body.id, marker]);
  }, 60_000);

  test('a since replay longer than WS_REPLAY_INLINE_MAX: the first events come from the message handler, the rest from a worker, then subscribed; in order, without gaps', async () => {
    const ch = `chat:${uid()}`;
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) ids.push((await publish({ channel: ch, type: 'update', data: { i } }, SERVER, { redis, config })).id);
    // Subscribed at connect (the ticket names the channel): the subscribe keeps that floor and replays up to it.
    const c = (await connectMany(stack, ch, 1)).clients[0];
    const sentBefore = stack.queue!.stats.sent;
    c.send({ action: 'subscribe', channel: ch, since: String(Number(ids[0]) - 1) });
    await c.until((x) => x.signals('subscribed').some((f) => f.channel === ch), 20_000, 'subscribed');
    expect(stack.queue!.stats.sent - sentBefore).toBe(1);
    expect(c.events(ch).map((e) => e.id)).toEqual(ids);
    // `subscribed` comes after the last replayed event.
    const lastEvent = c.frames.findIndex((f) => f.id === ids[ids.length - 1]);
    const subscribed = c.frames.findIndex((f) => f.type === 'subscribed' && f.channel === ch);
    expect(subscribed).toBeGreaterThan(lastEvent);
    // Live events follow.
    const live = await pub(ch, 'live');
    await c.until((x) => x.events(ch).some((e) => e.id === live));
    expect(c.events(ch).map((e) => e.id)).toEqual([...ids, live]);
  }, 60_000);

  test('a since replay finished by a worker after the history was trimmed past it: the worker sends reset for the channel before subscribed (no silent gap)', async () => {
    const ch = `chat:${uid()}`;
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) ids.push((await publish({ channel: ch, type: 'update', data: { i } }, SERVER, { redis, config })).id);
    const c = (await connectMany(stack, ch, 1)).clients[0];
    // The workers stop, so the deferred rest waits in the queue while the history moves on.
    await stack.queue!.stop();
    try {
      c.send({ action: 'subscribe', channel: ch, since: String(Number(ids[0]) - 1) });
      await c.until((x) => x.events(ch).length === 5, 20_000, 'the inline page (WS_REPLAY_INLINE_MAX)');
      await eventually(() => stack.queue!.depth === 1, 10_000, 'the rest of the replay queued');
      // chat keeps 200 events: 200 more trim every event the worker was to send.
      for (let i = 0; i < 200; i++) await publish({ channel: ch, type: 'update', data: { later: i } }, SERVER, { redis, config });
    } finally {
      stack.queue!.start(stack.handlers.fanoutWorker);
    }
    await c.until((x) => x.signals('subscribed').some((f) => f.channel === ch), 20_000, 'subscribed');
    expect(c.events(ch).map((e) => e.id)).toEqual(ids.slice(0, 5));
    const reset = c.frames.findIndex((f) => f.type === 'reset' && f.channel === ch);
    const subscribed = c.frames.findIndex((f) => f.type === 'subscribed' && f.channel === ch);
    const lastInline = c.frames.findIndex((f) => f.id === ids[4]);
    expect(reset).toBeGreaterThan(lastInline);
    expect(subscribed).toBeGreaterThan(reset);
  }, 60_000);
});

/**
 * Positions per channel (DESIGN "Positions per channel"): ids are issued per channel, so two channels may issue the same
 * one. Forced here the way it happens: both channels' last id is the same value ahead of Redis time (a primary whose
 * clock ran ahead), so each channel's next publish takes one more than it, the same id on both.
 */
async function sameIdOnTwoChannels(a: string, b: string): Promise<[string, string]> {
  const keys = new Keys(config.keyPrefix);
  const ahead = String((Date.now() + 60_000) * 1000);
  await Promise.all([redis.set(keys.lastId(a), ahead), redis.set(keys.lastId(b), ahead)]);
  const broker = new RedisChannelBroker(redis, config);
  const envelopes = await Promise.all(
    [a, b].map(async (channel) => {
      const { ch, head, tail } = preparePublish({ channel, type: 'update', data: channel }, SERVER, config);
      const r = await broker.publish({ channel: ch, head, tail });
      if (r.kind !== 'published') throw new Error(r.kind);
      return r.envelope;
    }),
  );
  expect(JSON.parse(envelopes[0]).id).toBe(JSON.parse(envelopes[1]).id);
  return envelopes as [string, string];
}

describe('fan-out of two channels that issued the same id', () => {
  const delivery = async () => stack.lambda.delivery(await stack.lambda.clients(), stack.lambda.postClient()!);

  test('through the queue: each channel\'s work items are enqueued (the FIFO deduplication id names the channel) and every subscriber gets its channel\'s event once', async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const [ca, cb] = [await connectMany(stack, a, 12), await connectMany(stack, b, 12)];
    const [ea, eb] = await sameIdOnTwoChannels(a, b);
    const deps = await delivery();
    const { sent, deduplicated } = stack.queue!.stats;
    await dispatchFanout(a, ea, deps, { track: true });
    await dispatchFanout(b, eb, deps, { track: true });
    expect(stack.queue!.stats.deduplicated - deduplicated).toBe(0);
    expect(stack.queue!.stats.sent - sent).toBe(2 * SHARDS);
    await stack.queue!.idle();
    await Promise.all([...ca.clients, ...cb.clients].map((c) => c.until((x) => x.events().length === 1, 20_000, 'its channel\'s event')));
    for (const c of ca.clients) expect(c.raw).toEqual([ea]);
    for (const c of cb.clients) expect(c.raw).toEqual([eb]);
  }, 60_000);

  test('inline: a retry of one channel\'s publish is not answered by the other channel\'s marker (markers are keyed by channel and id), and a retry after the marker was written delivers nothing twice', async () => {
    const a = `chat:${uid()}`;
    const b = `chat:${uid()}`;
    const [ca, cb] = [await connectMany(stack, a, 3), await connectMany(stack, b, 3)];
    const [ea, eb] = await sameIdOnTwoChannels(a, b);
    const id = JSON.parse(ea).id as string;
    const deps = await delivery();
    // a's fan-out finished and was recorded; b's first attempt was cut off before its fan-out (the publisher retries).
    await dispatchFanout(a, ea, deps, { track: true });
    await resumeFanout(b, id, deps);
    for (const c of cb.clients) expect(c.raw).toEqual([eb]);
    // Retried again, after each marker was written: nothing is posted twice.
    await resumeFanout(a, id, deps);
    await resumeFanout(b, id, deps);
    for (const c of ca.clients) expect(c.raw).toEqual([ea]);
    for (const c of cb.clients) expect(c.raw).toEqual([eb]);
  });
});

describe('sharded fan-out: one shard, one post at a time', () => {
  let solo: LocalStack;
  beforeAll(async () => {
    const { startLocalStack } = await import('../../local/stack');
    solo = await startLocalStack({
      logger: pino({ level: 'silent' }),
      env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES) },
      lambda: { wsFanoutShards: 1, wsFanoutInlineMax: 1, wsFanoutConcurrency: 1 },
      fanoutQueue: { workers: 1, maxReceiveCount: MAX_RECEIVES },
    });
  });
  afterAll(async () => {
    for (const o of open.splice(0)) o.close();
    await solo.close();
  });

  test('a post refused more times than its attempts fails the item; the redelivery posts to that connection only: everyone gets the event exactly once', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(solo, ch, 5);
    // One post in flight: the first six calls are the first connection's six attempts (the fan-out's maxAttempts).
    solo.ws.setManagementThrottle({ refuseFirst: 6 });
    const id = await pub2(solo, ch);
    await solo.queue!.idle();
    expect(solo.ws.managementThrottled).toBe(6);
    // One item, received twice: the first receipt failed one connection, the second posted to it alone.
    expect(solo.queue!.stats.received).toBe(2);
    expect(solo.queue!.stats.deleted).toBe(1);
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).length === 1)));
    const marker = await pub2(solo, ch);
    await solo.queue!.idle();
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).some((e) => e.id === marker))));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual([id, marker]);
  }, 60_000);
});

async function pub2(s: LocalStack, channel: string): Promise<string> {
  const r = await fetch(s.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data: 'x' }) });
  expect(r.status).toBe(202);
  return ((await r.json()) as { id: string }).id;
}

