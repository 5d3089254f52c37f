import { createHmac } from 'node:crypto';
import type Redis from 'ioredis';
import pino from 'pino';
import { Keys, sha256 } from '../../core/redis/keys';
import { issueTicket } from '../../core/tickets';
import type { HttpEvent } from '../../lambda/shared/http';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, RawStream, redisUrl, SESSION_SECRET, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * Item 7 (a, b): the reconnect cookie has an absolute lifetime fixed when its ticket is redeemed, and
 * a presented ticket always wins over a cookie. The service runs on an injected clock: sessions of
 * hours are walked through without waiting.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const config = coreConfig();
const keys = new Keys(config.keyPrefix);
const TTL_S = 900;
const MAX_AGE_S = 3600;

let redis: Redis;
let service: RealtimeServer;
let base: string;
let clock = Date.now();
const open: { close(): void }[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const cfg = serviceConfigFromEnv({
    REDIS_URL: redisUrl(),
    SESSION_SECRET,
    NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES),
    COOKIE_SECURE: 'false',
    LOG_LEVEL: 'silent',
    HEARTBEAT_MS: '1000',
    SESSION_TTL_SECONDS: String(TTL_S),
    SESSION_MAX_AGE_SECONDS: String(MAX_AGE_S),
  });
  service = new RealtimeServer(cfg, { logger: pino({ level: 'silent' }), now: () => clock });
  base = `http://127.0.0.1:${await service.listen(0, '127.0.0.1')}`;
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  await service.close();
  const { closeRuntime } = await import('../../lambda/shared/runtime');
  await closeRuntime();
  redis.disconnect();
});

/** A ticket issued at the service's clock. */
const ticketAt = async (sub: string, channels: string[]) => (await issueTicket({ identity: { kind: 'user', sub }, channels }, { redis, config, now: () => clock })).ticket;

/** Opens a stream and waits for its answer; returns it with the reconnect cookie it set. */
async function connect(url: string, cookie?: string): Promise<{ s: RawStream; cookie: string; maxAge: number; setCookie: string[] }> {
  const s = new RawStream(url, cookie ? { cookie } : {});
  open.push(s);
  await s.until((x) => x.status > 0 || x.ended);
  const setCookie = ([] as string[]).concat((s.headers['set-cookie'] as string[] | undefined) ?? []);
  const first = setCookie[0] ?? '';
  return { s, cookie: first.split(';')[0], maxAge: Number(/Max-Age=(\d+)/.exec(first)?.[1] ?? NaN), setCookie };
}

/** The user a reconnect cookie (`name=version.payload.signature`) names. */
const cookieSub = (cookie: string) => (JSON.parse(Buffer.from(cookie.split('=')[1].split('.')[1], 'base64url').toString('utf8')) as { s: string }).s;

/** Status and error code of a request expected to be refused (a stream that opens answers 200 and no code). */
const errorOf = async (url: string, cookie: string) => {
  const s = new RawStream(url, { cookie });
  open.push(s);
  await s.until((x) => x.ended || x.status === 200);
  if (s.status === 200) return { status: 200, code: undefined };
  await s.until((x) => x.ended);
  return { status: s.status, code: (JSON.parse(s.text) as { error: { code: string } }).error.code };
};

describe('absolute session lifetime (SESSION_MAX_AGE_SECONDS)', () => {
  test('renewals keep the end fixed at the ticket issue time; past it the cookie is refused with 401', async () => {
    const ch = `chat:${uid()}`;
    const t0 = clock;
    const ticket = await ticketAt('alice', [ch]);
    const url = `${base}/events?channels=${ch}&ticket=${ticket}`;
    const first = await connect(url);
    expect(first.maxAge).toBe(TTL_S);
    let { cookie } = first;
    // Native reconnects every 800 s (the spent ticket stays in the URL): each renews the cookie...
    const ages: number[] = [];
    for (let at = 800; at <= 3200; at += 800) {
      clock = t0 + at * 1000;
      const r = await connect(url, cookie);
      expect(r.s.status).toBe(200);
      ({ cookie } = r);
      ages.push(r.maxAge);
      r.s.close();
    }
    // ...but never past t0 + 3600 s.
    expect(ages).toEqual([TTL_S, TTL_S, TTL_S, MAX_AGE_S - 3200]);
    clock = t0 + (MAX_AGE_S + 1) * 1000;
    expect(await errorOf(url, cookie)).toEqual({ status: 401, code: 'unauthorized' });
  });

  test('a stream whose cookie reached the end closes at that end, and its reconnect is refused', async () => {
    const ch = `chat:${uid()}`;
    const t0 = clock;
    const ticket = await ticketAt('alice', [ch]);
    // Redeemed 100 s before the session's end: the cookie cannot last its 900 s.
    clock = t0 + (MAX_AGE_S - 100) * 1000;
    const url = `${base}/events?channels=${ch}&ticket=${ticket}`;
    const first = await connect(url);
    expect({ status: first.s.status, maxAge: first.maxAge }).toEqual({ status: 200, maxAge: 100 });
    await first.s.until((x) => x.text.includes('event: ready'));
    clock = t0 + MAX_AGE_S * 1000 + 1;
    // The next heartbeat tick finds the stream at its end and closes it.
    await first.s.until((x) => x.ended, 5000);
    expect(await errorOf(url, first.cookie)).toEqual({ status: 401, code: 'unauthorized' });
  });

  test("the caller's JWT exp caps the session (POST /tickets through the real ticket issuer)", async () => {
    const { handler: ticketHandler } = await import('../../lambda/ticket-issuer');
    const ch = `chat:${uid()}`;
    clock = Date.now();
    const exp = Math.floor(clock / 1000) + 600;
    const res = await ticketHandler({
      version: '2.0',
      routeKey: 'POST /tickets',
      rawPath: '/tickets',
      rawQueryString: '',
      headers: { 'content-type': 'application/json' },
      requestContext: { http: { method: 'POST', path: '/tickets' }, authorizer: { jwt: { claims: { sub: 'alice', exp }, scopes: null } } },
      body: JSON.stringify({ channels: [ch] }),
      isBase64Encoded: false,
    } as unknown as HttpEvent);
    expect(res.statusCode).toBe(201);
    const url = `${base}/events?channels=${ch}&ticket=${(JSON.parse(res.body!) as { ticket: string }).ticket}`;
    const first = await connect(url);
    expect(first.s.status).toBe(200);
    expect(first.maxAge).toBeLessThanOrEqual(600);
    clock = exp * 1000 - 50_000;
    const renewed = await connect(url, first.cookie);
    expect(renewed.s.status).toBe(200);
    expect(renewed.maxAge).toBeLessThanOrEqual(50);
    clock = exp * 1000 + 1000;
    expect(await errorOf(url, renewed.cookie)).toEqual({ status: 401, code: 'unauthorized' });
  });
});

