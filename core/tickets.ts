import { TICKET_LENGTH } from '../contract/limits';
import { type CoreConfig } from './config';
import { parseChannelList, type ChannelGrant } from './channels';
import { RealtimeError } from './errors';
import { currentCursor } from './events';
import { type HookInvoker } from './hooks';
import { Keys, sha256 } from './redis/keys';
import type { RedisLike } from './redis/client';
import { assertNotRevoked, currentEpoch } from './revocation-epoch';

/**
 * Which endpoint a ticket opens (its audience): `sse` tickets open `/events` and `/poll` on the SSE service; `ws`
 * tickets open the WebSocket API. (Not the session seam's `Transport`, service/transport.ts.)
 */
export type TicketAudience = 'sse' | 'ws';

// Issuing lives in ./ticket-issue (the ticket issuer's bundle then carries no redemption: its channel positions are the
// channel broker's, whose scripts esbuild keeps in any bundle that imports it); re-exported here.
export { issueTicket, type IssuedTicket, type IssueTicketInput } from './ticket-issue';

export interface TicketDeps {
  readonly redis: RedisLike;
  readonly config: CoreConfig;
  /** Where the namespaces' subscribe hooks are asked (core/hooks.ts). Defaults to none: no hook is asked. */
  readonly hooks?: HookInvoker;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
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
  /** The presence `info` a backend attached to the ticket. */
  readonly info?: object;
}

/** The ticket record in Redis (short keys: it is written for every connection). */
export interface TicketRecord {
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
  /** presence info */
  p?: object;
}

/** 32 random bytes, base64url: 256 bits of entropy. */
const TICKET_PATTERN = new RegExp(`^[A-Za-z0-9_-]{${TICKET_LENGTH}}$`);

/**
 * The user's current revocation epoch when the caller can vouch for it without Redis (an SSE task that heard every
 * revocation since the ticket was issued: service/revocations.ts `epochFor`), given the ticket's user and issue time;
 * undefined to read it.
 */
export type KnownEpoch = (sub: string, issuedAt: number) => number | undefined;

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
 * passes `deps.positions` false: none are read, the grant has none. A caller that can vouch for the user's epoch
 * (`deps.knownEpoch`) spares its read. An epoch read after the GETDEL is at least as new
 * as one read with it: a revocation in between refuses the ticket, as it should.
 * A ticket redeemed on the wrong transport, or after its user was revoked, is spent all the same.
 */
export async function redeemTicket(
  ticket: unknown,
  transport: TicketAudience,
  deps: Pick<TicketDeps, 'redis' | 'config' | 'now'> & {
    readonly positions?: boolean;
    readonly knownEpoch?: KnownEpoch;
  },
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
  // Without positions to read (a resume: every connect of a reconnect storm), the epoch alone, with no Promise.all;
  // an epoch the caller vouches for is not read (such a resume then costs the GETDEL alone).
  const wantsPositions = rec.t === 'sse' && deps.positions !== false;
  const known = deps.knownEpoch?.(rec.s, rec.i);
  let current: number;
  let positions: ReadonlyMap<string, number> | undefined;
  if (wantsPositions) [current, positions] = await Promise.all([known ?? currentEpoch(rec.s, deps), channelPositions(rec.c, deps)]);
  else current = known ?? (await currentEpoch(rec.s, deps));
  assertNotRevoked(epoch, current);
  return { sub: rec.s, channels: rec.c, transport: rec.t, byBackend: rec.b === 1, issuedAt: rec.i, epoch, notAfter: rec.x, positions, info: rec.p };
}

/** The positions of `channels` by name, or undefined when they no longer parse (a namespace removed since the ticket). */
async function channelPositions(channels: readonly string[], deps: Pick<TicketDeps, 'redis' | 'config'>): Promise<ReadonlyMap<string, number> | undefined> {
  let parsed;
  try {
    parsed = parseChannelList(channels, deps.config.namespaces, Number.MAX_SAFE_INTEGER);
  } catch {
    return undefined;
  }
  const at = await currentCursor(parsed, deps);
  return new Map(parsed.map((c, i) => [c.channel, at[i]]));
}
