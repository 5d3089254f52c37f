/**
 * The local stack trusts `x-local-user` and checks no signatures, so what keeps other web pages
 * open on a developer's machine out of it is the browser's own rules plus ours: only listed origins
 * get in (the stack's own and `allowedOrigins`), and only loopback Host names are served.
 */
import { request } from 'node:http';
import type Redis from 'ioredis';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import pino from 'pino';
import { WebSocket } from 'ws';
import { Keys } from '../../core/redis/keys';
import { RedisServer } from '../../local/redis';
import type { LocalStack } from '../../local/stack';
import { CHROMIUM_PATH, startPageServer } from '../support/browser';
import { connectRedis, RawStream, TEST_NAMESPACES, uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const EVIL = 'http://evil.example';
const APP = 'http://localhost:5173';
const keys = new Keys('rt:');

let redisServer: RedisServer;
let redis: Redis;
let stack: LocalStack;

beforeAll(async () => {
  // A Redis of its own, so "nothing was minted" is an exact count of ticket keys.
  redisServer = await RedisServer.start();
  redis = await connectRedis(redisServer.url);
  const { startLocalStack } = await import('../../local/stack');
  stack = await startLocalStack({
    redisUrl: redisServer.url,
    allowedOrigins: [APP],
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), LOG_LEVEL: 'silent' },
  });
});
afterAll(async () => {
  await stack?.close();
  redis?.disconnect();
  await redisServer?.destroy();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw HTTP request (node:http lets a test set Host and Origin as a browser would). */
function send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const ticketKeys = async () => (await redis.keys(`${keys.prefix}tk:*`)).length;
const mint = (headers: Record<string, string>) => send(stack.outputs.TicketUrl, 'POST', { 'content-type': 'application/json', 'x-local-user': 'alice', ...headers }, JSON.stringify({ channels: [`chat:${uid()}`] }));
const publishTo = (channel: string, headers: Record<string, string>, data: unknown = 'x') =>
  send(stack.outputs.PublishUrl, 'POST', { 'content-type': 'application/json', ...headers }, JSON.stringify({ channel, type: 'update', data }));
const preflight = (url: string, origin: string, method = 'POST') =>
  send(url, 'OPTIONS', { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type,x-local-user' });
const corsHeaders = (a: Answer) => Object.keys(a.headers).filter((h) => h.startsWith('access-control-'));
const errorCode = (a: Answer) => (JSON.parse(a.body) as { error: { code: string } }).error.code;

/** The HTTP status of a WebSocket upgrade (101 when it opened). */
function upgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    ws.once('error', () => undefined);
  });
}
const wsTicket = async (headers: Record<string, string> = {}) => {
  const r = await send(stack.outputs.TicketUrl, 'POST', { 'content-type': 'application/json', 'x-local-user': 'alice', ...headers }, JSON.stringify({ channels: [`chat:${uid()}`], transport: 'ws' }));
  expect(r.status).toBe(201);
  return (JSON.parse(r.body) as { ticket: string }).ticket;
};

describe('a page on another origin (http://evil.example)', () => {
  test('cannot mint a ticket: 403 origin_not_allowed, no CORS headers, no ticket in Redis', async () => {
    const before = await ticketKeys();
    const r = await mint({ origin: EVIL });
    expect(r.status).toBe(403);
    expect(errorCode(r)).toBe('origin_not_allowed');
    expect(corsHeaders(r)).toEqual([]);
    expect(await ticketKeys()).toBe(before);
  });

  test('cannot publish: 403 origin_not_allowed, nothing stored, nothing delivered', async () => {
    const ch = `scores:${uid()}`;
    const stream = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}`);
    try {
      await stream.until((x) => x.events().some((e) => e.event === 'ready'));
      const r = await publishTo(ch, { origin: EVIL }, 'evil');
      expect(r.status).toBe(403);
      expect(errorCode(r)).toBe('origin_not_allowed');
      expect(corsHeaders(r)).toEqual([]);
      expect(await redis.exists(keys.history(ch))).toBe(0);
      // A publish after the refused one arrives first and alone: the refused one never reached Redis.
      const ok = await publishTo(ch, {}, 'curl');
      expect(ok.status).toBe(202);
      const { id } = JSON.parse(ok.body) as { id: string };
      await stream.until((x) => x.events().some((e) => e.id === id));
      expect(stream.events().filter((e) => e.event === 'update').map((e) => (JSON.parse(e.data) as { data: unknown }).data)).toEqual(['curl']);
    } finally {
      stream.close();
    }
  });

  test('its preflights get 403 and no allow headers (tickets, publish, the SSE service, the WebSocket gateway)', async () => {
    for (const url of [stack.outputs.TicketUrl, stack.outputs.PublishUrl, stack.outputs.SseUrl, stack.ws.managementEndpoint]) {
      const r = await preflight(url, EVIL, url === stack.outputs.SseUrl ? 'GET' : 'POST');
      expect({ url, status: r.status, cors: corsHeaders(r) }).toEqual({ url, status: 403, cors: [] });
    }
  });

  test('cannot read a stream nor open a WebSocket: 403 before any handler runs', async () => {
    const sse = await send(`${stack.outputs.SseUrl}?channels=scores:${uid()}`, 'GET', { origin: EVIL, accept: 'text/event-stream' });
    expect(sse.status).toBe(403);
    expect(errorCode(sse)).toBe('origin_not_allowed');
    expect(corsHeaders(sse)).toEqual([]);
    const ticket = await wsTicket();
    const ws = await upgrade(`${stack.outputs.WebSocketUrl}?ticket=${ticket}`, { origin: EVIL });
    expect(ws.status).toBe(403);
    expect(errorCode({ status: ws.status, headers: {}, body: ws.body })).toBe('origin_not_allowed');
    // The ticket was not spent by the refused upgrade: the authorizer never ran.
    expect((await upgrade(`${stack.outputs.WebSocketUrl}?ticket=${ticket}`, {})).status).toBe(101);
  });

  test('"null" (a sandboxed iframe, a file:// page) is another origin too', async () => {
    const r = await mint({ origin: 'null' });
    expect(r.status).toBe(403);
    expect(errorCode(r)).toBe('origin_not_allowed');
  });
});

describe('DNS rebinding: a Host that is not 127.0.0.1, localhost or [::1]', () => {
  const port = (url: string) => new URL(url).port;

  test('is refused with 403 JSON on every server, even without an Origin', async () => {
    const before = await ticketKeys();
    const t = await mint({ host: `evil.example:${port(stack.outputs.TicketUrl)}` });
    expect(t.status).toBe(403);
    expect(errorCode(t)).toBe('forbidden');
    expect(await ticketKeys()).toBe(before);
    const ch = `scores:${uid()}`;
    const p = await publishTo(ch, { host: `evil.example:${port(stack.outputs.PublishUrl)}` });
    expect(p.status).toBe(403);
    expect(await redis.exists(keys.history(ch))).toBe(0);
    const s = await send(`${stack.outputs.SseUrl}?channels=${ch}`, 'GET', { host: `evil.example:${port(stack.outputs.SseUrl)}`, accept: 'text/event-stream' });
    expect(s.status).toBe(403);
    expect(errorCode(s)).toBe('forbidden');
    const w = await upgrade(`${stack.outputs.WebSocketUrl}?ticket=${await wsTicket()}`, { host: `evil.example:${port(stack.outputs.WebSocketUrl)}` });
    expect(w.status).toBe(403);
  });

  test('localhost and [::1] Host names are served', async () => {
    for (const h of ['localhost', '[::1]', '127.0.0.1']) {
      const r = await mint({ host: `${h}:${port(stack.outputs.TicketUrl)}` });
      expect({ h, status: r.status }).toEqual({ h, status: 201 });
    }
  });
});

describe('what keeps working', () => {
  test('curl-style requests (no Origin): mint, publish, stream, WebSocket, management API', async () => {
    expect((await mint({})).status).toBe(201);
    const ch = `scores:${uid()}`;
    expect((await publishTo(ch, {})).status).toBe(202);
    const stream = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}&lastEventId=0`);
    try {
      await stream.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(stream.status).toBe(200);
    } finally {
      stream.close();
    }
    expect((await upgrade(`${stack.outputs.WebSocketUrl}?ticket=${await wsTicket()}`, {})).status).toBe(101);
    // Unsigned: the gateway's own 403 ForbiddenException, not the guard's.
    const m = await send(`${stack.ws.managementEndpoint}/@connections/abc`, 'POST', {}, 'x');
    expect({ status: m.status, type: m.headers['x-amzn-errortype'] }).toEqual({ status: 403, type: 'ForbiddenException' });
  });

  test('the allowed origin: preflights granted with credentials, a ticket minted, a publish accepted, a stream read with CORS, a WebSocket opened', async () => {
    const pre = await preflight(stack.outputs.TicketUrl, APP);
    expect(pre.status).toBe(204);
    expect(pre.headers).toMatchObject({ 'access-control-allow-origin': APP, 'access-control-allow-credentials': 'true' });
    expect(String(pre.headers['access-control-allow-headers'])).toContain('x-local-user');
    const before = await ticketKeys();
    const t = await mint({ origin: APP });
    expect(t.status).toBe(201);
    expect(t.headers).toMatchObject({ 'access-control-allow-origin': APP, 'access-control-allow-credentials': 'true' });
    expect(await ticketKeys()).toBe(before + 1);
    const ch = `scores:${uid()}`;
    const p = await publishTo(ch, { origin: APP });
    expect(p.status).toBe(202);
    expect(p.headers['access-control-allow-origin']).toBe(APP);
    const stream = new RawStream(`${stack.outputs.SseUrl}?channels=${ch}`, { origin: APP });
    try {
      await stream.until((x) => x.events().some((e) => e.event === 'ready'));
      expect(stream.headers['access-control-allow-origin']).toBe(APP);
    } finally {
      stream.close();
    }
    expect((await upgrade(`${stack.outputs.WebSocketUrl}?ticket=${await wsTicket({ origin: APP })}`, { origin: APP })).status).toBe(101);
  });

  test("the stack's own origins (a page served by the stack) are allowed", async () => {
    const api = new URL(stack.outputs.TicketUrl);
    for (const origin of [api.origin, `http://localhost:${api.port}`, new URL(stack.outputs.SseUrl).origin]) {
      const r = await mint({ origin });
      expect({ origin, status: r.status, allow: r.headers['access-control-allow-origin'] }).toEqual({ origin, status: 201, allow: origin });
    }
    expect(stack.allowedOrigins).toEqual(expect.arrayContaining([api.origin, `http://localhost:${api.port}`, APP]));
  });
});

