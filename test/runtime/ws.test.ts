import { DeleteConnectionCommand, GetConnectionCommand, PostToConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import type Redis from 'ioredis';
import pino from 'pino';
import { connectionKey, getConnection, subscribersKey } from '../../core/connections';
import { publish } from '../../core/events';
import { isGone } from '../../core/fanout';
import { createManagementClient } from '../../core/aws/management-sdk';
import { Keys } from '../../core/redis/keys';
import { issueTicket } from '../../core/tickets';
import type { LocalStack } from '../../local/stack';
import { startWsGateway, type WsGateway } from '../../local/ws-gateway';
import { connectRedis, coreConfig, eventually, RawStream, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, upgradeStatus, WsClient } from './ws-support';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
const keys = new Keys(config.keyPrefix);

let redis: Redis;
let stack: LocalStack;
let mgmt: ReturnType<typeof createManagementClient>;
const open: { close(): void }[] = [];

beforeAll(async () => {
  redis = await connectRedis();
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), WS_GONE_GRACE_MS: '0' } });
  mgmt = createManagementClient(stack.ws.managementEndpoint);
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  mgmt.destroy();
  await stack.close();
  redis.disconnect();
});

const wsUrl = (ticket?: string) => (ticket === undefined ? stack.outputs.WebSocketUrl : `${stack.outputs.WebSocketUrl}?ticket=${ticket}`);
const wsTicket = (sub: string, channels: string[]) => ticketFor(redis, sub, channels, 'ws');
const client = async (sub: string, channels: string[]) => {
  const c = await connectWs(wsUrl(await wsTicket(sub, channels)));
  open.push(c);
  return c;
};
const postPublish = async (body: unknown) => {
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as { id: string; duplicate: boolean } };
};
/** Publishes through POST /publish (the publish Lambda: core publish, then the fan-out). */
const pub = async (channel: string, data: unknown, type = 'update') => (await postPublish({ channel, type, data })).body;
/** Core publish alone: history and Redis pub/sub, no WebSocket fan-out (to prepare history). */
const pubCore = (channel: string, data: unknown, type = 'update') => publish({ channel, type, data }, SERVER, { redis, config });
/** The connection id the gateway gave the newest connection. */
const newestConnectionId = (before: string[]) => stack.ws.connectionIds().find((id) => !before.includes(id))!;

/**
 * The WebSocket protocol, one suite for both endpoints so they never drift: the API Gateway stand-in
 * running the Lambda handlers (`WebSocketUrl`) and the service's own endpoint on the tasks
 * (`LiveUrl`, service/ws-edge.ts). What only one of them has (the connection registry, the
 * management API, API Gateway's timeouts; the tasks' drain and heartbeats in ws-tasks.test.ts) is
 * tested apart.
 */
const TARGETS = ['apigateway', 'tasks'] as const;

