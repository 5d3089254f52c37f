/**
 * The browser-facing promises, proved with the browser's own EventSource and WebSocket: headless
 * Chromium loads a page from its own origin (a separate http server) and talks to the local stack
 * exactly as an app would: POST /tickets, then a native EventSource or WebSocket.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import pino from 'pino';
import type { LocalStack } from '../../local/stack';
import type { RealtimeServer } from '../../service/realtime-server';
import { launchChromium, recordRequests, startPageServer, waitForCount, type SeenRequest, type SseState } from '../support/browser';
import { decodeCursor } from '../../core/cursor';
import { channelsOnShards, get, RawStream, startService, uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

/** Reconnect delay the service tells browsers (`retry:`): long enough to publish while a stream is down. */
const RETRY_MS = 1000;

let browser: Browser;
let stack: LocalStack;
let pageServer: Awaited<ReturnType<typeof startPageServer>>;
let sseRequests: ReturnType<typeof recordRequests>;
let context: BrowserContext | undefined;
let page: Page;

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  [browser, pageServer] = await Promise.all([launchChromium(), startPageServer()]);
  // The page's origin is another port: the local stack lets it in only when told to.
  stack = await startLocalStack({ logger: pino({ level: 'silent' }), allowedOrigins: [pageServer.origin], env: { RETRY_MS: String(RETRY_MS), LOG_LEVEL: 'silent' } });
  sseRequests = recordRequests(stack.sse.server);
});
beforeEach(async () => {
  context = await browser.newContext();
  page = await context.newPage();
  await page.goto(pageServer.url);
});
afterEach(async () => {
  await page.evaluate(() => window.rt.closeAll()).catch(() => undefined);
  await context?.close();
  context = undefined;
});
afterAll(async () => {
  sseRequests?.stop();
  await browser?.close();
  await pageServer?.close();
  await stack?.close();
});

/** Publishes from a backend through POST /publish; returns the event id. */
const publish = async (channel: string, data: unknown, type = 'update'): Promise<string> => {
  const r = await fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type, data }) });
  const body = (await r.json()) as { id: string };
  expect(r.status).toBe(202);
  return body.id;
};
/** Publishes one after the other (so the ids are in publish order). */
const publishAll = async (channel: string, items: unknown[]): Promise<string[]> => {
  const ids: string[] = [];
  for (const d of items) ids.push(await publish(channel, d));
  return ids;
};

/** In the page: POST /tickets as `user`, then `new EventSource(sseUrl, { withCredentials: true })`. */
const openTicketedStream = async (name: string, user: string, channels: string[]): Promise<string> => {
  const t = await page.evaluate((a) => window.rt.ticket(a.url, a.user, a.channels), { url: stack.outputs.TicketUrl, user, channels });
  expect(t.status).toBe(201);
  const sseUrl = t.body.sseUrl as string;
  expect(sseUrl).toBe(`${stack.outputs.SseUrl}?channels=${encodeURIComponent([...channels].sort().join(','))}&ticket=${t.body.ticket as string}`);
  await page.evaluate(([nm, u]) => window.rt.openSse(nm, u, ['update']), [name, sseUrl] as const);
  return sseUrl;
};
const state = (name: string): Promise<SseState> => page.evaluate((nm) => window.rt.sse(nm), name);
const events = (s: SseState, type: string) => s.log.flatMap((e) => (e.kind === 'event' && e.type === type ? [e] : []));
const updateIds = (s: SseState) => events(s, 'update').map((e) => e.data.id as string);
const count = (s: SseState, kind: string) => s.log.filter((e) => e.kind === kind).length;
/** The reconnect cookies the browser holds (HttpOnly, so only the browser context shows them). */
const rtCookies = async () => (await context!.cookies()).filter((c) => c.name.startsWith('rt_'));
/** The /events requests the SSE service received for exactly this URL (the browser reuses it on reconnects). */
const requestsFor = (url: string): SeenRequest[] => sseRequests.seen.filter((r) => `${new URL(stack.outputs.SseUrl).origin}${r.url}` === url);
/** Drops every stream server-side and waits until the page saw it (its EventSource is reconnecting). */
const dropAll = async (names: string[]) => {
  const errorsBefore = await Promise.all(names.map(async (n) => count(await state(n), 'error')));
  stack.sse.server.closeAllConnections();
  for (const [i, n] of names.entries()) await waitForCount(page, n, 'error', undefined, errorsBefore[i] + 1);
};

