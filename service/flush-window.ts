/** Something with bytes queued for its socket. */
export interface Flushable {
  /** Writes what is queued in one write; returns how many queued frames (events, heartbeats) that was, 0 for none. */
  flush(): number;
}

/** How a window runs its flush later: Node's setImmediate and setTimeout, or a test's virtual time. */
export interface FlushScheduler {
  /** Runs `fn` at the end of the current event-loop turn. */
  immediate(fn: () => void): void;
  /** Runs `fn` once `ms` milliseconds have passed. */
  timeout(fn: () => void, ms: number): void;
}

export const NODE_SCHEDULER: FlushScheduler = {
  immediate: (fn) => void setImmediate(fn),
  timeout: (fn, ms) => void setTimeout(fn, ms),
};

/**
 * Flushes shorter than this never make the next window wait: a wait below it buys little coalescing
 * (timers have a 1 ms resolution) and would only add latency.
 */
export const ADAPTIVE_MIN_FLUSH_MS = 2;

/**
 * The flush duty (see {@link FlushWindow}) at or above which adaptive windows start to wait; once they
 * wait, they keep waiting while it stays at or above {@link ADAPTIVE_DUTY_EXIT}.
 */
export const ADAPTIVE_DUTY_ENTER = 0.3;
/** The flush duty below which windows that were waiting go back to flushing at the end of the turn. */
export const ADAPTIVE_DUTY_EXIT = 0.2;
/** Time constant of the flush duty in milliseconds: it weighs about the last half second of wall time. */
export const ADAPTIVE_DUTY_TAU_MS = 250;

/**
 * Windows that waited and wrote, on average over the last few, fewer frames per write than this collected (almost) no
 * second frame for their transports: their waits were for nothing (events come less often than the wait). About one
 * write in ten carrying a second frame.
 */
export const WASTED_WAIT_FRAMES_PER_WRITE = 1.1;
/** The weight of each waiting window in the average of frames per write that judges the waits. */
export const WAIT_YIELD_WEIGHT = 1 / 4;
/**
 * After waits judged wasted, windows flush at the end of their turn for this long (ms); each further wasted wait in a
 * row doubles it, up to {@link WASTED_WAIT_HOLD_MAX_MS}, and waits that collect again reset it.
 */
export const WASTED_WAIT_HOLD_MS = 1000;
export const WASTED_WAIT_HOLD_MAX_MS = 8000;

/**
 * A flush of fewer transports than this counts its wall time as its CPU time: reading the process's CPU time (two
 * system calls a window, a few µs each) would cost more than such a flush, and a reconnect storm's windows are mostly
 * one or two streams being answered (the storm's profile: `process.cpuUsage` 2.8 % of the busy main thread). The duty's
 * reason for CPU time, a long flush slowed by other processes, is a flush of many.
 */
export const CPU_TIME_MIN_STREAMS = 32;

/** CPU time of this process (user plus system) in milliseconds. */
function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export interface FlushWindowOptions {
  /**
   * Fixed window in milliseconds (WRITE_DELAY_MS, the manual override): every window waits this long
   * after its first mark. 0 (the default): the window is adaptive, or immediate when
   * `maxWriteDelayMs` is 0.
   */
  readonly writeDelayMs?: number;
  /**
   * Longest wait of an adaptive window in milliseconds (MAX_WRITE_DELAY_MS), from its first mark to
   * the start of its flush. 0 turns adaptation off (every window flushes at the end of the turn).
   * Defaults to 0.
   */
  readonly maxWriteDelayMs?: number;
  /**
   * Queueing delay the adaptive window keeps each event under, in milliseconds (LATENCY_BUDGET_MS,
   * stage `sse.latencyBudgetMs`): from the first mark of a window to the end of its flush, the wait
   * plus what the window measured the rest to cost. Defaults to 100.
   */
  readonly latencyBudgetMs?: number;
  /** A monotonic clock in milliseconds. Defaults to performance.now. */
  readonly now?: () => number;
  /**
   * The process's CPU time in milliseconds (the flush duty's busy time). Defaults to process.cpuUsage (user plus
   * system), or to `now` when `now` is given (a test's virtual time).
   */
  readonly cpuNow?: () => number;
  /** Defaults to Node's setImmediate and setTimeout. */
  readonly scheduler?: FlushScheduler;
}