describe.each(TARGETS)('%s', (target) => {
  const base = () => (target === 'apigateway' ? stack.outputs.WebSocketUrl : stack.outputs.LiveUrl);
  const wsUrl = (ticket?: string) => (ticket === undefined ? base() : `${base()}?ticket=${ticket}`);
  const client = async (sub: string, channels: string[]) => {
    const c = await connectWs(wsUrl(await wsTicket(sub, channels)));
    open.push(c);
    return c;
  };
  /** Open sockets of this target (the gateway's connections, or the service's sockets). */
  const openCount = () => (target === 'apigateway' ? stack.ws.connectionIds().length : stack.sse.sockets);

  test('a frame over 32 KB closes the socket with 1009; the connection is released', async () => {
    const c = await client('alice', [`chat:${uid()}`]);
    const before = openCount();
    c.send({ action: 'ping', pad: 'x'.repeat(33 * 1024) });
    expect(await c.closed).toBe(1009);
    await eventually(() => openCount() === before - 1, 5000, 'connection released');
  });

  describe('connect', () => {
    test('valid ticket: upgrade succeeds and the ticket channels are subscribed (a POST /publish arrives)', async () => {
      const ch = `chat:${uid()}`;
      const c = await client('alice', [ch]);
      const { body } = await postPublish({ channel: ch, type: 'message', data: { text: 'hi' } });
      await c.until((x) => x.events().length === 1);
      expect(c.raw[0]).toBe(JSON.stringify({ channel: ch, id: body.id, type: 'message', data: { text: 'hi' }, ts: c.events()[0].ts, prev: '0' }));
    });

    test('no ticket: 401 (the identity source is missing; the authorizer is not called)', async () => {
      expect(await upgradeStatus(wsUrl())).toBe(401);
    });
    test('unknown ticket: 403 (Deny)', async () => {
      expect(await upgradeStatus(wsUrl('A'.repeat(43)))).toBe(403);
    });
    test('spent ticket: 403', async () => {
      const ch = `chat:${uid()}`;
      const t = await wsTicket('alice', [ch]);
      open.push(await connectWs(wsUrl(t)));
      expect(await upgradeStatus(wsUrl(t))).toBe(403);
    });
    test('expired ticket: 403', async () => {
      const ch = `chat:${uid()}`;
      const t = (await issueTicket({ identity: { kind: 'user', sub: 'alice' }, channels: [ch], transport: 'ws' }, { redis, config: coreConfig({ ticketTtlSeconds: 1 }) })).ticket;
      await new Promise((r) => setTimeout(r, 1300));
      expect(await upgradeStatus(wsUrl(t))).toBe(403);
    });
    test('sse ticket on the WebSocket API: 403', async () => {
      expect(await upgradeStatus(wsUrl(await ticketFor(redis, 'alice', [`chat:${uid()}`], 'sse')))).toBe(403);
    });
    test('wrong stage path: 404', async () => {
      expect(await upgradeStatus(`${base().replace(/\/live$/, '/nope')}?ticket=${await wsTicket('alice', ['chat:x'])}`)).toBe(404);
    });
  });

  describe('subscribe', () => {
    test('within the grant: subscribed with a cursor, then live events', async () => {
      const ch = `chat:${uid()}`;
      const c = await client('alice', [ch]);
      const s = await c.request({ action: 'subscribe', channel: ch }, 'subscribed');
      expect(s).toEqual({ type: 'subscribed', channel: ch, cursor: expect.stringMatching(/^\d+$/) });
      const p = await pub(ch, 1);
      await c.until((x) => x.events(ch).length === 1);
      expect(c.events(ch)[0].id).toBe(p.id);
      expect(BigInt(p.id) > BigInt(s.cursor as string)).toBe(true);
    });

    test('a public-namespace channel outside the ticket: allowed', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      const ch = `scores:${uid()}`;
      await c.request({ action: 'subscribe', channel: ch }, 'subscribed');
      await pub(ch, 'goal');
      await c.until((x) => x.events(ch).length === 1);
    });

    test('outside the grant: error channel_not_granted; nothing is delivered from it', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      const other = `chat:${uid()}`;
      const e = await c.request({ action: 'subscribe', channel: other }, 'error');
      expect(e).toEqual({ type: 'error', error: { code: 'channel_not_granted', message: expect.any(String) } });
      await pub(other, 'secret');
      const ch2 = `scores:${uid()}`;
      await c.request({ action: 'subscribe', channel: ch2 }, 'subscribed');
      await pub(ch2, 'after');
      await c.until((x) => x.events(ch2).length === 1);
      expect(c.events(other)).toEqual([]);
    });

    test("another user's owner channel, even when named: channel_not_granted", async () => {
      const c = await client('alice', ['user:alice']);
      expect((await c.request({ action: 'subscribe', channel: 'user:bob' }, 'error')).error).toMatchObject({ code: 'channel_not_granted' });
    });

    test('invalid channel and invalid cursor: error frames', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      expect((await c.request({ action: 'subscribe', channel: 'Bad Name' }, 'error')).error).toMatchObject({ code: 'invalid_channel' });
      expect((await c.request({ action: 'subscribe', channel: 'scores:1', since: 'abc' }, 'error')).error).toMatchObject({ code: 'invalid_cursor' });
    });

    const raceSince = async (subscribedAtConnect: boolean) => {
      const ch = `chat:${uid()}`;
      const before: string[] = [];
      for (let i = 0; i < 5; i++) before.push((await pubCore(ch, `old-${i}`)).id);
      // The ticket grants the channel; with subscribedAtConnect the connection is subscribed from $connect on.
      const c = await client('alice', subscribedAtConnect ? [ch] : [ch, 'user:alice']);
      if (!subscribedAtConnect) await c.request({ action: 'unsubscribe', channel: ch }, 'unsubscribed');
      // Resume from the second event while 30 more are being published.
      const racing = (async () => {
        const ids: string[] = [];
        for (let i = 0; i < 30; i++) ids.push((await postPublish({ channel: ch, type: 'update', data: `new-${i}` })).body.id);
        return ids;
      })();
      await new Promise((r) => setTimeout(r, 5));
      c.send({ action: 'subscribe', channel: ch, since: before[1] });
      const want = [...before.slice(2), ...(await racing)];
      await c.until((x) => x.events(ch).length >= want.length && x.signals('subscribed').length === 1, 10_000, 'every event');
      await new Promise((r) => setTimeout(r, 200));
      const got = c.events(ch).map((e) => e.id);
      expect(new Set(got).size).toBe(got.length);
      expect([...got].sort()).toEqual([...want].sort());
      // What the replay sent (up to the cursor of `subscribed`) came in order, before `subscribed`.
      const sIdx = c.frames.findIndex((f) => f.type === 'subscribed');
      const cursor = BigInt(c.frames[sIdx].cursor as string);
      const early = c.frames.slice(0, sIdx).filter((f) => typeof f.id === 'string' && BigInt(f.id as string) <= cursor).map((f) => f.id);
      expect(early).toEqual(want.filter((id) => BigInt(id) <= cursor));
    };
    test('since: the missed events, no loss and no duplicate while publishes race the subscribe', () => raceSince(false));
    test('since on a channel already subscribed at $connect: no loss and no duplicate either', () => raceSince(true));

    test('since older than the retained history: reset, then what is retained is not replayed with a gap', async () => {
      const ch = `tiny:${uid()}`;
      const first = await pubCore(ch, 0);
      for (let i = 1; i <= 5; i++) await pubCore(ch, i);
      const c = await client('alice', [ch]);
      await c.request({ action: 'subscribe', channel: ch, since: first.id }, 'subscribed');
      expect(c.signals('reset')).toEqual([{ type: 'reset', channel: ch, reason: 'history_unavailable' }]);
      expect(c.events(ch)).toEqual([]);
    });

    test('unsubscribe: unsubscribed, and the channel is no longer delivered', async () => {
      const ch = `chat:${uid()}`;
      const marker = `scores:${uid()}`;
      const c = await client('alice', [ch, marker]);
      expect(await c.request({ action: 'unsubscribe', channel: ch }, 'unsubscribed')).toEqual({ type: 'unsubscribed', channel: ch });
      await postPublish({ channel: ch, type: 'message', data: 1 });
      await postPublish({ channel: marker, type: 'message', data: 2 });
      await c.until((x) => x.events(marker).length === 1);
      expect(c.events(ch)).toEqual([]);
    });

    test('too many channels per connection: too_many_channels', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      for (let i = 0; i < 15; i++) await c.request({ action: 'subscribe', channel: `scores:${i}-${uid()}` }, 'subscribed');
      expect((await c.request({ action: 'subscribe', channel: `scores:${uid()}` }, 'error')).error).toMatchObject({ code: 'too_many_channels' });
    });
  });

  describe('publish', () => {
    test('one POST /publish reaches an SSE client and a WebSocket client of the same channel, byte for byte', async () => {
      const ch = `chat:${uid()}`;
      const c = await client('alice', [ch]);
      const s = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticketFor(redis, 'bob', [ch])}`);
      open.push(s);
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      const { status, body } = await postPublish({ channel: ch, type: 'message', data: { text: 'both' } });
      expect(status).toBe(202);
      await c.until((x) => x.events().length === 1);
      await s.until((x) => x.events().some((e) => e.id === body.id));
      expect(s.events().find((e) => e.id === body.id)!.data).toBe(c.raw[0]);
    });

    test('client publish where the namespace allows it: ack, delivered to WebSocket and SSE subscribers', async () => {
      const ch = `chat:${uid()}`;
      const sender = await client('alice', [ch]);
      const other = await client('bob', [ch]);
      const s = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}&ticket=${await ticketFor(redis, 'carol', [ch])}`);
      open.push(s);
      await s.until((x) => x.events().some((e) => e.event === 'ready'));
      const ack = await sender.request({ action: 'publish', channel: ch, type: 'message', data: { text: 'from ws' } }, 'published');
      expect(ack).toEqual({ type: 'published', id: expect.stringMatching(/^\d+$/), channel: ch });
      await other.until((x) => x.events(ch).length === 1);
      expect(other.events(ch)[0]).toEqual({ channel: ch, id: ack.id, type: 'message', data: { text: 'from ws' }, ts: expect.any(Number), prev: expect.stringMatching(/^\d+$/) });
      await sender.until((x) => x.events(ch).length === 1);
      await s.until((x) => x.events().some((e) => e.id === ack.id));
    });

    test('client publish with an idempotency key: the retry acks the same id and is delivered once', async () => {
      const ch = `chat:${uid()}`;
      const c = await client('alice', [ch]);
      const frame = { action: 'publish', channel: ch, type: 'message', data: 1, idempotencyKey: `k-${uid()}` };
      const a = await c.request(frame, 'published');
      const b = await c.request(frame, 'published', (f) => f !== c.signals('published')[0]);
      expect(b.id).toBe(a.id);
      await postPublish({ channel: ch, type: 'message', data: 'marker' });
      await c.until((x) => x.events(ch).length === 2);
      expect(c.events(ch).map((e) => e.data)).toEqual([1, 'marker']);
    });

    test('client publish where the namespace does not allow it: forbidden, nothing published', async () => {
      const ch = `scores:${uid()}`;
      const c = await client('alice', [ch]);
      expect((await c.request({ action: 'publish', channel: ch, type: 'goal', data: 1 }, 'error')).error).toMatchObject({ code: 'forbidden' });
      expect((await c.request({ action: 'publish', channel: 'user:alice', type: 'note', data: 1 }, 'error')).error).toMatchObject({ code: 'forbidden' });
      expect(await redis.exists(keys.history(ch))).toBe(0);
    });

    test('client publish validation: reserved type, missing data, oversized payload', async () => {
      const ch = `chat:${uid()}`;
      const c = await client('alice', [ch]);
      expect((await c.request({ action: 'publish', channel: ch, type: 'pong', data: 1 }, 'error')).error).toMatchObject({ code: 'invalid_type' });
      expect((await c.request({ action: 'publish', channel: ch, type: 'message' }, 'error')).error).toMatchObject({ code: 'bad_request' });
      // A frame just under the 32 KB frame limit whose envelope (id and ts added) is just over the payload limit.
      const frame = { action: 'publish', channel: ch, type: 'message', data: '' };
      frame.data = 'x'.repeat(32_760 - JSON.stringify(frame).length);
      expect((await c.request(frame, 'error')).error).toMatchObject({ code: 'payload_too_large' });
    });
  });

  describe('frames', () => {
    test('ping: pong', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      expect(await c.request({ action: 'ping' }, 'pong')).toEqual({ type: 'pong' });
    });

    test('malformed JSON, a non-object, no action and an unknown action: error frames; the socket stays usable', async () => {
      const c = await client('alice', [`chat:${uid()}`]);
      expect((await c.request('{nope', 'error')).error).toMatchObject({ code: 'invalid_json' });
      expect((await c.request('[1,2]', 'error')).error).toMatchObject({ code: 'invalid_json' });
      expect((await c.request({ channel: 'chat:x' }, 'error')).error).toMatchObject({ code: 'bad_request' });
      expect((await c.request({ action: 'shout' }, 'error')).error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('shout') });
      expect(await c.request({ action: 'ping' }, 'pong')).toEqual({ type: 'pong' });
      expect(c.ws.readyState).toBe(c.ws.OPEN);
    });
  });
});

