/** The stop sequence of an SSE task, computed in one place (lib/drain-timing.ts). */
import {
  DRAIN_MARGIN_MS,
  drainTiming,
  EXIT_MARGIN_SECONDS,
  FARGATE_MAX_STOP_TIMEOUT_SECONDS,
  MIN_DEREGISTRATION_DELAY_SECONDS,
  MIN_DRAIN_MS,
  STOP_POLL_MS,
} from '../../lib/drain-timing';

describe('drainTiming(deregistrationDelaySeconds)', () => {
  test('default delay (30 s): a 25 s drain after a 2 s poll with a 3 s margin, stopTimeout 30 s', () => {
    expect(drainTiming(30)).toEqual({ drainTimeoutMs: 25_000, stopPollMs: 2000, stopTimeoutSeconds: 30 });
  });

  test('shortest delay: exactly the minimum drain', () => {
    expect(MIN_DEREGISTRATION_DELAY_SECONDS).toBe(10);
    expect(drainTiming(MIN_DEREGISTRATION_DELAY_SECONDS)).toEqual({ drainTimeoutMs: MIN_DRAIN_MS, stopPollMs: STOP_POLL_MS, stopTimeoutSeconds: 10 });
  });

  test('delay too short for a drain: undefined (the construct turns it into an error)', () => {
    expect(drainTiming(MIN_DEREGISTRATION_DELAY_SECONDS - 1)).toBeUndefined();
    expect(drainTiming(0)).toBeUndefined();
  });

  test('long delay: the drain is capped so the SIGTERM fallback fits in Fargate\'s 120 s stopTimeout', () => {
    expect(drainTiming(300)).toEqual({ drainTimeoutMs: 115_000, stopPollMs: 2000, stopTimeoutSeconds: 120 });
    expect(drainTiming(3600)?.stopTimeoutSeconds).toBe(FARGATE_MAX_STOP_TIMEOUT_SECONDS);
  });

  test.each([10, 11, 15, 30, 59, 60, 61, 90, 120, 122, 123, 125, 300, 3600])('delay %i s: drain ends inside the delay, stopTimeout covers drain and exit, at most 120 s', (delay) => {
    const t = drainTiming(delay)!;
    expect(t.stopPollMs + t.drainTimeoutMs + DRAIN_MARGIN_MS).toBeLessThanOrEqual(delay * 1000);
    expect(t.drainTimeoutMs).toBeGreaterThanOrEqual(MIN_DRAIN_MS);
    expect(t.stopTimeoutSeconds * 1000).toBeGreaterThanOrEqual(t.drainTimeoutMs + EXIT_MARGIN_SECONDS * 1000);
    expect(t.stopTimeoutSeconds).toBeLessThanOrEqual(FARGATE_MAX_STOP_TIMEOUT_SECONDS);
    expect(Number.isInteger(t.stopTimeoutSeconds)).toBe(true);
  });
});
