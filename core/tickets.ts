import { randomBytes } from 'node:crypto';
import type { CoreConfig } from './config';
import { maySubscribe, parseChannelList } from './channels';
import { RealtimeError } from './errors';
import type { Identity } from './identity';
import { Keys, sha256 } from './keys';
import type { RedisLike } from './redis';

/** `sse` tickets open `/events` and `/poll` on the SSE service; `ws` tickets open the WebSocket API. */
export type Transport = 'sse' | 'ws';
export const TRANSPORTS: readonly Transport[] = ['sse', 'ws'];

export interface TicketDeps {
  readonly redis: RedisLike;
  readonly config: CoreConfig;
  /** Milliseconds since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
}

export interface IssueTicketInput {
  readonly identity: Identity;
  readonly channels: unknown;
  readonly transport?: unknown;
}

export interface IssuedTicket {
  readonly ticket: string;
  readonly expiresAt: string;
  readonly channels: string[];
  readonly transport: Transport;
}

/** What a redeemed ticket grants. */
export interface Grant {
  readonly sub: string;
  readonly channels: readonly string[];
  readonly transport: Transport;
}

/** 32 random bytes, base64url: 256 bits of entropy. */
const TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * Issues a single-use ticket for `channels`, each checked against its namespace policy for `identity`.
 * Only the ticket's SHA-256 is stored, with a TTL, so a Redis dump never holds a usable ticket.
 */
export async function issueTicket(input: IssueTicketInput, deps: TicketDeps): Promise<IssuedTicket> {
  const { identity } = input;
  if (identity.kind !== 'user') {
    throw new RealtimeError('unauthorized', 'Tickets are issued to a user: sign the request with a user token (or name the user as a trusted backend).');
  }
  const transport = input.transport ?? 'sse';
  if (transport !== 'sse' && transport !== 'ws') {
    throw new RealtimeError('bad_request', '`transport` must be "sse" or "ws".');
  }
  const channels = parseChannelList(input.channels, deps.config.namespaces, deps.config.maxChannelsPerConnection);
  const denied = channels.filter((c) => !maySubscribe(identity, c)).map((c) => c.channel);
  if (denied.length) throw new RealtimeError('channel_not_granted', `Not allowed to subscribe to: ${denied.join(', ')}.`);

  const ticket = randomBytes(32).toString('base64url');
  const now = (deps.now ?? Date.now)();
  const ttl = deps.config.ticketTtlSeconds;
  const names = channels.map((c) => c.channel);
  const record = JSON.stringify({ s: identity.sub, c: names, t: transport, i: now });
  await deps.redis.set(new Keys(deps.config.keyPrefix).ticket(sha256(ticket)), record, 'EX', ttl);
  return { ticket, expiresAt: new Date(now + ttl * 1000).toISOString(), channels: names, transport };
}

/**
 * Redeems a ticket once (GETDEL: of two concurrent redemptions exactly one wins).
 * A ticket redeemed on the wrong transport is spent all the same.
 */
export async function redeemTicket(ticket: unknown, transport: Transport, deps: Pick<TicketDeps, 'redis' | 'config'>): Promise<Grant> {
  if (typeof ticket !== 'string' || !TICKET_PATTERN.test(ticket)) {
    throw new RealtimeError('ticket_invalid', 'The ticket is missing or malformed; get a new one from POST /tickets.');
  }
  const raw = await deps.redis.getdel(new Keys(deps.config.keyPrefix).ticket(sha256(ticket)));
  if (raw === null) throw new RealtimeError('ticket_invalid', 'The ticket is unknown, expired or already used; get a new one from POST /tickets.');
  const rec = JSON.parse(raw) as { s: string; c: string[]; t: Transport };
  if (rec.t !== transport) throw new RealtimeError('ticket_invalid', `This ticket was issued for ${rec.t}, not ${transport}.`);
  return { sub: rec.s, channels: rec.c, transport: rec.t };
}