describe('API Gateway only: the connection registry', () => {
  test('upgrade: a connection registered before the subscriber sets were tagged (in the untagged wsub:channel) still gets the fan-out, and its $disconnect removes it there', async () => {
    const ch = `chat:${uid()}`;
    const before = stack.ws.connectionIds();
    const c = await client('alice', [ch]);
    const id = newestConnectionId(before);
    // What the registration before the upgrade left: the same member, in the untagged set.
    const [m] = await redis.smembers(subscribersKey(keys, ch));
    // A connection id may hold regex characters ('+', '/'): compared as text.
    expect(m.startsWith(`${id}|`)).toBe(true);
    await redis.srem(subscribersKey(keys, ch), m);
    await redis.sadd(`${keys.prefix}wsub:${ch}`, m);
    const { id: eventId } = await pub(ch, 'after the upgrade');
    await c.until((x) => x.events(ch).some((e) => e.id === eventId), 5000, 'the event');
    c.close();
    await eventually(async () => (await redis.exists(connectionKey(keys, id))) === 0, 5000, 'record removed');
    expect(await redis.exists(`${keys.prefix}wsub:${ch}`)).toBe(0);
  });

  test('registry: identity, grant and subscriptions stored with an expiry beyond 2 h; removed on $disconnect', async () => {
    const ch = `chat:${uid()}`;
    const before = stack.ws.connectionIds();
    const c = await client('alice', [ch, 'scores:1']);
    const id = newestConnectionId(before);
    const rec = await getConnection(id, { redis, config });
    expect(rec).toMatchObject({ connectionId: id, identity: { kind: 'user', sub: 'alice' }, grant: [ch, 'scores:1'].sort() });
    expect([...rec!.subscriptions.keys()].sort()).toEqual([ch, 'scores:1'].sort());
    const ttl = await redis.ttl(connectionKey(keys, id));
    expect(ttl).toBeGreaterThan(2 * 3600);
    expect(await redis.ttl(subscribersKey(keys, ch))).toBeGreaterThan(2 * 3600);
    c.close();
    await eventually(async () => (await redis.exists(connectionKey(keys, id))) === 0, 5000, 'record removed');
    expect(await redis.smembers(subscribersKey(keys, ch))).toEqual([]);
  });


  test('a frame over 32 KB runs $disconnect (the registry entry goes)', async () => {
    const before = stack.ws.connectionIds();
    const c = await client('alice', [`chat:${uid()}`]);
    const id = newestConnectionId(before);
    c.send({ action: 'ping', pad: 'x'.repeat(33 * 1024) });
    expect(await c.closed).toBe(1009);
    await eventually(async () => (await redis.exists(connectionKey(keys, id))) === 0, 5000, '$disconnect');
  });

  test('POST /tickets with transport ws answers the wsUrl of the gateway', async () => {
    const r = await fetch(stack.outputs.TicketUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-local-user': 'carol' },
      body: JSON.stringify({ channels: ['chat:lobby'], transport: 'ws' }),
    });
    const t = (await r.json()) as { ticket: string; wsUrl: string };
    expect(t.wsUrl).toBe(`${stack.outputs.WebSocketUrl}?ticket=${t.ticket}`);
    open.push(await connectWs(t.wsUrl));
  });
});

