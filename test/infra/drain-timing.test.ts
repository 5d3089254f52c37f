/** The stop sequence of an SSE task, computed in one place (lib/drain-timing.ts). */
import {
  DRAIN_MARGIN_MS,
  drainTiming,
  ELB_DESCRIBE_REFILL_PER_SECOND,
  EXIT_MARGIN_SECONDS,
  FARGATE_MAX_STOP_TIMEOUT_SECONDS,
  maxTasksForDelay,
  minDeregistrationDelaySeconds,
  MIN_DRAIN_MS,
  STOP_POLL_MS,
  TARGET_HEALTH_BUDGET_PER_SECOND,
  targetHealthPollMs,
} from '../../lib/drain-timing';

/** 1..1000: every maxTasks the construct accepts. */
const ALL_TASK_COUNTS = Array.from({ length: 1000 }, (_, i) => i + 1);

describe('targetHealthPollMs(maxTasks): the DescribeTargetHealth budget', () => {
  test('the budget is a stated, small share of the documented Describe* refill (10 % of 10 tokens/s)', () => {
    expect(ELB_DESCRIBE_REFILL_PER_SECOND).toBe(10);
    expect(TARGET_HEALTH_BUDGET_PER_SECOND).toBe(1);
    expect(TARGET_HEALTH_BUDGET_PER_SECOND / ELB_DESCRIBE_REFILL_PER_SECOND).toBeLessThanOrEqual(0.1);
  });

  test('maxTasks 1..1000: the whole fleet polls at most the budget, never faster than the metadata poll, in whole ms', () => {
    for (const n of ALL_TASK_COUNTS) {
      const ms = targetHealthPollMs(n);
      expect(Number.isInteger(ms)).toBe(true);
      expect(ms).toBeGreaterThanOrEqual(STOP_POLL_MS);
      expect((n * 1000) / ms).toBeLessThanOrEqual(TARGET_HEALTH_BUDGET_PER_SECOND);
    }
  });

  test('not slower than the budget needs: one step above the floor, the interval is exactly maxTasks / budget', () => {
    expect(targetHealthPollMs(1)).toBe(STOP_POLL_MS);
    expect(targetHealthPollMs(2)).toBe(2000);
    expect(targetHealthPollMs(10)).toBe(10_000);
    expect(targetHealthPollMs(20)).toBe(20_000);
    expect(targetHealthPollMs(1000)).toBe(1_000_000);
  });
});

describe('drainTiming(deregistrationDelaySeconds, maxTasks)', () => {
  test('default stage (30 s delay, maxTasks 10): the target health poll every 10 s, a 17 s drain, stopTimeout 22 s', () => {
    expect(drainTiming(30, 10)).toEqual({ drainTimeoutMs: 17_000, stopPollMs: 2000, targetHealthPollMs: 10_000, stopTimeoutSeconds: 22 });
  });

  test('a single task polls no slower than the metadata: the shortest delay is 10 s, exactly the minimum drain', () => {
    expect(minDeregistrationDelaySeconds(1)).toBe(10);
    expect(drainTiming(10, 1)).toEqual({ drainTimeoutMs: MIN_DRAIN_MS, stopPollMs: STOP_POLL_MS, targetHealthPollMs: STOP_POLL_MS, stopTimeoutSeconds: 10 });
  });

  test('no room for a drain: undefined (the construct turns it into an error that names both fixes)', () => {
    expect(drainTiming(9, 1)).toBeUndefined();
    expect(drainTiming(0, 1)).toBeUndefined();
    // 40 tasks poll every 40 s: the drain would start after the 30 s delay is over.
    expect(drainTiming(30, 40)).toBeUndefined();
    expect(minDeregistrationDelaySeconds(40)).toBe(48);
    expect(drainTiming(48, 40)).toBeDefined();
    expect(maxTasksForDelay(30)).toBe(22);
    expect(drainTiming(30, 22)).toBeDefined();
    expect(drainTiming(30, 23)).toBeUndefined();
  });

  test('long delay: the drain is capped so the SIGTERM fallback fits in Fargate\'s 120 s stopTimeout', () => {
    expect(drainTiming(300, 10)).toEqual({ drainTimeoutMs: 115_000, stopPollMs: 2000, targetHealthPollMs: 10_000, stopTimeoutSeconds: 120 });
    expect(drainTiming(3600, 1000)?.stopTimeoutSeconds).toBe(FARGATE_MAX_STOP_TIMEOUT_SECONDS);
  });

  test('maxTasks 1..1000 x delays 0..3600 s: defined exactly from the minimum delay on; then the drain starts after the later signal and still ends inside the delay', () => {
    const delays = [0, 9, 10, 11, 15, 29, 30, 31, 45, 59, 60, 61, 90, 120, 122, 123, 125, 300, 600, 1007, 1008, 3600];
    // Collected, then asserted once (a million expect() calls would take a while on a loaded CI machine).
    const broken: string[] = [];
    const check = (ok: boolean, what: string) => ok || broken.push(what);
    for (const n of ALL_TASK_COUNTS) {
      const min = minDeregistrationDelaySeconds(n);
      for (const delay of [...delays, min - 1, min]) {
        const at = `maxTasks ${n}, delay ${delay} s`;
        const t = drainTiming(delay, n);
        if (delay < min) {
          check(t === undefined, `${at}: defined below the minimum delay`);
          check(maxTasksForDelay(delay) < n, `${at}: maxTasksForDelay says it fits`);
          continue;
        }
        if (!t) {
          broken.push(`${at}: undefined from the minimum delay on`);
          continue;
        }
        check(maxTasksForDelay(delay) >= n, `${at}: maxTasksForDelay says it does not fit`);
        check(t.targetHealthPollMs === targetHealthPollMs(n), `${at}: another target health interval`);
        check(Math.max(t.stopPollMs, t.targetHealthPollMs) + t.drainTimeoutMs + DRAIN_MARGIN_MS <= delay * 1000, `${at}: drain ends after the delay`);
        check(t.drainTimeoutMs >= MIN_DRAIN_MS, `${at}: drain below the minimum`);
        check(t.stopTimeoutSeconds * 1000 >= t.drainTimeoutMs + EXIT_MARGIN_SECONDS * 1000, `${at}: stopTimeout shorter than drain and exit`);
        check(t.stopTimeoutSeconds <= FARGATE_MAX_STOP_TIMEOUT_SECONDS && Number.isInteger(t.stopTimeoutSeconds), `${at}: stopTimeout not an integer within 120 s`);
      }
    }
    expect(broken).toEqual([]);
  });
});
