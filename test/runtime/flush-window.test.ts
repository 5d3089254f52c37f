import { ADAPTIVE_MIN_FLUSH_MS, CPU_TIME_MIN_STREAMS, FlushWindow, type Flushable, type FlushScheduler } from '../../service/flush-window';
import { LiveEvent } from '../../service/hub';
import { SseTransport, type Sink } from '../../service/sse-transport';
import { prng } from '../support/prng';

/**
 * The write window (service/flush-window.ts) on virtual time: an injected clock and scheduler, so
 * every wait is exact and nothing here depends on how fast the machine is. A flush "takes time" because
 * the test's sinks advance the clock on every write.
 */

/** A single-threaded event loop on virtual time: tasks at times, end-of-turn callbacks after each. */
class VirtualLoop implements FlushScheduler {
  t = 0;
  /** Waits the window asked for (its setTimeout calls), in order. */
  readonly waits: number[] = [];
  /** Windows flushed at the end of a turn (its setImmediate calls). */
  immediates = 0;
  /** Of those, the ones after the first window that waited. */
  immediatesAfterWait = 0;
  /** When the flush now running started (undefined outside a flush). */
  flushStart?: number;
  /** This process's CPU time, and the share of a flush's wall time it gets (1: no other process on the cores). */
  cpu = 0;
  cpuShare = 1;
  readonly cpuNow = (): number => this.cpu;
  private turnEnd: (() => void)[] = [];
  private tasks: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  readonly now = (): number => this.t;

  immediate(fn: () => void): void {
    this.immediates++;
    if (this.waits.length) this.immediatesAfterWait++;
    this.turnEnd.push(this.flushing(fn));
  }

  timeout(fn: () => void, ms: number): void {
    this.waits.push(ms);
    this.at(this.t + ms, this.flushing(fn));
  }

  /** Runs `fn` at virtual time `at` (or as soon after it as the loop is free). */
  at(at: number, fn: () => void): void {
    this.tasks.push({ at, seq: this.seq++, fn });
  }

  /** Ends the current turn: runs what was scheduled for its end. */
  endTurn(): void {
    while (this.turnEnd.length) this.turnEnd.shift()!();
  }

  /** Runs everything due up to `until` (a task due while the loop was busy runs late, as on Node), then sets the clock to it. */
  runUntil(until: number): void {
    this.endTurn();
    for (;;) {
      this.tasks.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.tasks[0];
      if (!next || next.at > until) break;
      this.tasks.shift();
      this.t = Math.max(this.t, next.at);
      next.fn();
      this.endTurn();
    }
    this.t = Math.max(this.t, until);
  }

  private flushing(fn: () => void): () => void {
    return () => {
      this.flushStart = this.t;
      fn();
      this.flushStart = undefined;
    };
  }
}

/** A transport stand-in that records when it was marked and when its flush began; each flush costs `costMs`. */
class Probe implements Flushable {
  markedAt?: number;
  /** First mark to the start of the flush that wrote it, per window. */
  readonly delays: number[] = [];
  /** First mark to the end of its own write, per window: the queueing delay the latency budget bounds. */
  readonly queued: number[] = [];
  flushes = 0;
  /** Events queued since the mark (what one write carries). */
  private queuedEvents = 0;
  constructor(
    private readonly loop: VirtualLoop,
    private readonly window: FlushWindow,
    private readonly costMs: number,
  ) {}
  /** What a transport does when its queue goes from empty to not. */
  dirty(): void {
    this.queuedEvents++;
    if (this.markedAt !== undefined) return;
    this.markedAt = this.loop.t;
    this.window.mark(this);
  }
  flush(): number {
    if (this.markedAt === undefined) return 0;
    this.delays.push(this.loop.flushStart! - this.markedAt);
    this.flushes++;
    this.loop.t += this.costMs;
    this.loop.cpu += this.costMs * this.loop.cpuShare;
    this.queued.push(this.loop.t - this.markedAt);
    this.markedAt = undefined;
    const n = this.queuedEvents;
    this.queuedEvents = 0;
    return n;
  }
}

