/**
 * The backend SDK (`@realtime-blueprint/server`, server-sdk/) against the local stack with SigV4 verification on
 * (`verifySignatures`, local/sigv4.ts) and deterministic faults on its HTTP API (local/faults.ts): every call is
 * signed with static local credentials and checked by the stack as API Gateway's IAM authorisation would; retries
 * meet real 503s (a Redis at maxmemory under `noeviction`) and queued 429s/503s, and always carry one key.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Redis from 'ioredis';
import { createServerClient, RealtimeServerError, type RetryInfo, type ServerClientOptions } from '../../server-sdk/src/index';
import { jsonRequest, signRequest } from '../../server-sdk/src/sigv4';
import { LocalFaults } from '../../local/faults';
import { RedisServer } from '../../local/redis';
import { SIGV4_REFUSALS } from '../../local/sigv4';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { connectRedis, get, uid } from '../support/harness';
import { nodeClient, record, until } from '../support/client-kit';
import { Keys } from '../../core/redis/keys';

/** The default prefix's key names (hash-tagged: see core/redis/keys.ts). */
const K = new Keys('rt:');

const CREDENTIALS = { accessKeyId: 'AKIDLOCALEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const REGION = 'eu-west-1';

let redisServer: RedisServer;
let redis: Redis;
let stack: LocalStack;
const faults = new LocalFaults();

beforeAll(async () => {
  // A private Redis: the memory test fills it.
  redisServer = await RedisServer.start();
  redis = await connectRedis(redisServer.url);
  stack = await startLocalStack({ redisUrl: redisServer.url, verifySignatures: { credentials: CREDENTIALS, region: REGION }, faults, env: { LOG_LEVEL: 'silent' } });
}, 30_000);
afterAll(async () => {
  await stack?.close();
  redis?.disconnect();
  await redisServer?.destroy();
});

const backendTickets = () => stack.outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets');
const sdk = (over: Partial<ServerClientOptions> = {}) => createServerClient({ publishUrl: stack.outputs.PublishUrl, ticketUrl: backendTickets(), region: REGION, credentials: CREDENTIALS, ...over });
const keysOf = (path: string, from: number) => faults.seen.slice(from).filter((s) => s.path === path).map((s) => JSON.parse(s.body).idempotencyKey as string);

describe('publish, tickets and revoke, signed and verified', () => {
  test('a ticket minted by the SDK opens a client that receives what the SDK publishes, once', async () => {
    const ch = `chat:${uid()}`;
    const server = sdk();
    const client = nodeClient({ ticket: (req) => server.ticket({ sub: 'alice', ...req }), transports: ['sse'] });
    const rec = record(client, [ch]);
    try {
      await until(() => client.state === 'open', 'open');
      const p = await server.publish(ch, 'message', { text: 'hi' });
      expect(p).toEqual({ id: expect.stringMatching(/^\d+$/), duplicate: false, idempotencyKey: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      await until(() => rec.events.length === 1, 'the event');
      expect(rec.events.map((e) => [e.id, e.type, e.data])).toEqual([[p.id, 'message', { text: 'hi' }]]);
    } finally {
      client.close();
    }
  });

  test('ticket: the wire answer for the named user, its channels and transport', async () => {
    const ch = `chat:${uid()}`;
    const t = await sdk().ticket({ sub: 'bob', channels: [ch], transport: 'ws' });
    expect(t).toEqual({ ticket: expect.stringMatching(/^[\w-]{43}$/), expiresAt: expect.any(String), channels: [ch], transport: 'ws', sseUrl: null, wsUrl: expect.stringContaining(`?ticket=${t.ticket}`) });
  });

  test('revoke: 202 with a new epoch; a ticket minted before it is refused (401)', async () => {
    const ch = `chat:${uid()}`;
    const server = sdk();
    const before = await server.ticket({ sub: 'carol', channels: [ch] });
    const r = await server.revoke('carol');
    expect(r).toEqual({ sub: 'carol', epoch: expect.any(Number) });
    const refused = await get(`${stack.outputs.SseUrl}?channels=${encodeURIComponent(ch)}&ticket=${before.ticket}`);
    expect([refused.status, JSON.parse(refused.body).error.code]).toEqual([401, expect.stringMatching(/ticket|unauthorized|revoked/)]);
  });
});

describe('the stack verifies signatures (403 like API Gateway, nothing reaches a handler)', () => {
  const unsigned = (url: string, body: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  test.each([
    ['/publish', () => stack.outputs.PublishUrl, '{"channel":"chat:x","type":"m","data":1}'],
    ['/revoke', () => stack.outputs.PublishUrl.replace(/publish$/, 'revoke'), '{"sub":"alice"}'],
    ['/backend/tickets', backendTickets, '{"sub":"alice","channels":["chat:x"]}'],
  ])('unsigned %s: 403 {"message":"Forbidden"}', async (_path, url, body) => {
    const r = await unsigned(url(), body);
    expect([r.status, await r.json()]).toEqual([403, { message: SIGV4_REFUSALS.missing }]);
  });

  test('a signed body swapped for another: 403 signature mismatch, the swapped event not published', async () => {
    const ch = `chat:${uid()}`;
    const url = new URL(stack.outputs.PublishUrl);
    const headers = await signRequest(jsonRequest('POST', url, JSON.stringify({ channel: ch, type: 'm', data: 1 })), REGION, CREDENTIALS);
    const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ channel: ch, type: 'm', data: 666 }) });
    expect([r.status, await r.json()]).toEqual([403, { message: SIGV4_REFUSALS.mismatch }]);
    expect(await redis.exists(K.history(ch), K.lastId(ch))).toBe(0);
  });

  test('the wrong secret, an unknown key, the wrong region: typed errors (forbidden, 403), not retried', async () => {
    const cases: [Partial<ServerClientOptions>, string][] = [
      [{ credentials: { ...CREDENTIALS, secretAccessKey: 'not-the-secret' } }, SIGV4_REFUSALS.mismatch],
      [{ credentials: { ...CREDENTIALS, accessKeyId: 'AKIDSOMEONEELSE' } }, SIGV4_REFUSALS.unknownKey],
      [{ region: 'us-west-2' }, "Credential should be scoped to a valid region, not 'us-west-2'."],
    ];
    for (const [over, message] of cases) {
      const from = faults.seen.length;
      const err = await sdk(over).publish(`chat:${uid()}`, 'm', 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RealtimeServerError);
      expect(err).toMatchObject({ code: 'forbidden', status: 403, message, retryAfter: undefined, attempts: 1 });
      expect(faults.seen.length - from).toBe(1);
    }
  });
});

