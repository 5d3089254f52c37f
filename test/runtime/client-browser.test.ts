/**
 * The client in headless Chromium with the browser's own fetch, WebSocket, visibility and online
 * events, and the demo page of `npm run dev` end to end. Pages load from the local API's root (the
 * demo page's origin, one of the stack's own), and import the built client from /demo/client.js.
 */
import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import pino from 'pino';
import type { LocalStack } from '../../local/stack';
import { Keys } from '../../core/redis/keys';
import { DEMO_NAMESPACES } from '../../local/demo/pages';
import { launchChromium } from '../support/browser';
import { publish, Relay, until } from '../support/client-kit';
import { uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let browser: Browser;
let stack: LocalStack;
let origin: string;
const contexts: BrowserContext[] = [];
const relays: Relay[] = [];

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  [browser, stack] = await Promise.all([
    launchChromium(),
    // The namespaces of `npm run dev` (the demo's chat is room:demo, with presence).
    startLocalStack({ logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(DEMO_NAMESPACES), RETRY_MS: '200', HEARTBEAT_MS: '1000', POLL_TIMEOUT_MS: '2000', LOG_LEVEL: 'silent' } }),
  ]);
  origin = new URL(stack.outputs.TicketUrl).origin;
});
afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => undefined);
  for (const r of relays.splice(0)) await r.close();
});
afterAll(async () => {
  await browser?.close();
  await stack?.close();
});

