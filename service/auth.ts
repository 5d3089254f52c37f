import type { IncomingMessage } from 'node:http';
import { maySubscribe, type ParsedChannel } from '../core/channels';
import { RealtimeError } from '../core/errors';
import { ANONYMOUS, type Identity } from '../core/identity';
import type { RedisLike } from '../core/redis';
import { parseCookies, sessionCookieName, signSession, verifySession } from '../core/session';
import { redeemTicket } from '../core/tickets';
import type { ServiceConfig } from './config';

export interface Authorized {
  readonly identity: Identity;
  /** A fresh reconnect cookie (Set-Cookie value), when the stream needs one. */
  readonly setCookie?: string;
  /** When that cookie expires (epoch ms). */
  readonly sessionExp?: number;
}

/**
 * Decides who opens a stream of `channels`:
 * 1. only public channels: anyone, no ticket, no cookie;
 * 2. a valid reconnect cookie for exactly this channel set (native EventSource reconnects);
 * 3. otherwise the `ticket`, redeemed once.
 * Every non-public channel must be in the grant and still allowed by its namespace policy.
 */
export async function authorize(
  req: IncomingMessage,
  ticket: string | null,
  channels: readonly ParsedChannel[],
  deps: { redis: RedisLike; config: ServiceConfig; now: number },
): Promise<Authorized> {
  const { config, now } = deps;
  const restricted = channels.filter((c) => c.policy.subscribe !== 'public');
  if (restricted.length === 0) return { identity: ANONYMOUS };

  const names = channels.map((c) => c.channel);
  const cookieName = sessionCookieName(names);
  const session = verifySession(parseCookies(req.headers.cookie).get(cookieName), config.sessionSecrets, now);
  let sub: string;
  let granted: readonly string[];
  if (session) {
    sub = session.sub;
    granted = session.channels;
  } else {
    if (!ticket) throw new RealtimeError('unauthorized', 'These channels need a ticket: get one from POST /tickets and pass it as ?ticket=.');
    const grant = await redeemTicket(ticket, 'sse', { redis: deps.redis, config: config.core });
    sub = grant.sub;
    granted = grant.channels;
  }
  const identity: Identity = { kind: 'user', sub };
  const grantedSet = new Set(granted);
  const denied = restricted.filter((c) => !grantedSet.has(c.channel) || !maySubscribe(identity, c)).map((c) => c.channel);
  if (denied.length) throw new RealtimeError('channel_not_granted', `The ticket does not grant: ${denied.join(', ')}.`);

  const exp = now + config.sessionTtlSeconds * 1000;
  const value = signSession({ sub, channels: names, exp }, config.sessionSecrets);
  const attrs = [`${cookieName}=${value}`, 'Path=/', `Max-Age=${config.sessionTtlSeconds}`, 'HttpOnly', `SameSite=${config.cookieSameSite}`];
  if (config.cookieSecure) attrs.push('Secure');
  return { identity, setCookie: attrs.join('; '), sessionExp: exp };
}