describe('allowedOrigins', () => {
  test.each([
    ['*', /"\*" is refused/],
    ['evil.example', /not a URL/],
    ['http://localhost:5173/app', /not an origin/],
    ['ftp://localhost', /not an origin/],
  ])('%s: startLocalStack refuses it with a readable error, before starting anything', async (origin, message) => {
    const { startLocalStack } = await import('../../local/stack');
    await expect(startLocalStack({ redisUrl: 'redis://127.0.0.1:1', allowedOrigins: [origin] })).rejects.toThrow(message);
  });

  test('an origin is normalised (trailing slash, default port, case)', async () => {
    const { LocalGuard } = await import('../../local/guard');
    expect(new LocalGuard({ allowedOrigins: ['HTTP://LocalHost:80/', 'https://app.example:443'] }).allowedOrigins).toEqual(['http://localhost', 'https://app.example']);
  });
});

describe('headless Chromium', () => {
  let browser: Browser;
  let pageServer: Awaited<ReturnType<typeof startPageServer>>;
  let context: BrowserContext | undefined;

  beforeAll(async () => {
    pageServer = await startPageServer();
    // evil.example resolves to 127.0.0.1, as an attacker's DNS answers after rebinding.
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--host-resolver-rules=MAP evil.example 127.0.0.1'],
    });
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
  });
  afterAll(async () => {
    await browser?.close();
    await pageServer?.close();
  });

  const open = async (url: string): Promise<Page> => {
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url);
    return page;
  };

  test('a page on http://evil.example:<port> cannot mint a ticket or publish with fetch(): both fetches fail, nothing minted or stored', async () => {
    const page = await open(`http://evil.example:${new URL(pageServer.origin).port}/`);
    const ch = `scores:${uid()}`;
    const before = await ticketKeys();
    const outcome = await page.evaluate(
      async (a) => {
        const attempt = (url: string, init: RequestInit) =>
          fetch(url, { ...init, credentials: 'include' }).then(
            (r) => `status ${r.status}`,
            (e: Error) => `failed: ${e.name}`,
          );
        return {
          ticket: await attempt(a.ticketUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-local-user': 'alice' }, body: JSON.stringify({ channels: ['chat:lobby'] }) }),
          publish: await attempt(a.publishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: a.ch, type: 'update', data: 'evil' }) }),
        };
      },
      { ticketUrl: stack.outputs.TicketUrl, publishUrl: stack.outputs.PublishUrl, ch },
    );
    expect(outcome).toEqual({ ticket: 'failed: TypeError', publish: 'failed: TypeError' });
    expect(await ticketKeys()).toBe(before);
    expect(await redis.exists(keys.history(ch))).toBe(0);
  });

  test('DNS rebinding: a page of evil.example on the ports of the stack (same-origin to itself) cannot publish nor read a stream', async () => {
    const ch = `scores:${uid()}`;
    expect((await publishTo(ch, {}, 'before')).status).toBe(202);
    // The attacker's page, same-origin to the stack's ports once evil.example resolves to 127.0.0.1.
    // Its document is loaded from loopback here (whatever the stack answered for /): Chromium's own
    // Local Network Access check would block a page first served from a public address, which
    // other browsers do not do, so this is the case the Host check exists for.
    const apiPage = `http://evil.example:${new URL(stack.outputs.PublishUrl).port}/`;
    const ssePage = `http://evil.example:${new URL(stack.outputs.SseUrl).port}/`;
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(apiPage);
    const published = await page.evaluate(
      (c) =>
        fetch('/publish', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel: c, type: 'update', data: 'evil' }) }).then(
          (r) => r.status,
          () => 0,
        ),
      ch,
    );
    expect(published).toBe(403);
    await page.goto(ssePage);
    const stream = await page.evaluate(
      (c) =>
        new Promise<string>((resolve) => {
          const es = new EventSource(`/events?channels=${c}&lastEventId=0`);
          setTimeout(() => resolve(`neither read nor refused; readyState ${es.readyState}`), 10_000);
          es.addEventListener('update', (e) => {
            es.close();
            resolve(`read: ${(e as MessageEvent).data}`);
          });
          es.addEventListener('error', () => {
            if (es.readyState === EventSource.CLOSED) resolve('refused');
          });
        }),
      ch,
    );
    expect(stream).toBe('refused');
    const history = await redis.xrange(keys.history(ch), '-', '+');
    expect(history).toHaveLength(1);
  });
});
