import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type Redis from 'ioredis';
import pino from 'pino';
import { WebSocket, type ClientOptions } from 'ws';
import { publish } from '../../core/events';
import { issueTicket } from '../../core/tickets';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { connectRedis, coreConfig, eventually, get, RawStream, startService, TEST_NAMESPACES, ticketFor, uid } from '../support/harness';
import { connectWs, upgradeStatus, WsClient } from './ws-support';

/**
 * What only the tasks' WebSocket endpoint (`/live`, service/ws-edge.ts) has beyond the shared
 * protocol suite (ws.test.ts): the stage switch's ticket URL, revocation, the Origin allowlist, the
 * connection cap shared with streams and polls, heartbeats (WebSocket pings), the slow-consumer cap
 * and the drain.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;
const config = coreConfig();
let redis: Redis;
const open: { close(): void }[] = [];
const services: RealtimeServer[] = [];

beforeAll(async () => {
  redis = await connectRedis();
});
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});
afterAll(async () => {
  for (const s of services) await s.close();
  redis.disconnect();
});

const live = (base: string) => `${base.replace(/^http/, 'ws')}/live`;
async function service(env: Record<string, string> = {}): Promise<{ service: RealtimeServer; base: string; url: string }> {
  const s = await startService(env);
  services.push(s.service);
  return { ...s, url: live(s.base) };
}
async function socket(url: string, sub: string, channels: string[], options: ClientOptions = {}): Promise<WsClient> {
  const t = await ticketFor(redis, sub, channels, 'ws');
  const c = new WsClient(`${url}?ticket=${t}`, options);
  open.push(c);
  await c.opened;
  return c;
}

describe('local stack in mode both', () => {
  let stack: LocalStack;
  beforeAll(async () => {
    const { startLocalStack } = await import('../../local/stack');
    stack = await startLocalStack({ logger: pino({ level: 'silent' }), webSocketMode: 'both', env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), WS_GONE_GRACE_MS: '0', LOG_LEVEL: 'silent' } });
  });
  afterAll(() => stack.close());

  const wsTicket = async (sub: string, channels: string[]) => {
    const r = await fetch(stack.outputs.TicketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': sub }, body: JSON.stringify({ channels, transport: 'ws' }) });
    expect(r.status).toBe(201);
    return (await r.json()) as { ticket: string; wsUrl: string };
  };

  test('POST /tickets with transport ws answers the wsUrl of the tasks (LiveUrl); the API Gateway stand-in still serves', async () => {
    const ch = `chat:${uid()}`;
    const t = await wsTicket('carol', [ch]);
    expect(stack.outputs.LiveUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/live$/);
    expect(t.wsUrl).toBe(`${stack.outputs.LiveUrl}?ticket=${t.ticket}`);
    const onTasks = await connectWs(t.wsUrl);
    open.push(onTasks);
    const onGateway = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${(await wsTicket('dave', [ch])).ticket}`);
    open.push(onGateway);
    // POST /publish reaches both: the tasks through Redis pub/sub, the gateway's connection through the Lambda's fan-out.
    const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: ch, type: 'm', data: 1 }) });
    const { id } = (await r.json()) as { id: string };
    await onTasks.until((c) => c.events(ch).some((e) => e.id === id));
    await onGateway.until((c) => c.events(ch).some((e) => e.id === id));
    expect(onTasks.raw[0]).toBe(onGateway.raw[0]);
  });

  test('a publish on a /live socket reaches a client still on API Gateway (through the fan-out queue and its worker), and one on API Gateway reaches /live: each once, the same bytes', async () => {
    const ch = `chat:${uid()}`;
    const onTasks = await connectWs((await wsTicket('fay', [ch])).wsUrl);
    open.push(onTasks);
    const onGateway = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${(await wsTicket('gus', [ch])).ticket}`);
    open.push(onGateway);
    const queued = stack.queue!.stats.sent;

    const fromLive = await onTasks.request({ action: 'publish', channel: ch, type: 'm', data: 'from-live' }, 'published');
    await onGateway.until((c) => c.events(ch).some((e) => e.id === fromLive.id), 10_000, 'the /live publish on the API Gateway connection');
    await onTasks.until((c) => c.events(ch).some((e) => e.id === fromLive.id));
    // The tasks handed it to the queue (one item per shard), the worker posted it.
    expect(stack.queue!.stats.sent).toBe(queued + 1);

    const fromGateway = await onGateway.request({ action: 'publish', channel: ch, type: 'm', data: 'from-gateway' }, 'published');
    await onTasks.until((c) => c.events(ch).some((e) => e.id === fromGateway.id), 10_000, 'the API Gateway publish on /live');
    await onGateway.until((c) => c.events(ch).some((e) => e.id === fromGateway.id));

    for (const c of [onTasks, onGateway]) expect(c.events(ch).map((e) => [e.id, e.data])).toEqual([[fromLive.id, 'from-live'], [fromGateway.id, 'from-gateway']]);
    expect(onTasks.raw.filter((r) => r.includes('"from-live"'))).toEqual(onGateway.raw.filter((r) => r.includes('"from-live"')));
    expect(stack.queue!.deadLetters).toEqual([]);
  });

  test('the queue refuses a /live publish with an idempotencyKey: the publisher is told to retry, and its retry (duplicate) enqueues what is missing', async () => {
    const ch = `chat:${uid()}`;
    const onTasks = await connectWs((await wsTicket('ida', [ch])).wsUrl);
    open.push(onTasks);
    const onGateway = await connectWs(`${stack.outputs.WebSocketUrl}?ticket=${(await wsTicket('jay', [ch])).ticket}`);
    open.push(onGateway);
    const frame = { action: 'publish', channel: ch, type: 'm', data: 'retried', idempotencyKey: `k-${uid()}` };
    stack.queue!.refuseNext = 1;
    expect(await onTasks.request(frame, 'error')).toMatchObject({ error: { code: 'unavailable' } });
    const again = await onTasks.request(frame, 'published');
    await onGateway.until((c) => c.events(ch).some((e) => e.id === again.id), 10_000, 'the retried publish on the API Gateway connection');
    expect(onGateway.events(ch).map((e) => e.data)).toEqual(['retried']);
  });

  test('a /live publish on a channel without API Gateway subscribers enqueues nothing', async () => {
    const ch = `chat:${uid()}`;
    const onTasks = await connectWs((await wsTicket('hal', [ch])).wsUrl);
    open.push(onTasks);
    const queued = stack.queue!.stats.sent;
    const r = await onTasks.request({ action: 'publish', channel: ch, type: 'm', data: 1 }, 'published');
    await onTasks.until((c) => c.events(ch).some((e) => e.id === r.id));
    expect(stack.queue!.stats.sent).toBe(queued);
  });

  test('POST /revoke closes the user\'s sockets on the tasks with 1008; a ticket issued before it is refused (403)', async () => {
    const ch = `chat:${uid()}`;
    const c = await connectWs((await wsTicket('erin', [ch])).wsUrl);
    open.push(c);
    const unspent = await wsTicket('erin', [ch]);
    const r = await fetch(stack.outputs.TicketUrl.replace(/\/tickets$/, '/revoke'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'erin' }) });
    expect(r.status).toBe(202);
    expect(await c.closed).toBe(1008);
    expect(await upgradeStatus(unspent.wsUrl)).toBe(403);
  });
});

describe('admission', () => {
  test('Origin: a listed one upgrades, any other gets 403 origin_not_allowed', async () => {
    const { url } = await service();
    const ch = `chat:${uid()}`;
    const ok = await socket(url, 'alice', [ch], { origin: 'http://allowed.example' });
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
    const refused = new WsClient(`${url}?ticket=${await ticketFor(redis, 'alice', [ch], 'ws')}`, { origin: 'http://evil.example' });
    await expect(refused.opened).rejects.toThrow('403');
  });

  test("the upgrade redeems its ticket as a stream does, on the service's clock: a ticket whose sign-in ended by then is refused (403), as on /events (401)", async () => {
    // The service's clock runs two minutes ahead; the tickets' sign-in ends in one (by the machine's clock).
    const s = await startService({}, { now: () => Date.now() + 120_000 });
    services.push(s.service);
    const ch = `chat:${uid()}`;
    const ticket = async (transport: 'ws' | 'sse') => (await issueTicket({ identity: { kind: 'user', sub: 'alice' }, channels: [ch], transport, notAfter: Date.now() + 60_000 }, { redis, config })).ticket;
    expect(await upgradeStatus(`${live(s.base)}?ticket=${await ticket('ws')}`)).toBe(403);
    expect((await get(`${s.base}/events?channels=${ch}&ticket=${await ticket('sse')}`, { accept: 'application/json' })).status).toBe(401);
  });

  test('MAX_CONNECTIONS counts streams, polls and sockets together: past it an upgrade gets 503', async () => {
    const { url, base } = await service({ MAX_CONNECTIONS: '2' });
    const ch = `scores:${uid()}`;
    const s = new RawStream(`${base}/events?channels=${ch}`);
    open.push(s);
    await s.until((x) => x.events().some((e) => e.event === 'ready'));
    await socket(url, 'alice', [ch]);
    expect(await upgradeStatus(`${url}?ticket=${await ticketFor(redis, 'bob', [ch], 'ws')}`)).toBe(503);
    const sse = await fetch(`${base}/events?channels=${ch}`, { headers: { accept: 'application/json' } });
    expect(sse.status).toBe(503);
    expect(((await sse.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/maximum of 2 streams, polls and sockets/) });
  });
});

describe('heartbeats', () => {
  test('a WebSocket ping and a heartbeat frame (visible to browsers and the client SDK) every HEARTBEAT_MS; a client that stops answering pings is terminated', async () => {
    const { url, service: svc } = await service({ HEARTBEAT_MS: '1000' });
    const answering = await socket(url, 'alice', [`chat:${uid()}`]);
    let pings = 0;
    answering.ws.on('ping', () => pings++);
    const silent = await socket(url, 'bob', [`chat:${uid()}`], { autoPong: false });
    await eventually(() => silent.closeCode !== undefined, 10_000, 'the silent client terminated');
    expect(silent.closeCode).toBe(1006);
    expect(pings).toBeGreaterThanOrEqual(1);
    await answering.until((c) => c.frames.some((f) => f.type === 'heartbeat'), 10_000, 'a heartbeat frame');
    expect(answering.frames.filter((f) => f.type === 'heartbeat')[0]).toEqual({ type: 'heartbeat' });
    expect(answering.ws.readyState).toBe(WebSocket.OPEN);
    expect(svc.sockets).toBe(1);
  });
});

/** Upgrades a raw TCP socket to /live and then never reads from it. */
async function stalledSocket(url: string, ticket: string): Promise<Socket> {
  const u = new URL(url);
  const key = randomBytes(16).toString('base64');
  const sock = connect(Number(u.port), u.hostname);
  sock.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.write(`GET /live?ticket=${ticket} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      sock.off('data', onData);
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      if (head.startsWith('HTTP/1.1 101') && head.includes(accept)) resolve();
      else reject(new Error(head));
    };
    sock.on('data', onData);
  });
  sock.pause();
  return sock;
}

describe('slow consumers', () => {
  test('a socket whose reader stopped is closed once its backlog passes MAX_QUEUED_BYTES; a reading one keeps everything', async () => {
    const { url, service: svc } = await service({ MAX_QUEUED_BYTES: '65536' });
    const ch = `chat:${uid()}`;
    const reader = await socket(url, 'alice', [ch]);
    const stalled = await stalledSocket(url, await ticketFor(redis, 'bob', [ch], 'ws'));
    open.push({ close: () => stalled.destroy() });
    expect(svc.sockets).toBe(2);
    const data = 'x'.repeat(16_000);
    let n = 0;
    for (; n < 2000 && svc.sockets === 2; n++) await publish({ channel: ch, type: 'bulk', data }, SERVER, { redis, config });
    await eventually(() => svc.sockets === 1, 10_000, 'the stalled socket closed');
    await reader.until((c) => c.events(ch).length === n, 20_000, `all ${n} events`);
    expect(reader.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe('drain', () => {
  test('every socket is closed with 1001 and a jittered reconnect hint; new upgrades get 503', async () => {
    const { url, service: svc } = await service({ RETRY_MS: '1000' });
    const clients = await Promise.all(['a', 'b', 'c'].map((sub) => socket(url, sub, [`chat:${uid()}`])));
    const reasons: string[] = [];
    for (const c of clients) c.ws.once('close', (_code, reason) => reasons.push(String(reason)));
    const drained = svc.drain(400);
    expect(await Promise.all(clients.map((c) => c.closed))).toEqual([1001, 1001, 1001]);
    await drained;
    for (const r of reasons) {
      const hint = JSON.parse(r) as { reason: string; retryMs: number };
      expect(hint.reason).toBe('draining');
      expect(hint.retryMs).toBeGreaterThanOrEqual(500);
      expect(hint.retryMs).toBeLessThanOrEqual(1500);
    }
    expect(await upgradeStatus(`${url}?ticket=${await ticketFor(redis, 'd', [`chat:${uid()}`], 'ws')}`)).toBe(503);
  });
});

describe('Redis subscriber reconnects', () => {
  test('sockets are told to reconnect (1012, jittered hint) and resume with since: nothing published meanwhile is lost', async () => {
    const { url, service: svc } = await service({ RETRY_MS: '1000' });
    const ch = `chat:${uid()}`;
    const c = await socket(url, 'alice', [ch]);
    const reason = new Promise<string>((resolve) => c.ws.once('close', (_code, r) => resolve(String(r))));
    const before = await publish({ channel: ch, type: 'm', data: 0 }, SERVER, { redis, config });
    await c.until((x) => x.events(ch).length === 1);
    svc.subscriber.disconnect(true);
    const during = await publish({ channel: ch, type: 'm', data: 1 }, SERVER, { redis, config });
    expect(await c.closed).toBe(1012);
    expect(JSON.parse(await reason)).toEqual({ reason: 'resubscribe', retryMs: expect.any(Number) });
    await eventually(() => svc.redisUp, 10_000, 'the subscriber back');
    const again = await socket(url, 'alice', [ch]);
    await again.request({ action: 'subscribe', channel: ch, since: before.id }, 'subscribed');
    expect(again.events(ch).map((e) => e.id)).toEqual([during.id]);
  });
});