describe('typed errors from the stack', () => {
  test('400: the stack\'s code and message, not retried', async () => {
    const from = faults.seen.length;
    const err = await sdk().publish('Bad Name', 'm', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RealtimeServerError);
    expect(err).toMatchObject({ code: 'invalid_channel', status: 400, attempts: 1, idempotencyKey: expect.any(String) });
    expect((err as Error).message).toMatch(/channel/i);
    expect(faults.seen.length - from).toBe(1);
  });

  test('409: the same key with another event is a conflict', async () => {
    const ch = `chat:${uid()}`;
    await sdk().publish(ch, 'm', 1, { idempotencyKey: `k-${ch}` });
    await expect(sdk().publish(ch, 'm', 2, { idempotencyKey: `k-${ch}` })).rejects.toMatchObject({ code: 'idempotency_conflict', status: 409 });
  });

  test('no ticketUrl, no region: bad_config before any request', async () => {
    const saved = [process.env.AWS_REGION, process.env.AWS_DEFAULT_REGION];
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    const from = faults.seen.length;
    try {
      await expect(createServerClient({ publishUrl: stack.outputs.PublishUrl, region: REGION, credentials: CREDENTIALS }).ticket({ sub: 'a', channels: ['chat:x'] })).rejects.toMatchObject({ code: 'bad_config', status: 0 });
      await expect(createServerClient({ publishUrl: stack.outputs.PublishUrl, credentials: CREDENTIALS }).publish('chat:x', 'm', 1)).rejects.toMatchObject({ code: 'bad_config', message: expect.stringMatching(/region/) });
      expect(() => createServerClient({ publishUrl: 'not a url' })).toThrow(RealtimeServerError);
      expect(faults.seen.length).toBe(from);
    } finally {
      if (saved[0] !== undefined) process.env.AWS_REGION = saved[0];
      if (saved[1] !== undefined) process.env.AWS_DEFAULT_REGION = saved[1];
    }
  });
});

