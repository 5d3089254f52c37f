import { randomBytes } from 'node:crypto';
import { CORE_SETTINGS } from '../contract/settings';
import { TICKET_BYTES, TICKET_LENGTH } from '../contract/limits';
import { type CoreConfig } from './config';
import { maySubscribe, parseChannelList, type ChannelGrant } from './channels';
import { RealtimeError } from './errors';
import { currentCursor } from './events';
import { SUB_PATTERN, SUB_RULE, type Identity } from './identity';
import { askSubscribeHooks, type HookInvoker } from './hooks';
import { Keys, sha256 } from './redis/keys';
import type { RedisLike } from './redis/client';
import { assertNotRevoked, currentEpoch } from './revocation';
import { TICKET_RATE } from './redis/scripts';

/**
 * Which endpoint a ticket opens (its audience): `sse` tickets open `/events` and `/poll` on the SSE service; `ws`
 * tickets open the WebSocket API. (Not the session seam's `Transport`, service/transport.ts.)
 */
export type TicketAudience = 'sse' | 'ws';

export interface TicketDeps {
  readonly redis: RedisLike;
  readonly config: CoreConfig;
  /** Where the namespaces' subscribe hooks are asked (core/hooks.ts). Defaults to none: no hook is asked. */
  readonly hooks?: HookInvoker;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
}

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
}

export interface IssuedTicket {
  readonly ticket: string;
  readonly expiresAt: string;
  readonly channels: string[];
  readonly transport: TicketAudience;
}

/** What a redeemed ticket grants. */
export interface Grant extends ChannelGrant {
  readonly sub: string;
  readonly transport: TicketAudience;
  /** Epoch ms when the ticket was issued (sessions from it end SESSION_MAX_AGE_SECONDS later). */
  readonly issuedAt: number;
  /** The user's revocation epoch when the ticket was issued. */
  readonly epoch: number;
  /** Epoch ms after which no session may come from it (the caller's JWT `exp`), when known. */
  readonly notAfter?: number;
  /**
   * The positions of the ticket's channels when it was redeemed (an SSE ticket's: read in the same round trip, one
   * single-slot read per channel): a cursor per channel meaning "from now on" for a reader already subscribed then
   * (service/hub.ts `mark`). Absent for a WebSocket ticket, or when the channels no longer parse.
   */
  readonly positions?: ReadonlyMap<string, number>;
}

/** The ticket record in Redis (short keys: it is written for every connection). */
interface TicketRecord {
  /** sub */
  s: string;
  /** channels */
  c: string[];
  /** transport */
  t: TicketAudience;
  /** issued at, epoch ms */
  i: number;
  /** revocation epoch (absent in tickets issued before revocation existed: 0) */
  v?: number;
  /** 1 when a backend asked for it */
  b?: 1;
  /** not after, epoch ms */
  x?: number;
}

/** 32 random bytes, base64url: 256 bits of entropy. */
const TICKET_PATTERN = new RegExp(`^[A-Za-z0-9_-]{${TICKET_LENGTH}}$`);

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
  const asked = parseChannelList(input.channels, deps.config.namespaces, deps.config.maxChannelsPerConnection);
  const names = asked.map((c) => c.channel);
  const byBackend = input.byBackend === true;
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
  const keys = new Keys(deps.config.keyPrefix);
  const rate = deps.config.userTicketsPerMinute ?? CORE_SETTINGS.userTicketsPerMinute.default;
  // Two slots on a cluster (the user's counter, the ticket): counted first, so a refusal writes no ticket.
  const wait = rate > 0 ? Number(await TICKET_RATE.run(deps.redis, [keys.userTickets(identity.sub)], [rate])) : 0;
  if (wait > 0) throw new RealtimeError('rate_limited', `At most ${rate} tickets per minute per user; retry in ${wait} s.`, { retryAfterSeconds: wait });
  await deps.redis.set(keys.ticket(sha256(ticket)), JSON.stringify(rec), 'EX', ttl);
  return { ticket, expiresAt: new Date(now + ttl * 1000).toISOString(), channels: granted, transport };
}

