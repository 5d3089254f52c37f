import WebSocket from 'ws';

/**
 * Small clients of the public endpoints, shared by `npm run smoke` (scripts/smoke.ts) and the canary
 * (core/probe/canary.ts): JSON over fetch, an SSE reader and a WebSocket that keep what they receive with the time
 * it arrived, and wait for what a check needs.
 */


/** How a probe gets tickets: the local stack's `x-local-user`, a JWT, or SigV4 as a trusted backend naming `sub`. */
export type ProbeAuth = { readonly kind: 'local'; readonly sub: string } | { readonly kind: 'jwt'; readonly token: string } | { readonly kind: 'iam'; readonly sub: string };

/** SigV4 headers (service execute-api) of a JSON request: the smoke tool's come from the AWS SDK's credential chain, the canary's from its Lambda role. */
export type ProbeSigner = (method: string, url: URL, body: string) => Promise<Record<string, string>>;

export interface JsonAnswer {
  readonly status: number;
  // Answers are read field by field; `any` keeps those reads short.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
  readonly text: string;
}

export async function request(url: string, init: RequestInit, timeoutMs: number): Promise<JsonAnswer> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: r.status, body, text };
}

export interface SseEvent {
  readonly event: string;
  readonly id?: string;
  readonly data: string;
  /** When it was read (`performance.now()`). */
  readonly at: number;
}

/** One SSE connection read with fetch: events as they come, and a wait for one that matches. */
export class SseReader {
  readonly events: SseEvent[] = [];
  status = 0;
  contentType = '';
  private readonly abort = new AbortController();
  private waiters: (() => void)[] = [];
  private ended = false;

  constructor(url: string, headers: Record<string, string>) {
    void this.read(url, headers).catch(() => undefined);
  }

  private async read(url: string, headers: Record<string, string>): Promise<void> {
    try {
      const r = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: this.abort.signal });
      this.status = r.status;
      this.contentType = r.headers.get('content-type') ?? '';
      if (!r.body) return;
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
          this.parse(block);
        }
      }
    } finally {
      this.ended = true;
      this.wake();
    }
  }

  private parse(block: string): void {
    let event = 'message';
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0 && id === undefined) return;
    this.events.push({ event, id, data: data.join('\n'), at: performance.now() });
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits for an event matching `pred`; rejects with what was seen when the stream ends or time runs out. */
  async waitFor(pred: (e: SseEvent) => boolean, what: string, timeoutMs: number): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (this.ended) throw new Error(`stream ended (HTTP ${this.status || 'no answer'}) before ${what}; got ${this.seen()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms (HTTP ${this.status}, ${this.contentType || 'no content type'}); got ${this.seen()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private seen(): string {
    return this.events.length ? this.events.map((e) => e.event).join(', ') : 'no events';
  }

  close(): void {
    this.abort.abort();
  }
}

/** A WebSocket client that keeps every frame (parsed JSON) and waits for one that matches. */
export class WsClient {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly frames: any[] = [];
  /** When each frame arrived (`performance.now()`), by index. */
  readonly arrivals: number[] = [];
  private readonly socket: WebSocket;
  private waiters: (() => void)[] = [];
  private closed = false;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (m) => {
      this.arrivals.push(performance.now());
      try {
        this.frames.push(JSON.parse(String(m)));
      } catch {
        this.frames.push({ unparsed: String(m) });
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string, timeoutMs: number): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { handshakeTimeout: timeoutMs });
      const client = new WsClient(socket);
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      socket.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.socket.send(JSON.stringify(frame));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async waitFor(pred: (f: any) => boolean, what: string, timeoutMs: number, from = 0): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.slice(from).find(pred);
      if (hit) return hit;
      const seen = this.frames.slice(from).map((f) => f.type ?? 'envelope').join(', ') || 'no frames';
      if (this.closed) throw new Error(`connection closed before ${what}; got ${seen}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; got ${seen}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }
}


/**
 * `POST {ticketUrl}` with `body` as `auth` says: with `iam` the body gains `sub` (when it is a JSON object) and the
 * request is signed by `sign`.
 */
export async function postTicket(ticketUrl: string, auth: ProbeAuth, body: string, sign: ProbeSigner | undefined, timeoutMs: number): Promise<JsonAnswer> {
  const url = new URL(ticketUrl);
  let headers: Record<string, string> = { 'content-type': 'application/json' };
  let payload = body;
  if (auth.kind === 'local') headers['x-local-user'] = auth.sub;
  else if (auth.kind === 'jwt') headers.authorization = `Bearer ${auth.token}`;
  else {
    const parsed = safeJson(body);
    payload = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? JSON.stringify({ sub: auth.sub, ...parsed }) : body;
    if (!sign) throw new Error('a ticket as a trusted backend (iam) needs a signer');
    headers = await sign('POST', url, payload);
  }
  return request(url.toString(), { method: 'POST', headers, body: payload }, timeoutMs);
}

/** `POST /publish` of `event`, signed by `sign` (unsigned without one: a local stack that does not verify signatures). */
export async function postPublish(publishUrl: string, event: { channel: string; type: string; data: unknown; idempotencyKey?: string }, sign: ProbeSigner | undefined, timeoutMs: number): Promise<JsonAnswer> {
  const body = JSON.stringify(event);
  const url = new URL(publishUrl);
  const headers = sign ? await sign('POST', url, body) : { 'content-type': 'application/json' };
  return request(url.toString(), { method: 'POST', headers, body }, timeoutMs);
}

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
