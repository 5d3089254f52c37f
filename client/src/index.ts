/**
 * Realtime Blueprint client: one connection per client over WebSocket, SSE (fetch streaming) or
 * long poll, several channels on it, resume by event id across reconnects and transport switches.
 * Dependency-free; browsers and Node >= 20 (inject `WebSocket` there).
 */
import { decodeCursor, encodeCursor } from './cursor';

export type Transport = 'ws' | 'sse' | 'poll';
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';
/** Event type → data type of the events an app expects. */
export type EventMap = Record<string, unknown>;

/**
 * An event as every transport delivers it. `id` is its position on its channel (a decimal string: Redis time in
 * microseconds, growing per channel, not a count); `prev` the id of the channel's event before it ("0" for its first),
 * so a missing event shows (see {@link ChannelStats.gaps}).
 */
export interface Envelope<D = unknown, T extends string = string> {
  channel: string;
  id: string;
  type: T;
  data: D;
  ts: number | string;
  prev?: string;
}
export type EventOf<M extends EventMap> = { [K in keyof M & string]: Envelope<M[K], K> }[keyof M & string];

/** What `POST /tickets` answers (only `ticket` is required; the URLs come from it or the options). */
export interface TicketAnswer {
  ticket: string;
  sseUrl?: string | null;
  wsUrl?: string | null;
  expiresAt?: string;
}
/** What the ticket function is asked for: one ticket for one connection attempt (or one poll). */
export interface TicketRequest {
  transport: 'sse' | 'ws';
  channels: string[];
}

export interface Timers {
  now(): number;
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/**
 * The part of the WebSocket API the client uses (the browser's, or the `ws` package's). The client
 * only assigns the `on…` handlers (it reads `data` of a message event, nothing of the others); their
 * parameter is `never` so that every platform's handler types fit (`ws` types them with its own
 * `Event` and `MessageEvent` classes, which a narrower parameter here would reject under strict TS).
 */
export interface WebSocketLike {
  readyState: number;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  send(data: string): void;
  close(code?: number): void;
}

export interface ClientOptions {
  /** Gets a new ticket; called once per connection attempt (a long-poll connection keeps polling on the reconnect cookie its first poll got). Throw a {@link RealtimeClientError} with `status` (see {@link ticketFrom}): 401/403 end the client, others are retried. */
  ticket(req: TicketRequest): Promise<TicketAnswer>;
  /** Transports in the order to try them. Default `['ws', 'sse', 'poll']`. */
  transports?: Transport[];
  /** Used when the ticket answer carries no URL: the stack outputs SseUrl, WebSocketUrl, PollUrl. */
  sseUrl?: string;
  wsUrl?: string;
  pollUrl?: string;
  /** `GET /history` on the tasks. Default: `sseUrl` (the ticket's or this option) with `/events` replaced by `/history`. */
  historyUrl?: string;
  fetch?: typeof fetch;
  WebSocket?: new (url: string) => WebSocketLike;
  /** A transport that does not open within this is given up for the next one. Default 4000. */
  openTimeoutMs?: number;
  /** SSE: a stream that sent no byte (heartbeats included) for this long is dead. Default 25000. */
  deadAfterMs?: number;
  /**
   * WebSocket: send a `ping` when nothing was received for this long (events, answers and the `/live`
   * endpoint's heartbeat frames all count, so a busy or heartbeating connection sends none). With
   * `pongTimeoutMs` it bounds how long a silent dead path goes unnoticed: 30 s by default. A `ping`
   * also goes out after 9 minutes without sending anything (API Gateway closes sockets idle 10 min).
   * Default 20000.
   */
  pingMs?: number;
  /** WebSocket: a ping unanswered for this long means the socket is dead. Default 10000. */
  pongTimeoutMs?: number;
  /** WebSocket: reconnect (resuming) after this long, before API Gateway's 2-hour cap. Default 7020000 (1 h 57 min). */
  maxConnectionMs?: number;
  /**
   * WebSocket: an event whose `prev` (its channel's event before it) is above the last one delivered waits, with the
   * events after it, for the missing ones at most this long (on API Gateway two producers' posts of a channel may
   * cross); then the client reconnects and resumes from the last event it delivered. Default 2000.
   */
  gapWaitMs?: number;
  /** Long poll: abort a poll that has not answered for this long. Default 35000. */
  pollTimeoutMs?: number;
  /** How long the transport that last opened is tried first. Default 1800000 (30 min). */
  rememberMs?: number;
  /** Uptime after which a connection counts as stable (backoff restarts). Default 5000. */
  stableMs?: number;
  /**
   * The first retry after a stable connection ended, other than one this client found dead itself, waits
   * U(0, reconnectSpreadMs): a task that restarts, crashes or closes its sockets (1001, 1012, 1013, an ended
   * stream) drops all of its clients at once, and this spreads them over the window instead of one spike
   * (10,000 clients: about 1,000 per second). `online` cuts the wait short. Default 10000.
   */
  reconnectSpreadMs?: number;
  /** Where the winning transport is remembered (default `localStorage` when present, else memory). */
  storage?: { getItem(k: string): string | null; setItem(k: string, v: string): void } | null;
  /** Source of `visibilitychange` and `online` events (default `globalThis` when it has addEventListener). */
  events?: { addEventListener(t: string, f: () => void): void; removeEventListener(t: string, f: () => void): void } | null;
  timers?: Timers;
  random?: () => number;
  /**
   * Off unless set: every `intervalMs` (default 60000) the client posts what {@link Client.stats} counted since its
   * last report, summed per channel namespace, to `url` (the stack's ClientMetricsUrl, `POST /client-metrics` on
   * the tasks): `{"transport","namespaces":{"<ns>":{received,duplicates,gaps,resets,reconnects,switches,latency}}}`.
   * No channel names, ids, user or event data. Unless `anonymous` (the namespaces allow anonymous reports), each
   * report spends a ticket for the subscribed channels, passed as `?ticket=`. A report refused with 400/401/403/404
   * ends reporting; one that fails otherwise is added to the next.
   */
  report?: { url: string; intervalMs?: number; anonymous?: boolean };
}

export interface SubscribeOptions<M extends EventMap> {
  onEvent(event: EventOf<M>): void;
  /** History could not cover the gap: reload this channel's state. */
  onReset?(channel: string): void;
  /** Deliver events after this id (an id this app already has). */
  since?: string;
}

/** What {@link Client.history} reads: at most `limit` events (the server caps a page at REPLAY_MAX_EVENTS and REPLAY_MAX_BYTES). */
export interface HistoryOptions {
  /** Events after this id. Default: whatever the history holds. */
  since?: string;
  /** Newest first. Default false. */
  reverse?: boolean;
  /** Reverse only: events before this id (the previous page's `next`). */
  before?: string;
  limit?: number;
}
/** One page of a channel's history, as `GET /history` answers it. */
export interface HistoryPage<E = Envelope> {
  channel: string;
  events: E[];
  /** The history no longer reaches back to `since`: events after it were lost; reload the state without `since`. */
  reset: boolean;
  /** The page ended at its bound: ask again with `since: next` (or `before: next` in reverse). */
  more: boolean;
  next?: string;
  /** The channel's position when the page was read. */
  position: string;
}

/** One member of a channel's presence: a user (`sub`), one however many connections (tabs, devices, transports) it has. */
export interface PresenceMember {
  sub: string;
  /** What the ticket of the connection that made it join carried (e.g. a display name), if anything. */
  info?: unknown;
  /**
   * Its connections as of the snapshot that listed it, or 1 when it joined later (no event tells its later ones). 0: in its
   * grace period (its last connection closed a moment ago; still a member until the grace ends and it leaves).
   */
  connections: number;
}

/**
 * Who is on a channel (`client.presence(channel)`, a namespace with `presence` on): the snapshot the server sends, plus the
 * channel's `presence.*` events above its position. Exact at every event the client received; kept across reconnects and
 * transport switches by the channel's position, and taken again after a `reset` of the channel (README, "Presence").
 */
export interface Presence {
  readonly channel: string;
  /** A snapshot was applied: `members()` and `count()` are the channel's (false until the first, and after a `reset` until the next). */
  readonly synced: boolean;
  /** The members (members mode; empty in count mode). The same array until something changes (`onChange`). */
  members(): PresenceMember[];
  /** How many members: the members' number, or count mode's count. */
  count(): number;
  /** A member joined (also for one a new snapshot lists that was not a member before). Returns the removal. */
  onJoin(f: (m: PresenceMember) => void): () => void;
  /** A member left (its grace ended), or a new snapshot no longer lists it. */
  onLeave(f: (m: PresenceMember) => void): () => void;
  /** `count()` changed. */
  onCount(f: (n: number) => void): () => void;
  /** Anything changed (a snapshot applied, an event). */
  onChange(f: () => void): () => void;
  /** Stops following the channel's presence (and unsubscribes the channel if only the presence had subscribed it). */
  close(): void;
}

/** A snapshot as the transports send it: `{channel, members, position}`, or `{channel, count, position}` in count mode. */
interface Snapshot {
  channel: string;
  members?: PresenceMember[];
  count?: number;
  position: string;
}

/** Upper bounds in ms of the latency histogram's buckets ({@link ChannelStats.latency}); a latency above the last counts in the last. */
export const LATENCY_BUCKETS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];

