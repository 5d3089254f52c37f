import type { IncomingMessage } from 'node:http';
import type Redis from 'ioredis';
import type { RedisLike } from '../core/redis/client';
import { GetdelBatch } from './ticket-batch';
import { parseChannel, parseChannelList } from '../core/channels';
import { RealtimeError } from '../core/errors';
import { decodeCursor } from '../core/cursor';
import { cursorCannotBeReal, impossibleCursor } from '../core/events';
import { parseHistoryQuery, type HistoryQuery } from '../core/history';
import { spendTicket, type KnownEpoch } from '../core/tickets';
import { connectChannels } from '../core/ws-session';
import { authorize, authorizeSocket } from './auth';
import type { ServiceConfig } from './config';
import type { Cors } from './cors';
import type { Hub } from './hub';
import { clientIp, FixedWindowLimiter } from './limits';
import { ClientQuotas, type Lease } from './quotas';
import type { ServiceMetrics } from './metrics';
import type { Admitted } from './session-engine';

/** Retry-After of refusals that carry one (rate limits), in milliseconds; read by the error answer. */
export const retryAfterMs = new WeakMap<RealtimeError, number>();

/** Per-request state that an error answer needs. */
export interface RequestContext {
  /** The reconnect cookie issued when this request redeemed a ticket (and older ones expired). */
  setCookie?: string[];
  /** True once the presented ticket went to its redemption (spent, or already spent): a refusal need not spend it. */
  ticketSettled?: boolean;
}

export interface AdmissionDeps {
  readonly config: ServiceConfig;
  readonly redis: Redis;
  readonly hub: Hub;
  readonly cors: Cors;
  readonly metrics: ServiceMetrics;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Connections open now: streams, polls and `/live` sockets (MAX_CONNECTIONS counts them together). */
  readonly open: () => number;
  readonly draining: () => boolean;
  readonly redisUp: () => boolean;
  /** The user's revocation epoch when this task can vouch for it for a ticket issued then (service/revocations.ts `epochFor`). */
  readonly knownEpoch?: KnownEpoch;
  /** True on one Redis node: a burst's redemptions may share a script run (service/ticket-batch.ts). */
  readonly batchTickets?: boolean;
}

/**
 * Decides whether a stream or poll request gets a session. The checks, in this order: the request
 * parses; an anonymous one (public channels only) is within its client's rate; the ticket is
 * redeemed (spent on every attempt, so a refused request never leaves a live ticket behind; one
 * presented with public channels only, or to a request refused before its redemption, is spent by
 * {@link spendTicket}) or the cookie verified; the origin is allowed; then {@link checkRoom}: the task is not draining, Redis is
 * up, and it has room (streams, polls and sockets together under MAX_CONNECTIONS, subscriptions under
 * MAX_CHANNELS_PER_TASK); last, the client's own caps on this task ({@link ClientQuotas}: per IP without
 * a ticket, per user with one), whose lease the session gives back when it ends.
 */
export class Admission {
  private readonly anonLimiter: FixedWindowLimiter;
  /** What each client IP (anonymous) and user holds on this task: ANON_CONNECTIONS_PER_IP, ANON_CHANNELS_PER_IP, USER_CONNECTIONS. */
  readonly quotas: ClientQuotas;

  /** The command client tickets are redeemed through: its GETDELs batched (TICKET_BATCH_MS) on one Redis node. */
  private readonly ticketRedis: RedisLike;

  constructor(private readonly deps: AdmissionDeps) {
    const w = deps.config.ticketBatchMs;
    this.ticketRedis = w > 0 && deps.batchTickets ? new GetdelBatch(deps.redis, w, deps.now).client() : deps.redis;
    this.anonLimiter = new FixedWindowLimiter(deps.config.anonRequestsPerMinute, 60_000, deps.now);
    this.quotas = new ClientQuotas(deps.config);
  }

