import { EventSource } from 'eventsource';
import type Redis from 'ioredis';
import pino from 'pino';
import { getConnection } from '../../core/connections';
import { Keys } from '../../core/redis/keys';
import type { HttpEvent } from '../../lambda/shared/http';
import type { LocalStack } from '../../local/stack';
import { connectRedis, cookieFetch, coreConfig, eventually, get, RawStream, TEST_NAMESPACES, uid } from '../support/harness';
import { connectWs, upgradeStatus } from './ws-support';

/**
 * Item 7 (c): POST /revoke {"sub"} (IAM-signed backends) ends every session of a user on every
 * transport, and what the user held before (cookies, unspent tickets) stops working.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const keys = new Keys(coreConfig().keyPrefix);
let redis: Redis;
let stack: LocalStack;
let revokeUrl: string;
const open: { close(): void }[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), WS_GONE_GRACE_MS: '0', RETRY_MS: '300', POLL_TIMEOUT_MS: '20000', LOG_LEVEL: 'silent' },
  });
  revokeUrl = stack.outputs.TicketUrl.replace(/\/tickets$/, '/revoke');
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  await stack.close();
  redis.disconnect();
});

/** POST /tickets as `sub` through the HTTP API stand-in (a JWT caller). */
async function ticket(sub: string, channels: string[], transport: 'sse' | 'ws' = 'sse'): Promise<string> {
  const r = await fetch(stack.outputs.TicketUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-local-user': sub },
    body: JSON.stringify({ channels, transport }),
  });
  expect(r.status).toBe(201);
  return ((await r.json()) as { ticket: string }).ticket;
}

const revoke = async (body: unknown) => {
  const r = await fetch(revokeUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};
const publish = (channel: string, data: unknown) =>
  fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data }) });
const stream = (url: string, headers: Record<string, string> = {}) => {
  const s = new RawStream(url, headers);
  open.push(s);
  return s;
};
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
/**
 * Why a stream ended, from its last lines: `revoked` is the revocation's comment with no new `retry:` hint
 * (a native EventSource must not come back); anything else (a drain, a failure, a slow reader…) is named by its comment.
 */
const endedAs = (s: RawStream) => {
  const retries = s.text.match(/^retry:/gm)?.length ?? 0;
  const last = /: ([^\n]*)\n\n$/.exec(s.text)?.[1];
  return last === 'revoked: get a new ticket' && retries === 1 ? 'revoked' : `${last ?? 'no comment'} (${retries} retry hints)`;
};
const errorOf = (r: { status: number; body: string }) => ({ status: r.status, code: (JSON.parse(r.body) as { error: { code: string } }).error.code });