/**
 * What one channel's deliveries looked like since it was first subscribed on this client (see
 * {@link Client.stats}). Counts only grow; a reporter sends differences.
 */
export interface ChannelStats {
  /** Events delivered to `onEvent`. */
  received: number;
  /** Events at or below the channel's position (a duplicate): dropped, not delivered. An event that came before an earlier one is not: on WebSocket the later one waits for it. */
  duplicates: number;
  /**
   * Events that did not follow the last one received on the channel: their `prev` (the channel's event before them)
   * was not that one, so at least one event between was lost to this client. Counted between two events received
   * with no `reset` between (a reset says so itself); not before the first event of a subscription.
   */
  gaps: number;
  /** `reset` signals: history could not cover the channel's cursor, so events between were lost to this client. */
  resets: number;
  /** Connections that opened carrying this channel after its first one. */
  reconnects: number;
  /** Of those, the ones on another transport than the connection before. */
  switches: number;
  /** The transport of the last connection that opened, if any did. */
  transport?: Transport;
  /** Publish → receive latency (this clock at delivery − the envelope's `ts`; below 0 counts as 0): counts per bucket of {@link LATENCY_BUCKETS}. */
  latency: number[];
  /** Median and 99th percentile of `latency`, as the upper bound of their bucket in ms (undefined before the first event). */
  p50?: number;
  p99?: number;
}

/** The upper bound of the bucket holding quantile `q` of histogram `h`. */
function quantile(h: number[], q: number): number | undefined {
  const n = h.reduce((a, b) => a + b, 0);
  let c = 0;
  for (let i = 0; i < h.length; i++) if (n && (c += h[i]) >= q * n) return LATENCY_BUCKETS[i];
  return undefined;
}

/** An error of the client: `code` is the server's error code (or `disconnected`, `closed`, `not_websocket`, `network`). */
export class RealtimeClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Reconnect delay after `n` failed attempts: full jitter, min(20 s, 0.5 s + U(0, min(20 s, 0.5 s·2^n))). */
export const backoff = (n: number, random: () => number = Math.random): number => Math.min(20000, 500 + random() * Math.min(20000, 500 * 2 ** n));

const COUNTS = ['received', 'duplicates', 'gaps', 'resets', 'reconnects', 'switches'] as const;
/** Compares two decimal ids. */
const cmp = (a: string, b: string): number => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
const maxId = (a: string | undefined, b: string | undefined): string | undefined => (a === undefined ? b : b === undefined || cmp(a, b) >= 0 ? a : b);
/** Error codes of a subscribe that may succeed on another try. */
const RETRYABLE = ['unavailable', 'internal', 'rate_limited'];
const SIGNALS = new Set(['subscribed', 'unsubscribed', 'reset', 'published', 'pong', 'error']);
/** WebSocket: longest time without sending before a `ping`, inside API Gateway's 10-minute idle timeout. */
const IDLE_SEND_MS = 540000;

async function httpError(r: Response): Promise<RealtimeClientError> {
  let code = 'http_' + r.status;
  let message = r.statusText;
  try {
    const b = (await r.json()) as { error?: { code: string; message: string } };
    if (b.error) ({ code, message } = b.error);
  } catch {
    // not JSON
  }
  const ra = Number(r.headers.get('retry-after'));
  return new RealtimeClientError(code, message, r.status, ra > 0 ? ra * 1000 : undefined);
}

/** A ticket function for `POST TicketUrl`: `ticketFrom(outputs.TicketUrl, { headers: { authorization: 'Bearer …' } })`. */
export function ticketFrom(url: string, init: { headers?: Record<string, string>; credentials?: RequestCredentials; fetch?: typeof fetch } = {}) {
  return async (req: TicketRequest): Promise<TicketAnswer> => {
    const r = await (init.fetch ?? fetch)(url, { method: 'POST', credentials: init.credentials, headers: { 'content-type': 'application/json', ...init.headers }, body: JSON.stringify(req) });
    if (r.status > 201) throw await httpError(r);
    return r.json() as Promise<TicketAnswer>;
  };
}

/** The subscription `presence()` makes for a channel the app did not subscribe. */
const NOOP: SubscribeOptions<EventMap> = { onEvent: () => undefined };

/**
 * One channel's presence, by the snapshot/position rule: until a snapshot comes (`need`), the channel's `presence.*`
 * events are kept; the snapshot replaces the members, then the kept events above its position apply, and from then on
 * every event above it. A `reset` (or an unsubscribe) asks for a new snapshot. So does an event whose `prev` (the
 * channel's event before it) is not the last event given here, when that `prev` is above the position: it was missed
 * (lost: on API Gateway crossing posts do not get here, the later event waits for the earlier one, see `deliver`); a
 * snapshot below such a `prev` is not taken (asked again).
 */