describe('native EventSource in Chromium, page on its own origin', () => {
  test('ticket, then events in order; after a server-side drop it reconnects by itself with the cookie and resumes with Last-Event-ID', async () => {
    const ch = `chat:${uid()}`;
    const sseUrl = await openTicketedStream('a', 'alice', [ch]);
    await waitForCount(page, 'a', 'event', 'ready', 1);
    const before = await publishAll(ch, [1, 2, 3]);
    await waitForCount(page, 'a', 'event', 'update', 3);
    let s = await state('a');
    expect(s.withCredentials).toBe(true);
    expect(updateIds(s)).toEqual(before);
    expect(events(s, 'update').map((e) => e.data)).toEqual(before.map((id, i) => ({ channel: ch, id, type: 'update', data: i + 1, ts: expect.any(Number) })));
    // Each event's id is the connection's cursor (one channel: its position), as is ready's.
    expect(events(s, 'update').map((e) => decodeCursor(e.lastEventId, 1).positions)).toEqual(before.map((id) => [Number(id)]));
    expect(events(s, 'ready')[0].data).toEqual({ cursor: expect.stringMatching(/^p1\./), channels: [ch] });

    // The first redemption left an HttpOnly reconnect cookie that page script cannot read.
    const cookies = await rtCookies();
    expect(cookies).toEqual([expect.objectContaining({ domain: '127.0.0.1', path: '/', httpOnly: true, sameSite: 'Lax', secure: false })]);
    expect(await page.evaluate(() => document.cookie)).not.toContain(cookies[0].name);
    const [first] = requestsFor(sseUrl);
    expect(first).toMatchObject({ method: 'GET', origin: pageServer.origin, cookie: undefined, lastEventId: undefined });
    expect(first.status()).toBe(200);

    // Drop every stream (a task restart, a network blip); publish while the browser is away.
    await dropAll(['a']);
    expect((await state('a')).readyState).toBe(0);
    const missed = await publishAll(ch, [4, 5, 6]);
    s = await state('a');
    expect({ opens: count(s, 'open'), readies: events(s, 'ready').length }).toEqual({ opens: 1, readies: 1 });

    // Chromium reconnects on its own after `retry:`, to the same URL with the spent ticket in it.
    await waitForCount(page, 'a', 'event', 'ready', 2);
    await waitForCount(page, 'a', 'event', 'update', 6);
    const live = await publish(ch, 7);
    await waitForCount(page, 'a', 'event', 'update', 7);
    s = await state('a');
    expect(s.readyState).toBe(1);
    expect(s.url).toBe(sseUrl);
    expect(count(s, 'open')).toBe(2);
    expect(events(s, 'reset')).toEqual([]);
    // Exactly what was missed, once each, in order, then live again.
    expect(updateIds(s)).toEqual([...before, ...missed, live]);
    expect(decodeCursor(events(s, 'ready')[1].data.cursor, 1).positions).toEqual([Number(missed[2])]);

    // The reconnect: same URL (spent ticket), authorised by the cookie, resumed by Last-Event-ID.
    const reqs = requestsFor(sseUrl);
    expect(reqs).toHaveLength(2);
    expect(reqs[1]).toMatchObject({ method: 'GET', origin: pageServer.origin, lastEventId: events(s, 'update')[2].lastEventId });
    expect(decodeCursor(reqs[1].lastEventId, 1).positions).toEqual([Number(before[2])]);
    expect(reqs[1].cookie).toContain(`${cookies[0].name}=`);
    expect(reqs[1].status()).toBe(200);
    // The ticket alone would no longer open anything.
    const spent = await get(sseUrl, { accept: 'text/event-stream' });
    expect({ status: spent.status, code: JSON.parse(spent.body).error.code }).toEqual({ status: 401, code: 'ticket_invalid' });
  });

  test('a stream over channels on different shards (issue 23, item 3): every event\'s id is the connection\'s cursor; Chromium resends the last and misses nothing, twice nothing', async () => {
    const channels = channelsOnShards('chat');
    const sseUrl = await openTicketedStream('m', 'alice', channels);
    await waitForCount(page, 'm', 'event', 'ready', 1);
    const sent: { channel: string; id: string }[] = [];
    const send = async (n: number) => {
      // Uneven: the channels' positions move apart.
      for (let i = 0; i < n; i++) {
        const channel = channels[i % 5 === 0 ? 2 : i % 2];
        sent.push({ channel, id: await publish(channel, i) });
      }
    };
    await send(9);
    await waitForCount(page, 'm', 'event', 'update', 9);
    let s = await state('m');
    const lastBefore = events(s, 'update').at(-1)!.lastEventId;
    const positions = decodeCursor(lastBefore, channels.length).positions;
    expect(positions).toEqual(channels.map((c) => Number(sent.filter((x) => x.channel === c).at(-1)?.id ?? 0)));

    await dropAll(['m']);
    await send(12);
    await waitForCount(page, 'm', 'event', 'ready', 2);
    await send(4);
    await waitForCount(page, 'm', 'event', 'update', sent.length);
    s = await state('m');
    expect(events(s, 'reset')).toEqual([]);
    expect(events(s, 'update').map((e) => ({ channel: e.data.channel, id: e.data.id }))).toEqual(sent);
    // Chromium's reconnect sent the last id it saw: the cursor over every channel.
    const reqs = requestsFor(sseUrl);
    expect(reqs).toHaveLength(2);
    expect(reqs[1].lastEventId).toBe(lastBefore);
    expect(decodeCursor(events(s, 'ready')[1].data.cursor, channels.length).positions).toEqual(
      channels.map((c) => Number(sent.filter((x, i) => i < 21 && x.channel === c).at(-1)?.id ?? 0)),
    );
  });

  test('control: without the reconnect cookie the native reconnect (spent ticket) is refused and the browser gives up', async () => {
    const ch = `chat:${uid()}`;
    const sseUrl = await openTicketedStream('a', 'alice', [ch]);
    await waitForCount(page, 'a', 'event', 'ready', 1);
    await context!.clearCookies();
    await dropAll(['a']);
    await page.waitForFunction(() => window.rt.sse('a').readyState === 2, undefined, { polling: 50, timeout: 10_000 });
    const s = await state('a');
    expect({ opens: count(s, 'open'), readies: events(s, 'ready').length }).toEqual({ opens: 1, readies: 1 });
    const reqs = requestsFor(sseUrl);
    expect(reqs.map((r) => [r.cookie, r.status()])).toEqual([
      [undefined, 200],
      [undefined, 401],
    ]);
  });

  test('two EventSources on different channel sets in one page: separate cookies, both survive a drop', async () => {
    const a = `chat:${uid()}`;
    const b1 = `chat:${uid()}`;
    const b2 = `user:bob`;
    const urlA = await openTicketedStream('a', 'bob', [a]);
    await waitForCount(page, 'a', 'event', 'ready', 1);
    const urlB = await openTicketedStream('b', 'bob', [b1, b2]);
    await waitForCount(page, 'b', 'event', 'ready', 1);
    const cookies = await rtCookies();
    expect(cookies).toHaveLength(2);
    expect(new Set(cookies.map((c) => c.name)).size).toBe(2);

    const sentA = [await publish(a, 'a1')];
    const sentB = [await publish(b1, 'b1'), await publish(b2, 'b2')];
    await waitForCount(page, 'a', 'event', 'update', 1);
    await waitForCount(page, 'b', 'event', 'update', 2);

    await dropAll(['a', 'b']);
    sentB.push(await publish(b2, 'b3'));
    sentA.push(await publish(a, 'a2'));
    sentB.push(await publish(b1, 'b4'));
    await waitForCount(page, 'a', 'event', 'ready', 2);
    await waitForCount(page, 'b', 'event', 'ready', 2);
    sentA.push(await publish(a, 'a3'));
    sentB.push(await publish(b1, 'b5'));
    await waitForCount(page, 'a', 'event', 'update', 3);
    await waitForCount(page, 'b', 'event', 'update', 5);

    const [sa, sb] = [await state('a'), await state('b')];
    expect(updateIds(sa)).toEqual(sentA);
    expect(updateIds(sb)).toEqual(sentB);
    expect([sa.readyState, sb.readyState]).toEqual([1, 1]);
    expect([count(sa, 'open'), count(sb, 'open')]).toEqual([2, 2]);
    // Each reconnect (spent ticket in its URL) was answered 200: each stream's cookie was still there.
    for (const url of [urlA, urlB]) {
      const reqs = requestsFor(url);
      expect(reqs.map((r) => r.status())).toEqual([200, 200]);
      expect(reqs[1].cookie).toBeDefined();
    }
    expect((await rtCookies()).map((c) => c.name).sort()).toEqual(cookies.map((c) => c.name).sort());
  });

  test('public channel: no ticket, no cookie', async () => {
    const ch = `scores:${uid()}`;
    const url = `${stack.outputs.SseUrl}?channels=${ch}`;
    await page.evaluate(([nm, u]) => window.rt.openSse(nm, u, ['update']), ['p', url] as const);
    await waitForCount(page, 'p', 'event', 'ready', 1);
    const sent = await publishAll(ch, ['goal', 'goal']);
    await waitForCount(page, 'p', 'event', 'update', 2);
    const s = await state('p');
    expect(s.readyState).toBe(1);
    expect(updateIds(s)).toEqual(sent);
    expect(await rtCookies()).toEqual([]);
  });

  describe('origin not in ALLOWED_ORIGINS', () => {
    let other: { service: RealtimeServer; base: string };
    let seen: ReturnType<typeof recordRequests>;
    beforeAll(async () => {
      other = await startService({ ALLOWED_ORIGINS: 'http://127.0.0.1:1', RETRY_MS: '100' });
      seen = recordRequests(other.service.server);
    });
    afterAll(async () => {
      seen?.stop();
      await other?.service.close();
    });

    test('the stream never opens: refused with 403 and no CORS grant, and the browser gives up', async () => {
      const url = `${other.base}/events?channels=scores:${uid()}`;
      await page.evaluate(([nm, u]) => window.rt.openSse(nm, u, ['update']), ['x', url] as const);
      await page.waitForFunction(() => window.rt.sse('x').readyState === 2, undefined, { polling: 50, timeout: 10_000 });
      const s = await state('x');
      expect(count(s, 'open')).toBe(0);
      expect(count(s, 'event')).toBe(0);
      expect(count(s, 'error')).toBeGreaterThanOrEqual(1);
      expect(seen.seen.length).toBeGreaterThanOrEqual(1);
      for (const r of seen.seen) expect({ origin: r.origin, status: r.status() }).toEqual({ origin: pageServer.origin, status: 403 });
      // The same stream from the allowed origin is served: the refusal is about the origin.
      const allowed = new RawStream(url, { origin: 'http://127.0.0.1:1' });
      try {
        await allowed.until((x) => x.events().some((e) => e.event === 'ready'), 5000);
        expect(allowed.headers['access-control-allow-origin']).toBe('http://127.0.0.1:1');
      } finally {
        allowed.close();
      }
    });
  });
});