/** A socket that takes `costMs` of the loop per write (the syscall) and keeps what it got. */
class CostSink implements Sink {
  readonly writes: Buffer[] = [];
  constructor(
    private readonly loop: VirtualLoop,
    private readonly costMs: number,
  ) {}
  write(chunk: Buffer): void {
    this.writes.push(chunk);
    this.loop.t += this.costMs;
  }
  end(): void {}
  destroy(): void {}
  queuedBytes(): number {
    return 0;
  }
  onDrain(cb: () => void): void {
    cb();
  }
  ids(): number[] {
    // The events' own ids, from their envelopes (the `id:` line is the connection's cursor).
    return [...Buffer.concat(this.writes).toString().matchAll(/^data: \{"channel":"[^"]*","id":"(\d+)"/gm)].map((m) => Number(m[1]));
  }
}

const envelope = (seq: number, channel: string) => JSON.stringify({ channel, id: String(seq), type: 'score', data: { n: seq }, ts: 1 });

const adaptive = (loop: VirtualLoop, maxWriteDelayMs = 100, latencyBudgetMs = 100) => new FlushWindow({ maxWriteDelayMs, latencyBudgetMs, now: loop.now, scheduler: loop });

describe('adaptive write window (virtual time)', () => {
  test('at zero load nothing waits: a mark flushes at the end of the current turn', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop);
    const probes = Array.from({ length: 10 }, () => new Probe(loop, window, 0.01));
    // One event every second, to all ten: each window is a tenth of a millisecond of writes.
    for (let i = 0; i < 20; i++) loop.at(i * 1000, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(30_000);
    expect(loop.waits).toEqual([]);
    expect(loop.immediates).toBe(20);
    for (const p of probes) expect(p.delays).toEqual(Array(20).fill(0));
  });

  test('a slow flush followed by spare time does not delay the next event', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop);
    const probes = Array.from({ length: 160 }, () => new Probe(loop, window, 0.25));
    loop.at(0, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(100); // the flush took 40 ms and ended at 40; nothing since
    expect(window.lastFlushMs).toBe(40);
    loop.at(1000, () => probes[0].dirty());
    loop.runUntil(2000);
    expect(loop.waits).toEqual([]);
    expect(probes[0].delays).toEqual([0, 0]);
  });

  test('each event waits at most latencyBudgetMs from its mark to the end of its write, the flush itself included', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 60);
    // A flush of all 160 takes 40 ms; events to all of them every 5 ms, faster than the loop flushes.
    const probes = Array.from({ length: 160 }, () => new Probe(loop, window, 0.25));
    for (let i = 0; i < 100; i++) loop.at(i * 5, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(2000);
    // The first window measured 40 ms of flush: the next ones wait what is left of the 60, not 40.
    expect(loop.waits[0]).toBe(20);
    expect(window.overheadMs).toBe(40);
    const queued = probes.flatMap((p) => p.queued);
    expect(Math.max(...queued)).toBeLessThanOrEqual(60);
    expect(probes.every((p) => p.markedAt === undefined)).toBe(true);
  });

  test('a short flush under load lets the window batch what the budget leaves, not only as long as the flush took', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // A flush of all 20 takes 5 ms; events to all every 2 ms for 1 s.
    const probes = Array.from({ length: 20 }, () => new Probe(loop, window, 0.25));
    for (let i = 0; i < 500; i++) loop.at(i * 2, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(3000);
    expect(loop.waits[0]).toBe(95);
    // About one write per stream per 100 ms once the flush duty has risen past 0.3 (some 90 ms of back-to-back
    // flushes; the rule that followed the flush wrote every 10 ms).
    for (const p of probes) expect(p.flushes).toBeLessThanOrEqual(30);
    expect(Math.max(...probes.flatMap((p) => p.queued))).toBeLessThanOrEqual(100);
  });