class Tracker implements Presence {
  need = true;
  /** Events kept while `need`. */
  private b: Envelope[] = [];
  /** The last snapshot's position: events at or below it are in it. */
  private pos = '0';
  /** The id of the last event of the channel given here (any type), and the highest `prev` that was not it (missed). */
  private last = '0';
  private miss = '0';
  private m = new Map<string, PresenceMember>();
  /** Count mode: the count, and whether the snapshot said so. */
  private n = 0;
  private cm = false;
  /** `members()` until the next change. */
  private a?: PresenceMember[];
  private readonly l: { [k: string]: Set<(v: never) => void> } = { join: new Set(), leave: new Set(), count: new Set(), change: new Set() };

  constructor(
    readonly channel: string,
    readonly close: () => void,
    /** Asks for a new snapshot (after {@link r}). */
    private readonly again: () => void,
  ) {}

  get synced(): boolean {
    return !this.need;
  }
  members(): PresenceMember[] {
    return (this.a ??= [...this.m.values()]);
  }
  count(): number {
    return this.cm ? this.n : this.m.size;
  }
  onJoin(f: (m: PresenceMember) => void): () => void {
    return this.on('join', f);
  }
  onLeave(f: (m: PresenceMember) => void): () => void {
    return this.on('leave', f);
  }
  onCount(f: (n: number) => void): () => void {
    return this.on('count', f);
  }
  onChange(f: () => void): () => void {
    return this.on('change', f);
  }
  private on(k: string, f: (v: never) => void): () => void {
    this.l[k].add(f);
    return () => this.l[k].delete(f);
  }
  private emit(k: string, v?: unknown): void {
    this.a = undefined;
    for (const f of this.l[k]) (f as (v: unknown) => void)(v);
  }

  /** Needs a new snapshot: what was kept is dropped; after a reset or an unsubscribe (`anew`) the events seen too (ids may restart after a failover). */
  r(anew?: boolean): void {
    this.need = true;
    this.b = [];
    if (anew) this.last = this.miss = '0';
  }

  /** An event of the channel, in order and above the channel's position (others are ignored). */
  e(ev: Envelope): void {
    if (ev.prev !== undefined && cmp(ev.prev, this.last) > 0) this.miss = maxId(this.miss, ev.prev)!;
    this.last = maxId(this.last, ev.id)!;
    if (!this.need && cmp(this.miss, this.pos) > 0) {
      this.r();
      this.again();
    }
    this.k(ev);
  }

  /** A `presence.*` event: kept while `need`, else applied when above the position. */
  private k(ev: Envelope): void {
    if (!ev.type.startsWith('presence.')) return;
    if (this.need) return void this.b.push(ev);
    if (cmp(ev.id, this.pos) <= 0) return;
    const d = ev.data as { sub: string; info?: unknown; count: number };
    const c = this.count();
    const had = this.m.get(d.sub);
    if (ev.type === 'presence.join' && !had) {
      const v = { sub: d.sub, info: d.info, connections: 1 };
      this.m.set(d.sub, v);
      this.emit('join', v);
    } else if (ev.type === 'presence.leave' && had) {
      this.m.delete(d.sub);
      this.emit('leave', had);
    } else if (ev.type === 'presence.count') this.n = d.count;
    if (c !== this.count()) this.emit('count', this.count());
    this.emit('change');
  }

  /** A snapshot (taken only when one is needed): the members at its position, then the events kept above it. */
  s(j: Snapshot): void {
    if (!this.need) return;
    // An event above it was missed: the members it would give are not the channel's.
    if (cmp(this.miss, j.position) > 0) return this.again();
    const old = this.m;
    const c = this.count();
    this.m = new Map((j.members ?? []).map((x) => [x.sub, x]));
    this.cm = j.count !== undefined;
    this.n = j.count ?? 0;
    this.pos = j.position;
    this.need = false;
    this.a = undefined;
    for (const [k, v] of this.m) if (!old.has(k)) this.emit('join', v);
    for (const [k, v] of old) if (!this.m.has(k)) this.emit('leave', v);
    if (c !== this.count()) this.emit('count', this.count());
    const b = this.b;
    this.b = [];
    for (const e of b) this.k(e);
    this.emit('change');
  }
}

interface Sub {
  /** The channel's position: its last event received, or what the server said it is at. */
  cursor?: string;
  /** `cursor` came from a plain decimal, the deployment-wide sequence of a server before positions per channel. */
  shared?: boolean;
  /** The id of the last event received (for gaps; none after a reset). */
  last?: string;
  h: SubscribeOptions<EventMap>;
  /** WebSocket: subscribe sent, `subscribed` not yet: events are held and released in id order. */
  held?: Envelope[];
  /** WebSocket: events waiting for a missing one (`prev` above `cursor`), and the timer that gives up waiting. */
  wait?: Envelope[];
  wt?: unknown;
}
interface Conn {
  kind: Transport;
  channels: string[];
  /** Ends the connection; `planned`: reconnect at once (channel set changed, age cap). */
  stop(planned?: boolean): void;
  /** Wall-clock check after a wake-up (visibility, online). */
  check(): void;
  send?(frame: object): void;
}
interface Ended {
  opened: boolean;
  uptime: number;
  floor: number;
  planned?: boolean;
  error?: RealtimeClientError;
  fatal?: boolean;
  ticketFailed?: boolean;
}
interface Pending {
  frame: Record<string, unknown>;
  resolve(v: unknown): void;
  reject(e: RealtimeClientError): void;
  /** Publishes survive reconnects (their idempotency key makes a resend safe). */
  keep?: boolean;
}

const realTimers: Timers = { now: () => Date.now(), set: (f, ms) => setTimeout(f, ms), clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>) };
const KEY = 'rt:transport';

export class Client<M extends EventMap = EventMap> {
  /** The current connection state. */
  state: State = 'connecting';
  /** The state the listeners were last told. */
  private told?: State;
  /** The transport of the open connection. */
  transport?: Transport;
  private readonly o: Required<Omit<ClientOptions, 'sseUrl' | 'wsUrl' | 'pollUrl' | 'historyUrl' | 'WebSocket' | 'storage' | 'events'>> & ClientOptions;
  private readonly subs = new Map<string, Sub>();
  /** Presence trackers by channel (`presence()`). */
  private readonly pres = new Map<string, Tracker>();
  /** Delivery counts per channel, kept after an unsubscribe. */
  private readonly st = new Map<string, ChannelStats>();
  private readonly listeners: { [k: string]: Set<(v: never) => void> } = { state: new Set(), error: new Set() };
  private readonly queue: Pending[] = [];
  private inflight?: Pending;
  private conn?: Conn;
  /**
   * Send plain decimal cursors: until a server has sent a `p1.` cursor (SSE `ready`, a poll answer), and after one sent
   * a plain decimal or refused a `p1.` one. A server before positions per channel reads only decimals (a native-style
   * stream resets every channel on anything else), and the WebSocket's `subscribed` does not tell the two apart.
   */
  private legacy = true;
  private closed = false;
  private running = false;
  private wakeup?: (now: boolean) => void;
  private mem?: Transport;
  /** Long poll: reconnect cookies the server set (Node; a browser keeps them itself). */
  private readonly jar = new Map<string, string>();
  /** Long poll: cookies do not come back (blocked), so every poll takes a new ticket. */
  private perPoll = false;
  /** What the last report that was taken counted, per channel. */
  private sent = new Map<string, ChannelStats>();
  private reportTimer?: unknown;
  private readonly onWake = () => this.check(false);
  private readonly onOnline = () => this.check(true);

