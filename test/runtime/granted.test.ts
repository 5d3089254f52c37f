import type Redis from 'ioredis';
import pino from 'pino';
import { maySubscribe, mayPublish, parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { issueTicket } from '../../core/tickets';
import type { HttpEvent } from '../../lambda/shared/http';
import { LOCAL_IAM_ARN } from '../../local/http-api';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, get, RawStream, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, type WsClient } from './ws-support';

/**
 * Item 10: `subscribe: "granted"` namespaces. Only a trusted backend (an IAM caller naming the user)
 * gets tickets for their channels, after checking membership; the grant in the ticket (then in the
 * reconnect cookie, or the WebSocket connection) is what opens them, on every transport.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'granted', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600 },
  feed: { subscribe: 'granted', publish: 'server', historySize: 100, historyTtlSeconds: 600 },
};

let redis: Redis;
let stack: LocalStack;
const open: { close(): void }[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(NAMESPACES), WS_GONE_GRACE_MS: '0', POLL_TIMEOUT_MS: '1000', LOG_LEVEL: 'silent' } });
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  await stack.close();
  redis.disconnect();
});

const httpEvent = (path: string, authorizer: unknown, body: unknown) =>
  ({
    version: '2.0',
    routeKey: `POST ${path}`,
    rawPath: path,
    rawQueryString: '',
    headers: { 'content-type': 'application/json' },
    requestContext: { http: { method: 'POST', path }, authorizer },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  }) as unknown as HttpEvent;
const IAM = { iam: { userArn: LOCAL_IAM_ARN } };

/** The backend asks for the user's ticket (POST /tickets, IAM-signed, naming the user). */
async function backendTicket(sub: string, channels: string[], transport: 'sse' | 'ws' = 'sse'): Promise<string> {
  const r = await stack.handlers.tickets(httpEvent('/tickets', IAM, { sub, channels, transport }));
  expect(r.statusCode).toBe(201);
  return (JSON.parse(r.body!) as { ticket: string }).ticket;
}
/** The user asks for a ticket itself (POST /tickets through the HTTP API stand-in, a JWT caller). */
const userTickets = (sub: string, channels: string[], transport: 'sse' | 'ws' = 'sse') =>
  fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels, transport }) });
const backendPublish = (channel: string, data: unknown) =>
  fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data }) });