/**
 * Collects the transports with bytes to write and flushes them together: one socket write per
 * transport per window, however many events arrived in it.
 *
 * Adaptive (the default, WRITE_DELAY_MS=0 and MAX_WRITE_DELAY_MS > 0), with a latency budget `B`
 * (LATENCY_BUDGET_MS). The window measures the queueing delay of each of its windows itself: from its
 * first mark (the oldest event waiting) to the end of its flush (the last transport written), which
 * is the wait it chose plus an overhead `o` it does not choose: the event loop's lag before the flush
 * ran and the flush's own duration. It keeps an estimate of that overhead that rises at once and
 * falls by a quarter of the gap per window (a p99 budget, not a mean one). It also measures the loop's
 * flush duty `u`: the share of wall time its flushes would take if every frame were written on its own
 * (each flush's CPU time times the frames per write it wrote), an exponentially weighted average over
 * wall time with a time constant of {@link ADAPTIVE_DUTY_TAU_MS} (250 ms), read at each first mark with
 * the time since the last flush counted as idle (the window's own waits are idle time). A window opens
 * at its first mark and flushes
 * - at the end of the current turn when the loop is mostly idle: `u` < {@link ADAPTIVE_DUTY_ENTER} (0.3;
 *   once windows wait, until `u` < {@link ADAPTIVE_DUTY_EXIT}, 0.2), or the last flush was short
 *   (< {@link ADAPTIVE_MIN_FLUSH_MS}), or the estimated overhead leaves less than 1 ms of the budget;
 * - otherwise `min(B - o, MAX_WRITE_DELAY_MS)` ms after the first mark: events that arrive meanwhile
 *   join their transport's queue, and each transport writes them in one chunk.
 * Why the duty and not the last gap: the rule before (flush at once when the loop had gone the last flush's
 * duration without anything to write) never waited under a periodic broadcast whose flush took less than
 * half its period (at 20 msg/s, a flush under 25 ms: 5k streams), however much of the loop the flushes
 * used, and it made a lightly loaded loop wait whenever two events came close together. At 0.3 or
 * more the next events come within two and a half flushes of the last one's end, so a window of the
 * budget's span collects more than one frame per transport when events come at least once per budget.
 * Scaling each flush by its frames per write keeps the duty where it was before batching (writes, not
 * frames, are what a flush costs), so batching does not switch itself off; reading it after the idle
 * time keeps a loop that went quiet from waiting; the gap between the thresholds keeps windows from
 * flapping at the edge. CPU time, not the flush's wall time, because the duty is about the task's own
 * work: on a host where other processes held the cores, a flush of 1k streams took 10-15 ms of wall
 * time (about 5 of CPU) and made a light task batch; the wait itself is still bounded by the budget in
 * wall time. A flush of fewer than {@link CPU_TIME_MIN_STREAMS} transports counts its wall time (reading CPU time would
 * cost more than it).
 * A wait for nothing: a loop at 0.3 or more whose events come less often than the window can wait (flushes of 0.3 `B`
 * or more with fewer than 1000/`B` events a second per transport, as a 50-ms budget under a 20-msg/s broadcast) would
 * wait up to `B - o` without collecting a second frame, inside the budget but for nothing (measured: p50 11 → 41 ms at
 * no saving, docs/BENCHMARKS.md). The window keeps the frames per write of the windows that waited, averaged over the
 * last few ({@link WAIT_YIELD_WEIGHT}: a wait is presumed to collect, the average starting at 2); below
 * {@link WASTED_WAIT_FRAMES_PER_WRITE} it holds the waits off: the windows of the next {@link WASTED_WAIT_HOLD_MS} flush
 * at the end of their turn, then one waits again to see; each wasted wait in a row doubles the hold (up to
 * {@link WASTED_WAIT_HOLD_MAX_MS}), so under such a load fewer than one event in a hundred waits, and waits that
 * collect again reset it. An average, not each window alone: a task whose flush takes a good part of the events' period
 * collects through the wait's lengthening of the cycle, its waiting windows alternating one frame and a backlog's two or
 * three (5k × 20 msg/s at 15 µs a write: 0.53 writes per delivery waiting, 0.77 with each one-frame wait held off). The
 * duty is left as it is (leaving batching on this alone would only re-enter it a window later).
 * So a window batches as much as the budget allows once the overhead is paid, and no more: the
 * longer the flush of everything takes, the less the window waits, rather than more.
 * Nothing here is allocated per event or per transport: a mark is a push onto a reused array.
 */
