import type { IncomingMessage } from 'node:http';
import { maySubscribe, type ChannelGrant, type ParsedChannel } from '../core/channels';
import { RealtimeError, toRealtimeError } from '../core/errors';
import { ANONYMOUS, type Identity } from '../core/identity';
import type { RedisLike } from '../core/redis/client';
import { assertNotRevoked, currentEpoch } from '../core/revocation';
import { channelSetHash, decodeSession, isSessionCookieName, parseCookies, sessionCookieName, signSession, ticketTag, verifyLegacySession } from '../core/reconnect-cookie';
import { redeemTicket, type Grant, type KnownEpoch } from '../core/tickets';
import type { ServiceConfig } from './config';

/**
 * Reconnect cookies one client keeps at most. Each channel set has its own cookie (so two streams
 * opened at once by one page never overwrite each other's), so a page that opens ever new channel
 * sets would pile them up until the Cookie header passes the server's limit (16 KB: every request
 * then fails with 431). When a request already carries this many, issuing a new cookie expires the
 * least recently renewed ones.
 */
export const MAX_SESSION_COOKIES = 8;

export interface Authorized {
  readonly identity: Identity;
  /** Set-Cookie values: a fresh reconnect cookie, and the expiry of old ones past {@link MAX_SESSION_COOKIES}. */
  readonly setCookie?: string[];
  /** When that cookie expires (epoch ms). */
  readonly sessionExp?: number;
  /** True when `sessionExp` is the session's absolute end: the stream cannot be renewed past it. */
  readonly sessionFinal?: boolean;
  /** The user's revocation epoch the session carries. */
  readonly epoch?: number;
  /** The positions of the ticket's channels read with its redemption (none when no ticket was redeemed). */
  readonly positions?: ReadonlyMap<string, number>;
  /** The ticket's grant (a WebSocket's: its later subscriptions are checked against it). */
  readonly grant?: ChannelGrant;
  /** The presence `info` of the ticket (a backend's), redeemed or carried on by the reconnect cookie. */
  readonly info?: object;
}

/** What a redeemed ticket or a valid reconnect cookie proves about the signed-in session (not the engine's `Session`). */
interface SessionClaims {
  readonly sub: string;
  readonly grant: ChannelGrant;
  readonly maxExp: number;
  readonly epoch: number;
  readonly ticketTag: string;
  readonly info?: object;
}

const ENDED = 'The session reached its end (SESSION_MAX_AGE_SECONDS after its ticket was issued, or the sign-in expired); get a new ticket from POST /tickets.';

/**
 * Decides who opens a stream of `channels`:
 * 1. only public channels: anyone, no ticket, no cookie;
 * 2. a valid reconnect cookie for exactly this channel set, when the request presents no ticket or
 *    the very ticket the cookie came from (a native EventSource reconnect resends its URL) and the
 *    user was not revoked since;
 * 3. otherwise the `ticket`, redeemed once: a presented ticket always wins over a cookie and is spent.
 * Every non-public channel must be in the grant and still allowed by its namespace policy. `deps.positions` false: a
 * redeemed ticket's channel positions are not read (the caller could not use them; see `redeemTicket`).
 */