describe('native WebSocket in Chromium', () => {
  test('ws ticket, subscribe, an event published by a backend arrives; ping answers pong; a browser publish reaches an EventSource', async () => {
    const ch = `chat:${uid()}`;
    const t = await page.evaluate((a) => window.rt.ticket(a.url, 'alice', a.channels, 'ws'), { url: stack.outputs.TicketUrl, channels: [ch] });
    expect(t.status).toBe(201);
    const wsUrl = t.body.wsUrl as string;
    expect(wsUrl).toBe(`${stack.outputs.WebSocketUrl}?ticket=${t.body.ticket as string}`);
    await page.evaluate(([nm, u]) => window.rt.openWs(nm, u), ['w', wsUrl] as const);
    await waitForCount(page, 'w', 'open', undefined, 1);

    await page.evaluate(([nm, c]) => window.rt.sendWs(nm, { action: 'subscribe', channel: c }), ['w', ch] as const);
    await waitForCount(page, 'w', 'frame', 'subscribed', 1);
    const id = await publish(ch, { text: 'hi' }, 'message');
    await waitForCount(page, 'w', 'frame', 'message', 1);
    await page.evaluate((nm) => window.rt.sendWs(nm, { action: 'ping' }), 'w');
    await waitForCount(page, 'w', 'frame', 'pong', 1);

    const frames = (await page.evaluate((nm) => window.rt.ws(nm), 'w')).log.flatMap((e) => (e.kind === 'frame' ? [e.frame] : []));
    expect(frames.find((f) => f.type === 'subscribed')).toEqual({ type: 'subscribed', channel: ch, cursor: expect.stringMatching(/^\d+$/) });
    expect(frames.filter((f) => f.type === 'message')).toEqual([{ channel: ch, id, type: 'message', data: { text: 'hi' }, ts: expect.any(Number) }]);
    expect(frames.filter((f) => f.type === 'pong')).toEqual([{ type: 'pong' }]);
    expect(frames.filter((f) => f.type === 'error')).toEqual([]);

    // One publish path: a publish from the browser's WebSocket reaches the browser's EventSource.
    await openTicketedStream('s', 'alice', [ch]);
    await waitForCount(page, 's', 'event', 'ready', 1);
    await page.evaluate(([nm, c]) => window.rt.sendWs(nm, { action: 'publish', channel: c, type: 'update', data: 'from-ws' }), ['w', ch] as const);
    await waitForCount(page, 'w', 'frame', 'published', 1);
    await waitForCount(page, 's', 'event', 'update', 1);
    const published = (await page.evaluate((nm) => window.rt.ws(nm), 'w')).log.flatMap((e) => (e.kind === 'frame' && e.frame.type === 'published' ? [e.frame] : []));
    expect(events(await state('s'), 'update').map((e) => e.data)).toEqual([{ channel: ch, id: published[0].id, type: 'update', data: 'from-ws', ts: expect.any(Number) }]);
  });

  test('the tasks\' endpoint (LiveUrl) from the page\'s origin: subscribe, a backend publish arrives, ping answers pong, a browser publish is acknowledged then delivered', async () => {
    const ch = `chat:${uid()}`;
    const t = await page.evaluate((a) => window.rt.ticket(a.url, 'alice', a.channels, 'ws'), { url: stack.outputs.TicketUrl, channels: [ch] });
    expect(t.status).toBe(201);
    await page.evaluate(([nm, u]) => window.rt.openWs(nm, u), ['l', `${stack.outputs.LiveUrl}?ticket=${t.body.ticket as string}`] as const);
    await waitForCount(page, 'l', 'open', undefined, 1);
    await page.evaluate(([nm, c]) => window.rt.sendWs(nm, { action: 'subscribe', channel: c }), ['l', ch] as const);
    await waitForCount(page, 'l', 'frame', 'subscribed', 1);
    const id = await publish(ch, { text: 'hi' }, 'message');
    await waitForCount(page, 'l', 'frame', 'message', 1);
    await page.evaluate((nm) => window.rt.sendWs(nm, { action: 'ping' }), 'l');
    await waitForCount(page, 'l', 'frame', 'pong', 1);
    await page.evaluate(([nm, c]) => window.rt.sendWs(nm, { action: 'publish', channel: c, type: 'update', data: 'from-live' }), ['l', ch] as const);
    await waitForCount(page, 'l', 'frame', 'update', 1);
    const frames = (await page.evaluate((nm) => window.rt.ws(nm), 'l')).log.flatMap((e) => (e.kind === 'frame' ? [e.frame] : []));
    expect(frames.filter((f) => f.type === 'message')).toEqual([{ channel: ch, id, type: 'message', data: { text: 'hi' }, ts: expect.any(Number) }]);
    const ack = frames.findIndex((f) => f.type === 'published');
    expect(ack).toBeGreaterThanOrEqual(0);
    expect(frames.findIndex((f) => f.type === 'update')).toBeGreaterThan(ack);
    expect(frames.filter((f) => f.type === 'error')).toEqual([]);
  });
});