export class FlushWindow {
  private dirty: Flushable[] = [];
  /** The other array, swapped in while `dirty` is flushed. */
  private spare: Flushable[] = [];
  private scheduled = false;
  private readonly writeDelayMs: number;
  private readonly maxWriteDelayMs: number;
  private readonly latencyBudgetMs: number;
  private readonly now: () => number;
  private readonly cpuNow: () => number;
  /** The window adapts (no fixed window, a wait allowed): only then is the flush duty measured and read. */
  private readonly adaptive: boolean;
  private readonly scheduler: FlushScheduler;
  /** How long the last flush of all dirty transports took, in ms. */
  lastFlushMs = 0;
  /** When the last flush ended (clock ms); -Infinity before the first. */
  private lastFlushEnd = Number.NEGATIVE_INFINITY;
  /** When the window now open had its first mark, and the wait it chose. */
  private openedAt = 0;
  private openWait = 0;
  /** The estimated overhead of a window (loop lag + flush), in ms: what the budget pays before any wait. */
  overheadMs = 0;
  /** The last window's queueing delay, first mark to the end of its flush, in ms. */
  lastQueueDelayMs = 0;
  /** Windows that waited (adaptive) since the counter was last reset. */
  waits = 0;
  /** The flush duty (0–1) as of the last flush's end (the loop idle before the first); measured by adaptive windows only, 0 otherwise. */
  dutyCycle = 0;
  /** True while adaptive windows wait (the duty reached the enter threshold and has not fallen below the exit one). */
  private batching = false;
  /** Frames per write of the windows that waited, a moving average (see {@link WAIT_YIELD_WEIGHT}). */
  waitYield = 2;
  /** Waits after which the average was under {@link WASTED_WAIT_FRAMES_PER_WRITE} (each set a hold) since the counter was last reset. */
  wastedWaits = 0;
  /** Windows opening before this time (clock ms) do not wait: the waits were judged wasted. */
  private holdUntil = Number.NEGATIVE_INFINITY;
  /** The hold after the last wasted wait, ms; 0 once a wait collected. */
  private holdMs = 0;

  constructor(options: FlushWindowOptions = {}) {
    this.writeDelayMs = options.writeDelayMs ?? 0;
    this.maxWriteDelayMs = options.maxWriteDelayMs ?? 0;
    this.latencyBudgetMs = options.latencyBudgetMs ?? 100;
    this.now = options.now ?? performance.now.bind(performance);
    this.cpuNow = options.cpuNow ?? options.now ?? processCpuMs;
    this.adaptive = this.writeDelayMs === 0 && this.maxWriteDelayMs > 0;
    this.scheduler = options.scheduler ?? NODE_SCHEDULER;
  }

