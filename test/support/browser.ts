import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';

/**
 * Headless Chromium for the browser tests: the system's Chromium (never a downloaded one), driven
 * over CDP by playwright-core. Each test opens its own context, so cookies never leak between tests.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** What the page records of one EventSource (in the order the browser dispatched it). */
export type SseLogEntry =
  | { kind: 'open' }
  | { kind: 'error'; readyState: number }
  | { kind: 'event'; type: string; lastEventId: string; data: Record<string, unknown> };

export interface SseState {
  url: string;
  withCredentials: boolean;
  /** 0 CONNECTING, 1 OPEN, 2 CLOSED. */
  readyState: number;
  log: SseLogEntry[];
}

export type WsLogEntry = { kind: 'open' } | { kind: 'error' } | { kind: 'close'; code: number } | { kind: 'frame'; frame: Record<string, unknown> };

export interface WsState {
  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED. */
  readyState: number;
  log: WsLogEntry[];
}

/** The API the test page exposes as `window.rt` (see PAGE_SCRIPT). */
export interface PageApi {
  ticket(url: string, user: string, channels: string[], transport?: 'sse' | 'ws'): Promise<{ status: number; body: Record<string, unknown> }>;
  openSse(name: string, url: string, types: string[]): void;
  sse(name: string): SseState;
  /** Entries of the log of `name` of this kind (and event/frame type). */
  count(name: string, kind: string, type?: string): number;
  openWs(name: string, url: string): void;
  ws(name: string): WsState;
  sendWs(name: string, frame: unknown): void;
  closeAll(): void;
}

declare global {
  interface Window {
    rt: PageApi;
  }
}

/**
 * Plain browser JavaScript (not transpiled by the test toolchain): only the platform's own
 * `fetch`, `EventSource` and `WebSocket`.
 */
const PAGE_SCRIPT = `
(() => {
  const streams = {};
  const sockets = {};
  const logOf = (name) => (streams[name] || sockets[name] || { log: [] }).log;
  window.rt = {
    async ticket(url, user, channels, transport) {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-local-user': user },
        body: JSON.stringify(transport ? { channels, transport } : { channels }),
      });
      return { status: r.status, body: await r.json() };
    },
    openSse(name, url, types) {
      const es = new EventSource(url, { withCredentials: true });
      const s = { es, log: [] };
      streams[name] = s;
      es.addEventListener('open', () => s.log.push({ kind: 'open' }));
      es.addEventListener('error', () => s.log.push({ kind: 'error', readyState: es.readyState }));
      for (const type of ['ready', 'reset', ...types]) {
        es.addEventListener(type, (e) => s.log.push({ kind: 'event', type, lastEventId: e.lastEventId, data: JSON.parse(e.data) }));
      }
    },
    sse(name) {
      const s = streams[name];
      return { url: s.es.url, withCredentials: s.es.withCredentials, readyState: s.es.readyState, log: s.log };
    },
    count(name, kind, type) {
      return logOf(name).filter((e) => e.kind === kind && (type === undefined || e.type === type || (e.frame && e.frame.type === type))).length;
    },
    openWs(name, url) {
      const ws = new WebSocket(url);
      const s = { ws, log: [] };
      sockets[name] = s;
      ws.addEventListener('open', () => s.log.push({ kind: 'open' }));
      ws.addEventListener('error', () => s.log.push({ kind: 'error' }));
      ws.addEventListener('close', (e) => s.log.push({ kind: 'close', code: e.code }));
      ws.addEventListener('message', (e) => s.log.push({ kind: 'frame', frame: JSON.parse(e.data) }));
    },
    ws(name) {
      const s = sockets[name];
      return { readyState: s.ws.readyState, log: s.log };
    },
    sendWs(name, frame) {
      sockets[name].ws.send(JSON.stringify(frame));
    },
    closeAll() {
      for (const s of Object.values(streams)) s.es.close();
      for (const s of Object.values(sockets)) s.ws.close();
    },
  };
})();
`;

const PAGE_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>realtime browser test</title><script>${PAGE_SCRIPT}</script></head><body>realtime browser test</body></html>`;

/** A tiny app origin serving the test page: a different origin (port) from the API and the SSE service. */
export async function startPageServer(host = '127.0.0.1'): Promise<{ origin: string; url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE_HTML);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const origin = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    url: `${origin}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One request a server received, as the browser sent it, and the status it answered. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly origin?: string;
  readonly cookie?: string;
  readonly lastEventId?: string;
  /** The status once the head was written (streams stay open), else undefined. */
  status(): number | undefined;
}

/** Records the requests `server` receives (the service's own handler still answers them). */
export function recordRequests(server: Server): { seen: SeenRequest[]; stop(): void } {
  const seen: SeenRequest[] = [];
  const on = (req: IncomingMessage, res: ServerResponse) => {
    const h = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined);
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      origin: h('origin'),
      cookie: h('cookie'),
      lastEventId: h('last-event-id'),
      status: () => (res.headersSent ? res.statusCode : undefined),
    });
  };
  server.on('request', on);
  return { seen, stop: () => server.off('request', on) };
}

/**
 * Waits in the page until `name` has logged at least `n` entries of `kind` (and `type`), using
 * page.waitForFunction; on timeout the error carries what the page recorded.
 */
export async function waitForCount(page: Page, name: string, kind: string, type: string | undefined, n: number, timeout = 10_000): Promise<void> {
  try {
    await page.waitForFunction((a) => window.rt.count(a.name, a.kind, a.type ?? undefined) >= a.n, { name, kind, type: type ?? null, n }, { timeout, polling: 50 });
  } catch (err) {
    const state = await page.evaluate((nm) => {
      try {
        return JSON.stringify(window.rt.sse(nm));
      } catch {
        return JSON.stringify(window.rt.ws(nm));
      }
    }, name);
    throw new Error(`timed out waiting for ${n} × ${kind}${type ? ` ${type}` : ''} on ${name}: ${(err as Error).message.split('\n')[0]}\npage state: ${state}`);
  }
}