describe('management API (real ApiGatewayManagementApiClient against the local gateway)', () => {
  test('POST, GET and DELETE /@connections/{id}; 410 GoneException afterwards', async () => {
    const before = stack.ws.connectionIds();
    const c = await client('alice', [`chat:${uid()}`]);
    const id = newestConnectionId(before);
    await mgmt.send(new PostToConnectionCommand({ ConnectionId: id, Data: Buffer.from('{"type":"hello"}') }));
    await c.until((x) => x.raw.includes('{"type":"hello"}'));
    const info = await mgmt.send(new GetConnectionCommand({ ConnectionId: id }));
    expect(info.ConnectedAt).toBeInstanceOf(Date);
    expect(info.Identity?.SourceIp).toBe('127.0.0.1');
    await mgmt.send(new DeleteConnectionCommand({ ConnectionId: id }));
    await c.closed;
    const err = await mgmt.send(new PostToConnectionCommand({ ConnectionId: id, Data: Buffer.from('x') })).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'GoneException', $metadata: { httpStatusCode: 410 } });
    expect(isGone(err)).toBe(true);
  });

  test('unsigned requests: 403', async () => {
    const r = await fetch(`${stack.ws.managementEndpoint}/@connections/abc`, { method: 'POST', body: 'x' });
    expect(r.status).toBe(403);
  });
});

