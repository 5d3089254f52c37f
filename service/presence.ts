import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ParsedChannel } from '../core/channels';
import { PRESENCE_GRACE_MS, presenceMode, type PresenceSnapshot } from '../core/presence';
import { PresenceLeaseLost, type RedisPresence } from '../core/redis/presence';
import { every, OCCUPANCY_LEASE_MS, OCCUPANCY_TICK_MS } from './occupancy';

/**
 * The task's part in presence (docs/DESIGN.md, "Presence"): the task is one holder, with the lease and tick of
 * occupancy (service/occupancy.ts: 30 s renewed every 10 s). Its sessions' connections join the presence of their
 * channels (those whose namespace has presence on, for a user with a `sub`) and leave, after the grace, when the
 * session ends. Every tick renews the lease and sweeps (any task may): holders whose lease ended lose their
 * connections, members whose grace ended leave.
 *
 * A task whose lease ended while it was alive (a long pause: it was swept, or is about to be) learns it at a renewal
 * or a join, and takes a new lease under a new generation (`task:…~2`), rejoining every connection it holds under it:
 * a user who still has a connection keeps being a member (the new connection joins before the sweep, or within the
 * grace after it), and the sweep of the old generation cannot remove the new one's connections.
 *
 * Changes are applied in order, one at a time (a queue), so a session that ends while it joins leaves after its join.
 */
/** Milliseconds between settles (grace periods that ended, counts that changed). */
export const PRESENCE_SETTLE_MS = 1_000;

export interface TaskPresenceOptions {
  readonly presence: RedisPresence;
  readonly now: () => number;
  readonly log: Logger;
  /** The holder's base name; defaults to `task:` and 12 random hex digits. */
  readonly holder?: string;
  readonly leaseMs?: number;
  readonly graceMs?: number;
}

interface Joined {
  readonly channel: ParsedChannel;
  readonly sub: string;
  readonly info?: unknown;
  /** The holder (generation) it joined under, and its connection name there. */
  holder: string;
  connection: string;
  /** Left (possibly before its join ran: then it never joins). */
  gone: boolean;
}

export class TaskPresence {
  readonly base: string;
  private generation = 1;
  private leased = false;
  private nextId = 0;
  /** Each member key (an opaque owner, e.g. a session) → what it joined. */
  private readonly joined = new Map<object, Joined[]>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  readonly leaseMs: number;
  readonly graceMs: number;

  constructor(private readonly o: TaskPresenceOptions) {
    this.base = o.holder ?? `task:${randomBytes(6).toString('hex')}`;
    this.leaseMs = o.leaseMs ?? OCCUPANCY_LEASE_MS;
    this.graceMs = o.graceMs ?? PRESENCE_GRACE_MS;
  }

  /** The holder name of the current generation. */
  get holder(): string {
    return `${this.base}~${this.generation}`;
  }

  /** True when the channel keeps members (its namespace's `presence` is `members` or `count`). */
  static tracks(channel: ParsedChannel): boolean {
    return presenceMode(channel) !== 'off';
  }

  private run<T>(f: () => Promise<T>): Promise<T> {
    const next = this.queue.then(f, f);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** `owner` (a session) joins `channels` as `sub` (those with presence on). */
  join(owner: object, channels: readonly ParsedChannel[], sub: string, info?: unknown): Promise<void> {
    const tracked = channels.filter(TaskPresence.tracks);
    if (!tracked.length || this.closed) return Promise.resolve();
    const list = this.joined.get(owner) ?? [];
    this.joined.set(owner, list);
    const added = tracked.map((channel): Joined => ({ channel, sub, info, holder: '', connection: '', gone: false }));
    list.push(...added);
    return this.run(async () => {
      for (const j of added) if (!j.gone) await this.joinOne(j);
    });
  }

  /**
   * `owner` leaves `channels` (all it joined when not given); its members leave after the grace, counted from now (when
   * the connection ended), however long the queue takes to get to it.
   */
  leave(owner: object, channels?: readonly string[]): Promise<void> {
    const list = this.joined.get(owner);
    if (!list) return Promise.resolve();
    const now = this.o.now();
    const names = channels && new Set(channels);
    const going = names ? list.filter((j) => names.has(j.channel.channel)) : list;
    for (const j of going) j.gone = true;
    const staying = names ? list.filter((j) => !names.has(j.channel.channel)) : [];
    if (staying.length) this.joined.set(owner, staying);
    else this.joined.delete(owner);
    return this.run(async () => {
      for (const j of going) if (j.holder) await this.o.presence.leave(j.channel, { holder: j.holder, connection: j.connection }, now, this.graceMs);
    });
  }

  private async ensureLease(): Promise<void> {
    if (this.leased) return;
    await this.o.presence.lease(this.holder, this.o.now() + this.leaseMs);
    this.leased = true;
  }

  private async joinOne(j: Joined): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      await this.ensureLease();
      j.holder = this.holder;
      j.connection = `${this.holder}/${this.nextId++}`;
      try {
        await this.o.presence.join(j.channel, { holder: j.holder, connection: j.connection, sub: j.sub, info: j.info }, this.o.now());
        return;
      } catch (err) {
        if (!(err instanceof PresenceLeaseLost)) throw err;
        await this.newGeneration();
      }
    }
  }

  /** The lease was lost: a new generation, under which every connection joins again. */
  private async newGeneration(): Promise<void> {
    this.generation++;
    this.leased = false;
    this.o.log.warn({ holder: this.holder }, 'presence: the lease had ended (a long pause?); joining again under a new generation');
    await this.ensureLease();
    for (const list of this.joined.values()) for (const j of list) if (!j.gone && j.holder && j.holder !== this.holder) await this.joinOne(j);
  }

  /** The channel's members and position, read in one step. */
  snapshot(channel: ParsedChannel): Promise<PresenceSnapshot> {
    return this.o.presence.snapshot(channel);
  }

  /** Renews the lease (a new generation when it was lost), then sweeps. */
  tick(): Promise<void> {
    return this.run(async () => {
      const now = this.o.now();
      if (this.leased && !(await this.o.presence.renew(this.holder, now + this.leaseMs))) await this.newGeneration();
      await this.o.presence.sweep(now, this.graceMs);
    });
  }

  /** Grace periods that ended and counts that changed (any task may; cheap when nothing is due). */
  settle(): Promise<void> {
    return this.o.presence.settle(this.o.now());
  }

  /** Starts the timers: the lease and sweep every `tickMs`, settles every `settleMs`. */
  start(tickMs = OCCUPANCY_TICK_MS, settleMs = PRESENCE_SETTLE_MS): void {
    this.timers.push(every(tickMs, 'presence tick', () => this.tick(), this.o.log), every(settleMs, 'presence settle', () => this.settle(), this.o.log));
  }

  /** The task closes: its lease ends and its connections leave (after the grace: their users may reconnect elsewhere). */
  close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    return this.run(async () => {
      if (this.leased) await this.o.presence.endHolder(this.holder, this.o.now(), this.graceMs);
      this.joined.clear();
    });
  }
}
