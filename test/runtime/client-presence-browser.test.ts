/**
 * Issue 24, item 5: the demo page of `npm run dev` shows who is in the chat, through the client SDK's
 * `presence(channel)`, in headless Chromium against the local stack with the demo's namespaces (presence on in
 * `room`, where the demo's chat is by default, as `npm run dev` runs it).
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import pino from 'pino';
import type { LocalStack } from '../../local/stack';
import { DEMO_NAMESPACES } from '../../local/demo/pages';
import { launchChromium } from '../support/browser';
import { uid } from '../support/harness';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let browser: Browser;
let stack: LocalStack;
let origin: string;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  const { startLocalStack } = await import('../../local/stack');
  [browser, stack] = await Promise.all([
    launchChromium(),
    // As `npm run dev` starts it: WebSocket tickets name /live on the tasks (--ws-mode both).
    startLocalStack({ logger: pino({ level: 'silent' }), webSocketMode: 'both', env: { NAMESPACES_JSON: JSON.stringify(DEMO_NAMESPACES), RETRY_MS: '200', HEARTBEAT_MS: '1000', LOG_LEVEL: 'silent' } }),
  ]);
  origin = new URL(stack.outputs.TicketUrl).origin;
}, 60_000);
afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await stack?.close();
});

interface Who {
  who: string[];
  joins: string[];
  leaves: string[];
}

async function open(path: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${origin}${path}`);
  return { context, page };
}

async function whoUntil(page: Page, pred: (w: Who) => boolean, what: string, timeoutMs = 30_000): Promise<Who> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const w = await page.evaluate(() => (window as unknown as { demo: Who }).demo);
    if (pred(w)) return w;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the page recorded ${JSON.stringify(w)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the demo page lists who is in the chat: two pages see each other join, and one sees the other leave after it closed (its grace)', async () => {
  const room = `room:demo-${uid()}`;
  const a = await open(`/?user=alice&chat=${room}`);
  const b = await open(`/?user=bob&chat=${room}`);
  const both = (w: Who) => JSON.stringify(w.who) === '["alice","bob"]';
  await whoUntil(a.page, both, 'alice sees alice and bob');
  await whoUntil(b.page, both, 'bob sees alice and bob');
  expect(await a.page.locator('#who span').allTextContents()).toEqual(['alice (you)', 'bob']);
  expect(await b.page.locator('#who-count').textContent()).toBe('2');
  await b.context.close();
  // bob's WebSocket closed: he stays for the grace period (5 s), then leaves.
  const w = await whoUntil(a.page, (x) => JSON.stringify(x.who) === '["alice"]', 'alice sees bob leave');
  expect(w.leaves).toEqual(['bob']);
  expect(w.joins.sort()).toEqual(['alice', 'bob']);
  expect(await a.page.locator('#who span').allTextContents()).toEqual(['alice (you)']);
}, 90_000);
