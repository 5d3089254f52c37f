import { randomBytes } from 'node:crypto';
import { CORE_SETTINGS } from '../contract/settings';
import { TICKET_BYTES } from '../contract/limits';
import { maySubscribe, parseChannelList } from './channels';
import { RealtimeError } from './errors';
import { askSubscribeHooks } from './hooks';
import { SUB_PATTERN, SUB_RULE, type Identity } from './identity';
import { encodePresenceInfo } from './presence';
import { Keys, sha256 } from './redis/keys';
import { TICKET_RATE } from './redis/ticket-scripts';
import { currentEpoch } from './revocation-epoch';
import type { TicketAudience, TicketDeps, TicketRecord } from './tickets';

/**
 * Issuing tickets (`POST /tickets`); redeeming them is `core/tickets.ts`. Apart so the ticket issuer's bundle does not
 * carry redemption's channel positions (core/events.ts and the channel broker's scripts).
 */

export interface IssueTicketInput {
  readonly identity: Identity;
  readonly channels: unknown;
  readonly transport?: unknown;
  /**
   * True when a trusted backend (an IAM-signed caller naming the user) asks for the ticket: only
   * such tickets open channels of `granted` namespaces. Defaults to false.
   */
  readonly byBackend?: boolean;
  /**
   * Epoch ms after which no session may come from this ticket (the `exp` of the caller's JWT, when
   * known). Reconnect cookies never outlive it. Defaults to none.
   */
  readonly notAfter?: number;
  /**
   * What the user's presence member shows (e.g. `{"name":"Ann"}`): a JSON object of at most PRESENCE_INFO_MAX_BYTES
   * (core/presence.ts), from a trusted backend only (a user cannot name themselves). Defaults to none.
   */
  readonly info?: unknown;
}

export interface IssuedTicket {
  readonly ticket: string;
  readonly expiresAt: string;
  readonly channels: string[];
  readonly transport: TicketAudience;
}

/**
 * Issues a single-use ticket for `channels`, each checked against its namespace policy for `identity`.
 * Only the ticket's SHA-256 is stored, with a TTL, so a Redis dump never holds a usable ticket.
 */
export async function issueTicket(input: IssueTicketInput, deps: TicketDeps): Promise<IssuedTicket> {
  const { identity } = input;
  if (identity.kind !== 'user') {
    throw new RealtimeError('unauthorized', 'Tickets are issued to a user: sign the request with a user token (or name the user as a trusted backend).');
  }
  // A session that POST /revoke could not name would be irrevocable: refuse it here, for JWT subs too.
  if (!SUB_PATTERN.test(identity.sub)) throw new RealtimeError('forbidden', `This user id cannot be served: a sub has ${SUB_RULE}.`);
  const transport = input.transport ?? 'sse';
  if (transport !== 'sse' && transport !== 'ws') {
    throw new RealtimeError('bad_request', '`transport` must be "sse" or "ws".');
  }
  const byBackend = input.byBackend === true;
  const info = ticketInfo(input.info, byBackend);
  const asked = parseChannelList(input.channels, deps.config.namespaces, deps.config.maxChannelsPerConnection);
  const names = asked.map((c) => c.channel);
  const denied = asked.filter((c) => !maySubscribe(identity, c, { channels: names, byBackend }));
  if (denied.length) {
    const needBackend = denied.filter((c) => c.policy.subscribe === 'granted').map((c) => c.channel);
    const others = denied.filter((c) => c.policy.subscribe !== 'granted').map((c) => c.channel);
    const parts: string[] = [];
    if (others.length) parts.push(`Not allowed to subscribe to: ${others.join(', ')}.`);
    if (needBackend.length) {
      parts.push(
        `Only your backend can grant ${needBackend.join(', ')}: your backend asks for the ticket (POST /tickets signed with IAM, naming the user in "sub") after checking the user may join.`,
      );
    }
    throw new RealtimeError('channel_not_granted', parts.join(' '));
  }
  // Last of the checks: the app's own (a hook may deny, or narrow the channels the ticket grants).
  const granted = deps.hooks ? (await askSubscribeHooks(asked, { sub: identity.sub, byBackend, transport }, deps.hooks)).map((c) => c.channel) : names;
  const notAfter = input.notAfter;
  if (notAfter !== undefined && !Number.isFinite(notAfter)) throw new RealtimeError('bad_request', '`notAfter` must be a time in epoch milliseconds.');

  const ticket = randomBytes(TICKET_BYTES).toString('base64url');
  const now = (deps.now ?? Date.now)();
  if (notAfter !== undefined && notAfter <= now) throw new RealtimeError('unauthorized', 'The credentials have expired; sign in again.');
  const ttl = deps.config.ticketTtlSeconds;
  const epoch = await currentEpoch(identity.sub, deps);
  const rec: TicketRecord = { s: identity.sub, c: granted, t: transport, i: now, v: epoch };
  if (byBackend) rec.b = 1;
  if (notAfter !== undefined) rec.x = notAfter;
  if (info) rec.p = info;
  const keys = new Keys(deps.config.keyPrefix);
  const rate = deps.config.userTicketsPerMinute ?? CORE_SETTINGS.userTicketsPerMinute.default;
  // Two slots on a cluster (the user's counter, the ticket): counted first, so a refusal writes no ticket.
  const wait = rate > 0 ? Number(await TICKET_RATE.run(deps.redis, [keys.userTickets(identity.sub)], [rate])) : 0;
  if (wait > 0) throw new RealtimeError('rate_limited', `At most ${rate} tickets per minute per user; retry in ${wait} s.`, { retryAfterSeconds: wait });
  await deps.redis.set(keys.ticket(sha256(ticket)), JSON.stringify(rec), 'EX', ttl);
  return { ticket, expiresAt: new Date(now + ttl * 1000).toISOString(), channels: granted, transport };
}

/** A ticket's presence `info`, checked: a JSON object within PRESENCE_INFO_MAX_BYTES, from a trusted backend. */
function ticketInfo(info: unknown, byBackend: boolean): object | undefined {
  if (info === undefined) return undefined;
  if (!byBackend) throw new RealtimeError('forbidden', '`info` (what your presence shows) is attached by your backend when it asks for the ticket, not by the user.');
  if (typeof info !== 'object' || info === null || Array.isArray(info)) throw new RealtimeError('invalid_info', '`info` must be a JSON object, e.g. {"name":"Ann"}.');
  encodePresenceInfo(info, 'invalid_info');
  return info;
}
