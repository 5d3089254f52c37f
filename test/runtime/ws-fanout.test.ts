import type Redis from 'ioredis';
import pino from 'pino';
import { connectionKey, registerConnection, subscribersKey } from '../../core/connections';
import { publish } from '../../core/events';
import { createManagementPoster } from '../../core/aws/management-client';
import { fanout, isRetryable, isThrottled } from '../../core/fanout';
import { dispatchFanout } from '../../core/fanout-queue';
import { createManagementClient } from '../../core/aws/management-sdk';
import { Keys } from '../../core/redis/keys';
import type { LocalStack } from '../../local/stack';
import { connectRedis, coreConfig, eventually, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
const keys = new Keys(config.keyPrefix);
const GRACE_MS = 300;

let redis: Redis;
let stack: LocalStack;
let mgmt: ReturnType<typeof createManagementClient>;
const open: WsClient[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), WS_GONE_GRACE_MS: String(GRACE_MS) } });
  mgmt = createManagementClient(stack.ws.managementEndpoint);
});
afterEach(() => {
  stack.ws.setManagementThrottle(undefined);
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  mgmt.destroy();
  await stack.close();
  redis.disconnect();
});

const postPublish = async (channel: string, data: unknown) => {
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data }) });
  expect(r.status).toBe(202);
  return ((await r.json()) as { id: string }).id;
};

/** Opens `n` connections subscribed (at $connect) to `channel`, `batch` at a time; returns them with their connection ids. */
async function connectMany(channel: string, n: number, batch = 50): Promise<{ clients: WsClient[]; ids: string[] }> {
  const clients: WsClient[] = [];
  const before = new Set(stack.ws.connectionIds());
  for (let i = 0; i < n; i += batch) {
    const size = Math.min(batch, n - i);
    const tickets = await Promise.all(Array.from({ length: size }, (_, k) => ticketFor(redis, `user-${i + k}`, [channel], 'ws')));
    clients.push(...(await Promise.all(tickets.map((t) => connectWs(`${stack.outputs.WebSocketUrl}?ticket=${t}`)))));
  }
  open.push(...clients);
  const ids = stack.ws.connectionIds().filter((id) => !before.has(id));
  expect(ids).toHaveLength(n);
  return { clients, ids };
}

