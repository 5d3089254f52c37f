import { randomBytes } from 'node:crypto';
import type { CanaryEndpoints } from '../../contract/canary';

export type { CanaryEndpoints };
import { postPublish, postTicket, request, SseReader, WsClient, type ProbeAuth, type ProbeSigner } from './clients';

/**
 * The canary: what a user of each transport sees, measured through the public endpoints. One run takes a ticket per
 * transport (as a trusted backend, like the smoke test's `--iam-user`), connects over SSE, `/live`, the API Gateway
 * WebSocket (when the stack has one) and long poll, publishes a numbered burst through `POST /publish`, and counts per
 * transport what came back: received, lost, duplicated, out of order, publish → receive latency (the canary's own
 * clock from the start of each publish call to the event's arrival, so no clock skew enters), and connect time.
 */

export type CanaryTransport = 'sse' | 'live' | 'apigateway' | 'poll';

export interface CanaryOptions {
  readonly endpoints: CanaryEndpoints;
  readonly auth: ProbeAuth;
  /** Signs the ticket (with `iam` auth) and publish calls. Unset: unsigned (a local stack that does not verify). */
  readonly sign?: ProbeSigner;
  /** Where tickets are minted (`…/backend/tickets` when the ticket API takes JWTs). Defaults to `TicketUrl`. */
  readonly ticketUrl?: string;
  /** Namespace of the canary's channel: one a ticket holder may subscribe to. Defaults to `chat`. */
  readonly namespace?: string;
  /** Events in the burst. Defaults to 10. */
  readonly burst?: number;
  /** How long to wait for the burst after its last publish, and for each answer, in milliseconds. Defaults to 10000. */
  readonly timeoutMs?: number;
}

export interface TransportReport {
  readonly transport: CanaryTransport;
  /** Milliseconds from the connection's start to its readiness (`ready`, `subscribed`, the first poll's answer). */
  readonly connectMs?: number;
  readonly received: number;
  /** Burst events that never arrived on this transport (all of them when it did not connect). */
  readonly lost: number;
  /**
   * What a client would detect by position: events whose `prev` (the channel's event before them) was not the last
   * one that arrived (a run of missing events is one gap; one missing at the end of the burst is not seen; an event
   * overtaken by a later one is a gap, and the late one dropped, as the SDK does). See `gapsByPrev`.
   */
  readonly gaps: number;
  readonly duplicated: number;
  /** Events that arrived after one published later than them. */
  readonly outOfOrder: number;
  /** Publish → receive latency of each event received (first arrival), in milliseconds, ascending. */
  readonly latenciesMs: readonly number[];
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  /** Why this transport could not be measured. */
  readonly error?: string;
}

export interface CanaryReport {
  readonly channel: string;
  readonly published: number;
  /** Publishes `POST /publish` refused or that failed (those events are not expected anywhere). */
  readonly publishErrors: number;
  readonly transports: readonly TransportReport[];
}

