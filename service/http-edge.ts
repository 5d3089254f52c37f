import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { RealtimeError, errorBody, toRealtimeError } from '../core/errors';
import { historyBody, readHistory } from '../core/history';
import type { RedisLike } from '../core/redis/client';
import { spendTicket } from '../core/tickets';
import { retryAfterMs, type Admission, type RequestContext } from './admission';
import type { ServiceConfig } from './config';
import type { Cors } from './cors';
import type { FlushWindow } from './flush-window';
import type { ClientMetricsEndpoint } from './client-metrics';
import { Health, type HealthState } from './health';
import { PollTransport } from './poll-transport';
import type { SessionEngine } from './session-engine';
import * as sse from './sse-encoding';
import { openSink, SseTransport } from './sse-transport';
import { jitter } from './transport';

/** The head of every `text/event-stream` answer, before CORS and cookies. */
const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
} as const;

export interface HttpEdgeDeps {
  readonly config: ServiceConfig;
  readonly admission: Admission;
  readonly engine: SessionEngine;
  readonly cors: Cors;
  readonly window: FlushWindow;
  readonly health: HealthState;
  readonly log: Logger;
  /** Spends tickets presented to refused requests. */
  readonly redis: RedisLike;
  /** `POST /client-metrics`. */
  readonly clientMetrics: ClientMetricsEndpoint;
}

/**
 * The HTTP side of the service (node:http): routes (`GET /events`, `GET /poll`, `GET /healthz`,
 * CORS preflights), JSON errors, and the hand-over of each admitted request to the session engine
 * over its transport (an SSE stream or a long poll). Refusals of an EventSource are `200` +
 * `retry:` where a non-200 would end it for good.
 */
export class HttpEdge {
  readonly server: Server;
  /**
   * Sockets of the streams taken over from node:http (service/sse-transport.ts `takeOver`): node:http
   * no longer lists them, so the server's `closeAllConnections` closes them from here.
   */
  private readonly taken = new Set<Socket>();
  private readonly health: Health;

  constructor(private readonly deps: HttpEdgeDeps) {
    this.health = new Health(deps.health);
    const headersTimeout = deps.config.headersTimeoutMs;
    // node:http checks these timeouts every `connectionsCheckingInterval` (30 s by default): a slow
    // client is cut off between HEADERS_TIMEOUT_MS and that much later.
    const connectionsCheckingInterval = Math.max(250, Math.min(5000, Math.floor(headersTimeout / 4)));
    this.server = createServer({ connectionsCheckingInterval }, (req, res) => this.route(req, res));
    const closeAll = this.server.closeAllConnections.bind(this.server);
    this.server.closeAllConnections = () => {
      closeAll();
      for (const s of this.taken) s.destroy();
      this.taken.clear();
    };
    // Above the ALB's idle timeout (60 s), so the ALB, not the task, closes idle keep-alive connections.
    this.server.keepAliveTimeout = 65_000;
    // A request (every route is a GET; an upgrade too) must arrive whole within HEADERS_TIMEOUT_MS: a
    // client dripping header lines would otherwise hold its socket for 66 s outside MAX_CONNECTIONS.
    // A keep-alive connection's timer starts with each request's first byte, so idle ones are not cut.
    this.server.headersTimeout = headersTimeout;
    this.server.requestTimeout = headersTimeout;
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // What a refusal must still carry: the reconnect cookie of a ticket spent by this request.
    const ctx: RequestContext = {};
    const handle = async () => {
      if (req.method === 'OPTIONS') return this.deps.cors.preflight(req, res);
      if (url.pathname === '/healthz') return this.health.answer(req, res, url);
      if (url.pathname === '/client-metrics') return this.clientMetrics(req, res, url);
      if (url.pathname !== '/events' && url.pathname !== '/poll' && url.pathname !== '/history') throw new RealtimeError('not_found', `No route ${url.pathname}; try /events, /poll, /history, /client-metrics or /healthz.`);
      if (req.method !== 'GET') throw new RealtimeError('method_not_allowed', `${url.pathname} accepts GET only.`);
      if (url.pathname === '/events') return this.events(req, res, url, ctx);
      if (url.pathname === '/history') return this.history(req, res, url, ctx);
      return this.poll(req, res, url, ctx);
    };
    handle().catch(async (err) => {
      // A ticket presented to a request refused before its redemption (a wrong path, a bad cursor or
      // channel list, a rate limit) is spent all the same: tickets are single-use whatever happens.
      if (!ctx.ticketSettled) await spendTicket(url.searchParams.get('ticket'), { redis: this.deps.redis, config: this.deps.config.core });
      this.fail(req, res, url, err, ctx);
    });
  }