describe('fan-out', () => {
  test('a connection killed without $disconnect is unregistered on the next fan-out (410) while the others still receive', async () => {
    const ch = `chat:${uid()}`;
    const { clients, ids } = await connectMany(ch, 4);
    const victim = ids[1];
    stack.ws.kill(victim);
    // Past the grace period during which a 410 keeps a connection that may still be inside $connect.
    await new Promise((r) => setTimeout(r, GRACE_MS + 50));
    expect(await redis.exists(connectionKey(keys, victim))).toBe(1);
    const id = await postPublish(ch, 'after the kill');
    const alive = clients.filter((c) => c.ws.readyState === c.ws.OPEN);
    expect(alive).toHaveLength(3);
    await Promise.all(alive.map((c) => c.until((x) => x.events(ch).some((e) => e.id === id))));
    expect(await redis.exists(connectionKey(keys, victim))).toBe(0);
    const members = await redis.smembers(subscribersKey(keys, ch));
    expect(members.map((m) => m.split('|')[0]).sort()).toEqual(ids.filter((i) => i !== victim).sort());
  });

  test('a 410 inside the grace period keeps the entry $connect just wrote; after it, the entry goes', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(ch, 1);
    // A connection registered by $connect that API Gateway does not know yet (it answers 410 until $connect returns).
    const pending = `pend${uid()}=`;
    await registerConnection(pending, { sub: 'late', grant: [ch], channels: [ch] }, { redis, config });
    const p = await publish({ channel: ch, type: 'update', data: 1 }, SERVER, { redis, config });
    const deps = { redis, config, management: mgmt, options: { goneGraceMs: 10_000 } };
    expect(await fanout(ch, p.envelope!, deps)).toMatchObject({ delivered: 1, gone: 1, failed: 0 });
    expect(await redis.exists(connectionKey(keys, pending))).toBe(1);
    await clients[0].until((x) => x.events(ch).length === 1);
    expect(await fanout(ch, p.envelope!, { ...deps, options: { goneGraceMs: 0 } })).toMatchObject({ delivered: 1, gone: 1, failed: 0 });
    expect(await redis.exists(connectionKey(keys, pending))).toBe(0);
    expect(await redis.smembers(subscribersKey(keys, ch))).toHaveLength(1);
  });

  test('throttled management API (429 LimitExceededException): each refused post is retried, the retry count is exactly the number of 429s, every connection gets each event once', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(ch, 60);
    // The first 20 calls are refused. A post is retried once per 429, and none can be refused
    // maxAttempts (10) times when only 20 calls are, so: exactly 20 retries, nothing fails.
    stack.ws.setManagementThrottle({ refuseFirst: 20 });
    const p1 = await publish({ channel: ch, type: 'update', data: 'throttled' }, SERVER, { redis, config });
    const r1 = await fanout(ch, p1.envelope!, { redis, config, management: mgmt, options: { concurrency: 16, maxAttempts: 10 } });
    expect(r1).toMatchObject({ delivered: 60, gone: 0, failed: 0, retries: 20 });
    expect(stack.ws.managementThrottled).toBe(20);

    // Every 4th call refused, posts one at a time: a retry always lands on an admitted call, so
    // 60 deliveries take 79 calls (79 - floor(79 / 4) = 60), 19 of them refused and retried.
    stack.ws.setManagementThrottle({ refuseEvery: 4 });
    const p2 = await publish({ channel: ch, type: 'update', data: 'every fourth' }, SERVER, { redis, config });
    const r2 = await fanout(ch, p2.envelope!, { redis, config, management: mgmt, options: { concurrency: 1, maxAttempts: 2 } });
    expect(r2).toMatchObject({ delivered: 60, gone: 0, failed: 0, retries: 19 });
    expect(stack.ws.managementThrottled).toBe(19);

    // Through POST /publish: the Lambda's own fan-out (32 in flight, 6 attempts) with the first 5
    // calls refused; it answers after the fan-out, so every post is done by then.
    stack.ws.setManagementThrottle({ refuseFirst: 5 });
    const id3 = await postPublish(ch, 'throttled again');
    expect(stack.ws.managementThrottled).toBe(5);
    stack.ws.setManagementThrottle(undefined);

    // Every post completed before the fan-outs resolved; a marker event published last arrives after
    // anything still on the wire, so a duplicate would be seen before it.
    const marker = await postPublish(ch, 'marker');
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).some((e) => e.id === marker))));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual([p1.id, p2.id, id3, marker]);
  });

  test('an inline post that fails after every retry closes that connection (DeleteConnection), and its client resumes with since and gets the event in order; nothing is skipped silently', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(ch, 2, 1);
    const [a, b] = clients;
    const p0 = await publish({ channel: ch, type: 'update', data: 'before' }, SERVER, { redis, config });
    const poster = createManagementPoster(stack.ws.managementEndpoint);
    const deps = { redis, config, management: poster, options: { concurrency: 1, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 } };
    await dispatchFanout(ch, p0.envelope!, deps);
    await Promise.all(clients.map((c) => c.until((x) => x.events(ch).length === 1)));
    // One post at a time: the first connection's three attempts are refused (calls 1-3); the
    // second's post is call 4; the DeleteConnection of the first is call 5.
    stack.ws.setManagementThrottle({ refuseFirst: 3 });
    const p1 = await publish({ channel: ch, type: 'update', data: 'missed once' }, SERVER, { redis, config });
    const r = await dispatchFanout(ch, p1.envelope!, deps);
    expect(r).toMatchObject({ delivered: 1, failed: 1, closed: 1, inline: 1 });
    expect(stack.ws.managementThrottled).toBe(3);
    // Whichever was posted first was refused: it is closed by the gateway (1000 from DeleteConnection),
    // not left open without the event; the other stays open and has both events.
    const missed = await Promise.race([a.closed.then(() => a), b.closed.then(() => b)]);
    const other = missed === a ? b : a;
    expect(await missed.closed).toBe(1000);
    await other.until((x) => x.events(ch).length === 2);
    expect(missed.events(ch).map((e) => e.id)).toEqual([p0.id]);
    // The client reconnects and resumes from the last id it has: it gets the event it missed.
    const again = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${await ticketFor(redis, 'user-again', [ch], 'ws')}`);
    open.push(again);
    again.send({ action: 'subscribe', channel: ch, since: p0.id });
    await again.until((x) => x.signals('subscribed').length === 1);
    expect(again.events(ch).map((e) => e.id)).toEqual([p1.id]);
    poster.destroy();
  });

  test('throttle rules are checked: refuseEvery below 2 or a negative refuseFirst is refused with a readable error', () => {
    expect(() => stack.ws.setManagementThrottle({ refuseEvery: 1 })).toThrow(/refuseEvery must be a whole number >= 2/);
    expect(() => stack.ws.setManagementThrottle({ refuseFirst: -1 })).toThrow(/refuseFirst must be a whole number >= 0/);
    expect(() => stack.ws.setManagementThrottle({ refuseFirst: 1.5 })).toThrow(/refuseFirst/);
  });

  test('error classification: SDK v3 names and $metadata.httpStatusCode', () => {
    expect(isThrottled({ name: 'LimitExceededException', $metadata: { httpStatusCode: 429 } })).toBe(true);
    expect(isThrottled({ name: 'Whatever', $metadata: { httpStatusCode: 429 } })).toBe(true);
    expect(isRetryable({ name: 'InternalServerError', $metadata: { httpStatusCode: 500 } })).toBe(true);
    expect(isRetryable({ name: 'ForbiddenException', $metadata: { httpStatusCode: 403 } })).toBe(false);
    expect(isRetryable({ name: 'PayloadTooLargeException', $metadata: { httpStatusCode: 413 } })).toBe(false);
    expect(isRetryable(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(true);
  });

  test('1,000 local WebSocket connections: every event reaches every connection exactly once, in order', async () => {
    const ch = `chat:${uid()}`;
    const { clients } = await connectMany(ch, 1000);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await postPublish(ch, { n: i }));
    // Small SSCAN pages: many pages, still once per connection.
    const p = await publish({ channel: ch, type: 'update', data: { n: 3 } }, SERVER, { redis, config });
    const r = await fanout(ch, p.envelope!, { redis, config, management: mgmt, options: { pageSize: 7, concurrency: 32 } });
    expect(r).toMatchObject({ delivered: 1000, gone: 0, failed: 0 });
    ids.push(p.id);
    await eventually(() => clients.every((c) => c.events(ch).length >= ids.length), 20_000, 'every delivery');
    await new Promise((res) => setTimeout(res, 200));
    for (const c of clients) expect(c.events(ch).map((e) => e.id)).toEqual(ids);
  }, 60_000);
});