  constructor(options: ClientOptions) {
    this.o = {
      transports: ['ws', 'sse', 'poll'],
      fetch: (...a: Parameters<typeof fetch>) => fetch(...a),
      openTimeoutMs: 4000,
      deadAfterMs: 25000,
      pingMs: 20000,
      pongTimeoutMs: 10000,
      maxConnectionMs: 7020000,
      pollTimeoutMs: 35000,
      gapWaitMs: 2000,
      rememberMs: 1800000,
      stableMs: 5000,
      reconnectSpreadMs: 10000,
      timers: realTimers,
      random: Math.random,
    } as Client<M>['o'];
    // Options left undefined keep their defaults.
    for (const [k, v] of Object.entries(options)) if (v !== undefined) (this.o as unknown as Record<string, unknown>)[k] = v;
    const g = globalThis as unknown as ClientOptions['events'] & { localStorage?: ClientOptions['storage'] };
    if (this.o.storage === undefined) {
      try {
        this.o.storage = g?.localStorage ?? null;
      } catch {
        this.o.storage = null;
      }
    }
    if (this.o.events === undefined) this.o.events = typeof g?.addEventListener === 'function' ? g : null;
    this.o.events?.addEventListener('visibilitychange', this.onWake);
    this.o.events?.addEventListener('online', this.onOnline);
    if (this.o.report) this.scheduleReport();
  }

  private scheduleReport(): void {
    this.reportTimer = this.o.timers.set(() => void this.sendReport().then((go) => go && !this.closed && this.scheduleReport()), this.o.report!.intervalMs ?? 60000);
  }

