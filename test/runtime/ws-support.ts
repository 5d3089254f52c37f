import { WebSocket, type ClientOptions } from 'ws';

/** Frames a test WebSocket client received, parsed, with ways to wait for them. */
export class WsClient {
  readonly frames: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  /** HTTP status of a rejected upgrade. */
  status = 0;
  closeCode?: number;
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  private waiters: (() => void)[] = [];

  constructor(url: string, options?: ClientOptions) {
    this.ws = new WebSocket(url, options);
    this.ws.on('message', (m) => {
      const text = String(m);
      this.raw.push(text);
      try {
        this.frames.push(JSON.parse(text) as Record<string, unknown>);
      } catch {
        this.frames.push({ unparsable: text });
      }
      this.notify();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        this.status = res.statusCode ?? 0;
        res.resume();
        reject(new Error(`upgrade rejected with ${this.status}`));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code) => {
        this.closeCode = code;
        this.notify();
        resolve(code);
      });
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Events (envelopes: frames with an `id` and a `channel`). */
  events(channel?: string): { channel: string; id: string; type: string; data: unknown; ts: number }[] {
    return this.frames.filter((f) => typeof f.id === 'string' && typeof f.channel === 'string' && typeof f.ts === 'number' && (!channel || f.channel === channel)) as never;
  }

  /** Signal frames of one type. */
  signals(type: string): Record<string, unknown>[] {
    return this.frames.filter((f) => f.type === type && f.ts === undefined);
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `pred` holds; rejects after `timeoutMs` with what was received. */
  async until(pred: (c: WsClient) => boolean, timeoutMs = 10_000, what = 'frames'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; received:\n${this.raw.slice(-20).map((r) => (r.length > 300 ? `${r.slice(0, 300)}…` : r)).join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends a frame and resolves with the next frame of `type` that matches. */
  async request(frame: unknown, type: string, match: (f: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
    const before = this.frames.length;
    this.send(frame);
    let found: Record<string, unknown> | undefined;
    await this.until(() => (found = this.frames.slice(before).find((f) => f.type === type && f.ts === undefined && match(f))) !== undefined, 10_000, `a "${type}" frame`);
    return found!;
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Opens a client and waits for the upgrade. */
export async function connectWs(url: string): Promise<WsClient> {
  const c = new WsClient(url);
  await c.opened;
  return c;
}

/** The HTTP status a rejected upgrade answered. */
export async function upgradeStatus(url: string): Promise<number> {
  const c = new WsClient(url);
  try {
    await c.opened;
    c.close();
    return 101;
  } catch {
    return c.status;
  }
}
