import { createHash } from 'node:crypto';

/** Redis key and pub/sub channel names, all under one configurable prefix. */
export class Keys {
  constructor(readonly prefix: string) {}

  /** Stream holding a channel's bounded history. */
  history(channel: string): string {
    return `${this.prefix}h:${channel}`;
  }
  /** The id of the newest event no longer in a channel's history. */
  horizon(channel: string): string {
    return `${this.prefix}hx:${channel}`;
  }
  /** Pub/sub channel for live delivery. */
  live(channel: string): string {
    return `${this.prefix}ev:${channel}`;
  }
  /** Prefix of every live pub/sub channel (to map a message back to its channel). */
  get livePrefix(): string {
    return `${this.prefix}ev:`;
  }
  /** The deployment-wide event sequence (the cursor space). */
  get seq(): string {
    return `${this.prefix}seq`;
  }
  /** The value the sequence was (re)seeded with: cursors below it predate a loss of Redis data. */
  get seqBase(): string {
    return `${this.prefix}seq:base`;
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
  idempotency(channel: string, key: string): string {
    return `${this.prefix}idem:${channel}:${sha256(key)}`;
  }
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