  /** `GET /events`: an SSE stream. */
  private async events(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<void> {
    const { config, engine } = this.deps;
    // A native EventSource ends for good on a 400: a cursor that cannot be real resets its channels instead.
    const native = (req.headers.accept ?? '').includes('text/event-stream');
    const admitted = await this.deps.admission.admit(req, url, ctx, ['last-event-id', 'lastEventId'], native);
    const headers: Record<string, string | string[]> = this.streamHeaders(req);
    if (admitted.auth.setCookie) headers['set-cookie'] = admitted.auth.setCookie;
    const socket = req.socket;
    const sink = openSink(req, res, headers, config.streamFraming);
    if (sink.takenOver) this.taken.add(socket);
    const transport = new SseTransport(sink, this.deps.window, config.maxQueuedBytes, config.retryMs);
    const session = engine.open('stream', transport, admitted);
    // 'close' comes once: `on` spares the once-wrapper per stream.
    const gone = () => {
      this.taken.delete(socket);
      engine.release(session);
    };
    socket.on('close', gone);
    // A client that left while it was admitted closed the socket before anyone listened: its session ends now.
    if (socket.destroyed) return gone();
    await engine.start(session, admitted.channels, admitted.cursor, admitted).catch((err) => engine.failed(session, err));
  }


  /** `GET /poll`: one JSON answer, a page of the replay or the live events of up to POLL_TIMEOUT_MS. */
  private async poll(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<void> {
    const { config, engine } = this.deps;
    const admitted = await this.deps.admission.admit(req, url, ctx, ['cursor']);
    const headers: Record<string, string | string[]> = { ...this.deps.cors.headers(req), 'content-type': 'application/json', 'cache-control': 'no-store' };
    if (admitted.auth.setCookie) headers['set-cookie'] = admitted.auth.setCookie;
    // `wait=0`: answer at once with what there is (the first poll of a client: it learns the position and is open).
    // `presence=1`: the answer carries the presence snapshots of the channels that keep presence (read after its events).
    const snapshots = url.searchParams.get('presence') === '1' ? () => engine.presenceJsons(session, admitted.channels) : undefined;
    const transport = new PollTransport(res, headers, config.replayMaxEvents, url.searchParams.get('wait') === '0' ? 0 : config.pollTimeoutMs, config.core.replayMaxBytes, snapshots);
    // Counted from admission to answer: waiting polls hold a socket and subscriptions like streams.
    const session = engine.open('poll', transport, admitted);
    res.on('close', () => engine.release(session));
    // A client that left while it was admitted: nobody will answer or hear it.
    if (req.socket.destroyed) return engine.release(session);
    try {
      await engine.start(session, admitted.channels, admitted.cursor);
      await transport.answered;
    } finally {
      engine.release(session);
    }
  }

  /** `GET /history`: one page of a channel's retained events (core/history.ts), for whoever may subscribe to it. */
  private async history(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<void> {
    const { query, setCookie } = await this.deps.admission.admitHistory(req, url, ctx);
    const page = await readHistory(query, { redis: this.deps.redis, config: this.deps.config.core });
    const headers: Record<string, string | string[]> = { ...this.deps.cors.headers(req), 'content-type': 'application/json', 'cache-control': 'no-store' };
    if (setCookie) headers['set-cookie'] = setCookie;
    res.writeHead(200, headers);
    res.end(historyBody(page));
  }

  /** `POST /client-metrics`: a client's delivery stats (service/client-metrics.ts); 204 when taken. */
  private async clientMetrics(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method !== 'POST') throw new RealtimeError('method_not_allowed', '/client-metrics accepts POST only.');
    this.deps.cors.check(req);
    await this.deps.clientMetrics.handle(req, url);
    res.writeHead(204, { ...this.deps.cors.headers(req), 'cache-control': 'no-store' });
    res.end();
  }

  private streamHeaders(req: IncomingMessage): Record<string, string> {
    return { ...this.deps.cors.headers(req), ...SSE_HEADERS };
  }

  /** Answers a refused or failed request: JSON `{"error"}` with its status, or 200 + `retry:` for an EventSource that should come back. */
  private fail(req: IncomingMessage, res: ServerResponse, url: URL, err: unknown, ctx: RequestContext = {}): void {
    const e = toRealtimeError(err);
    if (e.status >= 500) this.deps.log.warn({ path: url.pathname, code: e.code, err: e.code === 'internal' ? String(err) : undefined }, 'request failed');
    // The socket taken over by a stream (its response detached, the head its own: service/sse-transport.ts `takeOver`):
    // the stream's session answers from here on.
    if (res.socket === null) return;
    if (res.headersSent) {
      res.end();
      return;
    }
    const retryMs = this.deps.config.retryMs;
    const wait = retryAfterMs.get(e) ?? (e.code === 'unavailable' ? 5000 : undefined);
    // The ticket may be spent already (it is redeemed before capacity is checked): a refusal for
    // capacity, a client cap or an outage hands over the reconnect cookie, so the next attempt is still authorised.
    const cookie: Record<string, string[]> = wait !== undefined && ctx.setCookie ? { 'set-cookie': ctx.setCookie } : {};
    // A native EventSource gives up for good on any non-200 answer: when the store is briefly
    // unreachable, the task is full or the client is over its rate, tell it to come back later instead.
    if (wait !== undefined && url.pathname === '/events' && (req.headers.accept ?? '').includes('text/event-stream')) {
      res.writeHead(200, { ...this.streamHeaders(req), ...cookie });
      const hint = e.code === 'rate_limited' ? wait + jitter(retryMs) : jitter(retryMs) * 2;
      res.end(sse.retry(hint) + sse.comment(`${e.code}; reconnect later`));
      return;
    }
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json', 'cache-control': 'no-store', ...cookie };
    if (wait !== undefined) headers['retry-after'] = String(Math.ceil(wait / 1000));
    res.writeHead(e.status, { ...this.deps.cors.headers(req), ...headers });
    res.end(errorBody(e));
  }
}