  /**
   * Admits `req` or throws the refusal; `cursorParams` name where its cursor may come from, first match wins. A cursor
   * that is malformed or cannot be real (see `cursorCannotBeReal`) is refused (`invalid_cursor`), or, with
   * `resetBadCursor` (a native EventSource, which a 400 would end for good), dropped: the session starts from now
   * with every channel reset.
   */
  async admit(req: IncomingMessage, url: URL, ctx: RequestContext, cursorParams: readonly string[], resetBadCursor = false): Promise<Admitted> {
    const { config } = this.deps;
    const { channels, cursor, resetAll } = this.parseRequest(req, url, cursorParams, resetBadCursor);
    if (channels.every((c) => c.policy.subscribe === 'public')) this.limitAnonymous(req);
    const names = channels.map((c) => c.channel);
    // Taken before the ticket's redemption reads the channels' positions (service/hub.ts `addAt`).
    const mark = cursor === undefined ? this.deps.hub.mark(names) : undefined;
    const now = this.deps.now();
    const ticket = url.searchParams.get('ticket');
    ctx.ticketSettled = true;
    // The positions read with a ticket's redemption serve only a stream that goes live at them (a mark, no cursor).
    const auth = await authorize(req, ticket, channels, { redis: this.ticketRedis, config, now, positions: mark !== undefined, knownEpoch: this.deps.knownEpoch });
    // Public channels need no ticket; one presented all the same is spent, as on every other request.
    if (auth.identity.kind === 'anonymous') await spendTicket(ticket, { redis: this.deps.redis, config: config.core });
    ctx.setCookie = auth.setCookie;
    this.deps.cors.check(req);
    this.checkRoom(names);
    // Last: nothing after it may refuse, so a lease taken is a session opened (released with it).
    const id = auth.identity;
    const lease: Lease = id.kind === 'user' ? this.quotas.user(id.sub) : this.quotas.anonymous(clientIp(req, config.trustProxyHops), names);
    return { channels, cursor, names, auth, now, mark, resetAll, lease };
  }

  /**
   * Admits a `GET /history` read or throws the refusal: the query parses; the reader may subscribe to the channel (a
   * public one: anyone, within ANON_REQUESTS_PER_MINUTE per client IP; otherwise a ticket or the reconnect cookie of
   * this one-channel set, with the subscribe grant rules); the origin is allowed; Redis is up. A ticket holder is held
   * to the same ANON_REQUESTS_PER_MINUTE per user (the cookie lets it page without a ticket per request). Takes no
   * connection slot: the answer is one page.
   */
  async admitHistory(req: IncomingMessage, url: URL, ctx: RequestContext): Promise<{ query: HistoryQuery; setCookie?: string[] }> {
    const { config } = this.deps;
    const query = parseHistoryQuery((name) => url.searchParams.get(name), config.core.namespaces, config.replayMaxEvents);
    const channels = [query.channel];
    if (query.channel.policy.subscribe === 'public') this.limitAnonymous(req);
    const ticket = url.searchParams.get('ticket');
    ctx.ticketSettled = true;
    const auth = await authorize(req, ticket, channels, { redis: this.ticketRedis, config, now: this.deps.now(), positions: false, knownEpoch: this.deps.knownEpoch });
    if (auth.identity.kind === 'anonymous') await spendTicket(ticket, { redis: this.deps.redis, config: config.core });
    else this.limitRequests(`user\0${auth.identity.kind === 'user' ? auth.identity.sub : ''}`);
    ctx.setCookie = auth.setCookie;
    this.deps.cors.check(req);
    if (!this.deps.redisUp()) throw new RealtimeError('unavailable', 'Redis is unreachable.');
    return { query, setCookie: auth.setCookie };
  }

