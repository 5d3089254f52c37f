/**
 * The one place where the SSE task's stop sequence is computed: the target group's deregistration delay, the drain
 * window (`DRAIN_TIMEOUT_MS`), the ECS task metadata poll interval (`STOP_POLL_MS`) and the container `stopTimeout`.
 * Pure and dependency-free, so it is unit-tested on its own and the template test compares against it.
 */

/**
 * How often the runtime polls the ECS task metadata endpoint v4 for `DesiredStatus=STOPPED`, in milliseconds
 * (`STOP_POLL_MS`; the runtime's default is the same).
 */
export const STOP_POLL_MS = 2000;
/** Slack between the end of the drain and the end of the deregistration delay, in milliseconds. */
export const DRAIN_MARGIN_MS = 3000;
/** Shortest useful drain window, in milliseconds: long enough to spread the reconnects of a full task. */
export const MIN_DRAIN_MS = 5000;
/** Time the process needs after the drain to close Redis, flush logs and exit, in seconds. */
export const EXIT_MARGIN_SECONDS = 5;
/** Fargate's ceiling for a container's `stopTimeout`, in seconds. */
export const FARGATE_MAX_STOP_TIMEOUT_SECONDS = 120;
/** Shortest deregistration delay that leaves {@link MIN_DRAIN_MS} of drain after the poll interval and the margin. */
export const MIN_DEREGISTRATION_DELAY_SECONDS = Math.ceil((STOP_POLL_MS + DRAIN_MARGIN_MS + MIN_DRAIN_MS) / 1000);

/** The stop sequence of an SSE task, derived from the target group's deregistration delay. */
export interface DrainTiming {
  /** `DRAIN_TIMEOUT_MS`: how long the task spends closing its streams (spread out, so clients reconnect elsewhere). */
  readonly drainTimeoutMs: number;
  /** `STOP_POLL_MS`: the metadata poll interval the drain window was computed with. */
  readonly stopPollMs: number;
  /** Container `stopTimeout` in seconds: SIGTERM to SIGKILL. */
  readonly stopTimeoutSeconds: number;
}

/**
 * Derives the drain window and the container stop timeout from the target group's deregistration delay.
 *
 * ECS stops a task behind a load balancer in this order: it deregisters the task from the target group (the task
 * metadata endpoint now reports `DesiredStatus=STOPPED`), waits out the deregistration delay while the ALB keeps the
 * open streams, then sends SIGTERM and, `stopTimeout` later, SIGKILL. The ALB cuts every stream still open when the
 * delay ends, so the drain has to be over by then:
 *
 * - main path: the runtime sees `STOPPED` at most `STOP_POLL_MS` after deregistration and drains for
 *   `DRAIN_TIMEOUT_MS`; `STOP_POLL_MS + DRAIN_TIMEOUT_MS + DRAIN_MARGIN_MS <= deregistration delay`.
 * - fallback (the metadata signal never came): the runtime drains on SIGTERM instead, so `stopTimeout` covers the
 *   drain plus {@link EXIT_MARGIN_SECONDS}, within Fargate's 120 s; the drain is capped so that it fits.
 *
 * Returns `undefined` when the delay is shorter than {@link MIN_DEREGISTRATION_DELAY_SECONDS} (no room for a drain);
 * the caller turns that into an error that names the fix.
 */
export function drainTiming(deregistrationDelaySeconds: number): DrainTiming | undefined {
  if (deregistrationDelaySeconds < MIN_DEREGISTRATION_DELAY_SECONDS) return undefined;
  const insideDelayMs = deregistrationDelaySeconds * 1000 - STOP_POLL_MS - DRAIN_MARGIN_MS;
  const insideStopTimeoutMs = (FARGATE_MAX_STOP_TIMEOUT_SECONDS - EXIT_MARGIN_SECONDS) * 1000;
  const drainTimeoutMs = Math.min(insideDelayMs, insideStopTimeoutMs);
  return {
    drainTimeoutMs,
    stopPollMs: STOP_POLL_MS,
    stopTimeoutSeconds: Math.ceil(drainTimeoutMs / 1000) + EXIT_MARGIN_SECONDS,
  };
}
