import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket as NodeWebSocket } from 'ws';
import { createClient, ticketFrom, type Client, type ClientOptions, type Envelope, type State, type TicketAnswer, type TicketRequest, type Transport } from '../../client/src/index';

/**
 * Helpers for the client tests: a TCP relay that fails the network on cue, a publisher that keeps
 * publishing through a test, and a recorder of what a client delivered.
 */

/**
 * A TCP relay in front of one server: `cut()` resets every connection and refuses new ones until
 * `restore()`; `freeze()` keeps the connections open but forwards nothing more on them (a sleeping
 * laptop, a dead NAT entry), nor that the server closed its side: only the client's own deadline can
 * notice. New connections still pass.
 */
export class Relay {
  private readonly pairs = new Set<{ a: Socket; b: Socket; frozen: boolean; deaf: boolean }>();
  private refusing = false;
  private server?: Server;
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    this.server = createServer((a) => {
      if (this.refusing) return void a.destroy();
      const b = connect(this.targetPort, '127.0.0.1');
      const p = { a, b, frozen: false, deaf: false };
      this.pairs.add(p);
      const drop = () => {
        this.pairs.delete(p);
        a.destroy();
        b.destroy();
      };
      a.on('error', drop).on('close', drop);
      // A frozen path carries nothing, not even the server's closing of its side: the client must notice by itself.
      const upstreamGone = () => (p.frozen ? b.destroy() : drop());
      b.on('error', upstreamGone).on('close', upstreamGone);
      a.on('data', (c: Buffer) => void (p.frozen || b.write(c)));
      b.on('data', (c: Buffer) => void (p.frozen || p.deaf || a.write(c)));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  /** `url` with its port replaced by the relay's. */
  via(url: string): string {
    const u = new URL(url);
    u.port = String(this.port);
    return u.toString();
  }

  get connections(): number {
    return this.pairs.size;
  }

  cut(): void {
    this.refusing = true;
    for (const p of this.pairs) {
      p.a.destroy();
      p.b.destroy();
    }
    this.pairs.clear();
  }

  restore(): void {
    this.refusing = false;
  }

  freeze(): void {
    for (const p of this.pairs) p.frozen = true;
  }

  /** The open connections still carry what the client sends, but nothing comes back (an answer lost on the way). */
  deafen(): void {
    for (const p of this.pairs) p.deaf = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Publishes through POST /publish (a backend); returns the event id. */
export async function publish(publishUrl: string, channel: string, data: unknown, type = 'update', idempotencyKey?: string): Promise<string> {
  const r = await fetch(publishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type, data, idempotencyKey }) });
  const body = (await r.json()) as { id: string };
  if (r.status !== 202) throw Object.assign(new Error(`publish answered ${r.status}: ${JSON.stringify(body)}`), { status: r.status });
  return body.id;
}

/**
 * Publishes `n` events one after the other, `gapMs` apart, for as long as the test runs its
 * failures; `ids` grows as the server accepts them. `stop()` ends early. Outages (no answer, 5xx,
 * 429) are retried; any other 4xx is the test's own mistake and rejects `done` at once. `attempts`
 * counts the requests that ended (answered or failed), retries included.
 */
export function startPublisher(publishUrl: string, channel: string, n: number, gapMs: number): { ids: string[]; attempts: number; done: Promise<void>; stop(): void } {
  const ids: string[] = [];
  let stopped = false;
  const p = { ids, attempts: 0, done: undefined as unknown as Promise<void>, stop: () => void (stopped = true) };
  p.done = (async () => {
    for (let i = 0; i < n && !stopped; i++) {
      // A publish that meets an outage is retried under the same idempotency key (its answer may
      // have been lost after the write): the publisher runs throughout and publishes each item once.
      const key = `${channel}-${i}`;
      for (;;) {
        try {
          ids.push(await publish(publishUrl, channel, { i }, 'update', key));
          p.attempts++;
          break;
        } catch (e) {
          p.attempts++;
          const status = (e as { status?: number }).status;
          if (status !== undefined && status >= 400 && status < 500 && status !== 429) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  return p;
}

/** What a client delivered on its channels, and its state changes. */
export interface Recorder {
  client: Client;
  events: Envelope[];
  resets: string[];
  states: State[];
  /** The transport of each `open` state, in order. */
  opens: Transport[];
  errors: string[];
  ids(channel?: string): string[];
}

/** Records `client` and subscribes it to `channels`. */
export function record(client: Client, channels: string[], since?: string): Recorder {
  const rec: Recorder = {
    client,
    events: [],
    resets: [],
    states: [],
    opens: [],
    errors: [],
    ids: (channel) => rec.events.filter((e) => channel === undefined || e.channel === channel).map((e) => e.id),
  };
  client.on('state', (s) => {
    rec.states.push(s);
    if (s === 'open') rec.opens.push(client.transport!);
  });
  client.on('error', (e) => rec.errors.push(e.code));
  for (const c of channels) client.subscribe(c, { onEvent: (e) => rec.events.push(e), onReset: (ch) => rec.resets.push(ch), since });
  return rec;
}

/** Waits until `pred` holds, checking every 25 ms; on timeout says what it waited for and `detail()`. */
export async function until(pred: () => boolean, what: string, timeoutMs = 20_000, detail: () => unknown = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${JSON.stringify(detail())}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Ticket function acting as `user` against the local stack, counting calls and optionally
 * rewriting the URLs it answers (to route a transport through a Relay, or to a dead end).
 */
export function localTickets(ticketUrl: string, user: string, rewrite: (t: TicketAnswer, req: TicketRequest) => TicketAnswer = (t) => t) {
  const inner = ticketFrom(ticketUrl, { headers: { 'x-local-user': user } });
  const calls: { req: TicketRequest; ticket: string }[] = [];
  const fn = async (req: TicketRequest) => {
    const t = await inner(req);
    calls.push({ req, ticket: t.ticket });
    return rewrite(t, req);
  };
  return Object.assign(fn, { calls });
}

/**
 * A client for Node: the `ws` package as WebSocket, no storage, no window events, and a 1-s reconnect
 * spread (these tests drop connections to see them recover; the default 10-s storm spread has its own
 * deterministic tests in client-unit.test.ts).
 */
export function nodeClient(options: ClientOptions): Client {
  return createClient({ WebSocket: NodeWebSocket, storage: null, events: null, reconnectSpreadMs: 1000, ...options });
}

/**
 * What `client.stats()` must say of `channel`, from what the recorder saw: each event delivered, each
 * reset, each open after the first (a reconnect) and each open on another transport than the one before.
 * Only opens that changed the state are seen here (a planned reconnect does not).
 */
export function statsTruth(rec: Recorder, channel: string): { received: number; resets: number; reconnects: number; switches: number; transport?: Transport } {
  return {
    received: rec.ids(channel).length,
    resets: rec.resets.filter((c) => c === channel).length,
    reconnects: Math.max(0, rec.opens.length - 1),
    switches: rec.opens.filter((t, i) => i > 0 && t !== rec.opens[i - 1]).length,
    transport: rec.opens[rec.opens.length - 1],
  };
}

/** Asserts `got` is exactly `want` (0 lost, 0 duplicates, in order) with a readable message. */
export function sameIds(got: string[], want: string[]): void {
  const lost = want.filter((id) => !got.includes(id));
  const dup = got.filter((id, i) => got.indexOf(id) !== i);
  const extra = got.filter((id) => !want.includes(id));
  expect({ lost, dup, extra, inOrder: got.join() === want.join() }).toEqual({ lost: [], dup: [], extra: [], inOrder: true });
}