  /**
   * Admits a `/live` upgrade or throws the refusal, with the same checks as a stream's after its
   * parsing: the `ws` ticket redeemed ({@link authorizeSocket}), the origin, {@link checkRoom} for the
   * ticket's channels that the namespace policies still allow, then the user's USER_CONNECTIONS cap.
   */
  async admitSocket(req: IncomingMessage, ticket: string | null): Promise<Admitted & { readonly auth: Awaited<ReturnType<typeof authorizeSocket>> }> {
    const { config } = this.deps;
    const now = this.deps.now();
    const auth = await authorizeSocket(ticket, { redis: this.ticketRedis, config, now, knownEpoch: this.deps.knownEpoch });
    this.deps.cors.check(req);
    const sub = auth.identity.sub;
    const names = connectChannels({ sub, ...auth.grant }, config.core.namespaces);
    this.checkRoom(names);
    const lease = this.quotas.user(sub);
    return { channels: names.map((c) => parseChannel(c, config.core.namespaces)), names, auth, now, lease };
  }

  /**
   * Whether this task takes one more connection subscribed to `channels`, for every transport (the
   * `/live` upgrade too): not draining, Redis up, under MAX_CONNECTIONS and MAX_CHANNELS_PER_TASK.
   * Throws the refusal (`unavailable`).
   */
  checkRoom(channels: readonly string[]): void {
    const { config, metrics } = this.deps;
    if (this.deps.draining()) throw new RealtimeError('unavailable', 'This task is stopping; retry.');
    if (!this.deps.redisUp()) throw new RealtimeError('unavailable', 'Redis is unreachable.');
    if (this.deps.open() >= config.maxConnections) {
      metrics.rejectedConnections++;
      throw new RealtimeError('unavailable', `This task holds its maximum of ${config.maxConnections} streams, polls and sockets; retry shortly.`);
    }
    if (!this.deps.hub.canAdd(channels)) {
      metrics.rejectedConnections++;
      throw new RealtimeError('unavailable', `This task subscribes to its maximum of ${config.maxChannelsPerTask} channels; retry shortly.`);
    }
  }

  private parseRequest(req: IncomingMessage, url: URL, cursorParams: readonly string[], resetBadCursor: boolean) {
    const core = this.deps.config.core;
    const channels = parseChannelList(url.searchParams.get('channels') ?? '', core.namespaces, core.maxChannelsPerConnection);
    let raw: string | undefined;
    for (const p of cursorParams) {
      const v = p === 'last-event-id' ? req.headers['last-event-id'] : url.searchParams.get(p);
      if (typeof v === 'string' && v !== '') {
        raw = v;
        break;
      }
    }
    if (raw === undefined) return { channels, cursor: undefined };
    try {
      // The connection's cursor over its channels (sorted, deduplicated: the order a native reconnect repeats), or a
      // plain decimal from before positions were per channel (that number on every channel).
      const cursor = decodeCursor(raw, channels.length);
      if (cursor.positions.some((p) => cursorCannotBeReal(p, this.deps.now()))) throw impossibleCursor();
      return { channels, cursor };
    } catch (err) {
      if (!resetBadCursor) throw err;
      return { channels, cursor: undefined, resetAll: true };
    }
  }

  /** Requests that need no ticket or cookie: at most ANON_REQUESTS_PER_MINUTE per client IP. */
  private limitAnonymous(req: IncomingMessage): void {
    this.limitRequests(clientIp(req, this.deps.config.trustProxyHops), 'without a ticket');
  }

  /** At most ANON_REQUESTS_PER_MINUTE requests of `key` (a client IP, or a user of the history API). */
  private limitRequests(key: string, what = 'of history per user'): void {
    const config = this.deps.config;
    if (config.anonRequestsPerMinute === 0) return;
    const wait = this.anonLimiter.take(key);
    if (wait === 0) return;
    const e = new RealtimeError('rate_limited', `At most ${config.anonRequestsPerMinute} requests per minute ${what}; retry after the Retry-After seconds.`);
    retryAfterMs.set(e, wait);
    throw e;
  }
}
