import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

/**
 * An HTTP and WebSocket proxy in front of one origin that understands what it carries: SSE blocks (`/events`), long-poll
 * answers (`/poll`) and WebSocket frames (`/live`, or the API Gateway stand-in). Per transport, events whose `data.seq`
 * a rule names are dropped, sent twice or held until the next event has passed (out of order), and every event can be
 * delayed by a fixed time, deterministically, whatever the load. Everything else passes as it is.
 */
export type ProxiedTransport = 'sse' | 'poll' | 'live' | 'apigateway';

export interface EventFaults {
  /** Burst numbers (`data.seq`) never delivered. */
  readonly drop?: readonly number[];
  /** Burst numbers delivered twice. */
  readonly duplicate?: readonly number[];
  /** Burst numbers held back and delivered right after the next event (streams only). */
  readonly late?: readonly number[];
  /** Milliseconds every event (or poll answer with events) waits before it goes on. */
  readonly delayMs?: number;
}

const seqOf = (envelope: unknown): number | undefined => {
  const s = (envelope as { data?: { seq?: unknown } } | null)?.data?.seq;
  return typeof s === 'number' ? s : undefined;
};

/** Applies `faults` to a sequence of items (in order), calling `send` for what goes on, in order. */
class Shaper<T> {
  private held: T[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly faults: () => EventFaults | undefined,
    private readonly send: (item: T) => void,
  ) {}

  /** `seq`: the burst number the item carries, if any. */
  push(item: T, seq: number | undefined): void {
    const f = this.faults();
    const out: T[] = [];
    if (seq !== undefined && f) {
      if (f.drop?.includes(seq)) return;
      if (f.late?.includes(seq)) {
        this.held.push(item);
        return;
      }
      out.push(item);
      if (f.duplicate?.includes(seq)) out.push(item);
      out.push(...this.held.splice(0));
    } else out.push(item);
    const delay = seq !== undefined ? (f?.delayMs ?? 0) : 0;
    // One chain per connection keeps the order whatever the delays.
    this.chain = this.chain.then(async () => {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      for (const i of out) this.send(i);
    });
  }
}

export class EventProxy {
  private server?: Server;
  private readonly wss = new WebSocketServer({ noServer: true });
  readonly faults = new Map<ProxiedTransport, EventFaults>();
  private readonly target: URL;
  port = 0;

  /** `wsTransport`: what the WebSocket connections through this proxy are (`live` for the tasks, `apigateway` for the stand-in). */
  constructor(
    target: string,
    private readonly wsTransport: 'live' | 'apigateway' = 'live',
  ) {
    this.target = new URL(target);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const transport: ProxiedTransport | undefined = path.endsWith('/events') ? 'sse' : path.endsWith('/poll') ? 'poll' : undefined;
      const up = httpRequest({ host: this.target.hostname, port: this.target.port, method: req.method, path: req.url, headers: { ...req.headers, host: this.target.host } }, (ur: IncomingMessage) => {
        const headers = { ...ur.headers };
        if (transport === 'poll' && ur.statusCode === 200) {
          const chunks: Buffer[] = [];
          ur.on('data', (c: Buffer) => chunks.push(c));
          ur.on('end', () => {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { events: unknown[] };
            // One answer at a time: dropped and doubled events here; a delay holds the whole answer once.
            const f = this.faults.get('poll') ?? {};
            const events = body.events.flatMap((e) => {
              const seq = seqOf(e);
              if (seq !== undefined && f.drop?.includes(seq)) return [];
              return seq !== undefined && f.duplicate?.includes(seq) ? [e, e] : [e];
            });
            const wait = events.some((e) => seqOf(e) !== undefined) ? (f.delayMs ?? 0) : 0;
            setTimeout(() => {
              const text = JSON.stringify({ ...body, events });
              delete headers['content-length'];
              delete headers['transfer-encoding'];
              res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(text) });
              res.end(text);
            }, wait);
          });
          return;
        }
        res.writeHead(ur.statusCode ?? 502, headers);
        if (transport !== 'sse') return void ur.pipe(res);
        let buf = '';
        const shaper = new Shaper<string>(() => this.faults.get('sse'), (block) => res.write(block));
        ur.setEncoding('utf8');
        ur.on('data', (text: string) => {
          buf += text;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i + 2);
            buf = buf.slice(i + 2);
            const data = /^data: (.*)$/m.exec(block)?.[1];
            let seq: number | undefined;
            try {
              seq = data ? seqOf(JSON.parse(data)) : undefined;
            } catch {
              seq = undefined;
            }
            shaper.push(block, seq);
          }
        });
        ur.on('end', () => res.end());
        res.on('close', () => ur.destroy());
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    this.server.on('upgrade', (req, socket, head) => {
      const url = `ws://${this.target.host}${req.url}`;
      const upstream = new WebSocket(url);
      upstream.on('error', () => socket.destroy());
      upstream.on('unexpected-response', () => socket.destroy());
      upstream.on('open', () => {
        this.wss.handleUpgrade(req, socket, head, (client) => {
          const shaper = new Shaper<string>(() => this.faults.get(this.wsTransport), (m) => client.readyState === WebSocket.OPEN && client.send(m));
          upstream.on('message', (m) => {
            const text = String(m);
            let seq: number | undefined;
            try {
              seq = seqOf(JSON.parse(text));
            } catch {
              seq = undefined;
            }
            shaper.push(text, seq);
          });
          client.on('message', (m) => upstream.send(String(m)));
          client.on('close', () => upstream.close());
          upstream.on('close', () => client.close());
        });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** `url` (an endpoint of the target) through this proxy. */
  via(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString().replace(/\/$/, '');
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** The two proxies a local stack's clients pass: one in front of the tasks (SSE, poll, `/live`), one in front of the API Gateway stand-in. */
export interface StackProxies {
  readonly tasks: EventProxy;
  readonly gateway: EventProxy;
  /** Forgets every fault (after each test). */
  clear(): void;
  close(): Promise<void>;
}

/** Starts the proxies in front of a local stack's `SseUrl` origin and `WebSocketUrl`. */
export async function proxyStack(outputs: { readonly SseUrl: string; readonly WebSocketUrl: string }): Promise<StackProxies> {
  const tasks = await new EventProxy(new URL(outputs.SseUrl).origin, 'live').start();
  const gateway = await new EventProxy(outputs.WebSocketUrl.replace(/^ws/, 'http'), 'apigateway').start();
  return {
    tasks,
    gateway,
    clear: () => {
      tasks.faults.clear();
      gateway.faults.clear();
    },
    close: async () => {
      await tasks.close();
      await gateway.close();
    },
  };
}