describe('retries: 429 and 503 with Retry-After, one idempotency key on every attempt', () => {
  test('429 from throttling (Retry-After: 1, then none), then 202: the waits asked for, three attempts, one key', async () => {
    const ch = `chat:${uid()}`;
    const retries: RetryInfo[] = [];
    faults.inject('/publish', { status: 429, headers: { 'retry-after': '1' } }, { status: 429 });
    const from = faults.seen.length;
    const p = await sdk({ onRetry: (r) => void retries.push(r) }).publish(ch, 'm', { n: 1 });
    expect(retries.map((r) => [r.attempt, r.error.code, r.error.status, r.error.retryAfter])).toEqual([
      [1, 'rate_limited', 429, 1],
      [2, 'rate_limited', 429, undefined],
    ]);
    expect(retries[0].delayMs).toBe(1000);
    expect(retries[1].delayMs).toBeLessThanOrEqual(400);
    expect(faults.seen.slice(from).map((s) => s.status)).toEqual([429, 429, 202]);
    expect(new Set([...keysOf('/publish', from), p.idempotencyKey, ...retries.map((r) => r.idempotencyKey)])).toEqual(new Set([p.idempotencyKey]));
  });

  test('503 after the handler published (the answer lost): the retry under the same key answers duplicate, one event stored', async () => {
    const ch = `chat:${uid()}`;
    faults.inject('/publish', { status: 503, headers: { 'retry-after': '0' }, afterHandler: true });
    const from = faults.seen.length;
    const p = await sdk().publish(ch, 'm', { n: 1 });
    expect(faults.seen.slice(from).map((s) => s.status)).toEqual([503, 202]);
    expect(keysOf('/publish', from)).toEqual([p.idempotencyKey, p.idempotencyKey]);
    expect(p.duplicate).toBe(true);
    expect(await redis.xlen(K.history(ch))).toBe(1);
  });

  test('a real 503: Redis full under noeviction answers unavailable + Retry-After; freed before the retry, the publish lands', async () => {
    const ch = `chat:${uid()}`;
    const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', String(Math.max(1, used - 64 * 1024)));
    const retries: RetryInfo[] = [];
    const from = faults.seen.length;
    try {
      const p = await sdk({
        onRetry: async (r) => {
          retries.push(r);
          await redis.config('SET', 'maxmemory', '0');
        },
      }).publish(ch, 'm', { n: 1 });
      expect(retries.map((r) => [r.error.code, r.error.status, r.error.retryAfter, r.delayMs, r.idempotencyKey])).toEqual([['unavailable', 503, 2, 2000, p.idempotencyKey]]);
      expect(p.duplicate).toBe(false);
      expect(faults.seen.slice(from).map((s) => s.status)).toEqual([503, 202]);
      expect(keysOf('/publish', from)).toEqual([p.idempotencyKey, p.idempotencyKey]);
      expect(await redis.xlen(K.history(ch))).toBe(1);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
  }, 30_000);

  test('503 on every attempt: the error after maxAttempts, with its Retry-After and the attempts made', async () => {
    faults.inject('/publish', ...Array.from({ length: 3 }, () => ({ status: 503, headers: { 'retry-after': '0' }, body: { error: { code: 'unavailable', message: 'The event store is unreachable; retry shortly.' } } })));
    const from = faults.seen.length;
    const err = await sdk({ maxAttempts: 3 }).publish(`chat:${uid()}`, 'm', 1).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable', status: 503, retryAfter: 0, attempts: 3, message: 'The event store is unreachable; retry shortly.' });
    expect(new Set(keysOf('/publish', from)).size).toBe(1);
    expect(keysOf('/publish', from)).toHaveLength(3);
  });

  test('a Retry-After beyond maxRetryDelayMs: the error at once, retryAfter saying when', async () => {
    faults.inject('/publish', { status: 429, headers: { 'retry-after': '120' } });
    const from = faults.seen.length;
    await expect(sdk().publish(`chat:${uid()}`, 'm', 1)).rejects.toMatchObject({ code: 'rate_limited', status: 429, retryAfter: 120, attempts: 1 });
    expect(faults.seen.length - from).toBe(1);
  });

  test('no answer: a refused connection (network) and a server that never answers (timeout) are retried, then thrown with status 0', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    try {
      const retries: RetryInfo[] = [];
      const refused = await sdk({ publishUrl: `http://127.0.0.1:${closedPort}/publish`, maxAttempts: 2, onRetry: (r) => void retries.push(r) }).publish('chat:x', 'm', 1).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'network', status: 0, attempts: 2, message: expect.stringMatching(/ECONNREFUSED/) });
      const hung = await sdk({ publishUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/publish`, maxAttempts: 2, timeoutMs: 300, onRetry: (r) => void retries.push(r) }).publish('chat:x', 'm', 1).catch((e: unknown) => e);
      expect(hung).toMatchObject({ code: 'timeout', status: 0, attempts: 2 });
      expect(retries.map((r) => r.error.code)).toEqual(['network', 'timeout']);
      // One key for both attempts of each publish.
      expect(retries.map((r) => r.idempotencyKey)).toEqual([(refused as RealtimeServerError).idempotencyKey, (hung as RealtimeServerError).idempotencyKey]);
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('tickets and revoke are retried too', async () => {
    faults.inject('/backend/tickets', { status: 503, headers: { 'retry-after': '0' } });
    faults.inject('/revoke', { status: 429, headers: { 'retry-after': '0' } });
    const server = sdk();
    await expect(server.ticket({ sub: 'dave', channels: ['chat:x'] })).resolves.toMatchObject({ channels: ['chat:x'] });
    await expect(server.revoke('dave')).resolves.toMatchObject({ sub: 'dave' });
    expect([faults.pending('/backend/tickets'), faults.pending('/revoke')]).toEqual([0, 0]);
  });
});