  /** Queues `t` for the next flush (call once per window: when its queue goes from empty to not). */
  mark(t: Flushable): void {
    this.dirty.push(t);
    if (this.scheduled) return;
    this.scheduled = true;
    this.openedAt = this.now();
    if (this.writeDelayMs > 0) {
      this.openWait = this.writeDelayMs;
      return this.scheduler.timeout(this.flushAll, this.writeDelayMs);
    }
    const wait = (this.openWait = this.adaptiveWait());
    if (wait > 0) {
      this.waits++;
      this.scheduler.timeout(this.flushAll, wait);
    } else this.scheduler.immediate(this.flushAll);
  }

  /** Milliseconds the window opening now waits before it flushes (0: the end of this turn). */
  private adaptiveWait(): number {
    if (this.maxWriteDelayMs === 0) return 0;
    // The duty now: as of the last flush's end, decayed over the time since (no flush in it).
    const u = this.dutyCycle * Math.exp(-Math.max(0, this.openedAt - this.lastFlushEnd) / ADAPTIVE_DUTY_TAU_MS);
    this.batching = u >= (this.batching ? ADAPTIVE_DUTY_EXIT : ADAPTIVE_DUTY_ENTER);
    if (!this.batching || this.lastFlushMs < ADAPTIVE_MIN_FLUSH_MS || this.openedAt < this.holdUntil) return 0;
    // Whole milliseconds, rounded down: never past the budget.
    const wait = Math.floor(Math.min(this.latencyBudgetMs - this.overheadMs, this.maxWriteDelayMs));
    return wait >= 1 ? wait : 0;
  }

  private readonly flushAll = (): void => {
    const dirty = this.dirty;
    this.dirty = this.spare;
    this.scheduled = false;
    const start = this.now();
    // The process's CPU time is read (two system calls a window) only where the duty is used, and for a flush of many.
    const cpuTimed = this.adaptive && dirty.length >= CPU_TIME_MIN_STREAMS;
    const cpuStart = cpuTimed ? this.cpuNow() : 0;
    let frames = 0;
    let writes = 0;
    try {
      for (let i = 0; i < dirty.length; i++) {
        const n = dirty[i].flush();
        frames += n;
        if (n > 0) writes++;
      }
    } finally {
      dirty.length = 0;
      this.spare = dirty;
      const end = this.now();
      this.lastFlushMs = end - start;
      if (this.adaptive) {
        // The duty over the time since the last flush ended: busy for the last `busy` ms of it (this flush's CPU time as
        // it would have been with a write per frame), idle before.
        const span = end - this.lastFlushEnd;
        const cpuMs = cpuTimed ? this.cpuNow() - cpuStart : this.lastFlushMs;
        const busy = Math.min(span, cpuMs * (writes > 0 ? frames / writes : 1));
        this.dutyCycle = this.dutyCycle * Math.exp(-span / ADAPTIVE_DUTY_TAU_MS) + 1 - Math.exp(-busy / ADAPTIVE_DUTY_TAU_MS);
        // A window that waited: do the waits collect? If not, the next windows do not wait for a while (longer each time).
        if (this.openWait > 0 && writes > 0) {
          this.waitYield += (frames / writes - this.waitYield) * WAIT_YIELD_WEIGHT;
          if (this.waitYield < WASTED_WAIT_FRAMES_PER_WRITE) {
            this.wastedWaits++;
            this.holdMs = this.holdMs === 0 ? WASTED_WAIT_HOLD_MS : Math.min(2 * this.holdMs, WASTED_WAIT_HOLD_MAX_MS);
            this.holdUntil = end + this.holdMs;
          } else this.holdMs = 0;
        }
      }
      this.lastFlushEnd = end;
      // This window's queueing delay, and the part of it the wait did not choose.
      this.lastQueueDelayMs = end - this.openedAt;
      const o = Math.max(0, this.lastQueueDelayMs - this.openWait);
      this.overheadMs = o >= this.overheadMs ? o : this.overheadMs + (o - this.overheadMs) / 4;
    }
  };
}