export async function authorize(
  req: IncomingMessage,
  ticket: string | null,
  channels: readonly ParsedChannel[],
  deps: { redis: RedisLike; config: ServiceConfig; now: number; positions?: boolean; knownEpoch?: KnownEpoch },
): Promise<Authorized> {
  const { config, now } = deps;
  const core = config.core;
  const restricted = channels.filter((c) => c.policy.subscribe !== 'public');
  if (restricted.length === 0) return { identity: ANONYMOUS };

  const names = channels.map((c) => c.channel);
  const set = channelSetHash(names);
  const cookieName = sessionCookieName(names, set);
  const cookies = parseCookies(req.headers.cookie);
  let cookie = decodeSession(cookies.get(cookieName), config.sessionSecrets);
  // The name is not signed; the channel set inside is.
  if (cookie && cookie.set !== set) cookie = null;
  const presented = ticket !== null && ticket !== '' ? ticket : undefined;
  let session: SessionClaims;
  let positions: ReadonlyMap<string, number> | undefined;
  if (cookie && (presented === undefined || ticketTag(presented) === cookie.ticket)) {
    if (cookie.maxExp <= now) throw new RealtimeError('unauthorized', ENDED);
    if (cookie.exp <= now) throw new RealtimeError('unauthorized', 'The reconnect cookie expired; get a new ticket from POST /tickets.');
    assertNotRevoked(cookie.epoch, await currentEpoch(cookie.sub, { redis: deps.redis, config: core }));
    session = { sub: cookie.sub, grant: { channels: names, byBackend: cookie.byBackend }, maxExp: cookie.maxExp, epoch: cookie.epoch, ticketTag: cookie.ticket, info: cookie.info };
  } else {
    // A cookie of the first format (issued before an upgrade): used only when no valid ticket is presented.
    const legacy = cookie ? null : verifyLegacySession(cookies.get(cookieName), config.sessionSecrets, now);
    const legacyOk = legacy !== null && legacy.channels.join(',') === names.join(',');
    if (!presented && !legacyOk) throw new RealtimeError('unauthorized', 'These channels need a ticket: get one from POST /tickets and pass it as ?ticket=.');
    let grant: Grant | undefined;
    if (presented) {
      try {
        grant = await redeemTicket(presented, 'sse', { redis: deps.redis, config: core, now: () => now, positions: deps.positions, knownEpoch: deps.knownEpoch });
      } catch (err) {
        if (!legacyOk || !(err instanceof RealtimeError) || err.code !== 'ticket_invalid') throw err;
      }
    }
    if (grant) {
      const maxExp = Math.min(grant.issuedAt + config.sessionMaxAgeSeconds * 1000, grant.notAfter ?? Infinity);
      if (maxExp <= now) throw new RealtimeError('unauthorized', ENDED);
      session = { sub: grant.sub, grant, maxExp, epoch: grant.epoch, ticketTag: ticketTag(presented!), info: grant.info };
      positions = grant.positions;
    } else {
      // Its session is taken to have started when the cookie was last renewed; it predates revocation epochs.
      assertNotRevoked(0, await currentEpoch(legacy!.sub, { redis: deps.redis, config: core }));
      const maxExp = legacy!.exp - config.sessionTtlSeconds * 1000 + config.sessionMaxAgeSeconds * 1000;
      session = { sub: legacy!.sub, grant: { channels: names, byBackend: false }, maxExp, epoch: 0, ticketTag: presented ? ticketTag(presented) : '' };
    }
  }
  const identity: Identity = { kind: 'user', sub: session.sub };
  const grantedSet = new Set(session.grant.channels);
  const denied = restricted.filter((c) => !grantedSet.has(c.channel) || !maySubscribe(identity, c, session.grant)).map((c) => c.channel);
  if (denied.length) throw new RealtimeError('channel_not_granted', `The ticket does not grant: ${denied.join(', ')}.`);

  const exp = Math.min(now + config.sessionTtlSeconds * 1000, session.maxExp);
  const value = signSession(
    { sub: session.sub, set, ticket: session.ticketTag, exp, maxExp: session.maxExp, epoch: session.epoch, byBackend: session.grant.byBackend, info: session.info },
    config.sessionSecrets,
  );
  // Whole seconds, rounded down: the browser drops the cookie no later than the server stops accepting it.
  const maxAge = Math.max(1, Math.floor((exp - now) / 1000));
  const setCookie = [cookieHeader(config, cookieName, value, maxAge)];
  // Fewer cookies than the cap (every request of a client with one stream): nothing to expire, nothing to copy.
  if (cookies.size >= MAX_SESSION_COOKIES) setCookie.push(...evictions(config, cookies, cookieName));
  return { identity, setCookie, sessionExp: exp, sessionFinal: exp === session.maxExp, epoch: session.epoch, positions, info: session.info };
}

/**
 * Decides who opens a `/live` WebSocket: the `ws` ticket, redeemed once (the socket's channels are
 * the ticket's). As API Gateway's authorizer answers: no ticket is 401, and every refusal of a
 * presented one (unknown, spent, expired, revoked, another transport's) is a Deny, 403.
 */
export async function authorizeSocket(
  ticket: string | null,
  deps: { redis: RedisLike; config: ServiceConfig; now: number; knownEpoch?: KnownEpoch },
): Promise<Authorized & { readonly identity: Extract<Identity, { kind: 'user' }>; readonly grant: ChannelGrant }> {
  if (!ticket) throw new RealtimeError('unauthorized', 'Connect with /live?ticket= (a "ws" ticket from POST /tickets).');
  let grant: Grant;
  try {
    grant = await redeemTicket(ticket, 'ws', { redis: deps.redis, config: deps.config.core, now: () => deps.now, knownEpoch: deps.knownEpoch });
  } catch (err) {
    const e = toRealtimeError(err);
    throw e.status === 401 ? new RealtimeError('forbidden', e.message) : e;
  }
  return { identity: { kind: 'user', sub: grant.sub }, epoch: grant.epoch, grant: { channels: grant.channels, byBackend: grant.byBackend }, info: grant.info };
}

function cookieHeader(config: ServiceConfig, name: string, value: string, maxAge: number): string {
  return `${name}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=${config.cookieSameSite}${config.cookieSecure ? '; Secure' : ''}`;
}

/**
 * Expiries (Max-Age=0) for the least recently renewed reconnect cookies of this request beyond
 * {@link MAX_SESSION_COOKIES} - 1, so that with the one being issued the client keeps at most that many.
 */
function evictions(config: ServiceConfig, cookies: ReadonlyMap<string, string>, issuing: string): string[] {
  const others = [...cookies].filter(([name]) => name !== issuing && isSessionCookieName(name));
  const excess = others.length - (MAX_SESSION_COOKIES - 1);
  if (excess <= 0) return [];
  // Unreadable cookies (old format, rotated-out secret) rank first: they open nothing.
  const ranked = others.map(([name, value]) => ({ name, exp: decodeSession(value, config.sessionSecrets)?.exp ?? 0 })).sort((a, b) => a.exp - b.exp);
  return ranked.slice(0, excess).map((c) => cookieHeader(config, c.name, '', 0));
}
