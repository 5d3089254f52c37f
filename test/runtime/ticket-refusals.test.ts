import type Redis from 'ioredis';
import { publish } from '../../core/events';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, eventually, get, RawStream, startService, ticketFor, uid } from '../support/harness';

let redis: Redis;
const cleanup: (() => unknown)[] = [];

beforeAll(async () => {
  redis = await connectRedis();
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
afterAll(() => redis.disconnect());

const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
async function service(env: Record<string, string> = {}): Promise<{ service: RealtimeServer; base: string }> {
  const s = await startService(env);
  cleanup.push(() => s.service.close());
  return s;
}
function stream(url: string, headers: Record<string, string> = {}): RawStream {
  const s = new RawStream(url, headers);
  cleanup.push(() => s.close());
  return s;
}
const cookieOf = (setCookie: string | string[] | undefined): string => {
  const first = Array.isArray(setCookie) ? setCookie[0] : setCookie;
  if (!first) throw new Error('no Set-Cookie in the answer');
  return first.split(';')[0];
};

describe('a ticket is spent by every redemption attempt, refusals included', () => {
  test('at the connection cap: the ticket is spent, the 200 + retry: answer carries the reconnect cookie, which authorises the native reconnect once there is room', async () => {
    const { service: svc, base } = await service({ MAX_CONNECTIONS: '1' });
    const occupier = stream(`${base}/events?channels=scores:${uid()}`);
    await occupier.until(ready);
    const ch = `chat:${uid()}`;
    const url = `${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'u1', [ch])}`;
    const refused = stream(url);
    await refused.until((x) => x.ended);
    expect(refused.status).toBe(200);
    expect(refused.text).toMatch(/^retry: \d+\n\n: unavailable/);
    const cookie = cookieOf(refused.headers['set-cookie']);

    occupier.close();
    await eventually(() => svc.connections === 0, 10_000, 'room on the task');
    // The ticket is spent: presented again without the cookie, it is refused.
    const again = await get(url);
    expect(again.status).toBe(401);
    // The EventSource's own reconnect (same URL, spent ticket included) is authorised by the cookie.
    const reconnect = stream(url, { cookie });
    await reconnect.until(ready);
    expect(reconnect.status).toBe(200);
  });

  test('long poll at the cap: 503 + Retry-After with the reconnect cookie; the ticket is spent', async () => {
    const { base } = await service({ MAX_CONNECTIONS: '1' });
    const occupier = stream(`${base}/events?channels=scores:${uid()}`);
    await occupier.until(ready);
    const ch = `chat:${uid()}`;
    const url = `${base}/poll?channels=${ch}&ticket=${await ticketFor(redis, 'u2', [ch])}`;
    const refused = await get(url);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    const cookie = cookieOf(refused.headers['set-cookie']);
    occupier.close();
    const p = await publish({ channel: ch, type: 'update', data: 1 }, { kind: 'server', principal: 't' }, { redis, config: coreConfig() });
    await eventually(async () => (await get(`${url}&cursor=${Number(p.id) - 1}`, { cookie })).status === 200, 10_000, 'poll with the cookie');
    const spent = await get(`${url}&cursor=${Number(p.id) - 1}`);
    expect(spent.status).toBe(401);
  });

  test('from an origin that is not allowed: 403, no cookie, and the ticket is spent', async () => {
    const { base } = await service();
    const ch = `chat:${uid()}`;
    const url = `${base}/events?channels=${ch}&ticket=${await ticketFor(redis, 'u3', [ch])}`;
    const refused = await get(url, { origin: 'http://evil.example' });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).error.code).toBe('origin_not_allowed');
    expect(refused.headers['set-cookie']).toBeUndefined();
    const again = await get(url, { origin: 'http://allowed.example' });
    expect(again.status).toBe(401);
  });
});