const stream = (url: string, headers: Record<string, string> = {}) => {
  const s = new RawStream(url, headers);
  open.push(s);
  return s;
};
const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');
const updates = (s: RawStream) => s.events().filter((e) => e.event === 'update').map((e) => (JSON.parse(e.data) as { data: unknown }).data);
const errorOf = (r: { status: number; body: string }) => ({ status: r.status, code: (JSON.parse(r.body) as { error: { code: string } }).error.code });
const ws = async (ticket: string): Promise<WsClient> => {
  const c = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${ticket}`);
  open.push(c);
  return c;
};

describe('POST /tickets for a granted channel', () => {
  test('a user asking for it: 403 channel_not_granted, and the message says the backend asks for the ticket', async () => {
    const r = await userTickets('alice', [`room:${uid()}`, 'chat:lobby']);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect({ status: r.status, code: body.error.code }).toEqual({ status: 403, code: 'channel_not_granted' });
    expect(body.error.message).toMatch(/your backend asks for the ticket/);
  });

  test('the backend asking for the user (POST /backend/tickets, IAM-signed, naming "sub"): 201', async () => {
    const room = `room:${uid()}`;
    const r = await fetch(stack.outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sub: 'alice', channels: [room] }),
    });
    expect(r.status).toBe(201);
    const t = (await r.json()) as { sseUrl: string };
    const s = stream(t.sseUrl);
    await s.until(ready);
    expect(s.status).toBe(200);
  });
});

describe('SSE and long poll', () => {
  test("the backend's ticket opens the stream and its cookie reconnects; a user's own ticket does not open it", async () => {
    const room = `room:${uid()}`;
    const ticket = await backendTicket('alice', [room]);
    const s = stream(`${stack.outputs.SseUrl}?channels=${room}&ticket=${ticket}`);
    await s.until(ready);
    await backendPublish(room, 'hello');
    await s.until((x) => updates(x).length === 1);
    // Native reconnect: the spent ticket and the cookie.
    const cookie = String((s.headers['set-cookie'] as string[])[0]).split(';')[0];
    s.close();
    const again = stream(`${stack.outputs.SseUrl}?channels=${room}&ticket=${ticket}`, { cookie });
    await again.until(ready);
    expect(again.status).toBe(200);
    // A ticket the user got itself (for another channel) does not open a granted channel.
    const own = await ticketFor(redis, 'alice', ['chat:lobby']);
    expect(errorOf(await get(`${stack.outputs.SseUrl}?channels=${room}&ticket=${own}`))).toEqual({ status: 403, code: 'channel_not_granted' });
    expect(errorOf(await get(`${stack.outputs.SseUrl}?channels=${room}`))).toEqual({ status: 401, code: 'unauthorized' });
  });

  test("poll: the backend's ticket, then its cookie; without either 401", async () => {
    const room = `room:${uid()}`;
    const first = await get(`${stack.outputs.PollUrl}?channels=${room}&ticket=${await backendTicket('bob', [room])}`);
    expect(first.status).toBe(200);
    const cursor = (JSON.parse(first.body) as { cursor: string }).cursor;
    await backendPublish(room, 'p1');
    const cookie = String((first.headers['set-cookie'] as string[])[0]).split(';')[0];
    const second = await get(`${stack.outputs.PollUrl}?channels=${room}&cursor=${cursor}`, { cookie });
    expect((JSON.parse(second.body) as { events: { data: unknown }[] }).events.map((e) => e.data)).toEqual(['p1']);
    expect(errorOf(await get(`${stack.outputs.PollUrl}?channels=${room}&cursor=${cursor}`))).toEqual({ status: 401, code: 'unauthorized' });
  });
});

describe('WebSocket', () => {
  test("the backend's ticket: subscribed at connect, may publish where the namespace allows; other granted channels are refused", async () => {
    const room = `room:${uid()}`;
    const other = `room:${uid()}`;
    const feed = `feed:${uid()}`;
    const c = await ws(await backendTicket('carol', [room, feed], 'ws'));
    await backendPublish(room, 'from backend');
    await c.until((x) => x.events(room).length === 1);
    // publish: "authenticated" and the channel in the grant: allowed.
    const ack = await c.request({ action: 'publish', channel: room, type: 'msg', data: 'from carol' }, 'published');
    expect(ack).toMatchObject({ type: 'published', channel: room });
    await c.until((x) => x.events(room).length === 2);
    // publish: "server": refused even with the channel granted.
    expect((await c.request({ action: 'publish', channel: feed, type: 'msg', data: 'x' }, 'error')).error).toMatchObject({ code: 'forbidden' });
    // A granted channel outside the grant: neither subscribe nor publish.
    expect((await c.request({ action: 'subscribe', channel: other }, 'error')).error).toMatchObject({ code: 'channel_not_granted' });
    expect((await c.request({ action: 'publish', channel: other, type: 'msg', data: 'x' }, 'error')).error).toMatchObject({ code: 'forbidden' });
  });

  test("a user's own ticket: subscribing to or publishing on a granted channel is refused", async () => {
    const room = `room:${uid()}`;
    const r = await userTickets('dan', ['chat:lobby'], 'ws');
    const c = await ws(((await r.json()) as { ticket: string }).ticket);
    expect((await c.request({ action: 'subscribe', channel: room }, 'error')).error).toMatchObject({ code: 'channel_not_granted' });
    expect((await c.request({ action: 'publish', channel: room, type: 'msg', data: 'x' }, 'error')).error).toMatchObject({ code: 'forbidden' });
  });
});

describe('POST /publish as a signed-in user', () => {
  test('a granted channel: forbidden (a user has no grant there)', async () => {
    const r = await stack.handlers.publish(httpEvent('/publish', { jwt: { claims: { sub: 'alice' }, scopes: null } }, { channel: `room:${uid()}`, type: 'msg', data: 1 }));
    expect({ status: r.statusCode, code: JSON.parse(r.body!).error.code }).toEqual({ status: 403, code: 'forbidden' });
  });
});

describe('the grant says who chose the channels', () => {
  const club = { publish: 'server', historySize: 10, historyTtlSeconds: 60 } as const;
  const beforeNs: Namespaces = { ...NAMESPACES, club: { ...club, subscribe: 'authenticated' } };
  const afterNs: Namespaces = { ...NAMESPACES, club: { ...club, subscribe: 'granted' } };
  let before: { service: RealtimeServer; base: string };
  let after: { service: RealtimeServer; base: string };
  beforeAll(async () => {
    // The same deployment before and after the namespace became `granted` (same cookie secret).
    before = await startService({ NAMESPACES_JSON: JSON.stringify(beforeNs) });
    after = await startService({ NAMESPACES_JSON: JSON.stringify(afterNs) });
  });
  afterAll(async () => {
    await before.service.close();
    await after.service.close();
  });

  test("a cookie from a user's own ticket stops opening a namespace once it is granted; a backend's does not", async () => {
    const club = `club:${uid()}`;
    const fromUser = stream(`${before.base}/events?channels=${club}&ticket=${await ticketFor(redis, 'erin', [club], 'sse', coreConfig({ namespaces: beforeNs }))}`);
    await fromUser.until(ready);
    const userCookie = String((fromUser.headers['set-cookie'] as string[])[0]).split(';')[0];
    expect(errorOf(await get(`${after.base}/events?channels=${club}`, { cookie: userCookie }))).toEqual({ status: 403, code: 'channel_not_granted' });

    // The local stack's ticket issuer does not know `club`: the backend's ticket is issued through core.
    const t = await issueTicket({ identity: { kind: 'user', sub: 'erin' }, channels: [club], byBackend: true }, { redis, config: coreConfig({ namespaces: afterNs }) });
    const fromBackend = stream(`${after.base}/events?channels=${club}&ticket=${t.ticket}`);
    await fromBackend.until(ready);
    const backendCookie = String((fromBackend.headers['set-cookie'] as string[])[0]).split(';')[0];
    const again = stream(`${after.base}/events?channels=${club}`, { cookie: backendCookie });
    await again.until(ready);
    expect(again.status).toBe(200);
  });

  test('policies: granted needs a backend grant naming the channel; servers always', () => {
    const room = parseChannel('room:1', NAMESPACES);
    const alice = { kind: 'user', sub: 'alice' } as const;
    expect(maySubscribe(alice, room)).toBe(false);
    expect(maySubscribe(alice, room, { channels: ['room:1'], byBackend: false })).toBe(false);
    expect(maySubscribe(alice, room, { channels: ['room:2'], byBackend: true })).toBe(false);
    expect(maySubscribe(alice, room, { channels: ['room:1'], byBackend: true })).toBe(true);
    expect(maySubscribe({ kind: 'server', principal: 'b' }, room)).toBe(true);
    expect(maySubscribe({ kind: 'anonymous' }, room, { channels: ['room:1'], byBackend: true })).toBe(false);
    expect(mayPublish(alice, room, { channels: ['room:1'], byBackend: true })).toBe(true);
    expect(mayPublish(alice, parseChannel('feed:1', NAMESPACES), { channels: ['feed:1'], byBackend: true })).toBe(false);
  });
});