async function newPage(path = '/'): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${origin}${path}`);
  return page;
}

/** What the test page's client recorded. */
interface Probe {
  ids: string[];
  data: unknown[];
  states: string[];
  errors: string[];
  transport?: string;
}
declare global {
  interface Window {
    probe: Probe;
    probeClient: { publish(c: string, t: string, d: unknown): Promise<{ id: string }>; close(): void; state: string; transport?: string };
    clockSkew: number;
    throttled: boolean;
  }
}

/**
 * Opens a client in `page` (from the built bundle) on `channel`. `viaPort` routes SSE through a relay;
 * `emulateTimers` gives the client timers that never fire while `window.throttled` (a background
 * tab's) and a wall clock `window.clockSkew` ms ahead (time that passed while the machine slept).
 */
async function openClient(page: Page, channel: string, o: { transports: string[]; user: string; viaPort?: number; emulateTimers?: boolean; deadAfterMs?: number }): Promise<void> {
  // The built bundle, as an app's page loads it (a module script; the test's own code is not transpiled into the page).
  await page.addScriptTag({ type: 'module', content: "import * as m from '/demo/client.js'; window.rtClient = m;" });
  await page.waitForFunction(() => 'rtClient' in window);
  await page.evaluate(async (a) => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const m = (window as unknown as { rtClient: Record<string, (...x: any[]) => any> }).rtClient;
    window.probe = { ids: [], data: [], states: [], errors: [] };
    window.clockSkew = 0;
    window.throttled = false;
    const inner = m.ticketFrom('/tickets', { headers: { 'x-local-user': a.user } });
    const ticket = async (req: unknown) => {
      const t = await inner(req);
      if (a.viaPort && t.sseUrl) {
        const u = new URL(t.sseUrl);
        u.port = String(a.viaPort);
        t.sseUrl = u.toString();
      }
      return t;
    };
    const timers = a.emulateTimers
      ? {
          now: () => Date.now() + window.clockSkew,
          set: (f: () => void, ms: number) => setTimeout(function run() {
            if (window.throttled) setTimeout(run, 50);
            else f();
          }, ms),
          clear: (h: number) => clearTimeout(h),
        }
      : undefined;
    const client = m.createClient({ ticket, transports: a.transports, storage: null, timers, deadAfterMs: a.deadAfterMs, reconnectSpreadMs: 1000 });
    client.on('state', (s: string) => {
      window.probe.states.push(s);
      window.probe.transport = client.transport;
    });
    client.on('error', (e: { code: string }) => window.probe.errors.push(e.code));
    client.subscribe(a.channel, {
      onEvent: (e: { id: string; data: unknown }) => {
        window.probe.ids.push(e.id);
        window.probe.data.push(e.data);
      },
    });
    window.probeClient = client;
  }, { channel, ...o });
}

const probe = (page: Page): Promise<Probe> => page.evaluate(() => window.probe);
async function pageUntil(page: Page, pred: (p: Probe) => boolean, what: string, timeoutMs = 20_000): Promise<Probe> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await probe(page);
    if (pred(p)) return p;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; page recorded ${JSON.stringify(p).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the client in Chromium', () => {
  it.each(['ws', 'sse', 'poll'])('%s with the browser’s own globals: events in order', async (transport) => {
    const page = await newPage();
    const ch = `chat:b-${uid()}`;
    await openClient(page, ch, { transports: [transport], user: 'alice' });
    await pageUntil(page, (p) => p.states.includes('open'), 'open');
    expect((await probe(page)).transport).toBe(transport);
    const ids = [await publish(stack.outputs.PublishUrl, ch, { n: 1 }), await publish(stack.outputs.PublishUrl, ch, { n: 2 })];
    const p = await pageUntil(page, (x) => x.ids.length >= 2, 'two events');
    expect(p.ids).toEqual(ids);
    if (transport === 'ws') {
      const answer = await page.evaluate((c) => window.probeClient.publish(c, 'message', { text: 'from the page' }), ch);
      const q = await pageUntil(page, (x) => x.ids.length >= 3, 'own event');
      expect(q.ids[2]).toBe(answer.id);
    }
  });

  it('background tab / sleeping laptop: with timers throttled, visibilitychange checks the wall clock, finds the silent stream dead and resumes', async () => {
    const page = await newPage();
    const ch = `chat:v-${uid()}`;
    const relay = new Relay(Number(new URL(stack.outputs.SseUrl).port));
    await relay.start();
    relays.push(relay);
    await openClient(page, ch, { transports: ['sse'], user: 'bob', viaPort: relay.port, emulateTimers: true, deadAfterMs: 25_000 });
    await pageUntil(page, (p) => p.states.includes('open'), 'open');
    const first = await publish(stack.outputs.PublishUrl, ch, { n: 0 });
    await pageUntil(page, (p) => p.ids.length === 1, 'first event');
    // The machine sleeps: the connection is silently dead, timers do not run, the clock moves on.
    relay.freeze();
    await page.evaluate(() => {
      window.throttled = true;
    });
    const missed = [await publish(stack.outputs.PublishUrl, ch, { n: 1 }), await publish(stack.outputs.PublishUrl, ch, { n: 2 })];
    await page.evaluate(() => {
      window.clockSkew += 30_000;
      document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
    });
    await pageUntil(page, (p) => p.errors.includes('dead') && p.states.includes('reconnecting'), 'dead stream detected on wake');
    // Still throttled: the reconnect waits for its (jittered, < 1 s) delay, checked on the next wake-up.
    await page.evaluate(() => {
      window.clockSkew += 1_000;
      document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
    });
    const p = await pageUntil(page, (x) => x.ids.length >= 3, 'the missed events');
    expect(p.ids).toEqual([first, ...missed]);
  });

  it('offline then online (context.setOffline): reconnects refused while offline, back on `online`, nothing lost', async () => {
    const page = await newPage();
    const ch = `chat:o-${uid()}`;
    await openClient(page, ch, { transports: ['ws'], user: 'cy' });
    await pageUntil(page, (p) => p.states.includes('open'), 'open');
    const first = await publish(stack.outputs.PublishUrl, ch, { n: 0 });
    await pageUntil(page, (p) => p.ids.length === 1, 'first event');
    // Offline emulation leaves established sockets alone: the gateway drops this one while the browser is offline.
    await page.context().setOffline(true);
    for (const id of stack.ws.connectionIds()) stack.ws.kill(id);
    await pageUntil(page, (p) => p.states.includes('reconnecting') && p.errors.includes('network'), 'the drop and a reconnect refused offline');
    const missed = [await publish(stack.outputs.PublishUrl, ch, { n: 1 }), await publish(stack.outputs.PublishUrl, ch, { n: 2 })];
    await page.context().setOffline(false);
    const p = await pageUntil(page, (x) => x.ids.length >= 3, 'the missed events');
    expect(p.ids).toEqual([first, ...missed]);
    expect(p.states[p.states.length - 1]).toBe('open');
  });
});

interface DemoState {
  chat: { from: string; text: string }[];
  scores: { n: number; team: string }[];
  states: { chat: string[]; score: string[] };
  resets: number;
  rebuilds: number;
}
const demoState = (page: Page): Promise<DemoState> => page.evaluate(() => (window as unknown as { demo: DemoState }).demo);
async function demoUntil(page: Page, pred: (d: DemoState) => boolean, what: string, timeoutMs = 30_000): Promise<DemoState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await demoState(page);
    if (pred(d)) return d;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; demo recorded ${JSON.stringify(d).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the demo page (npm run dev, GET /)', () => {
  it('is served at the local API root with the built client', async () => {
    const r = await fetch(`${origin}/`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/html/);
    const js = await fetch(`${origin}/demo/client.js`);
    expect(js.status).toBe(200);
    expect(await js.text()).toMatch(/export\s*\{/);
  });

  it('chat: a message typed in one page appears in the other', async () => {
    const room = `chat:demo-${uid()}`;
    const [a, b] = await Promise.all([newPage(`/?user=alice&chat=${room}`), newPage(`/?user=bob&chat=${room}`)]);
    for (const p of [a, b]) await p.locator('#chat-state.open').waitFor({ timeout: 20_000 });
    await a.fill('#send input[name=text]', 'hello bob');
    await a.click('#send button');
    await b.locator('#messages li', { hasText: 'hello bob' }).waitFor({ timeout: 20_000 });
    expect(await b.locator('#messages li').first().textContent()).toBe('alicehello bob');
    await b.fill('#send input[name=text]', 'hi alice');
    await b.press('#send input[name=text]', 'Enter');
    await a.locator('#messages li', { hasText: 'hi alice' }).waitFor({ timeout: 20_000 });
    const d = await demoState(a);
    expect(d.chat).toEqual([
      { from: 'alice', text: 'hello bob' },
      { from: 'bob', text: 'hi alice' },
    ]);
  });

  it('scoreboard: keeps counting through a forced drop and a transport switch without a gap', async () => {
    const scores = `scores:demo-${uid()}`;
    const page = await newPage(`/?user=fan&scores=${scores}`);
    await page.locator('#score-state.open').waitFor({ timeout: 20_000 });
    const N = 60;
    const pub = startPublisherGoals(scores, N);
    await until(() => pub.count() >= 15, '15 goals');
    // A forced drop: the SSE service's sockets are reset (a task crash, an ALB reset), streams included.
    stack.sse.server.closeAllConnections();
    await demoUntil(page, (d) => d.states.score.includes('reconnecting'), 'the drop');
    await until(() => pub.count() >= 40, '40 goals');
    // The transport switch: a new client resumes from the last id the board showed.
    await page.selectOption('#transport', 'poll');
    await pub.done;
    const d = await demoUntil(page, (x) => x.scores.length >= N, 'every goal', 30_000);
    expect(d.scores.map((s) => s.n)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(await page.locator('#count').textContent()).toBe(String(N));
    const home = d.scores.filter((s) => s.team === 'home').length;
    expect(await page.locator('#home').textContent()).toBe(String(home));
    expect(await page.locator('#away').textContent()).toBe(String(N - home));
  }, 90_000);
});

describe('the demo page rebuilds its state from history', () => {
  it('on load: board and chat from the channels’ retained history; on reset: the board starts over from what is retained; no 404 (favicon)', async () => {
    const scores = `scores:demo-${uid()}`;
    const room = `chat:demo-${uid()}`;
    // What happened before the page was opened: 2 goals home, 4 away, two chat messages.
    for (const [n, team] of ['home', 'away', 'away', 'home', 'away', 'away'].entries()) await publish(stack.outputs.PublishUrl, scores, { n, team }, 'goal');
    await publish(stack.outputs.PublishUrl, room, { from: 'alice', text: 'first' }, 'message');
    await publish(stack.outputs.PublishUrl, room, { from: 'bob', text: 'second' }, 'message');
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    const failed: string[] = [];
    page.on('response', (r) => void (r.status() >= 400 && failed.push(`${r.status()} ${r.url()}`)));
    page.on('console', (m) => void (m.type() === 'error' && failed.push(m.text())));
    await page.goto(`${origin}/?user=fan&scores=${scores}&chat=${room}`);
    let d = await demoUntil(page, (x) => x.scores.length === 6 && x.chat.length === 2, 'the history on the board and in the chat');
    expect(await page.locator('#home').textContent()).toBe('2');
    expect(await page.locator('#away').textContent()).toBe('4');
    expect(await page.locator('#messages li').allTextContents()).toEqual(['alicefirst', 'bobsecond']);
    expect(d.rebuilds).toBe(2);

    // A reset: while the page is away a goal is published, then the board's history is evicted and
    // another goal published; the resume from the board's last id cannot be covered (goal 6 is gone).
    // The board starts over from what is retained: goal 7.
    // The page is kept away by holding its reconnect's ticket request until the history is gone, not by
    // context.setOffline: a request made offline fails with net::ERR_INTERNET_DISCONNECTED, which
    // Chromium logs as a console error, and whether the reconnect (200 ms to 1 s after the drop) falls
    // inside the offline window depends on the machine's load. Held, the reconnect always happens
    // during the absence and fails nothing, so `failed` stays strict.
    const held: Route[] = [];
    let away = true;
    const isTicket = (u: URL) => u.pathname === '/tickets';
    await context.route(isTicket, (route) => void (away ? held.push(route) : route.continue()));
    stack.sse.server.closeAllConnections();
    await demoUntil(page, (x) => x.states.score.includes('reconnecting'), 'the drop');
    await publish(stack.outputs.PublishUrl, scores, { n: 6, team: 'away' }, 'goal');
    const { redis, config } = await stack.lambda.clients();
    await redis.del(new Keys(config.keyPrefix).history(scores));
    await publish(stack.outputs.PublishUrl, scores, { n: 7, team: 'home' }, 'goal');
    const resetsBefore = d.resets;
    await until(() => held.length > 0, 'the reconnect’s ticket request (held)');
    away = false;
    for (const route of held) await route.continue();
    await context.unroute(isTicket);
    d = await demoUntil(page, (x) => x.resets > resetsBefore && x.rebuilds === 3 && x.scores.length === 1, 'the rebuild after the reset');
    expect(d.scores).toEqual([{ n: 7, team: 'home' }]);
    expect(await page.locator('#home').textContent()).toBe('1');
    expect(await page.locator('#away').textContent()).toBe('0');
    expect(failed).toEqual([]);
  }, 60_000);
});

/** Publishes goals n = 0..N-1 from a backend, alternating teams, one after the other. */
function startPublisherGoals(channel: string, n: number): { done: Promise<void>; count(): number } {
  let count = 0;
  const done = (async () => {
    for (let i = 0; i < n; i++) {
      for (;;) {
        try {
          const r = await fetch(stack.outputs.PublishUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ channel, type: 'goal', data: { n: i, team: i % 3 === 0 ? 'away' : 'home' }, idempotencyKey: `${channel}-${i}` }),
          });
          if (r.status === 202) break;
        } catch {
          // retried
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      count++;
      await new Promise((r) => setTimeout(r, 30));
    }
  })();
  return { done, count: () => count };
}