/** The `q` quantile of ascending `sorted` (nearest rank). */
export function percentile(sorted: readonly number[], q: number): number | undefined {
  if (!sorted.length) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** One arrival of a burst event on a transport: its burst number, when, and its envelope's `id` and `prev`. */
interface Arrival {
  readonly seq: number;
  readonly at: number;
  readonly id?: string;
  readonly prev?: string;
}

/** Compares two decimal ids. */
const cmp = (a: string, b: string): number => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

/**
 * Gaps a client detects by position in `arrivals` (in order) of one channel, followed from position `from` (undefined:
 * from its first arrival, not compared): an arrival above the last one whose `prev` is not the last one's id; one at
 * or below is dropped (a duplicate or late). Arrivals without `prev` (a server before it) are not counted.
 */
export function gapsByPrev(arrivals: readonly { id?: unknown; prev?: unknown }[], from: string | undefined): number {
  let last = from;
  let gaps = 0;
  for (const a of arrivals) {
    if (typeof a.id !== 'string' || (last !== undefined && cmp(a.id, last) <= 0)) continue;
    if (last !== undefined && typeof a.prev === 'string' && a.prev !== last) gaps++;
    last = a.id;
  }
  return gaps;
}

/** An arrival of the envelope `e` (of a `canary` event) at `at`. */
const arrival = (e: { id?: unknown; prev?: unknown; data?: unknown }, at: number): Arrival => ({
  seq: seqOf(e.data) ?? -1,
  at,
  id: typeof e.id === 'string' ? e.id : undefined,
  prev: typeof e.prev === 'string' ? e.prev : undefined,
});

/** A connected transport: its arrivals so far (of `canary` events carrying `seq`), and how to end it. */
interface Receiver {
  readonly transport: CanaryTransport;
  readonly connectMs: number;
  arrivals(): Arrival[];
  close(): void;
}

const seqOf = (data: unknown): number | undefined => {
  const s = (data as { seq?: unknown } | null)?.seq;
  return typeof s === 'number' ? s : undefined;
};

/** Runs the canary once. Never throws for what it measures: a transport that fails is reported with `error` and everything lost. */
export async function runCanary(options: CanaryOptions): Promise<CanaryReport> {
  const e = options.endpoints;
  const timeout = options.timeoutMs ?? 10_000;
  const burst = options.burst ?? 10;
  const channel = `${options.namespace ?? 'chat'}:canary-${randomBytes(6).toString('hex')}`;
  const ticketUrl = options.ticketUrl ?? e.TicketUrl;
  const q = `channels=${encodeURIComponent(channel)}`;

  async function mint(transport: 'sse' | 'ws'): Promise<string> {
    const r = await postTicket(ticketUrl, options.auth, JSON.stringify({ channels: [channel], transport }), options.sign, timeout);
    if (r.status !== 201 || typeof r.body?.ticket !== 'string') throw new Error(`POST ${ticketUrl}: HTTP ${r.status} ${r.text.slice(0, 160)}`);
    return r.body.ticket;
  }

  async function sse(): Promise<Receiver> {
    const ticket = await mint('sse');
    const start = performance.now();
    const reader = new SseReader(`${e.SseUrl}?${q}&ticket=${encodeURIComponent(ticket)}`, {});
    try {
      const ready = await reader.waitFor((ev) => ev.event === 'ready', 'event: ready', timeout);
      return {
        transport: 'sse',
        connectMs: ready.at - start,
        arrivals: () => reader.events.flatMap((ev) => (ev.event === 'canary' ? [arrival(JSON.parse(ev.data), ev.at)] : [])),
        close: () => reader.close(),
      };
    } catch (err) {
      reader.close();
      throw err;
    }
  }

  async function ws(transport: 'live' | 'apigateway', url: string): Promise<Receiver> {
    const ticket = await mint('ws');
    const start = performance.now();
    const client = await WsClient.open(`${url}?ticket=${encodeURIComponent(ticket)}`, timeout);
    try {
      client.send({ action: 'subscribe', channel });
      await client.waitFor((m) => m.type === 'subscribed' && m.channel === channel, `subscribed ${channel}`, timeout);
      const connectMs = client.arrivals[client.frames.findIndex((m) => m.type === 'subscribed')] - start;
      return {
        transport,
        connectMs,
        arrivals: () => client.frames.flatMap((m, i) => (m.type === 'canary' && m.channel === channel ? [arrival(m, client.arrivals[i])] : [])),
        close: () => client.close(),
      };
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Long poll: one ticket, then the reconnect cookie of the first answer, as the client SDK does in Node. */
  async function poll(): Promise<Receiver> {
    const ticket = await mint('sse');
    const start = performance.now();
    const first = await fetch(`${e.PollUrl}?${q}&ticket=${encodeURIComponent(ticket)}&wait=0`, { signal: AbortSignal.timeout(timeout) });
    const body = (await first.json()) as { cursor?: string; error?: unknown };
    if (first.status !== 200 || typeof body.cursor !== 'string') throw new Error(`GET /poll: HTTP ${first.status} ${JSON.stringify(body).slice(0, 160)}`);
    const connectMs = performance.now() - start;
    const cookie = first.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .join('; ');
    const got: Arrival[] = [];
    const abort = new AbortController();
    let cursor = body.cursor;
    let stopped = false;
    void (async () => {
      while (!stopped) {
        try {
          // The answer's cursor goes back as it came: opaque (a decimal, or a connection cursor `p1.…`).
          const r = await request(`${e.PollUrl}?${q}&ticket=${encodeURIComponent(ticket)}&cursor=${encodeURIComponent(cursor)}`, { headers: { cookie }, signal: abort.signal }, timeout * 4);
          const at = performance.now();
          if (r.status !== 200) break;
          for (const ev of r.body.events as { type: string; data: unknown }[]) if (ev.type === 'canary') got.push(arrival(ev, at));
          cursor = r.body.cursor;
        } catch {
          break;
        }
      }
    })();
    return {
      transport: 'poll',
      connectMs,
      arrivals: () => got,
      close: () => {
        stopped = true;
        abort.abort();
      },
    };
  }

  const plans: [CanaryTransport, () => Promise<Receiver>][] = [['sse', sse]];
  if (e.LiveUrl) plans.push(['live', () => ws('live', e.LiveUrl!)]);
  if (e.WebSocketUrl) plans.push(['apigateway', () => ws('apigateway', e.WebSocketUrl!)]);
  plans.push(['poll', poll]);
  const connected = await Promise.all(plans.map(([t, open]) => open().then((r) => ({ t, r }), (err: unknown) => ({ t, error: err instanceof Error ? err.message : String(err) }))));
  const receivers = connected.flatMap((c) => ('r' in c ? [c.r] : []));

  // The burst, one publish after the other (their order is the order the events must arrive in).
  const sentAt = new Map<number, number>();
  let publishErrors = 0;
  for (let seq = 0; seq < burst; seq++) {
    const at = performance.now();
    try {
      const r = await postPublish(e.PublishUrl, { channel, type: 'canary', data: { seq }, idempotencyKey: `${channel}-${seq}` }, options.sign, timeout);
      if (r.status === 202) sentAt.set(seq, at);
      else publishErrors++;
    } catch {
      publishErrors++;
    }
  }
  // Wait until every transport has every event it should, or the time is up.
  const deadline = performance.now() + timeout;
  const complete = (r: Receiver) => [...sentAt.keys()].every((s) => r.arrivals().some((a) => a.seq === s));
  while (performance.now() < deadline && !receivers.every(complete)) await new Promise((r) => setTimeout(r, 20));
  for (const r of receivers) r.close();

  const transports = connected.map((c): TransportReport => {
    if (!('r' in c)) return { transport: c.t, received: 0, lost: sentAt.size, gaps: 0, duplicated: 0, outOfOrder: 0, latenciesMs: [], error: c.error };
    const arrivals = c.r.arrivals().filter((a) => sentAt.has(a.seq));
    // The channel is new: every receiver followed it from its start (position 0).
    const gaps = gapsByPrev(c.r.arrivals(), '0');
    const first = new Map<number, number>();
    let duplicated = 0;
    let outOfOrder = 0;
    let highest = -1;
    for (const a of arrivals) {
      if (first.has(a.seq)) {
        duplicated++;
        continue;
      }
      first.set(a.seq, a.at);
      if (a.seq < highest) outOfOrder++;
      highest = Math.max(highest, a.seq);
    }
    const latenciesMs = [...first].map(([seq, at]) => at - sentAt.get(seq)!).sort((a, b) => a - b);
    return {
      transport: c.t,
      connectMs: c.r.connectMs,
      received: first.size,
      lost: sentAt.size - first.size,
      gaps,
      duplicated,
      outOfOrder,
      latenciesMs,
      p50Ms: percentile(latenciesMs, 0.5),
      p99Ms: percentile(latenciesMs, 0.99),
    };
  });
  return { channel, published: sentAt.size, publishErrors, transports };
}