  /** Posts the stats since the last report; false when the server refused reports for good. */
  private async sendReport(): Promise<boolean> {
    const now = this.stats();
    const t = this.transport ?? Object.values(now).find((x) => x.transport)?.transport;
    const ns: Record<string, Omit<ChannelStats, 'transport' | 'p50' | 'p99'>> = {};
    for (const [c, x] of Object.entries(now)) {
      const p = this.sent.get(c);
      const n = c.slice(0, c.indexOf(':'));
      const d = (ns[n] ??= { received: 0, duplicates: 0, gaps: 0, resets: 0, reconnects: 0, switches: 0, latency: LATENCY_BUCKETS.map(() => 0) });
      for (const k of COUNTS) d[k] += x[k] - (p?.[k] ?? 0);
      x.latency.forEach((v, i) => (d.latency[i] += v - (p?.latency[i] ?? 0)));
    }
    // Only namespaces with something new are named.
    for (const n in ns) if (!COUNTS.some((k) => ns[n][k])) delete ns[n];
    if (!Object.keys(ns).length || !t) return true;
    const r = this.o.report!;
    try {
      let url = r.url;
      if (!r.anonymous) url += '?ticket=' + encodeURIComponent((await this.o.ticket({ transport: 'sse', channels: [...this.subs.keys()] })).ticket);
      const res = await this.o.fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ transport: t, namespaces: ns }), keepalive: true });
      if (res.status < 300) this.sent = new Map(Object.entries(now));
      return ![400, 401, 403, 404].includes(res.status);
    } catch {
      return true;
    }
  }

  /** Listens to `state` changes or `error`s; returns the function that stops listening. */
  on(type: 'state', f: (s: State) => void): () => void;
  on(type: 'error', f: (e: RealtimeClientError) => void): () => void;
  on(type: 'state' | 'error', f: (v: never) => void): () => void {
    this.listeners[type].add(f);
    return () => this.listeners[type].delete(f);
  }

  /** Receives the events of `channel` (one handler set per channel; a second call replaces it). Returns its unsubscription. */
  subscribe(channel: string, h: SubscribeOptions<M>): () => void {
    const old = this.subs.get(channel);
    const s: Sub = { ...old, h: h as SubscribeOptions<EventMap> };
    // An id the app has: the position to resume from, but not known to be the channel's event before the next.
    if (h.since) Object.assign(s, { cursor: h.since, shared: false, last: undefined });
    this.subs.set(channel, s);
    // A channel the connection does not carry, or a replay asked for: reconnect with it, from its cursor.
    if (this.conn && (h.since || (!old && !this.conn.channels.includes(channel)))) this.conn.stop(true);
    if (!old) void this.run();
    return () => this.unsubscribe(channel);
  }

  unsubscribe(channel: string): void {
    const s = this.subs.get(channel);
    if (!s) return;
    this.unwait(s);
    this.subs.delete(channel);
    // Its presence follows the subscription: a new snapshot when it is subscribed again.
    this.pres.get(channel)?.r(true);
    if (this.conn?.kind === 'ws') {
      // The server stops sending it: a later subscribe must reconnect with it, not take it for carried.
      this.conn.channels = this.conn.channels.filter((c) => c !== channel);
      this.request({ action: 'unsubscribe', channel }).catch(() => undefined);
    }
    if (!this.subs.size) this.conn?.stop(true);
  }

  /**
   * Who is on `channel` (its namespace has `presence` on: `members` or `count`): the members and their changes, by the
   * snapshot the server sends (SSE at stream start, a long poll asking `presence=1`, a `presence` frame on WebSockets)
   * and the channel's `presence.*` events above its position. Subscribes the channel when it is not (its events then go
   * nowhere else). It follows the channel's subscription: an `unsubscribe` stops it until the channel is subscribed
   * again. One per channel: a second call returns the same object.
   */
  presence(channel: string): Presence {
    let p = this.pres.get(channel);
    if (!p) {
      this.pres.set(
        channel,
        (p = new Tracker(
          channel,
          () => {
            this.pres.delete(channel);
            if (this.subs.get(channel)?.h === NOOP) this.unsubscribe(channel);
          },
          () => this.ask(channel),
        )),
      );
      if (this.subs.has(channel)) this.ask(channel, true);
      else this.subscribe(channel, NOOP as SubscribeOptions<M>);
    }
    return p;
  }

  /**
   * A tracker needs `channel`'s snapshot. A WebSocket asks for it (`presence` action); an SSE stream sends one once live,
   * so an open one reconnects; a long poll asks at its next poll (`presence=1`), or at once by reconnecting when the
   * tracker is new (`fresh`: the poll waiting now did not ask).
   */
  private ask(channel: string, fresh?: boolean): void {
    const k = this.conn?.channels.includes(channel) && this.transport;
    if (k === 'ws') this.request({ action: 'presence', channel }).catch((e: RealtimeClientError) => !['disconnected', 'closed', 'not_websocket'].includes(e.code) && this.emit('error', e));
    else if (k && (fresh || k === 'sse')) this.conn!.stop(true);
  }

  /** A snapshot from any transport, for its channel's tracker. */
  private snap(j: Snapshot): void {
    this.pres.get(j.channel)?.s(j);
  }

  /** Publishes over the WebSocket; resolves with the server's `published` answer, rejects with its error code. Resent after a reconnect under the same idempotency key. */
  publish<K extends keyof M & string>(channel: string, type: K, data: M[K], opts: { idempotencyKey?: string } = {}): Promise<{ id: string; channel: string }> {
    const idempotencyKey = opts.idempotencyKey ?? (this.o.random() * 2 ** 52).toString(36) + this.o.timers.now().toString(36);
    if (this.closed) return Promise.reject(new RealtimeClientError('closed', 'The client is closed.'));
    if (!this.o.transports.includes('ws') || (this.state === 'open' && this.transport !== 'ws')) return Promise.reject(new RealtimeClientError('not_websocket', 'Publishing needs the WebSocket transport.'));
    return this.request({ action: 'publish', channel, type, data, idempotencyKey }, true) as Promise<{ id: string; channel: string }>;
  }

  /**
   * One page of `channel`'s retained events (`GET /history` on the tasks, with a ticket for that channel): oldest first
   * after `since`, or newest first with `reverse` (the next page: `before: page.next`). `reset` says the history no
   * longer reaches back to `since`. On `onReset`, rebuild from `history(channel, { reverse: true, limit })` and merge by
   * id with what arrives live (README, "Rebuilding a channel on reset").
   */
  async history(channel: string, opts: HistoryOptions = {}): Promise<HistoryPage<EventOf<M>>> {
    const tk = await this.o.ticket({ transport: 'sse', channels: [channel] });
    const url = this.o.historyUrl ?? (tk.sseUrl?.split('?')[0] ?? this.o.sseUrl)?.replace(/\/events$/, '/history');
    if (!url) throw new RealtimeClientError('bad_request', 'Set historyUrl (or sseUrl) to read history.');
    const p: Record<string, string | undefined> = { channel, since: opts.since, before: opts.before, limit: opts.limit?.toString(), reverse: opts.reverse ? 'true' : undefined, ticket: tk.ticket };
    const qs = Object.entries(p).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${encodeURIComponent(v)}`]));
    const r = await this.o.fetch(`${url}?${qs.join('&')}`, { cache: 'no-store' });
    if (r.status !== 200) throw await httpError(r);
    return r.json() as Promise<HistoryPage<EventOf<M>>>;
  }

  /** Delivery counts of every channel subscribed since the client was created (copies). */
  stats(): Record<string, ChannelStats> {
    const r: Record<string, ChannelStats> = {};
    for (const [c, x] of this.st) r[c] = { ...x, latency: [...x.latency], p50: quantile(x.latency, 0.5), p99: quantile(x.latency, 0.99) };
    return r;
  }

  private stat(channel: string): ChannelStats {
    let x = this.st.get(channel);
    if (!x) this.st.set(channel, (x = { received: 0, duplicates: 0, gaps: 0, resets: 0, reconnects: 0, switches: 0, latency: LATENCY_BUCKETS.map(() => 0) }));
    return x;
  }

  /** Ends the connection for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.o.timers.clear(this.reportTimer);
    this.o.events?.removeEventListener('visibilitychange', this.onWake);
    this.o.events?.removeEventListener('online', this.onOnline);
    this.conn?.stop();
    this.wakeup?.(true);
    this.failAll(new RealtimeClientError('closed', 'The client is closed.'), true);
    this.setState('closed');
  }

  private emit(type: string, v: unknown): void {
    for (const f of this.listeners[type]) (f as (v: unknown) => void)(v);
  }

  private setState(s: State): void {
    this.state = s;
    if (s === this.told) return;
    this.told = s;
    this.emit('state', s);
  }

  /** Deadlines are kept against the wall clock: a throttled timer of a background tab or a sleeping laptop is caught up here. */
  private check(online: boolean): void {
    this.conn?.check();
    this.wakeup?.(online);
  }

  /** Rejects the requests waiting (all, or those that do not survive a reconnect); an answer in flight is moved back to the queue first. */
  private failAll(e: RealtimeClientError, all: boolean): void {
    if (this.inflight) this.queue.unshift(this.inflight);
    this.inflight = undefined;
    const q = this.queue.splice(0);
    for (const p of q) {
      if (all || !p.keep) p.reject(e);
      else this.queue.push(p);
    }
  }

  private request(frame: Record<string, unknown>, keep?: boolean): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ frame, resolve, reject, keep });
      this.pump();
    });
  }

  /** The server answers frames without naming the request: one request frame in flight at a time. */
  private pump(): void {
    if (this.inflight || !this.conn?.send || this.state !== 'open') return;
    const p = (this.inflight = this.queue.shift());
    if (p) this.conn.send(p.frame);
  }

  private answer(err: RealtimeClientError | undefined, v?: unknown): void {
    const p = this.inflight;
    this.inflight = undefined;
    if (p && err) p.reject(err);
    else if (p) p.resolve(v);
    else if (err) this.emit('error', err);
    this.pump();
  }

  /**
   * An event of a subscribed channel: held while its WebSocket subscribe is answered; dropped at or below the channel's
   * position (a duplicate); on WebSocket, unless `now` (a replay's), kept waiting while an event before it is missing
   * (its `prev` above the position: posts that crossed) until that one comes or `gapWaitMs` ends (reconnect, resume).
   */
  private deliver(e: Envelope, now?: boolean): void {
    const s = this.subs.get(e.channel);
    if (!s) return;
    if (s.held) return void s.held.push(e);
    // (A second copy of a waiting event waits too: delivered after the first, it counts as a duplicate then.)
    if (s.cursor !== undefined && cmp(e.id, s.cursor) <= 0) return void this.stat(e.channel).duplicates++;
    if (s.wait || (!now && this.transport === 'ws' && e.prev !== undefined && s.cursor !== undefined && cmp(e.prev, s.cursor) > 0)) {
      if (!s.wait) {
        s.wait = [];
        s.wt = this.o.timers.set(() => this.conn?.stop(true), this.o.gapWaitMs);
      }
      s.wait.push(e);
      return this.drain(s);
    }
    const x = this.stat(e.channel);
    x.received++;
    const ms = this.o.timers.now() - Number(e.ts);
    let i = 0;
    while (i < LATENCY_BUCKETS.length - 1 && ms > LATENCY_BUCKETS[i]) i++;
    // A `ts` that is not a number of milliseconds counts nowhere.
    if (ms === ms) x.latency[i]++;
    if (s.last !== undefined && e.prev !== undefined && e.prev !== s.last) x.gaps++;
    s.cursor = s.last = e.id;
    s.shared = false;
    this.pres.get(e.channel)?.e(e);
    s.h.onEvent(e);
  }

  /** Delivers the waiting events, in id order, for as long as each follows the channel's position. */
  private drain(s: Sub): void {
    const w = s.wait?.sort((a, b) => cmp(a.id, b.id));
    if (!w) return;
    s.wait = undefined;
    while (w.length && (w[0].prev === undefined || s.cursor === undefined || cmp(w[0].prev, s.cursor) <= 0)) this.deliver(w.shift()!, true);
    if (w.length) s.wait = w;
    else this.unwait(s);
  }

  /** Stops waiting (the events waiting are dropped: a new connection replays them). */
  private unwait(s: Sub): void {
    this.o.timers.clear(s.wt);
    s.wait = s.wt = undefined;
  }

  /**
   * The server's cursor for `channels` (sorted): a `p1.` cursor gives each channel's position; a plain decimal (a
   * server on the deployment-wide sequence) stands for every channel, unless `own` (a WebSocket `subscribed`: that
   * channel's position). Anything else is opaque and changes nothing.
   */
  private caughtUp(cursor: unknown, channels: string[], own?: boolean): void {
    const p = decodeCursor(cursor, channels.length);
    const seq = !p && /^\d+$/.test(cursor as string);
    if (!p && !seq) return;
    if (!own) this.legacy = seq;
    channels.forEach((c, i) => {
      const s = this.subs.get(c);
      const id = p ? String(p[i]) : (cursor as string);
      if (s && ((s.shared && p) || maxId(s.cursor, id) !== s.cursor)) {
        s.cursor = id;
        s.shared = seq && !own;
      }
    });
  }

  /**
   * History could not cover the channel's cursor: no gap is counted across it. A `p1.` cursor with it says where the
   * channel continues (maybe below what was held); without one the position stays until the server gives another.
   */
  private reset(channel: string, cursor?: unknown, channels?: string[]): void {
    const s = this.subs.get(channel);
    if (!s) return;
    this.stat(channel).resets++;
    s.last = undefined;
    const p = this.pres.get(channel);
    if (p) {
      p.r(true);
      this.ask(channel);
    }
    if (channels && decodeCursor(cursor, channels.length)) {
      s.cursor = undefined;
      this.caughtUp(cursor, channels);
    }
    s.h.onReset?.(channel);
  }

  /** Keeps the `set-cookie`s of an answer where they are readable (Node's fetch); `Max-Age=0` removes. */
  private keepCookies(r: Response): void {
    for (const c of (r.headers as Headers & { getSetCookie?(): string[] }).getSetCookie?.() ?? []) {
      const m = /^([^=;\s]+)=([^;]*)/.exec(c);
      if (!m) continue;
      if (/;\s*max-age=0(;|$)/i.test(c)) this.jar.delete(m[1]);
      else this.jar.set(m[1], m[2]);
    }
  }

  /**
   * The cursor a new SSE or poll connection of `channels` (sorted) resumes from: the connection cursor of their
   * positions. When one has none (subscribed since) or only the sequence's, or the server reads only the sequence: a
   * plain decimal, the oldest position (read on every channel; what is above a channel's own is dropped as a duplicate).
   */
  private cursor(channels: string[]): string | undefined {
    const subs = channels.map((c) => this.subs.get(c));
    let c: string | undefined;
    for (const s of subs) if (s?.cursor !== undefined && (c === undefined || cmp(s.cursor, c) < 0)) c = s.cursor;
    return c !== undefined && !this.legacy && subs.every((s) => s?.cursor !== undefined && !s.shared) ? encodeCursor(subs.map((s) => Number(s!.cursor))) : c;
  }

  private order(): Transport[] {
    const list = this.o.transports;
    let t: Transport | undefined = this.mem as Transport | undefined;
    try {
      const r = JSON.parse(this.o.storage?.getItem(KEY) ?? 'null') as { t: Transport; at: number } | null;
      if (r && this.o.timers.now() - r.at < this.o.rememberMs) t = r.t;
    } catch {
      // unreadable: ignore
    }
    return t && list.includes(t) ? [t, ...list.filter((x) => x !== t)] : list;
  }

  private remember(t: Transport): void {
    this.mem = t;
    try {
      this.o.storage?.setItem(KEY, JSON.stringify({ t, at: this.o.timers.now() }));
    } catch {
      // full or blocked: memory only
    }
  }

  /** Waits `ms` (against the wall clock); a wake-up resolves early when due, or at once when `now`. */
  private sleep(ms: number): Promise<void> {
    const T = this.o.timers;
    const due = T.now() + ms;
    return new Promise((resolve) => {
      const h = T.set(() => done(), ms);
      const done = () => {
        T.clear(h);
        this.wakeup = undefined;
        resolve();
      };
      this.wakeup = (now) => (now || T.now() >= due) && done();
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    // Subscribes of the same tick join this start: one ticket naming them all.
    await Promise.resolve();
    // Listeners hear the start (`connecting`) whatever the transport, then `open`.
    if (!this.closed) this.setState('connecting');
    let n = 0;
    while (!this.closed && this.subs.size) {
      let r: Ended | undefined;
      for (const t of this.order()) {
        r = await this.attempt(t);
        if (r.error && !r.fatal) this.emit('error', r.error);
        if (r.opened || r.planned || r.ticketFailed || r.fatal || this.closed) break;
      }
      if (this.closed || !r) break;
      if (r.fatal) {
        this.emit('error', r.error);
        this.close();
        break;
      }
      if (r.planned) continue;
      this.setState(this.subs.size ? 'reconnecting' : 'connecting');
      if (r.opened && r.uptime >= this.o.stableMs) n = 0;
      // A dead path this client noticed (no heartbeat, no pong) is its own: back within 1 s. Anything else may be the whole task's.
      const delay = r.opened && n === 0 ? this.o.random() * (r.error?.code === 'dead' ? 1000 : this.o.reconnectSpreadMs) : backoff(n, this.o.random);
      n++;
      await this.sleep(Math.max(delay, r.floor));
    }
    this.running = false;
    if (!this.closed) this.setState('connecting');
  }

  /** One connection attempt on `kind`: resolves when the connection ends (or never opened). */
  private async attempt(kind: Transport): Promise<Ended> {
    const T = this.o.timers;
    // The connection's channel order: sorted, as the server orders a connection cursor.
    const channels = [...this.subs.keys()].sort();
    let stopped = false;
    let planned = false;
    let opened = 0;
    let end!: (r: Omit<Ended, 'opened' | 'uptime'>) => void;
    const ended = new Promise<Ended>((res) => {
      end = (r) => {
        if (stopped) return;
        stopped = true;
        cleanup();
        res({ ...r, opened: opened > 0, uptime: opened ? T.now() - opened : 0, planned: planned || r.planned });
      };
    });
    const timers = new Set<unknown>();
    const after = (ms: number, f: () => void) => {
      const h = T.set(() => {
        timers.delete(h);
        f();
      }, ms);
      timers.add(h);
      return h;
    };
    const cleanups: (() => void)[] = [];
    const cleanup = () => {
      for (const h of timers) T.clear(h);
      for (const f of cleanups) f();
      if (this.conn === conn) {
        this.conn = undefined;
        this.transport = undefined;
        // Events held or waiting are replayed to the next connection (it resumes from the last one delivered).
        for (const s of this.subs.values()) {
          s.held = undefined;
          this.unwait(s);
        }
        this.failAll(new RealtimeClientError('disconnected', 'The connection ended before the answer.'), false);
      }
    };
    const conn: Conn = {
      kind,
      channels,
      stop: (p) => {
        planned = !!p;
        end({ floor: 0 });
      },
      check: () => undefined,
    };
    this.conn = conn;
    const open = () => {
      opened = T.now();
      this.transport = kind;
      for (const c of channels) {
        const x = this.stat(c);
        if (x.transport) x.reconnects++;
        if (x.transport && x.transport !== kind) x.switches++;
        x.transport = kind;
      }
      this.remember(kind);
      this.setState('open');
      // Publishes waited for a connection; only a WebSocket can carry them.
      if (kind !== 'ws') this.failAll(new RealtimeClientError('not_websocket', 'Publishing needs the WebSocket transport.'), true);
      this.pump();
    };
    const ticket = async (): Promise<TicketAnswer | undefined> => {
      try {
        return await this.o.ticket({ transport: kind === 'ws' ? 'ws' : 'sse', channels });
      } catch (e) {
        const err = e instanceof RealtimeClientError ? e : new RealtimeClientError('network', String(e));
        end({ floor: err.retryAfterMs ?? 0, error: err, ticketFailed: true, fatal: err.status === 401 || err.status === 403 });
        return undefined;
      }
    };
    const q = (extra: Record<string, string | undefined>) => {
      let s = '';
      for (const [k, v] of Object.entries(extra)) if (v !== undefined) s += `&${k}=${encodeURIComponent(v)}`;
      return s;
    };
    const base = (tk: TicketAnswer, url: string | undefined) => `${url}?channels=${encodeURIComponent(channels.join(','))}&ticket=${encodeURIComponent(tk.ticket)}`;
    // The cursor this connection's last request sent.
    let sent: string | undefined;
    const httpFail = async (r: Response) => {
      const err = await httpError(r);
      // A server before positions per channel refuses a `p1.` cursor: from now on it is sent the plain decimal, at once.
      if (err.code === 'invalid_cursor' && sent?.startsWith('p1.')) return end({ floor: 0, planned: (this.legacy = true) });
      end({ floor: err.retryAfterMs ?? 0, error: err, fatal: r.status === 400 || r.status === 403 });
    };

    const tk = await ticket();
    if (!tk || stopped) return ended;
    const openTimer = after(this.o.openTimeoutMs, () => !opened && end({ floor: 0, error: new RealtimeClientError('open_timeout', `${kind} did not open in time`) }));

    if (kind === 'ws') {
      const WS = this.o.WebSocket ?? (globalThis as unknown as { WebSocket: ClientOptions['WebSocket'] }).WebSocket;
      const ws = new WS!(tk.wsUrl ?? `${this.o.wsUrl}?ticket=${encodeURIComponent(tk.ticket)}`);
      // Liveness: anything received proves the path (events, answers, the /live heartbeat frames); a
      // `ping` goes out only after `pingMs` of silence (or IDLE_SEND_MS without sending, for API
      // Gateway's idle timeout), so connections that hear from the server cost no messages. When the
      // unanswered ping was sent: pingAt (0: none). Deadlines are compared with the clock, not trusted to timers.
      let lastSent = T.now();
      let heard = T.now();
      let pingAt = 0;
      let watch: unknown;
      const watchdog = () => {
        if (stopped || ws.readyState !== 1) return;
        const now = T.now();
        if (pingAt && now - pingAt >= this.o.pongTimeoutMs) return end({ floor: 0, error: new RealtimeClientError('dead', 'no pong') });
        if (!pingAt && now >= Math.min(heard + this.o.pingMs, lastSent + IDLE_SEND_MS)) {
          conn.send!({ action: 'ping' });
          pingAt = now;
        }
        if (watch !== undefined) {
          T.clear(watch);
          timers.delete(watch);
        }
        watch = after(Math.max(0, (pingAt ? pingAt + this.o.pongTimeoutMs : Math.min(heard + this.o.pingMs, lastSent + IDLE_SEND_MS)) - now), watchdog);
      };
      conn.send = (f) => {
        lastSent = T.now();
        ws.send(JSON.stringify(f));
      };
      // After a wake-up: past the age cap, reconnect; else the deadlines against the wall clock (dead, or ping now).
      conn.check = () => {
        if (opened && T.now() - opened >= this.o.maxConnectionMs) conn.stop(true);
        else watchdog();
      };
      cleanups.push(() => {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        ws.onerror = () => undefined;
        if (ws.readyState < 2) ws.close(1000);
      });
      ws.onopen = () => {
        T.clear(openTimer);
        // The ticket's channels are subscribed at $connect; subscribe again with `since` to replay
        // what was missed. Events are held until `subscribed` and released in id order.
        for (const c of channels) {
          const s = this.subs.get(c);
          if (!s) continue;
          s.held = [];
          // A subscribe the server could not serve now (its replay failed) would leave a gap behind the
          // live events: reconnect and resume from the unchanged cursor. A refusal (not granted, bad
          // channel) stops that channel's holding and is reported.
          const reject = (e: RealtimeClientError) => {
            if (RETRYABLE.includes(e.code)) return end({ floor: 0, error: e });
            s.held = undefined;
            if (e.code !== 'disconnected' && e.code !== 'closed') this.emit('error', e);
          };
          this.queue.unshift({ frame: { action: 'subscribe', channel: c, since: s.cursor }, resolve: () => undefined, reject });
        }
        heard = T.now();
        open();
        for (const c of channels) if (this.pres.get(c)?.need) this.ask(c);
        watchdog();
        after(this.o.maxConnectionMs, () => conn.stop(true));
      };
      ws.onmessage = (ev: { data: unknown }) => {
        heard = T.now();
        // The ping is answered: the next deadline is the silence one again, not the pong's.
        if (pingAt) {
          pingAt = 0;
          watchdog();
        }
        let m: Record<string, unknown> & { type?: string; channel: string; error?: { code: string; message: string } };
        try {
          m = JSON.parse(String(ev.data));
        } catch {
          return;
        }
        const t = m.type as string;
        if (t === 'subscribed') {
          const s = this.subs.get(m.channel);
          if (s?.held) {
            const held = s.held.sort((a, b) => cmp(a.id, b.id));
            s.held = undefined;
            // The replay (up to the subscription's floor) is the server's word: what it lacks is lost, not late.
            for (const e of held) this.deliver(e, cmp(e.id, String(m.cursor)) <= 0);
            this.caughtUp(m.cursor, [m.channel], true);
            this.drain(s);
          }
          this.answer(undefined);
        } else if (t === 'reset') this.reset(m.channel);
        else if (t === 'presence') {
          this.snap(m as unknown as Snapshot);
          this.answer(undefined);
        }
        else if (t === 'error' || (t === undefined && m.message)) this.answer(new RealtimeClientError(m.error?.code ?? 'internal', m.error?.message ?? String(m.message)));
        else if (t === 'published' || t === 'unsubscribed') this.answer(undefined, t === 'published' ? { id: m.id, channel: m.channel } : undefined);
        else if (!SIGNALS.has(t) && m.id !== undefined) this.deliver(m as unknown as Envelope);
      };
      ws.onclose = ws.onerror = () => end({ floor: 0 });
      return ended;
    }

    const f = this.o.fetch;
    if (kind === 'sse') {
      const ac = new AbortController();
      cleanups.push(() => ac.abort());
      let last = T.now();
      const watch = () => after(Math.max(0, last + this.o.deadAfterMs - T.now()), () => conn.check());
      let floor = 0;
      conn.check = () => (T.now() - last >= this.o.deadAfterMs ? end({ floor, error: new RealtimeClientError('dead', 'no heartbeat') }) : void watch());
      // The stream is read in the background: `ended` settles when the connection ends, whether or not the body ever errors.
      void (async () => {
        try {
          const r = await f(base(tk, tk.sseUrl?.split('?')[0] ?? this.o.sseUrl) + q({ lastEventId: (sent = this.cursor(channels)) }), { headers: { accept: 'text/event-stream' }, cache: 'no-store', signal: ac.signal });
          if (r.status !== 200) {
            await httpFail(r);
            return;
          }
          const reader = r.body!.getReader();
          cleanups.push(() => void reader.cancel().catch(() => undefined));
          const dec = new TextDecoder();
          let buf = '';
          let data = '';
          let type = '';
          // The block's `id:` line: the connection cursor (a `ready` or `reset` without one in its data).
          let id = '';
          watch();
          for (;;) {
            const { done, value } = await reader.read();
            if (done || stopped) break;
            last = T.now();
            buf += dec.decode(value, { stream: true });
            let i: number;
            while ((i = buf.search(/\r\n|[\r\n]/)) >= 0) {
              const line = buf.slice(0, i);
              buf = buf.slice(buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1);
              if (line === '') {
                if (data) {
                  const d = JSON.parse(data.slice(1));
                  if (type === 'ready') {
                    T.clear(openTimer);
                    this.caughtUp(d.cursor ?? id, channels);
                    if (!opened) open();
                  } else if (type === 'reset') this.reset(d.channel, d.cursor ?? id, channels);
                  else if (type === 'presence') this.snap(d);
                  else this.deliver(d);
                }
                data = type = id = '';
              } else if (line[0] !== ':') {
                const c = line.indexOf(':');
                const k = c < 0 ? line : line.slice(0, c);
                const v = c < 0 ? '' : line.slice(line[c + 1] === ' ' ? c + 2 : c + 1);
                if (k === 'data') data += '\n' + v;
                else if (k === 'event') type = v;
                else if (k === 'id') id = v;
                else if (k === 'retry') floor = Number(v) || 0;
              }
            }
          }
        } catch {
          // network error or abort: the connection ended
        }
        end({ floor });
      })();
      return ended;
    }

    // Long poll. The first poll of a connection asks the server not to wait (`wait=0`): it answers at
    // once with its position, so the connection is open (the server listens from there on) and the
    // next polls wait from that cursor. The open timeout covers the ticket only. One ticket per
    // connection: later polls present the spent ticket with the reconnect cookie the first answer set
    // (kept here in Node, where `set-cookie` is readable; by the browser, `credentials: 'include'`).
    // A poll whose cookie did not come back (cookies blocked) gets `ticket_invalid`: from then on one
    // ticket per poll, at once. Revocation or the session's end answer `unauthorized`: a new connection.
    let ac: AbortController | undefined;
    let started = 0;
    cleanups.push(() => ac?.abort());
    conn.check = () => {
      if (started && T.now() - started >= this.o.pollTimeoutMs) ac?.abort();
    };
    T.clear(openTimer);
    let t: TicketAnswer | undefined = tk;
    let spent = false;
    // The next poll of this connection sends the last answer's cursor as it came (opaque).
    let next: string | undefined;
    while (!stopped) {
      t ??= await ticket();
      if (!t || stopped) break;
      ac = new AbortController();
      started = T.now();
      const h = after(this.o.pollTimeoutMs, () => ac?.abort());
      try {
        const headers: Record<string, string> = {};
        if (this.jar.size) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
        const url = base(t, this.o.pollUrl ?? t.sseUrl?.split('?')[0].replace(/\/events$/, '/poll') ?? this.o.sseUrl?.replace(/\/events$/, '/poll')) + q({ cursor: (sent = next ?? this.cursor(channels)), wait: opened ? undefined : '0', presence: channels.some((c) => this.pres.get(c)?.need) ? '1' : undefined });
        const r = await f(url, { cache: 'no-store', credentials: 'include', headers, signal: ac.signal });
        this.keepCookies(r);
        if (r.status === 401 && spent) {
          const err = await httpError(r);
          if (err.code !== 'ticket_invalid') {
            end({ floor: 0, error: err });
            break;
          }
          this.perPoll = true;
          t = undefined;
          spent = false;
          continue;
        }
        if (r.status !== 200) {
          await httpFail(r);
          break;
        }
        const b = (await r.json()) as { events: Envelope[]; cursor: string; resets: string[]; presence?: Snapshot[] };
        if (stopped) break;
        spent = true;
        if (this.perPoll) t = undefined;
        for (const c of b.resets) this.reset(c, b.cursor, channels);
        for (const e of b.events) this.deliver(e);
        // After the answer's resets and events: each snapshot's position is at or above them.
        for (const j of b.presence ?? []) this.snap(j);
        this.caughtUp(b.cursor, channels);
        next = b.cursor;
        if (!opened) open();
      } catch {
        end({ floor: 0, error: new RealtimeClientError('network', 'poll failed') });
      } finally {
        T.clear(h);
        timers.delete(h);
      }
    }
    return ended;
  }
}

/** Creates a client; nothing connects until the first `subscribe`. */
export function createClient<M extends EventMap = EventMap>(options: ClientOptions): Client<M> {
  return new Client<M>(options);
}

export * from './channels';
