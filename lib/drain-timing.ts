/**
 * The one place where the SSE task's stop sequence is computed: the target group's deregistration delay, the drain
 * window (`DRAIN_TIMEOUT_MS`), the ECS task metadata poll interval (`STOP_POLL_MS`), the target health poll interval
 * (`TARGET_HEALTH_POLL_MS`, from the fleet's `maxTasks` and the ELB API budget) and the container `stopTimeout`.
 * Pure and dependency-free, so it is unit-tested on its own and the template test compares against it.
 */

/**
 * How often the runtime polls the ECS task metadata endpoint v4 for `DesiredStatus=STOPPED`, in milliseconds
 * (`STOP_POLL_MS`; the runtime's default is the same). The endpoint is local to the task and costs no API quota.
 */
export const STOP_POLL_MS = 2000;
/**
 * The refill rate of the account's bucket for non-mutating ELB API v2 actions (`Describe*`), in tokens a second, per
 * account and Region, as the example of "Request throttling for the ELB API" gives it
 * (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html): a bucket of 40 tokens
 * refilled at 10 a second, shared by every `Describe*` caller in the account and Region (consoles, scripts, other
 * apps; ECS and CloudFormation have their own buckets).
 */
export const ELB_DESCRIBE_REFILL_PER_SECOND = 10;
/**
 * What the whole fleet's `DescribeTargetHealth` polls may take of that refill, in requests a second account-wide:
 * 1, a tenth of it, at `maxTasks` (a rolling deployment at 200 % runs up to twice the tasks for its length: 2 a second).
 */
export const TARGET_HEALTH_BUDGET_PER_SECOND = 1;
/** Slack between the end of the drain and the end of the deregistration delay, in milliseconds. */
export const DRAIN_MARGIN_MS = 3000;
/** Shortest useful drain window, in milliseconds: long enough to spread the reconnects of a full task. */
export const MIN_DRAIN_MS = 5000;
/** Time the process needs after the drain to close Redis, flush logs and exit, in seconds. */
export const EXIT_MARGIN_SECONDS = 5;
/** Fargate's ceiling for a container's `stopTimeout`, in seconds. */
export const FARGATE_MAX_STOP_TIMEOUT_SECONDS = 120;

/**
 * `TARGET_HEALTH_POLL_MS`: how often each task asks `DescribeTargetHealth` for its own target, so that `maxTasks`
 * tasks together stay within {@link TARGET_HEALTH_BUDGET_PER_SECOND} (`maxTasks / interval <= budget`), and never
 * more often than the metadata poll. The runtime jitters the first poll over one interval (tasks started together do
 * not align) and backs off on throttling, never polling faster than this.
 */
export function targetHealthPollMs(maxTasks: number): number {
  return Math.max(STOP_POLL_MS, Math.ceil((maxTasks * 1000) / TARGET_HEALTH_BUDGET_PER_SECOND));
}

/** The later of the two signals, worst case: if the metadata never turns STOPPED, the target health poll starts the drain. */
function signalLatencyMs(maxTasks: number): number {
  return Math.max(STOP_POLL_MS, targetHealthPollMs(maxTasks));
}

/** Shortest deregistration delay that leaves {@link MIN_DRAIN_MS} of drain after the later signal and the margin. */
export function minDeregistrationDelaySeconds(maxTasks: number): number {
  return Math.ceil((signalLatencyMs(maxTasks) + DRAIN_MARGIN_MS + MIN_DRAIN_MS) / 1000);
}

/** Largest `maxTasks` whose target health poll leaves {@link MIN_DRAIN_MS} of drain in `deregistrationDelaySeconds` (0: none). */
export function maxTasksForDelay(deregistrationDelaySeconds: number): number {
  const roomMs = deregistrationDelaySeconds * 1000 - DRAIN_MARGIN_MS - MIN_DRAIN_MS;
  if (roomMs < STOP_POLL_MS) return 0;
  return Math.floor((roomMs * TARGET_HEALTH_BUDGET_PER_SECOND) / 1000);
}

/** The stop sequence of an SSE task, derived from the target group's deregistration delay and the fleet's size. */
export interface DrainTiming {
  /** `DRAIN_TIMEOUT_MS`: how long the task spends closing its streams (spread out, so clients reconnect elsewhere). */
  readonly drainTimeoutMs: number;
  /** `STOP_POLL_MS`: the metadata poll interval the drain window was computed with. */
  readonly stopPollMs: number;
  /** `TARGET_HEALTH_POLL_MS`: the `DescribeTargetHealth` poll interval ({@link targetHealthPollMs}). */
  readonly targetHealthPollMs: number;
  /** Container `stopTimeout` in seconds: SIGTERM to SIGKILL. */
  readonly stopTimeoutSeconds: number;
}

/**
 * Derives the poll intervals, the drain window and the container stop timeout from the target group's deregistration
 * delay and the service's `maxTasks`.
 *
 * ECS stops a task behind a load balancer in this order: it deregisters the task from the target group (the target
 * turns `draining`; the task metadata endpoint reports `DesiredStatus=STOPPED`), waits out the deregistration delay
 * while the ALB keeps the open streams, then sends SIGTERM and, `stopTimeout` later, SIGKILL. The ALB cuts every
 * stream still open when the delay ends, so the drain has to be over by then:
 *
 * - main path: the runtime sees one of the signals at most one interval of that signal's poll after deregistration.
 *   AWS documents only the target's `draining` state for that moment, so the worst case is the later of the two
 *   (the metadata may never turn STOPPED first): `max(STOP_POLL_MS, TARGET_HEALTH_POLL_MS) + DRAIN_TIMEOUT_MS +
 *   DRAIN_MARGIN_MS <= deregistration delay`. A throttled `DescribeTargetHealth` backs off beyond its interval; then
 *   the metadata or SIGTERM starts the drain.
 * - fallback (neither signal came): the runtime drains on SIGTERM instead, so `stopTimeout` covers the drain plus
 *   {@link EXIT_MARGIN_SECONDS}, within Fargate's 120 s; the drain is capped so that it fits.
 *
 * Returns `undefined` when the delay is shorter than {@link minDeregistrationDelaySeconds} for `maxTasks` (no room
 * for a drain); the caller turns that into an error that names the fix.
 */
export function drainTiming(deregistrationDelaySeconds: number, maxTasks: number): DrainTiming | undefined {
  if (deregistrationDelaySeconds < minDeregistrationDelaySeconds(maxTasks)) return undefined;
  const insideDelayMs = deregistrationDelaySeconds * 1000 - signalLatencyMs(maxTasks) - DRAIN_MARGIN_MS;
  const insideStopTimeoutMs = (FARGATE_MAX_STOP_TIMEOUT_SECONDS - EXIT_MARGIN_SECONDS) * 1000;
  const drainTimeoutMs = Math.min(insideDelayMs, insideStopTimeoutMs);
  return {
    drainTimeoutMs,
    stopPollMs: STOP_POLL_MS,
    targetHealthPollMs: targetHealthPollMs(maxTasks),
    stopTimeoutSeconds: Math.ceil(drainTimeoutMs / 1000) + EXIT_MARGIN_SECONDS,
  };
}
