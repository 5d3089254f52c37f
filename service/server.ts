import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type Redis from 'ioredis';
import pino, { type Logger } from 'pino';
import { parseChannelList, type ParsedChannel } from '../core/channels';
import { RealtimeError, errorBody, toRealtimeError } from '../core/errors';
import { backlog, envelopeSeq, envelopeType, parseCursor, replay } from '../core/events';
import { Keys } from '../core/keys';
import { createRedis, waitReady } from '../core/redis';
import { parseRevocation } from '../core/revocation';
import { authorize } from './auth';
import type { ServiceConfig } from './config';
import { Hub, type LiveEvent, type Listener } from './hub';
import { listen, shutdown } from './net';
import { watchTaskStop } from './ecs';
import { clientIp, FixedWindowLimiter } from './limits';
import { ServiceMetrics } from './metrics';
import { SseStream, sse, type FlushScheduler, type Sink } from './stream';

/** One heartbeat chunk shared by every stream. */
const HEARTBEAT = Buffer.from(sse.comment('hb'));

export interface SseServiceDeps {
  /** Command connection (tickets, history). Defaults to a new fail-fast client for config.core.redisUrl. */
  readonly redis?: Redis;
  /** Subscriber connection. Defaults to a new client for config.core.redisUrl. */
  readonly subscriber?: Redis;
  readonly logger?: Logger;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
}

/**
 * The SSE service: `GET /events` (streams), `GET /poll` (long-poll fallback), `GET /healthz`.
 * One Redis subscriber per process feeds every stream; history in Redis makes any instance able
 * to serve any reconnect.
 */
export class SseService implements FlushScheduler {
  readonly server: Server;
  readonly hub: Hub;
  readonly redis: Redis;
  readonly subscriber: Redis;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly streams = new Set<SseStream>();
  private readonly polls = new Set<() => void>();
  /** Streams and polls per user, each with its revocation epoch and how to end it (POST /revoke). */
  private readonly byUser = new Map<string, Map<() => void, number>>();
  /** Revocations of the last minute: a stream authorised just before one, but registered after it arrived, still ends. */
  private readonly recentRevocations = new Map<string, { epoch: number; at: number }>();
  private readonly keys: Keys;
  private heartbeat?: NodeJS.Timeout;
  private readonly ownsRedis: boolean;
  private dirty: SseStream[] = [];
  private flushScheduled = false;
  private draining = false;
  private drained?: Promise<void>;
  private stopWatch?: () => void;
  /** Long polls admitted and not answered yet (they count toward MAX_CONNECTIONS). */
  private openPolls = 0;
  private readonly anonLimiter: FixedWindowLimiter;
  /** Retry-After of refusals that carry one (rate limits), in milliseconds. */
  private readonly retryAfterMs = new WeakMap<RealtimeError, number>();
  readonly metrics: ServiceMetrics;