describe('POST /revoke', () => {
  test("ends the user's SSE streams, long polls and WebSocket connections on every transport; cookies and earlier tickets get 401; other users are untouched", async () => {
    const dave = `dave-${uid()}`;
    const ch = `chat:${uid()}`;
    const sseTicket = await ticket(dave, [ch]);
    const s = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${sseTicket}`);
    await s.until(ready);
    const cookie = String((s.headers['set-cookie'] as string[])[0]).split(';')[0];
    const cursor = s.events()[0].cursor!;
    const poll = get(`${stack.outputs.PollUrl}?channels=${ch}&cursor=${cursor}&ticket=${await ticket(dave, [ch])}`);
    const ws = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${await ticket(dave, [ch], 'ws')}`);
    open.push(ws);
    const unspent = await ticket(dave, [ch]);
    const unspentWs = await ticket(dave, [ch], 'ws');
    const erin = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticket('erin', [ch])}`);
    await erin.until(ready);
    // The poll is waiting (no backlog after its cursor).
    await eventually(() => stack.sse.hub.channelCount > 0, 5000, 'poll subscribed');

    const r = await revoke({ sub: dave });
    expect(r).toEqual({ status: 202, body: { sub: dave, epoch: expect.any(Number) } });

    // The stream ends, with no retry hint beyond the one it opened with.
    await s.until((x) => x.ended, 5000);
    expect(s.text.match(/^retry:/gm)).toHaveLength(1);
    // The waiting poll answers 401.
    expect(errorOf(await poll)).toEqual({ status: 401, code: 'unauthorized' });
    // The WebSocket is closed by the management API's DeleteConnection, and unregistered.
    expect(await ws.closed).toBe(1000);
    expect(await redis.scard(keys.userConnections(dave))).toBe(0);
    // What the user held is refused: the cookie (native reconnect with the spent ticket), and tickets issued before.
    expect(errorOf(await get(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${sseTicket}`, { cookie }))).toEqual({ status: 401, code: 'unauthorized' });
    expect(errorOf(await get(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${unspent}`))).toEqual({ status: 401, code: 'unauthorized' });
    expect(await upgradeStatus(`${stack.outputs.WebSocketUrl}?ticket=${unspentWs}`)).toBe(403);
    // Another user on the same channel keeps streaming.
    await publish(ch, 'still here');
    await erin.until((x) => x.events().some((e) => e.event === 'update'));
    expect(erin.ended).toBe(false);
    // A ticket issued after the revocation works.
    const fresh = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticket(dave, [ch])}`);
    await fresh.until(ready);
    expect(fresh.status).toBe(200);
  });

  test('a native EventSource of the revoked user ends for good: its reconnect is refused', async () => {
    const frank = `frank-${uid()}`;
    const ch = `user:${frank}`;
    const es = new EventSource(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticket(frank, [ch])}`, { fetch: cookieFetch().fetch });
    open.push(es);
    let readies = 0;
    let errors = 0;
    es.addEventListener('ready', () => readies++);
    es.addEventListener('error', () => errors++);
    await eventually(() => readies === 1, 5000, 'ready');
    expect((await revoke({ sub: frank })).status).toBe(202);
    await eventually(() => es.readyState === EventSource.CLOSED, 10_000, 'EventSource closed');
    expect({ readies, errors: errors > 0 }).toEqual({ readies: 1, errors: true });
  });

  test('a WebSocket $connect racing a revocation (authorized before it, registered after it) is refused and unregistered', async () => {
    const handler = stack.handlers.wsConnect;
    const hank = `hank-${uid()}`;
    const ch = `chat:${uid()}`;
    expect((await revoke({ sub: hank })).status).toBe(202);
    const connectionId = `race-${uid()}`;
    // What API Gateway hands $connect after the authorizer allowed a ticket issued before the revocation.
    const r = await handler({
      requestContext: { routeKey: '$connect', eventType: 'CONNECT', connectionId, authorizer: { sub: hank, channels: ch, byBackend: false, epoch: 0 } },
      isBase64Encoded: false,
    } as never);
    expect({ status: r.statusCode, code: JSON.parse(r.body!).error.code }).toEqual({ status: 401, code: 'unauthorized' });
    expect(await getConnection(connectionId, { redis, config: coreConfig() })).toBeNull();
    expect(await redis.scard(keys.userConnections(hank))).toBe(0);
  });

  test('a stream authorised just before a revocation arrived, and registered just after, still ends: as revoked', async () => {
    const ivy = `ivy-${uid()}`;
    const ch = `chat:${uid()}`;
    // A witness stream, open before the revocation, shows when the service has heard it.
    const witness = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticket(ivy, [ch])}`);
    await witness.until(ready);
    // The control message reaches the service while the epoch it reads for new streams is the old one:
    // announce a revocation without moving the stored epoch.
    await redis.publish(keys.revokeControl, JSON.stringify({ sub: ivy, epoch: Date.now() }));
    await witness.until((x) => x.ended, 5000);
    expect(endedAs(witness)).toBe('revoked');
    // Then a stream authorised under the old epoch (the stored one never moved) registers after the revocation arrived.
    const late = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticket(ivy, [ch])}`);
    await late.until((x) => x.ended, 5000);
    expect(late.status).toBe(200);
    expect(endedAs(late)).toBe('revoked');
  });

  test('only backends revoke: a signed-in user gets 403; a missing or malformed sub is 400', async () => {
    const handler = stack.handlers.revoke;
    const event = (authorizer: unknown, body: unknown) =>
      ({
        version: '2.0',
        routeKey: 'POST /revoke',
        rawPath: '/revoke',
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method: 'POST', path: '/revoke' }, authorizer },
        body: JSON.stringify(body),
        isBase64Encoded: false,
      }) as unknown as HttpEvent;
    const asUser = await handler(event({ jwt: { claims: { sub: 'mallory' }, scopes: null } }, { sub: 'alice' }));
    expect({ status: asUser.statusCode, code: JSON.parse(asUser.body!).error.code }).toEqual({ status: 403, code: 'forbidden' });
    for (const body of [{}, { sub: 'a\nb' }, { sub: 'z'.repeat(256) }, { sub: 42 }]) {
      const bad = await revoke(body);
      expect({ status: bad.status, code: (bad.body.error as { code: string }).code }).toEqual({ status: 400, code: 'bad_request' });
    }
  });

  describe('every sub a ticket is issued to can be revoked (OIDC: up to 255 characters)', () => {
    /** POST /tickets as a JWT caller whose token carries `sub` (the handler with the authorizer context the HTTP API gives it). */
    const jwtTicket = async (sub: string, channels: string[]) => {
      const r = await stack.handlers.tickets({
        version: '2.0',
        routeKey: 'POST /tickets',
        rawPath: '/tickets',
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method: 'POST', path: '/tickets' }, authorizer: { jwt: { claims: { sub }, scopes: null } } },
        body: JSON.stringify({ channels }),
        isBase64Encoded: false,
      } as unknown as HttpEvent);
      return { status: r.statusCode, body: JSON.parse(r.body!) as { ticket: string; error?: { code: string } } };
    };
    const longest = '\u{1F600}'.repeat(255); // 255 characters of 4 UTF-8 bytes each: the longest cookie
    test.each([
      ['a plus and an at sign', `alice+rt-${uid()}@example.com`],
      ['a non-ASCII letter', `José-${uid()}`],
      ['200 characters', `${uid()}${'x'.repeat(188)}`],
      ['255 characters of 4 bytes', longest],
    ])('%s: the ticket opens a stream, the cookie stays under 4 KB, revoke answers 202 and ends it', async (_what, sub) => {
      const ch = `chat:${uid()}`;
      const t = await jwtTicket(sub, [ch]);
      expect(t.status).toBe(201);
      const s = stream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${t.body.ticket}`);
      await s.until(ready);
      const setCookie = String((s.headers['set-cookie'] as string[])[0]);
      const cookie = setCookie.split(';')[0];
      expect(setCookie.length).toBeLessThan(4096);
      const r = await revoke({ sub });
      expect(r).toEqual({ status: 202, body: { sub, epoch: expect.any(Number) } });
      await s.until((x) => x.ended, 5000);
      expect(errorOf(await get(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${t.body.ticket}`, { cookie }))).toEqual({ status: 401, code: 'unauthorized' });
    });

    test('a sub no one can revoke gets no ticket: 256 characters, a control character (403 forbidden)', async () => {
      for (const sub of ['y'.repeat(256), 'bad\nsub']) {
        const t = await jwtTicket(sub, [`chat:${uid()}`]);
        expect({ status: t.status, code: t.body.error?.code }).toEqual({ status: 403, code: 'forbidden' });
        const r = await revoke({ sub });
        expect({ status: r.status, code: (r.body.error as { code: string }).code }).toEqual({ status: 400, code: 'bad_request' });
      }
    });
  });

  test('epochs only move forward, and the key expires (bounded memory) without letting old sessions back in', async () => {
    const gina = `gina-${uid()}`;
    const a = (await revoke({ sub: gina })).body.epoch as number;
    const b = (await revoke({ sub: gina })).body.epoch as number;
    expect(b).toBeGreaterThan(a);
    expect(await redis.ttl(keys.revocation(gina))).toBeGreaterThan(7 * 86400);
    // Even if the key is gone (expired), the next revocation starts above every epoch handed out before:
    // epochs are the Redis clock in ms (a counter would restart at 1). A few ms pass, as 30 days would.
    await new Promise((r) => setTimeout(r, 5));
    await redis.del(keys.revocation(gina));
    const c = (await revoke({ sub: gina })).body.epoch as number;
    expect(c).toBeGreaterThan(b);
  });
});