  test('when the measured overhead alone fills the budget, no window waits', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // A flush of all 500 takes 250 ms, more than the whole budget: waiting would only add to it.
    const probes = Array.from({ length: 500 }, () => new Probe(loop, window, 0.5));
    for (let i = 0; i < 10; i++) loop.at(i * 10, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(10_000);
    expect(window.lastFlushMs).toBe(250);
    expect(loop.waits).toEqual([]);
    expect(window.waits).toBe(0);
  });

  test('the overhead estimate rises at once and falls by a quarter of the gap per window', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    const many = Array.from({ length: 160 }, () => new Probe(loop, window, 0.25));
    loop.at(0, () => many.forEach((p) => p.dirty()));
    loop.runUntil(1);
    expect(window.overheadMs).toBe(40);
    // A lone event, long after: written at once, its window's overhead 0.25 ms.
    loop.at(1000, () => many[0].dirty());
    loop.runUntil(1001);
    expect(window.overheadMs).toBeCloseTo(40 + (0.25 - 40) / 4, 9);
  });

  test('flushes shorter than the threshold never make a window wait', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop);
    const probes = Array.from({ length: 10 }, () => new Probe(loop, window, (ADAPTIVE_MIN_FLUSH_MS * 0.99) / 10));
    // Back to back: every event arrives while the previous flush runs, but each flush is short.
    for (let i = 0; i < 50; i++) loop.at(i * 0.1, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(1000);
    expect(loop.waits).toEqual([]);
  });

  test.each([1, 2, 3, 4, 5])('under load (seed %i) no transport waits longer than the budget from its first mark to its flush', (seed) => {
    const rnd = prng(seed);
    const loop = new VirtualLoop();
    const budget = 20 + Math.floor(rnd() * 80);
    const window = adaptive(loop, budget);
    const probes = Array.from({ length: 200 + Math.floor(rnd() * 800) }, () => new Probe(loop, window, 0.05 + rnd() * 0.2));
    // Bursts to random subsets at random moments, some of them faster than the loop can flush.
    let t = 0;
    for (let i = 0; i < 400; i++) {
      t += rnd() < 0.2 ? rnd() * 500 : rnd() * 30;
      const from = Math.floor(rnd() * probes.length);
      const to = Math.min(probes.length, from + Math.floor(rnd() * probes.length));
      loop.at(t, () => {
        for (let j = from; j < to; j++) probes[j].dirty();
      });
    }
    loop.runUntil(t + 10_000);
    const delays = probes.flatMap((p) => p.delays);
    expect(loop.waits.length).toBeGreaterThan(0); // the adaptive path ran
    expect(Math.max(...loop.waits)).toBeLessThanOrEqual(budget);
    expect(Math.max(...delays)).toBeLessThanOrEqual(budget);
    expect(probes.every((p) => p.markedAt === undefined)).toBe(true); // everything flushed
  });

  test('per-connection order and no loss across adaptive windows with a publisher running', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100);
    const channels = ['scores:a', 'scores:b', 'scores:c'];
    // 2,000 streams, each on one of three channels; 0.02 ms per socket write: a flush of all is 40 ms.
    const streams = Array.from({ length: 2000 }, (_, i) => {
      const sink = new CostSink(loop, 0.02);
      return { channel: channels[i % 3], sink, t: new SseTransport(sink, window, 1 << 20, 3000) };
    });
    loop.runUntil(0);
    const sent = new Map<string, number[]>(channels.map((c) => [c, []]));
    // A publisher at 60 events/s across the channels for 2 s (each event to a third of the streams).
    let seq = 0;
    for (let i = 0; i < 120; i++) {
      const channel = channels[i % 3];
      const id = ++seq;
      sent.get(channel)!.push(id);
      loop.at(i * (1000 / 60), () => {
        const e = new LiveEvent(channel, envelope(id, channel));
        for (const s of streams) if (s.channel === channel) s.t.event(e);
      });
      if (i % 40 === 39) loop.at(i * (1000 / 60), () => streams.forEach((s) => s.t.heartbeat()));
    }
    loop.runUntil(5000);
    expect(loop.waits.length).toBeGreaterThan(0);
    expect(Math.max(...loop.waits)).toBeLessThanOrEqual(100);
    let writes = 0;
    for (const s of streams) {
      expect(s.sink.ids()).toEqual(sent.get(s.channel));
      writes += s.sink.writes.length;
    }
    // Coalesced: fewer socket writes than frames (each stream got 40 events, 3 heartbeats and its retry hint).
    expect(writes).toBeLessThan(streams.length * 44);
  });
});

