import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { EventRelay, type EventBus, type EventsConfig, type RelayRedis } from '../core/backend-events';
import { acquire, dropHolder, release, sweep } from '../core/occupancy';

/**
 * The task's part in backend events (core/backend-events.ts, core/occupancy.ts):
 *
 * - it holds the channels its hub listens to (`held`/`left` from the hub's first and last local listener), applied to
 *   Redis in order by one flush at a time; a channel that comes and goes between two flushes costs nothing;
 * - every {@link OCCUPANCY_TICK_MS} it renews its lease ({@link OCCUPANCY_LEASE_MS}) and sweeps: holders whose lease
 *   ended (a killed task) lose their channels, and channels vacant for the debounce get `channel.vacated`;
 * - every {@link RELAY_TICK_MS} it relays the outbox to the bus, when the stage has one.
 *
 * A killed task's channels are therefore vacated at most lease + tick (the next sweep after its lease ended, on any
 * live task) + the debounce rounded up to whole ticks (the sweep that emits) + relay tick after its last renewal:
 * 30 + 10 + 10 + 1 = 51 s with the defaults.
 */

/** Milliseconds a task's lease lasts past its last renewal. */
export const OCCUPANCY_LEASE_MS = 30_000;
/** Milliseconds between a task's lease renewals and sweeps. */
export const OCCUPANCY_TICK_MS = 10_000;
/** Milliseconds between relay rounds (outbox → EventBridge). */
export const RELAY_TICK_MS = 1_000;

/**
 * Runs `f` every `ms` (unref'd), skipping a round while the last one runs; a failure is logged as `what` and retried
 * at the next round. Returns the timer.
 */
export function every(ms: number, what: string, f: () => Promise<unknown>, log: Logger): NodeJS.Timeout {
  let running = false;
  const t = setInterval(() => {
    if (running) return;
    running = true;
    f()
      .catch((err: Error) => log.warn({ err: err.message }, `${what} failed; retried at the next tick`))
      .finally(() => (running = false));
  }, ms);
  t.unref();
  return t;
}

export interface TaskEventsOptions {
  readonly redis: RelayRedis;
  readonly config: EventsConfig;
  /** Milliseconds a channel stays vacant before `channel.vacated` (OCCUPANCY_DEBOUNCE_MS). */
  readonly debounceMs: number;
  /** The bus the outbox is relayed to; none: another task (or nobody) relays. */
  readonly bus?: EventBus;
  readonly now: () => number;
  readonly log: Logger;
  /** This task's holder name. Defaults to `task:` and 12 random hex digits. */
  readonly holder?: string;
}

export class TaskEvents {
  readonly holder: string;
  readonly relay?: EventRelay;
  /** Channels the hub listens to now. */
  private readonly wanted = new Set<string>();
  /** Channels Redis has as held by this task. */
  private readonly applied = new Set<string>();
  private flushing?: Promise<void>;
  private again = false;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;

  constructor(private readonly o: TaskEventsOptions) {
    this.holder = o.holder ?? `task:${randomBytes(6).toString('hex')}`;
    if (o.bus) {
      this.relay = new EventRelay({
        redis: o.redis,
        config: o.config,
        bus: o.bus,
        consumer: this.holder,
        onDropped: (e, code) => o.log.error({ type: e.type, id: e.id, code }, 'backend event refused by the bus; dropped'),
      });
    }
  }

  held(channels: readonly string[]): void {
    for (const c of channels) this.wanted.add(c);
    this.schedule();
  }

  left(channels: readonly string[]): void {
    for (const c of channels) this.wanted.delete(c);
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    void this.flush().catch((err: Error) => this.o.log.warn({ err: err.message }, 'occupancy: could not update Redis; retried at the next tick'));
  }

  /** Applies the held channels to Redis; resolves when what was asked before the call is applied. */
  flush(): Promise<void> {
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      try {
        do {
          this.again = false;
          await this.applyOnce();
        } while (this.again);
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  private async applyOnce(): Promise<void> {
    const now = this.o.now();
    const add = [...this.wanted].filter((c) => !this.applied.has(c));
    const drop = [...this.applied].filter((c) => !this.wanted.has(c));
    if (drop.length) {
      await release(this.holder, drop, this.o, now);
      for (const c of drop) this.applied.delete(c);
    }
    if (add.length) {
      const { leaseWasNew } = await acquire(this.holder, add, this.o, now, now + OCCUPANCY_LEASE_MS);
      for (const c of add) this.applied.add(c);
      if (leaseWasNew) await this.reacquire(now);
    }
  }

  /** The lease was gone (first use, or swept after a long pause): every held channel is acquired again. */
  private async reacquire(now: number): Promise<void> {
    if (this.applied.size) await acquire(this.holder, [...this.applied], this.o, now, now + OCCUPANCY_LEASE_MS);
  }

  /** Renews the lease, then sweeps (any task may). */
  async tick(): Promise<void> {
    const now = this.o.now();
    const { leaseWasNew } = await acquire(this.holder, [], this.o, now, now + OCCUPANCY_LEASE_MS);
    if (leaseWasNew) await this.reacquire(now);
    await this.flush();
    await sweep(this.o, now, this.o.debounceMs);
  }

  /** One relay round (nothing without a bus); resolves with the events the bus accepted. */
  relayOnce(): Promise<number> {
    return this.relay ? this.relay.tick() : Promise.resolve(0);
  }

  /** Starts the timers (lease and sweep; relay). */
  start(tickMs = OCCUPANCY_TICK_MS, relayMs = RELAY_TICK_MS): void {
    this.timers.push(every(tickMs, 'occupancy tick', () => this.tick(), this.o.log));
    if (this.relay) this.timers.push(every(relayMs, 'backend events relay', () => this.relayOnce(), this.o.log));
  }

  /** Stops the timers and gives the task's channels up (a clean stop; a killed task is swept instead). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.flushing?.catch(() => undefined);
    await dropHolder(this.holder, this.o, this.o.now());
  }
}