/**
 * Spends a presented ticket without redeeming it, for a request refused before its redemption (a bad
 * cursor or channel list, a wrong path) or one that needs no ticket (public channels only): a ticket
 * is single-use whatever the request was, so one seen in a log or a refused URL is spent. GETDEL frees
 * memory, so it works when Redis is full. Never throws: a failure leaves the ticket to its 30 s TTL.
 */
export async function spendTicket(ticket: string | null | undefined, deps: Pick<TicketDeps, 'redis' | 'config'>): Promise<void> {
  if (typeof ticket !== 'string' || !TICKET_PATTERN.test(ticket)) return;
  await deps.redis.getdel(new Keys(deps.config.keyPrefix).ticket(sha256(ticket))).catch(() => undefined);
}

/**
 * Redeems a ticket once (GETDEL: of two concurrent redemptions exactly one wins), then reads its user's revocation
 * epoch and, for an SSE ticket, its channels' positions (one round trip: `GET` of the epoch and one single-slot
 * `CHANNEL_POSITION` per channel, sent together; the keys are in different slots on a cluster, and a script may only
 * touch keys it declares, while the user and channels are known only once the ticket is read). A caller that cannot
 * use the positions (a stream resuming from a cursor, whose replay reads them: every connect of a reconnect storm)
 * passes `deps.positions` false: none are read, the grant has none. An epoch read after the GETDEL is at least as new
 * as one read with it: a revocation in between refuses the ticket, as it should.
 * A ticket redeemed on the wrong transport, or after its user was revoked, is spent all the same.
 */
export async function redeemTicket(
  ticket: unknown,
  transport: TicketAudience,
  deps: Pick<TicketDeps, 'redis' | 'config' | 'now'> & { readonly positions?: boolean },
): Promise<Grant> {
  if (typeof ticket !== 'string' || !TICKET_PATTERN.test(ticket)) {
    throw new RealtimeError('ticket_invalid', 'The ticket is missing or malformed; get a new one from POST /tickets.');
  }
  const keys = new Keys(deps.config.keyPrefix);
  const raw = await deps.redis.getdel(keys.ticket(sha256(ticket)));
  if (raw === null) throw new RealtimeError('ticket_invalid', 'The ticket is unknown, expired or already used; get a new one from POST /tickets.');
  const rec = JSON.parse(raw) as TicketRecord;
  if (rec.t !== transport) throw new RealtimeError('ticket_invalid', `This ticket was issued for ${rec.t}, not ${transport}.`);
  if (rec.x !== undefined && rec.x <= (deps.now ?? Date.now)()) {
    throw new RealtimeError('ticket_invalid', 'The sign-in this ticket came from has expired; sign in again and get a new ticket.');
  }
  const epoch = rec.v ?? 0;
  const [current, positions] = await Promise.all([currentEpoch(rec.s, deps), rec.t === 'sse' ? channelPositions(rec.c, deps) : undefined]);
  assertNotRevoked(epoch, current);
  return { sub: rec.s, channels: rec.c, transport: rec.t, byBackend: rec.b === 1, issuedAt: rec.i, epoch, notAfter: rec.x, positions };
}

/** The positions of `channels` by name, or undefined when they no longer parse (a namespace removed since the ticket). */
async function channelPositions(channels: readonly string[], deps: Pick<TicketDeps, 'redis' | 'config'> & { readonly positions?: boolean }): Promise<ReadonlyMap<string, number> | undefined> {
  if (deps.positions === false) return undefined;
  let parsed;
  try {
    parsed = parseChannelList(channels, deps.config.namespaces, Number.MAX_SAFE_INTEGER);
  } catch {
    return undefined;
  }
  const at = await currentCursor(parsed, deps);
  return new Map(parsed.map((c, i) => [c.channel, at[i]]));
}
