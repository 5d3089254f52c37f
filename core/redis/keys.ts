import * as crypto from 'node:crypto';

/**
 * Redis key and pub/sub channel names, all under one configurable prefix.
 *
 * Hash tags (`{…}`, see the Redis Cluster specification): in a cluster only the tag is hashed to choose a key's slot,
 * so keys that one Lua script touches together carry the same tag and live on one shard. A channel's keys (history,
 * horizon, gap, last id, base, lost ranges, live pub/sub channel, idempotency keys) are tagged with the channel;
 * a user's publish limits with `u:{sub}`. Tickets, revocation epochs, connection
 * records and the other per-user counters are single keys, each in its own slot. Channel names and the prefix cannot
 * hold braces (`CHANNEL_PATTERN`, KEY_PREFIX's rule), so the tag is exactly the channel.
 */
export class Keys {
  constructor(readonly prefix: string) {}

  /** Stream holding a channel's bounded history. */
  history(channel: string): string {
    return `${this.prefix}h:{${channel}}`;
  }
  /** The id of the newest event trimmed from a channel's history (history starts after it). */
  horizon(channel: string): string {
    return `${this.prefix}hx:{${channel}}`;
  }
  /**
   * The id of the last event before a channel's history expired or was evicted, written when the
   * stream is created again: what remains starts after it.
   */
  gap(channel: string): string {
    return `${this.prefix}hg:{${channel}}`;
  }
  /** The id of a channel's last event; outlives the history so an expired history is still known. */
  lastId(channel: string): string {
    return `${this.prefix}hl:{${channel}}`;
  }
  /**
   * A channel's base (its epoch, see DESIGN "Positions per channel"): the Redis time (µs) at which its position space
   * began, or 0 for a channel that had history before positions were per channel. Its ids are above it; a cursor below
   * it belongs to an earlier epoch (the history was lost).
   */
  base(channel: string): string {
    return `${this.prefix}hb:{${channel}}`;
  }
  /**
   * A channel's lost ranges: sorted set of `from to` (scored by `to`): its ids in (from, to] were issued, then lost when
   * a failover rolled the channel back (the per-channel form of the removed sequence's `{seq}:lost-ranges`).
   */
  lostRanges(channel: string): string {
    return `${this.prefix}hr:{${channel}}`;
  }
  /** Pub/sub channel for live delivery. */
  live(channel: string): string {
    return `${this.prefix}ev:{${channel}}`;
  }
  /** The channel a live pub/sub channel carries (see {@link live}), or undefined for another name. */
  channelOfLive(liveChannel: string): string | undefined {
    const head = `${this.prefix}ev:{`;
    return liveChannel.startsWith(head) && liveChannel.endsWith('}') ? liveChannel.slice(head.length, -1) : undefined;
  }
  ticket(ticketHash: string): string {
    return `${this.prefix}tk:${ticketHash}`;
  }
  /** A user's revocation epoch: tickets and reconnect cookies carrying an older one are refused. */
  revocation(sub: string): string {
    return `${this.prefix}rv:${sub}`;
  }
  /** Pub/sub channel on which revocations reach every SSE service instance. */
  get revokeControl(): string {
    return `${this.prefix}ctl:revoke`;
  }
  /** Set of a user's API Gateway WebSocket connection ids (to close them on revocation). */
  userConnections(sub: string): string {
    return `${this.prefix}wu:${sub}`;
  }
  /**
   * An API Gateway WebSocket connection's record: identity, grant, registration time and one field
   * per subscription with its floor (see `core/connections.ts`).
   */
  connection(connectionId: string): string {
    return `${this.prefix}wc:${connectionId}`;
  }
  /**
   * Set of a channel's WebSocket subscribers, members `{connectionId}|{floor}`, tagged with the channel: the floor is the
   * channel's position, read in the same script (`CHANNEL_JOIN`, core/redis/scripts.ts) from the channel's keys.
   */
  channelSubscribers(channel: string): string {
    return `${this.prefix}wsub:{${channel}}`;
  }
  /**
   * The untagged subscriber set of before positions per channel (`wsub:channel`): connections registered before the
   * upgrade are still in it, so the fan-out reads it too until they are gone (at most {@link channelSubscribers}' TTL).
   */
  legacyChannelSubscribers(channel: string): string {
    return `${this.prefix}wsub:${channel}`;
  }
  /**
   * Which parts of an event's WebSocket fan-out were handed over (a hash: one field per shard whose
   * work item was enqueued, or `inline` once an inline fan-out finished): an idempotent retry of the
   * publish completes what is missing (see `core/fanout-queue.ts`). Keyed by channel and id: ids are issued per
   * channel, so two channels may issue the same one.
   */
  fanoutMarker(channel: string, eventId: string | number): string {
    return `${this.prefix}fo:{${channel}}:${eventId}`;
  }
  /** Connection ids a fan-out work item could not post to: its redelivery posts only to these. */
  fanoutRetry(channel: string, eventId: string | number, shard: number): string {
    return `${this.prefix}fr:{${channel}}:${eventId}:${shard}`;
  }
  /** The last event id a queued `since` replay posted to a connection (its redelivery resumes after it). */
  replayProgress(connectionId: string, channel: string, floor: number): string {
    return `${this.prefix}rp:${connectionId}:${floor}:${channel}`;
  }
  /**
   * An idempotency key, scoped to the principal that sent it (see `describeIdentity`) and to the channel: it lives in
   * the channel's slot, so the publish script checks it atomically on a cluster too.
   */
  idempotency(channel: string, principal: string, key: string): string {
    return `${this.prefix}idem:{${channel}}:${sha256(`${principal}\n${key}`)}`;
  }
  /** Events a user published in the current one-minute window (tagged with the user, as the other publish limits). */
  userPublishes(sub: string): string {
    return `${this.prefix}ur:{u:${sub}}`;
  }
  /**
   * Bytes of events a user published to a namespace in the current window (one history TTL of that namespace): what
   * USER_RETAINED_BYTES bounds.
   */
  userRetained(namespace: string, sub: string): string {
    return `${this.prefix}ub:{u:${sub}}:${namespace}`;
  }
  /** Tickets a user was issued in the current one-minute window. */
  userTickets(sub: string): string {
    return `${this.prefix}ut:${sub}`;
  }
  /** Channels a user started in the current one-hour window. */
  userNewChannels(sub: string): string {
    return `${this.prefix}uc:{u:${sub}}`;
  }
  /**
   * The prefix of the backend events' keys (`core/backend-events.ts`, `core/occupancy.ts`): one hash tag, so the outbox
   * and the occupancy sets stay in one slot and the scripts that touch several of them may name them.
   */
  get eventsPrefix(): string {
    return `${this.prefix}{be}`;
  }
  /** The backend events' outbox: a stream the tasks relay to EventBridge (consumer group `relay`). */
  get eventsOutbox(): string {
    return `${this.eventsPrefix}out`;
  }
  /** Sorted set of occupancy holders (a task, an API Gateway connection) scored by the end of their lease (epoch ms). */
  get occupancyLeases(): string {
    return `${this.eventsPrefix}oh`;
  }
  /** Sorted set of channels that lost their last holder, scored by when (epoch ms): `channel.vacated` once debounced. */
  get occupancyVacating(): string {
    return `${this.eventsPrefix}ov`;
  }
  /** Set of holders whose channels a sweep is releasing (their channels: `sw:{holder}`). */
  get sweepingHolders(): string {
    return `${this.eventsPrefix}osw`;
  }
}

/** `crypto.hash` (Node 20.12+, 21.7+): a one-shot digest without a Hash object; absent on older Node. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

/** Hex SHA-256 of `s` (UTF-8). */
export function sha256(s: string): string {
  return oneShot ? oneShot('sha256', s, 'hex') : crypto.createHash('sha256').update(s).digest('hex');
}