describe('when a window waits: the loop\'s flush duty, not the last gap', () => {
  /** A broadcast to all `probes` every `periodMs` for `events` events, on the window of `loop`. */
  const broadcast = (loop: VirtualLoop, probes: Probe[], periodMs: number, events: number) => {
    for (let i = 0; i < events; i++) loop.at(i * periodMs, () => probes.forEach((p) => p.dirty()));
  };

  test('a periodic broadcast whose flush takes 40 % of the period batches: a wait per window, about one write per two events', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // 80 streams at 0.25 ms a write: a flush of all is 20 ms, every 50 ms (20 msg/s). The loop is idle 30 ms after each
    // flush, longer than the flush took: the rule that flushed whenever the loop had gone a flush's length without
    // anything to write never waited here, and wrote every event to every stream on its own.
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 100);
    loop.runUntil(10_000);
    expect(loop.waits.length).toBeGreaterThan(0);
    expect(loop.waits[0]).toBe(80); // the budget less the 20 ms of flush the window measured
    // After the immediate windows of the duty's rise (400 ms), every window waits: two events per write.
    expect(loop.immediates).toBeLessThanOrEqual(10);
    expect(loop.immediatesAfterWait).toBe(0);
    for (const p of probes) expect(p.flushes).toBeLessThanOrEqual(56);
    // And the budget holds: no event waited longer than 100 ms from its mark to the end of its write.
    expect(Math.max(...probes.flatMap((p) => p.queued))).toBeLessThanOrEqual(100);
    expect(probes.every((p) => p.markedAt === undefined)).toBe(true);
  });

  test('under a smaller budget the same broadcast waits only what the budget leaves after the measured flush', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 45);
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 100);
    loop.runUntil(10_000);
    expect(loop.waits.length).toBeGreaterThan(0);
    expect(Math.max(...loop.waits)).toBeLessThanOrEqual(25);
    expect(Math.max(...probes.flatMap((p) => p.queued))).toBeLessThanOrEqual(45);
  });

  test('a wait that collects no second frame (events come less often than the budget lets a window wait) is held off: under 1 % of events wait, and a wait that collects ends the hold', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 45);
    // The broadcast above (a 20-ms flush every 50 ms: duty 0.4) under a 45-ms budget: a window may wait 25 ms, half the
    // period, so no wait ever collects a second event. Before the hold every window waited 25 ms for nothing.
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 1200);
    loop.runUntil(60_000);
    const delays = probes.flatMap((p) => p.delays);
    expect(delays.length).toBe(80 * 1200);
    // The first waits until their average of frames per write falls under 1.1 (from the presumed 2: nine windows),
    // then one after 1, 2 and 4 s and every 8 s after: each wasted, each delaying one window's events.
    expect(loop.waits.length).toBeGreaterThanOrEqual(12);
    expect(loop.waits.length).toBeLessThanOrEqual(20);
    expect(window.wastedWaits).toBe(loop.waits.length - 8);
    const late = probes.flatMap((p) => p.delays.slice(200));
    expect(late.filter((d) => d > 0).length / late.length).toBeLessThan(0.01);
    expect(Math.max(...probes.flatMap((p) => p.queued))).toBeLessThanOrEqual(45);
    // Then the events come every 20 ms (a 20-ms flush, the loop fully busy): the next wait collects, and every window waits again.
    const waitsBefore = loop.waits.length;
    for (let i = 0; i < 1000; i++) loop.at(60_000 + i * 20, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(80_000);
    const flushesBefore = probes[0].flushes;
    expect(loop.waits.length - waitsBefore).toBeGreaterThan(100);
    expect(window.wastedWaits).toBeLessThanOrEqual(waitsBefore + 1);
    // The last 10 s: at most one write per two events per stream.
    for (let i = 0; i < 500; i++) loop.at(80_000 + i * 20, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(90_100);
    for (const p of probes) expect(p.flushes - flushesBefore).toBeLessThanOrEqual(260);
  });

  test('waits that collect on average keep going though every other window collects nothing: the waits are judged on average, not one by one', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 60);
    // The broadcast above (a 20-ms flush every 50 ms) under a 60-ms budget: a window waits 40 ms. One opened by an event
    // collects no other before its flush, and the next event arrives during that flush; the window it opens at the
    // flush's end holds it and collects the one after: one frame, two, one, two. Judged window by window, the first
    // one-frame wait held the waits off and every event went out on its own (400 writes per stream for 400 events);
    // on average the waits collect 1.5 (270).
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 400);
    loop.runUntil(30_000);
    expect(loop.waits.length).toBeGreaterThan(200);
    expect(window.wastedWaits).toBe(0);
    for (const p of probes) expect(p.flushes).toBeLessThanOrEqual(300);
    expect(Math.max(...probes.flatMap((p) => p.queued))).toBeLessThanOrEqual(60);
  });

  test('a flush that is long in wall time but short in CPU time (other processes on the cores) does not make the window wait', () => {
    const loop = new VirtualLoop();
    const window = new FlushWindow({ maxWriteDelayMs: 100, latencyBudgetMs: 100, now: loop.now, cpuNow: loop.cpuNow, scheduler: loop });
    // The broadcast above (a 20-ms flush every 50 ms), but the task gets a quarter of the core while it flushes: 5 ms
    // of its own work per 50 ms, a light task on a busy host. With the flush's wall time as busy time it batched.
    loop.cpuShare = 0.25;
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 100);
    loop.runUntil(10_000);
    expect(loop.waits).toEqual([]);
    expect(loop.immediates).toBe(100);
  });

  test('a window of a few streams reads no CPU time (two system calls that would cost more than its flush); a window of many does', () => {
    const loop = new VirtualLoop();
    let reads = 0;
    const cpuNow = () => {
      reads++;
      return loop.cpu;
    };
    const window = new FlushWindow({ maxWriteDelayMs: 100, latencyBudgetMs: 100, now: loop.now, cpuNow, scheduler: loop });
    // A reconnect storm's windows: each a stream or two being answered (`ready`), one after another.
    const few = Array.from({ length: CPU_TIME_MIN_STREAMS - 1 }, () => new Probe(loop, window, 0.01));
    for (let i = 0; i < 50; i++) loop.at(i * 10, () => few.forEach((p) => p.dirty()));
    loop.runUntil(1_000);
    expect(loop.immediates).toBe(50);
    expect(reads).toBe(0);
    // A broadcast to many: the duty reads the CPU time around the flush, as before.
    const many = Array.from({ length: CPU_TIME_MIN_STREAMS }, () => new Probe(loop, window, 0.01));
    loop.at(2_000, () => many.forEach((p) => p.dirty()));
    loop.runUntil(3_000);
    expect(reads).toBe(2);
  });

  test('a lightly loaded loop (a 5-ms flush every 50 ms) writes every event at the end of its turn', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    const probes = Array.from({ length: 20 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 100);
    loop.runUntil(10_000);
    expect(loop.waits).toEqual([]);
    expect(loop.immediates).toBe(100);
    for (const p of probes) expect(p.delays).toEqual(Array(100).fill(0));
  });

  test('an event that comes soon after a flush does not make a mostly idle loop wait', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // Once a second a pair of events 3 ms apart; each flush takes 5 ms. The second event of each pair arrives before
    // the loop has gone a flush's length without writing (the rule before waited 95 ms for it), but the loop spends
    // well under a tenth of its time flushing.
    const probes = Array.from({ length: 20 }, () => new Probe(loop, window, 0.25));
    for (let i = 0; i < 10; i++) {
      loop.at(i * 1000, () => probes.forEach((p) => p.dirty()));
      loop.at(i * 1000 + 8, () => probes.forEach((p) => p.dirty()));
    }
    loop.runUntil(20_000);
    expect(loop.waits).toEqual([]);
    for (const p of probes) expect(p.delays).toEqual(Array(20).fill(0));
  });

  test('once batching, the window keeps batching while events keep coming, though batched flushes use less of the wall time (a flush counts as long as a write per frame would take)', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // 30 streams at 50 msg/s: a 7.5-ms flush every 20 ms (37 % of the loop) starts batching. Batched, a flush of five
    // events per stream every 100 ms is 7.5 % of the wall time, under the exit threshold; counted as the five writes
    // per stream it saves, it is 37 % again, so the window stays.
    const probes = Array.from({ length: 30 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 20, 500);
    loop.runUntil(20_000);
    expect(loop.waits.length).toBeGreaterThanOrEqual(85);
    expect(loop.immediatesAfterWait).toBe(0);
    for (const p of probes) expect(p.flushes).toBeLessThanOrEqual(120);
  });

  test('a lightly loaded loop that one slow flush made batch goes back to writing at once', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    // A 5-ms flush every 50 ms (10 % of the loop), and at 1 s one 150-ms flush (a slow moment): the windows after it
    // wait, and a batched flush of two events per stream, 10 ms of writes per 100 ms, brings the duty back down.
    const probes = Array.from({ length: 20 }, () => new Probe(loop, window, 0.25));
    const slow = new Probe(loop, window, 150);
    broadcast(loop, probes, 50, 200);
    loop.at(1000, () => slow.dirty());
    loop.runUntil(20_000);
    expect(loop.waits.length).toBeGreaterThan(0);
    expect(loop.waits.length).toBeLessThanOrEqual(10);
    // The last 100 events (from 5 s on) are each written at the end of their turn.
    for (const p of probes) expect(p.delays.slice(-100)).toEqual(Array(100).fill(0));
  });

  test('when the broadcast stops and events become rare, the window goes back to writing at once', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 100, 100);
    const probes = Array.from({ length: 80 }, () => new Probe(loop, window, 0.25));
    broadcast(loop, probes, 50, 40); // 2 s of load: batching
    loop.runUntil(3000);
    expect(loop.waits.length).toBeGreaterThan(0);
    const waitsBefore = loop.waits.length;
    // Then one event a second.
    for (let i = 0; i < 5; i++) loop.at(5000 + i * 1000, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(20_000);
    expect(loop.waits.length).toBe(waitsBefore);
    for (const p of probes) expect(p.delays.slice(-5)).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('fixed windows', () => {
  test('WRITE_DELAY_MS > 0 (manual override): every window waits that long, loaded or not', () => {
    const loop = new VirtualLoop();
    const window = new FlushWindow({ writeDelayMs: 50, maxWriteDelayMs: 10, now: loop.now, scheduler: loop });
    const probes = Array.from({ length: 160 }, () => new Probe(loop, window, 0.25));
    loop.at(0, () => probes[0].dirty());
    loop.at(1000, () => probes.forEach((p) => p.dirty()));
    loop.at(1060, () => probes[1].dirty()); // during the 40-ms flush that started at 1050: handled at 1090
    loop.runUntil(5000);
    expect(loop.waits).toEqual([50, 50, 50]);
    expect(loop.immediates).toBe(0);
    expect(probes[0].delays).toEqual([50, 50]);
    expect(probes[1].delays).toEqual([50, 50]);
  });

  test('MAX_WRITE_DELAY_MS=0 turns adaptation off: every window flushes at the end of its turn, however slow the last flush', () => {
    const loop = new VirtualLoop();
    const window = adaptive(loop, 0);
    const probes = Array.from({ length: 500 }, () => new Probe(loop, window, 0.5));
    for (let i = 0; i < 10; i++) loop.at(i * 10, () => probes.forEach((p) => p.dirty()));
    loop.runUntil(10_000);
    expect(window.lastFlushMs).toBe(250);
    expect(loop.waits).toEqual([]);
    expect(loop.immediates).toBe(10);
    expect(window.waits).toBe(0);
  });
});