describe('a presented ticket wins over the cookie', () => {
  test("Bob's fresh ticket with Alice's cookie: the stream is Bob's, and Bob's ticket is spent", async () => {
    clock = Date.now();
    const ch = `chat:${uid()}`;
    const alice = await connect(`${base}/events?channels=${ch}&ticket=${await ticketAt('alice', [ch])}`);
    expect(alice.s.status).toBe(200);
    const bobTicket = await ticketAt('bob', [ch]);
    const mixed = await connect(`${base}/events?channels=${ch}&ticket=${bobTicket}`, alice.cookie);
    expect(mixed.s.status).toBe(200);
    expect(cookieSub(alice.cookie)).toBe('alice');
    expect(cookieSub(mixed.cookie)).toBe('bob');
    expect(await redis.exists(keys.ticket(sha256(bobTicket)))).toBe(0);
  });

  test('the ticket the cookie came from (a native reconnect) takes the cookie path; any other ticket is redeemed and refused when unknown', async () => {
    clock = Date.now();
    const ch = `chat:${uid()}`;
    const ticket = await ticketAt('alice', [ch]);
    const first = await connect(`${base}/events?channels=${ch}&ticket=${ticket}`);
    expect(first.s.status).toBe(200);
    // The spent ticket of the URL with its cookie: allowed, no ticket needed in Redis.
    const again = await connect(`${base}/events?channels=${ch}&ticket=${ticket}`, first.cookie);
    expect(again.s.status).toBe(200);
    // No ticket at all with the cookie: allowed.
    const bare = await connect(`${base}/events?channels=${ch}`, again.cookie);
    expect(bare.s.status).toBe(200);
    // Another ticket (unknown) with the cookie: that ticket is what counts, and it is invalid.
    expect(await errorOf(`${base}/events?channels=${ch}&ticket=${'B'.repeat(43)}`, again.cookie)).toEqual({ status: 401, code: 'ticket_invalid' });
  });
});

describe('cookies of the first format (v1), during an upgrade', () => {
  /** A cookie as the previous release wrote it: user, channel list and expiry, HMAC-signed. */
  const v1Cookie = (sub: string, channels: string[], exp: number) => {
    const payload = `v1.${Buffer.from(JSON.stringify({ s: sub, c: channels, e: exp })).toString('base64url')}`;
    const name = `rt_${sha256(channels.join(',')).slice(0, 16)}`;
    return `${name}=${payload}.${createHmac('sha256', SESSION_SECRET).update(payload).digest('base64url')}`;
  };

  test('a native reconnect with a v1 cookie and its spent ticket still opens, and gets a v2 cookie; a valid ticket still wins', async () => {
    clock = Date.now();
    const ch = `chat:${uid()}`;
    const cookie = v1Cookie('alice', [ch], clock + 600_000);
    const spent = 'S'.repeat(43);
    const r = await connect(`${base}/events?channels=${ch}&ticket=${spent}`, cookie);
    expect(r.s.status).toBe(200);
    expect(r.cookie.split('=')[1].startsWith('v2.')).toBe(true);
    expect(cookieSub(r.cookie)).toBe('alice');
    // The renewed cookie is bound to that ticket: the next native reconnect takes the v2 path.
    expect((await connect(`${base}/events?channels=${ch}&ticket=${spent}`, r.cookie)).s.status).toBe(200);
    const bob = await connect(`${base}/events?channels=${ch}&ticket=${await ticketAt('bob', [ch])}`, cookie);
    expect(cookieSub(bob.cookie)).toBe('bob');
    // A v1 cookie for another channel set opens nothing.
    expect(await errorOf(`${base}/events?channels=${ch}&ticket=${spent}`, v1Cookie('alice', [`chat:${uid()}`], clock + 600_000).replace(/^rt_\w+/, cookie.split('=')[0]))).toEqual({
      status: 401,
      code: 'ticket_invalid',
    });
  });
});