  constructor(
    readonly config: ServiceConfig,
    deps: SseServiceDeps = {},
  ) {
    const url = config.core.redisUrl;
    const password = config.core.redisPassword;
    this.ownsRedis = !deps.redis;
    this.redis = deps.redis ?? createRedis({ url, password, name: 'sse-commands' });
    this.subscriber = deps.subscriber ?? createRedis({ url, password, name: 'sse-subscriber', failFast: false });
    this.log = deps.logger ?? pino({ level: config.logLevel });
    this.now = deps.now ?? Date.now;
    this.keys = new Keys(config.core.keyPrefix);
    this.hub = new Hub(this.subscriber, this.keys, config.maxChannelsPerTask);
    this.anonLimiter = new FixedWindowLimiter(config.anonRequestsPerMinute, 60_000, this.now);
    // Revocations reach every instance on the control channel (ioredis resubscribes it after a reconnect).
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.revokeControl) return;
      const r = parseRevocation(message);
      if (!r) return;
      const at = Date.now();
      for (const [sub, v] of this.recentRevocations) if (at - v.at > 60_000) this.recentRevocations.delete(sub);
      this.recentRevocations.set(r.sub, { epoch: r.epoch, at });
      this.closeUser(r.sub, r.epoch);
    });
    this.hub.onResubscribed = () => this.catchUpAfterReconnect();
    this.metrics = new ServiceMetrics(config.metricsNamespace, () => {
      const deliveries = this.hub.deliveries;
      this.hub.deliveries = 0;
      return { open: this.streams.size, deliveries };
    });
    this.server = createServer((req, res) => this.route(req, res));
    this.server.keepAliveTimeout = 65_000;
    this.server.headersTimeout = 66_000;
    this.server.requestTimeout = 0;
  }

  /** Number of open SSE streams. */
  get connections(): number {
    return this.streams.size;
  }

  /**
   * Starts listening; resolves with the bound port. Redis is not required: the service waits up to
   * `redisWaitMs` for it (so the first requests find it ready), then listens anyway and answers
   * streams with `retry:` (API clients: 503) until it is reachable. `/healthz` answers 200 meanwhile.
   */
  async listen(port = this.config.port, host = this.config.host, redisWaitMs = 5000): Promise<number> {
    await Promise.all([waitReady(this.redis, redisWaitMs), waitReady(this.subscriber, redisWaitMs)]).catch(() => {
      this.log.warn({ redisWaitMs }, 'redis not reachable yet; listening anyway (streams are told to retry until it is)');
    });
    // Revocations reach every instance on the control channel; ioredis resubscribes it after a reconnect
    // and queues it while Redis is away (the service listens without Redis).
    const control = this.subscriber.subscribe(this.keys.revokeControl).catch(() => undefined);
    if (this.subscriber.status === 'ready') await control;
    const bound = await listen(this.server, port, host);
    this.heartbeat = setInterval(() => this.beat(), this.config.heartbeatMs);
    this.heartbeat.unref();
    this.metrics.start(this.config.metricsIntervalMs);
    if (this.config.ecsMetadataUri) {
      this.stopWatch = watchTaskStop(this.config.ecsMetadataUri, this.config.stopPollMs, this.log, () => {
        this.log.info('ecs task metadata: DesiredStatus STOPPED; draining before SIGTERM');
        void this.drain();
      });
    }
    this.log.info({ port: bound }, 'sse service listening');
    return bound;
  }

  /** Queues `stream` for the next flush window (one socket write per stream per window). */
  mark(stream: SseStream): void {
    this.dirty.push(stream);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    if (this.config.writeDelayMs > 0) setTimeout(this.flushAll, this.config.writeDelayMs);
    else setImmediate(this.flushAll);
  }

  private readonly flushAll = (): void => {
    const dirty = this.dirty;
    this.dirty = [];
    this.flushScheduled = false;
    for (const s of dirty) s.flush();
  };

  /** True once a drain has started: new streams and polls are turned away, `/healthz` says `draining`. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** True when both Redis connections (commands and the subscriber) are ready. */
  get redisUp(): boolean {
    return this.hub.ready && this.redis.status === 'ready';
  }

  /**
   * Graceful stop. Started by the ECS task metadata (`DesiredStatus: STOPPED`, while the ALB still
   * holds the streams during its deregistration delay) or by SIGTERM, whichever comes first; a
   * second call returns the same promise. New streams and polls are turned away (an EventSource
   * with 200 + `retry:`), waiting polls answer at once, and every stream is told to reconnect
   * (jittered `retry:`) and closed, spread over the first half of `deadlineMs` so the other tasks are
   * not hit by one wave. Clients resume elsewhere from their `Last-Event-ID`. Resolves when all
   * streams are gone or `deadlineMs` passed; the server keeps answering `/healthz` until `close()`.
   */
  drain(deadlineMs = this.config.drainTimeoutMs): Promise<void> {
    this.drained ??= this.runDrain(deadlineMs);
    return this.drained;
  }

  private async runDrain(deadlineMs: number): Promise<void> {
    this.draining = true;
    this.stopWatch?.();
    this.log.info({ streams: this.streams.size, deadlineMs }, 'draining');
    for (const p of this.polls) p();
    const streams = [...this.streams];
    const spread = deadlineMs / 2;
    const start = Date.now();
    for (let i = 0; i < streams.length; i++) {
      const due = start + (streams.length > 1 ? (spread * i) / (streams.length - 1) : 0);
      const wait = due - Date.now();
      if (wait > 5) await new Promise((r) => setTimeout(r, wait));
      streams[i].close(sse.retry(this.jitter()) + sse.comment('draining; reconnect'));
    }
    const deadline = start + deadlineMs;
    while (this.streams.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.log.info({ left: this.streams.size }, 'drained');
  }

  /** Closes every stream and poll, the server and (when owned) the Redis connections. */
  async close(): Promise<void> {
    this.draining = true;
    this.stopWatch?.();
    clearInterval(this.heartbeat);
    this.metrics.stop();
    for (const s of this.streams) s.close(sse.retry(this.config.retryMs));
    for (const p of this.polls) p();
    await shutdown(this.server);
    if (this.ownsRedis) {
      this.redis.disconnect();
      this.subscriber.disconnect();
    }
  }

  /**
   * Ends the streams and polls of `sub` whose session predates revocation `epoch`. Streams end without
   * a new `retry:` hint; their reconnect is refused (401), which ends a native EventSource for good.
   * Polls answer 401.
   */
  closeUser(sub: string, epoch: number): number {
    const open = this.byUser.get(sub);
    if (!open) return 0;
    let n = 0;
    for (const [end, e] of [...open]) {
      if (e < epoch) {
        end();
        n++;
      }
    }
    return n;
  }

  /** Registers how to end a stream or poll of `sub` on revocation; returns its unregistration. */
  private trackUser(sub: string, epoch: number, end: () => void): () => void {
    let open = this.byUser.get(sub);
    if (!open) this.byUser.set(sub, (open = new Map()));
    open.set(end, epoch);
    const recent = this.recentRevocations.get(sub);
    if (recent && epoch < recent.epoch) queueMicrotask(end);
    return () => {
      open.delete(end);
      if (open.size === 0 && this.byUser.get(sub) === open) this.byUser.delete(sub);
    };
  }

  private beat(): void {
    const now = this.now();
    const hb = HEARTBEAT;
    for (const s of this.streams) {
      if (s.closeAt && now >= s.closeAt) {
        // Recycle before the reconnect cookie expires: the browser reconnects with it and gets a fresh one.
        s.close(sse.retry(this.jitter()));
        continue;
      }
      s.write(hb);
    }
  }

  private jitter(): number {
    return Math.round(this.config.retryMs * (0.5 + Math.random()));
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // What a refusal must still carry: the reconnect cookie of a ticket spent by this request.
    const ctx: RequestContext = {};
    const handle = async () => {
      if (req.method === 'OPTIONS') return this.preflight(req, res);
      if (url.pathname === '/healthz') return this.healthz(req, res, url);
      if (url.pathname !== '/events' && url.pathname !== '/poll') throw new RealtimeError('not_found', `No route ${url.pathname}; try /events, /poll or /healthz.`);
      if (req.method !== 'GET') throw new RealtimeError('method_not_allowed', `${url.pathname} accepts GET only.`);
      if (url.pathname === '/events') return this.events(req, res, url, ctx);
      return this.poll(req, res, url, ctx);
    };
    handle().catch((err) => this.fail(req, res, url, err, ctx));
  }

  private fail(req: IncomingMessage, res: ServerResponse, url: URL, err: unknown, ctx: RequestContext = {}): void {
    const e = toRealtimeError(err);
    if (e.status >= 500) this.log.warn({ path: url.pathname, code: e.code, err: e.code === 'internal' ? String(err) : undefined }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    const retryAfterMs = this.retryAfterMs.get(e) ?? (e.code === 'unavailable' ? 5000 : undefined);
    // The ticket may be spent already (it is redeemed before capacity is checked): a refusal for
    // capacity or an outage hands over the reconnect cookie, so the next attempt is still authorised.
    const cookie: Record<string, string[]> = e.code === 'unavailable' && ctx.setCookie ? { 'set-cookie': ctx.setCookie } : {};
    // A native EventSource gives up for good on any non-200 answer: when the store is briefly
    // unreachable, the task is full or the client is over its rate, tell it to come back later instead.
    if (retryAfterMs !== undefined && url.pathname === '/events' && (req.headers.accept ?? '').includes('text/event-stream')) {
      res.writeHead(200, { ...this.streamHeaders(req), ...cookie });
      const wait = e.code === 'rate_limited' ? retryAfterMs + this.jitter() : this.jitter() * 2;
      res.end(sse.retry(wait) + sse.comment(`${e.code}; reconnect later`));
      return;
    }
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json', 'cache-control': 'no-store', ...cookie };
    if (retryAfterMs !== undefined) headers['retry-after'] = String(Math.ceil(retryAfterMs / 1000));
    res.writeHead(e.status, { ...this.corsHeaders(req), ...headers });
    res.end(errorBody(e));
  }

  /**
   * `/healthz` is liveness: 200 while the process serves, whatever Redis does (an ALB health check
   * that failed on a shared dependency would replace every task at once during a Redis outage).
   * The body reports `redis` (`up`/`down`), `draining` and the open connections.
   * `/healthz?deep=1` is readiness: 503 while Redis is down or the task is draining.
   */
  private async healthz(_req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let up = this.redisUp;
    const deep = url.searchParams.has('deep') && url.searchParams.get('deep') !== '0';
    if (deep && up) up = await this.redis.ping().then(() => true, () => false);
    const body = { status: 'ok', redis: up ? 'up' : 'down', draining: this.draining, connections: this.streams.size, polls: this.openPolls };
    const ready = up && !this.draining;
    if (deep && !ready) {
      res.writeHead(503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      const msg = this.draining ? 'Draining: this task is stopping.' : 'Redis is unreachable.';
      res.end(JSON.stringify({ ...body, status: 'unavailable', error: { code: 'unavailable', message: msg } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  }

  private checkAvailable(): void {
    if (this.draining) throw new RealtimeError('unavailable', 'This task is stopping; retry.');
    if (!this.redisUp) throw new RealtimeError('unavailable', 'Redis is unreachable.');
  }

  private originAllowed(origin: string): boolean {
    const list = this.config.allowedOrigins;
    return list.includes('*') || list.includes(origin);
  }

  /** Browsers send Origin on cross-origin requests; only listed origins may read streams. */
  private checkOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin && !this.originAllowed(origin)) throw new RealtimeError('origin_not_allowed', `Origin ${origin} is not in ALLOWED_ORIGINS.`);
  }

  private corsHeaders(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    if (!origin || !this.originAllowed(origin)) return {};
    return { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' };
  }

  private preflight(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(204, {
      ...this.corsHeaders(req),
      'access-control-allow-methods': 'GET, OPTIONS',
      'access-control-allow-headers': 'Last-Event-ID, Cache-Control',
      'access-control-max-age': '600',
    });
    res.end();
  }

  private streamHeaders(req: IncomingMessage): Record<string, string> {
    return {
      ...this.corsHeaders(req),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    };
  }

  private parseRequest(req: IncomingMessage, url: URL, cursorParams: string[]) {
    const channels = parseChannelList(url.searchParams.get('channels') ?? '', this.config.core.namespaces, this.config.core.maxChannelsPerConnection);
    let raw: string | undefined;
    for (const p of cursorParams) {
      const v = p === 'last-event-id' ? req.headers['last-event-id'] : url.searchParams.get(p);
      if (typeof v === 'string' && v !== '') {
        raw = v;
        break;
      }
    }
    const cursor = raw === undefined ? undefined : parseCursor(raw);
    return { channels, cursor };
  }

  /**
   * The checks every stream and poll passes, in this order: the request parses; an anonymous one
   * (public channels only) is within its client's rate; the ticket is redeemed (spent on every
   * attempt, so a refused request never leaves a live ticket behind) or the cookie verified; the
   * origin is allowed; the task is not draining and Redis is up; the task has room (streams and
   * polls together under MAX_CONNECTIONS, subscriptions under MAX_CHANNELS_PER_TASK).
   */
  private async admit(req: IncomingMessage, url: URL, ctx: RequestContext, cursorParams: string[]) {
    const { channels, cursor } = this.parseRequest(req, url, cursorParams);
    if (channels.every((c) => c.policy.subscribe === 'public')) this.limitAnonymous(req);
    const now = this.now();
    const auth = await authorize(req, url.searchParams.get('ticket'), channels, { redis: this.redis, config: this.config, now });
    ctx.setCookie = auth.setCookie;
    this.checkOrigin(req);
    this.checkAvailable();
    const names = channels.map((c) => c.channel);
    if (this.streams.size + this.openPolls >= this.config.maxConnections) {
      this.metrics.rejectedConnections++;
      throw new RealtimeError('unavailable', `This task holds its maximum of ${this.config.maxConnections} streams and polls; retry shortly.`);
    }
    if (!this.hub.canAdd(names)) {
      this.metrics.rejectedConnections++;
      throw new RealtimeError('unavailable', `This task subscribes to its maximum of ${this.config.maxChannelsPerTask} channels; retry shortly.`);
    }
    return { channels, cursor, names, auth, now };
  }

  /** Requests that need no ticket or cookie: at most ANON_REQUESTS_PER_MINUTE per client IP. */
  private limitAnonymous(req: IncomingMessage): void {
    if (this.config.anonRequestsPerMinute === 0) return;
    const wait = this.anonLimiter.take(clientIp(req, this.config.trustProxyHops));
    if (wait === 0) return;
    const e = new RealtimeError('rate_limited', `At most ${this.config.anonRequestsPerMinute} requests per minute without a ticket; retry after the Retry-After seconds.`);
    this.retryAfterMs.set(e, wait);
    throw e;
  }

  private async events(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<void> {
    const { channels, cursor, names, auth, now } = await this.admit(req, url, ctx, ['last-event-id', 'lastEventId']);
    const headers: Record<string, string | string[]> = this.streamHeaders(req);
    if (auth.setCookie) headers['set-cookie'] = auth.setCookie;
    const socket = req.socket;
    socket.setNoDelay(true);
    let sink: Sink;
    if (this.config.streamFraming === 'close' && req.httpVersion === '1.1') {
      // A close-delimited body (RFC 9112 §6.3): no chunk header and trailer around every write, and
      // after the head, frames go straight to the socket. A stream's connection is never reused anyway.
      res.useChunkedEncodingByDefault = false;
      res.writeHead(200, { ...headers, connection: 'close' });
      res.flushHeaders();
      sink = { write: (c) => void socket.write(c), end: () => socket.end(), queuedBytes: () => socket.writableLength, onDrain: (cb) => (socket.writableNeedDrain ? void socket.once('drain', cb) : cb()) };
    } else {
      res.writeHead(200, headers);
      sink = { write: (c) => void res.write(c), end: () => res.end(), queuedBytes: () => res.writableLength, onDrain: (cb) => (res.writableNeedDrain ? void res.once('drain', cb) : cb()) };
    }

    const stream = new SseStream(sink, names, this, (s) => this.dropSlow(s, socket), this.config.maxQueuedBytes, this.config.maxHeldEvents, (s) => this.dropHeld(s));
    if (auth.sessionExp) {
      // Recycle well before the cookie expires (at 80% of its life, jittered) so reconnects stay authorised;
      // a cookie that reached the session's absolute end cannot be renewed: the stream ends with it.
      const life = auth.sessionExp - now;
      stream.closeAt = auth.sessionFinal ? auth.sessionExp : now + Math.round(life * (0.7 + 0.1 * Math.random()));
    }
    this.streams.add(stream);
    const untrack =
      auth.identity.kind === 'user' ? this.trackUser(auth.identity.sub, auth.epoch ?? 0, () => stream.close(sse.comment('revoked: get a new ticket'))) : () => undefined;
    const cleanup = () => {
      stream.gone();
      this.streams.delete(stream);
      this.hub.remove(names, stream);
      untrack();
    };
    socket.once('close', cleanup);
    stream.write(sse.retry(this.config.retryMs));

    try {
      await this.hub.add(names, stream);
      await this.catchUp(stream, channels, cursor);
    } catch (err) {
      const e = toRealtimeError(err);
      this.log.warn({ code: e.code }, 'stream setup failed');
      stream.close(sse.retry(this.jitter() * 2) + sse.comment(e.code));
    }
  }

  /**
   * More live events arrived during a replay than MAX_HELD_EVENTS: close the stream with a retry
   * hint. Nothing is lost: what was held was never written, so the client resumes from its last id.
   */
  private dropHeld(stream: SseStream): void {
    this.metrics.heldOverflows++;
    this.log.warn({ held: this.config.maxHeldEvents }, 'stream closed: too many live events held during its replay');
    stream.close(sse.retry(this.jitter()) + sse.comment('catching up: reconnect and resume from your last event id'));
  }

  /**
   * A reader that stopped reading: its backlog passed the cap. Close it with a final comment (it
   * resumes from its last id elsewhere) and free the socket shortly after, whatever it does.
   */
  private dropSlow(stream: SseStream, socket: Socket): void {
    this.metrics.slowConsumerDrops++;
    this.log.warn({ queued: socket.writableLength }, 'slow consumer closed');
    stream.close(sse.comment('slow consumer: reconnect and resume from your last event id'));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /**
   * Replays what `stream` missed after `cursor` (or starts it at the current position), then goes
   * live. The replay is written in pages of REPLAY_MAX_EVENTS, each once the reader took the last
   * one; a reader that falls behind is closed by the slow-consumer cap and resumes by id.
   */
  private async catchUp(stream: SseStream, channels: readonly ParsedChannel[], cursor: number | undefined): Promise<void> {
    const deps = { redis: this.redis, config: this.config.core };
    let r = await backlog(channels, cursor, deps, this.config.replayMaxEvents);
    if (cursor !== undefined) {
      this.metrics.replays++;
      this.metrics.resets += r.resets.length;
    }
    let out = '';
    for (const ch of r.resets) out += sse.reset(ch);
    // Pages of REPLAY_MAX_EVENTS, each read from Redis once the reader took the last one.
    for (;;) {
      for (const env of r.events) out += sse.replayed(envelopeSeq(env), env, envelopeType(env));
      if (out) stream.write(out);
      out = '';
      if (stream.closed) return;
      if (!r.more) break;
      await stream.drained();
      if (stream.closed) return;
      r = await replay(channels, r.position, deps, this.config.replayMaxEvents);
      // A later page may find history gone meanwhile (trimmed or expired while the reader was slow).
      for (const ch of r.resets) out += sse.reset(ch);
    }
    stream.lastSeq = r.position;
    stream.write(sse.ready(stream.lastSeq, stream.channels));
    stream.goLive();
  }

  /**
   * After the subscriber reconnects, replay to each live stream what was published while it was
   * away: CATCHUP_CONCURRENCY streams at a time; live events are held meanwhile, at most
   * MAX_HELD_EVENTS per stream (past it the stream is closed and resumes by id).
   */
  private catchUpAfterReconnect(): void {
    this.log.warn({ streams: this.streams.size }, 'redis subscriber reconnected; catching streams up');
    this.metrics.redisReconnects++;
    const namespaces = this.config.core.namespaces;
    const streams = [...this.streams].filter((s) => !s.closed);
    // Hold live events from now on, so nothing is written out of order while the replay runs.
    for (const s of streams) s.hold();
    let next = 0;
    const worker = async () => {
      while (next < streams.length) {
        const s = streams[next++];
        if (s.closed) continue;
        const channels = parseChannelList(s.channels as string[], namespaces, Number.MAX_SAFE_INTEGER);
        await this.catchUp(s, channels, s.lastSeq).catch(() => s.close(sse.retry(this.jitter())));
      }
    };
    const run = async () => {
      await waitReady(this.redis, 10_000);
      await Promise.all(Array.from({ length: Math.min(this.config.catchupConcurrency, streams.length) }, worker));
    };
    run().catch(() => {
      for (const s of streams) s.close(sse.retry(this.jitter()));
    });
  }

  private async poll(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<void> {
    const { channels, cursor, names, auth } = await this.admit(req, url, ctx, ['cursor']);
    // Counted from admission to answer: waiting polls hold a socket and subscriptions like streams.
    this.openPolls++;
    const arrived: LiveEvent[] = [];
    let wake: () => void = () => undefined;
    const listener: Listener = {
      onEvent: (e) => {
        arrived.push(e);
        wake();
      },
    };
    let end: () => void = () => undefined;
    let done = false;
    let revoked = false;
    const untrack =
      auth.identity.kind === 'user'
        ? this.trackUser(auth.identity.sub, auth.epoch ?? 0, () => {
            revoked = true;
            end();
          })
        : () => undefined;
    const finish = () => {
      if (done) return;
      done = true;
      this.openPolls--;
      this.hub.remove(names, listener);
      this.polls.delete(end);
      untrack();
    };
    res.on('close', finish);
    try {
      await this.hub.add(names, listener);
      // One answer carries at most REPLAY_MAX_EVENTS (and reads no more than that from Redis); `"more": true`
      // and the cursor at the last one returned tell the client to poll again at once.
      const r = await backlog(channels, cursor, { redis: this.redis, config: this.config.core }, this.config.replayMaxEvents);
      const { resets } = r;
      let events = r.events;
      let since = r.position;
      let more = r.more;
      if (events.length === 0 && resets.length === 0 && !revoked) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.config.pollTimeoutMs);
          end = () => {
            clearTimeout(timer);
            resolve();
          };
          wake = () => {
            // Let events published in the same burst join this response.
            if (arrived.some((e) => e.seq > since)) setImmediate(end);
          };
          this.polls.add(end);
          res.on('close', end);
          wake();
        });
        let fresh = arrived.filter((e) => e.seq > since).sort((a, b) => a.seq - b.seq);
        if (fresh.length > this.config.replayMaxEvents) {
          fresh = fresh.slice(0, this.config.replayMaxEvents);
          more = true;
        }
        events = fresh.map((e) => e.envelope);
        if (fresh.length) since = fresh[fresh.length - 1].seq;
      }
      if (res.writableEnded || res.destroyed) return;
      if (revoked) throw new RealtimeError('unauthorized', "This user's sessions were revoked; get a new ticket from POST /tickets.");
      const headers: Record<string, string> = { ...this.corsHeaders(req), 'content-type': 'application/json', 'cache-control': 'no-store' };
      const out: Record<string, string | string[]> = headers;
      if (auth.setCookie) out['set-cookie'] = auth.setCookie;
      res.writeHead(200, out);
      res.end(`{"events":[${events.join(',')}],"cursor":"${since}","resets":${JSON.stringify(resets)}${more ? ',"more":true' : ''}}`);
    } finally {
      finish();
    }
  }
}

/** Per-request state that an error answer needs. */
interface RequestContext {
  /** The reconnect cookie issued when this request redeemed a ticket (and older ones expired). */
  setCookie?: string[];
}
