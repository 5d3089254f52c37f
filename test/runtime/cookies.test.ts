import { EventSource } from 'eventsource';
import type Redis from 'ioredis';
import { publish } from '../../core/events';
import { MAX_SESSION_COOKIES } from '../../service/auth';
import { serviceConfigFromEnv } from '../../service/config';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, eventually, startService, ticketFor, uid } from '../support/harness';

/**
 * Item 14: reconnect cookie defaults. SameSite is Lax unless pages of other origins read the
 * streams; and however many channel sets one client opens, its Cookie header stays small.
 */

const SECRET = 'x'.repeat(32);

describe('COOKIE_SAMESITE default', () => {
  test('Lax without ALLOWED_ORIGINS; None when other origins are listed and the cookie is Secure; an explicit value wins', () => {
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET }).cookieSameSite).toBe('Lax');
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, ALLOWED_ORIGINS: 'https://app.example' }).cookieSameSite).toBe('None');
    // Not Secure (local development): None would be rejected by browsers, so Lax.
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, ALLOWED_ORIGINS: '*', COOKIE_SECURE: 'false' }).cookieSameSite).toBe('Lax');
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, ALLOWED_ORIGINS: 'https://app.example', COOKIE_SAMESITE: 'Strict' }).cookieSameSite).toBe('Strict');
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET }).sessionMaxAgeSeconds).toBe(43200);
  });
});

/**
 * A browser-like cookie jar for the `eventsource` client: keeps cookies by name, drops them on
 * `Max-Age=0`, and records the size of every Cookie header it sends and every status it gets.
 */
function jarFetch() {
  const jar = new Map<string, string>();
  const sent: number[] = [];
  const statuses: number[] = [];
  const f: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (cookie) headers.set('cookie', cookie);
    sent.push(Buffer.byteLength(cookie));
    const res = await fetch(input, { ...init, headers });
    statuses.push(res.status);
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair.indexOf('=');
      if (attrs.some((a) => a.trim().toLowerCase() === 'max-age=0')) jar.delete(pair.slice(0, eq));
      else jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return res;
  };
  return { fetch: f, jar, sent, statuses };
}

describe('many channel sets from one cookie jar', () => {
  let redis: Redis;
  let service: RealtimeServer;
  let base: string;
  const sources: EventSource[] = [];

  beforeAll(async () => {
    redis = await connectRedis();
    ({ service, base } = await startService({ RETRY_MS: '200' }));
  });
  afterAll(async () => {
    for (const s of sources) s.close();
    await service.close();
    redis.disconnect();
  });

  /**
   * Cookie header bound: 8 (MAX_SESSION_COOKIES) cookies of at most 226 bytes each for a short sub
   * (390 for a 128-character one), with separators: under 2 KB here, under 3.2 KB in general.
   */
  const BOUND = 2048;

  test("a redemption's Set-Cookie: the cookie with its attributes in order, and expiries only from the cap on", async () => {
    const channel = `chat:${uid()}`;
    const name = (await open(channel, '')).find((c) => c.startsWith('rt_'))!.split('=')[0];
    const others = (n: number) => Array.from({ length: n }, (_, i) => `rt_${i.toString(16).padStart(16, '0')}=x`).join('; ');
    // With no cookie, and with one fewer than the cap besides this set's: the fresh cookie alone.
    for (const cookie of ['', others(MAX_SESSION_COOKIES - 1)]) {
      const set = await open(channel, cookie);
      expect(set).toHaveLength(1);
      expect(set[0]).toMatch(new RegExp(`^${name}=v2\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+; Path=/; Max-Age=\\d+; HttpOnly; SameSite=Lax$`));
    }
    // At the cap (unreadable ones rank first): one expired, so the client keeps MAX_SESSION_COOKIES.
    const set = await open(channel, others(MAX_SESSION_COOKIES));
    expect(set).toHaveLength(2);
    expect(set[1]).toMatch(/^rt_0{16}=; Path=\/; Max-Age=0; HttpOnly; SameSite=Lax$/);
  });

  /** Opens `/events` on `channel` with a fresh ticket and `cookie`, and returns the answer's Set-Cookie values. */
  async function open(channel: string, cookie: string): Promise<string[]> {
    const ticket = await ticketFor(redis, 'alice', [channel]);
    const controller = new AbortController();
    const res = await fetch(`${base}/events?channels=${channel}&ticket=${ticket}`, { headers: cookie ? { cookie } : {}, signal: controller.signal });
    expect(res.status).toBe(200);
    controller.abort();
    return res.headers.getSetCookie();
  }

  test('the Cookie header stays under the bound, nothing gets 431, and the newest streams still reconnect natively', async () => {
    const jar = jarFetch();
    const SETS = 30;
    const tag = uid();
    // Long channel names: four of 128 characters per set (they used to be listed in each cookie).
    const sets = Array.from({ length: SETS }, (_, i) => Array.from({ length: 4 }, (_, j) => `chat:${tag}-${i}-${j}-${'n'.repeat(100)}`.slice(0, 133)).sort());
    const state = sets.map(() => ({ opens: 0, readies: 0, got: [] as string[] }));
    for (let i = 0; i < SETS; i++) {
      const es = new EventSource(`${base}/events?channels=${sets[i].join(',')}&ticket=${await ticketFor(redis, 'alice', sets[i])}`, { fetch: jar.fetch });
      sources.push(es);
      es.addEventListener('open', () => state[i].opens++);
      es.addEventListener('ready', () => state[i].readies++);
      es.addEventListener('update', (e) => state[i].got.push(JSON.parse(e.data).id));
      await eventually(() => state[i].readies === 1 || es.readyState === EventSource.CLOSED, 5000, `stream ${i}`);
      expect({ stream: i, open: es.readyState }).toEqual({ stream: i, open: EventSource.OPEN });
    }
    expect(jar.statuses.every((s) => s === 200)).toBe(true);
    expect(Math.max(...jar.sent)).toBeLessThan(BOUND);
    expect([...jar.jar.keys()].filter((k) => k.startsWith('rt_'))).toHaveLength(MAX_SESSION_COOKIES);

    // Every connection drops (a task restart): each EventSource reconnects by itself with the spent ticket.
    service.server.closeAllConnections();
    const newest = state.slice(SETS - MAX_SESSION_COOKIES);
    await eventually(() => newest.every((s) => s.opens === 2), 10_000, 'the newest streams reconnect');
    const ids: string[] = [];
    for (const set of sets.slice(SETS - MAX_SESSION_COOKIES)) ids.push((await publish({ channel: set[0], type: 'update', data: 1 }, { kind: 'server', principal: 't' }, { redis, config: coreConfig() })).id);
    await eventually(() => newest.every((s, i) => s.got.includes(ids[i])), 5000, 'events after the reconnect');
    // The streams whose cookies were expired to make room are refused (401): a native EventSource then
    // ends, and the app asks for a new ticket. That is the cost of the bound.
    await eventually(() => sources.slice(0, SETS - MAX_SESSION_COOKIES).every((s) => s.readyState === EventSource.CLOSED), 10_000, 'the oldest streams end');
    expect(Math.max(...jar.sent)).toBeLessThan(BOUND);
    expect(jar.statuses.filter((s) => s !== 200 && s !== 401)).toEqual([]);
  });
});
