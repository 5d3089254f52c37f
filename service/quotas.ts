import { RealtimeError } from '../core/errors';
import { retryAfterMs } from './admission';

/** When a client over one of its caps is told to come back, in milliseconds (Retry-After: 5). */
export const CAP_RETRY_MS = 5000;

/** Settings of {@link ClientQuotas}; 0 turns a cap off. */
export interface QuotaLimits {
  /** Anonymous streams plus polls open at once per client IP on this task (ANON_CONNECTIONS_PER_IP). */
  readonly anonConnectionsPerIp: number;
  /** Distinct channels the anonymous connections of one client IP subscribe to on this task (ANON_CHANNELS_PER_IP). */
  readonly anonChannelsPerIp: number;
  /** Streams, polls and `/live` sockets one user holds at once on this task (USER_CONNECTIONS). */
  readonly userConnections: number;
}

/** Gives back what a connection held; idempotent. */
export type Lease = () => void;

interface IpUse {
  connections: number;
  /** Channel → anonymous connections of this IP subscribed to it. */
  readonly channels: Map<string, number>;
}

/**
 * What one client holds on this task, counted exactly as connections open and close (no clock, no
 * window): anonymous connections (public channels only) per client IP, with the distinct channels
 * they subscribe to, and connections per user (ticket or cookie holders, `/live` sockets included).
 * A connection takes a {@link Lease} when admitted and gives it back when it ends.
 *
 * The caps are per task: the ALB spreads one client over the tasks (sticky sessions keep a browser on
 * one), so a client may hold up to cap × tasks in all. What they bound is what one client can take of a
 * task (MAX_CONNECTIONS, MAX_CHANNELS_PER_TASK): one IP cannot fill a task and turn everyone else away.
 * Memory: one entry per IP and user with something open.
 */
export class ClientQuotas {
  private readonly ips = new Map<string, IpUse>();
  private readonly users = new Map<string, number>();

  constructor(private readonly limits: QuotaLimits) {}

  /** Admits an anonymous connection of `ip` on `channels`, or throws `rate_limited` (429, Retry-After). */
  anonymous(ip: string, channels: readonly string[]): Lease {
    const { anonConnectionsPerIp: maxConn, anonChannelsPerIp: maxChan } = this.limits;
    const use = this.ips.get(ip) ?? { connections: 0, channels: new Map<string, number>() };
    if (maxConn > 0 && use.connections >= maxConn) {
      throw refusal(`At most ${maxConn} streams and polls at once without a ticket from one address; close one or retry after the Retry-After seconds.`);
    }
    if (maxChan > 0) {
      let fresh = 0;
      for (const c of channels) if (!use.channels.has(c)) fresh++;
      if (use.channels.size + fresh > maxChan) {
        throw refusal(`At most ${maxChan} distinct channels at once without a ticket from one address; close a stream or retry after the Retry-After seconds.`);
      }
    }
    use.connections++;
    for (const c of channels) use.channels.set(c, (use.channels.get(c) ?? 0) + 1);
    this.ips.set(ip, use);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      use.connections--;
      for (const c of channels) {
        const n = (use.channels.get(c) ?? 1) - 1;
        if (n > 0) use.channels.set(c, n);
        else use.channels.delete(c);
      }
      if (use.connections === 0 && this.ips.get(ip) === use) this.ips.delete(ip);
    };
  }

  /** Admits a connection of user `sub`, or throws `rate_limited` (429, Retry-After). */
  user(sub: string): Lease {
    const max = this.limits.userConnections;
    const n = this.users.get(sub) ?? 0;
    if (max > 0 && n >= max) throw refusal(`At most ${max} streams, polls and sockets at once per user; close one or retry after the Retry-After seconds.`);
    this.users.set(sub, n + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.users.get(sub) ?? 1) - 1;
      if (left > 0) this.users.set(sub, left);
      else this.users.delete(sub);
    };
  }
}

function refusal(message: string): RealtimeError {
  const e = new RealtimeError('rate_limited', message);
  retryAfterMs.set(e, CAP_RETRY_MS);
  return e;
}