describe('timeouts', () => {
  // One limit per gateway, the other far away: a 1001 then can only come from the limit under test, however
  // late the machine runs the client's timers.
  let idleGw: WsGateway;
  let hardGw: WsGateway;
  const handlers = () => {
    const h = stack.handlers;
    return { authorizer: h.wsAuthorizer, connect: h.wsConnect, disconnect: h.wsDisconnect, default: h.wsMessage, routes: { ping: h.wsMessage } };
  };
  beforeAll(async () => {
    idleGw = await startWsGateway({ idleTimeoutMs: 400, maxConnectionMs: 600_000, handlers: handlers() });
    hardGw = await startWsGateway({ idleTimeoutMs: 600_000, maxConnectionMs: 1200, handlers: handlers() });
  });
  afterAll(async () => {
    await idleGw.close();
    await hardGw.close();
  });

  test('idle: closed with 1001 when the client sends nothing', async () => {
    const c = new WsClient(`${idleGw.url}?ticket=${await wsTicket('alice', [`chat:${uid()}`])}`);
    open.push(c);
    await c.opened;
    const t0 = Date.now();
    expect(await c.closed).toBe(1001);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
  });

  test('hard limit: closed with 1001 even while the client keeps sending', async () => {
    const c = new WsClient(`${hardGw.url}?ticket=${await wsTicket('alice', [`chat:${uid()}`])}`);
    open.push(c);
    await c.opened;
    const t0 = Date.now();
    // A frame every 150 ms: the client is never quiet, and the idle limit is ten minutes away (however late the
    // timer runs). The pongs do not come back here: the handlers post to the stack's own gateway.
    let pings = 0;
    const ping = () => {
      if (c.ws.readyState !== c.ws.OPEN) return;
      pings++;
      c.send('{"action":"ping"}');
    };
    ping();
    const timer = setInterval(ping, 150);
    let code: number;
    try {
      code = await c.closed;
    } finally {
      clearInterval(timer);
    }
    expect(code).toBe(1001);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1100);
    expect(pings).toBeGreaterThanOrEqual(1);
  });
});
