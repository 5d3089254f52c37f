import type { Logger } from 'pino';
import type { TargetHealth } from '../core/aws/elb';

/**
 * What the task metadata endpoint v4 `/task` answers, as far as we read it. AWS documents the fields:
 * https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4-response.html
 */
export interface TaskMetadata {
  readonly DesiredStatus?: string;
  readonly KnownStatus?: string;
  /** Each container's networks; with `awsvpc` (Fargate) every container has the task's private IP. */
  readonly Containers?: readonly { readonly Networks?: readonly { readonly IPv4Addresses?: readonly string[] }[] }[];
}

/** Why the drain started. */
export type StopSignal = 'metadata' | 'target-health';

/** Timers the watch runs on: the process's by default, a virtual clock in tests. */
export interface Scheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const processTimers: Scheduler = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** The ELB API's answers to a request over the account's rate ("Request throttling for the ELB API"). */
const THROTTLING_CODES = new Set(['Throttling', 'ThrottlingException']);
/** The longest backoff after throttled answers, as a multiple of the target health interval. */
export const TARGET_HEALTH_MAX_BACKOFF = 16;

export interface TaskStopWatchOptions {
  /** `ECS_CONTAINER_METADATA_URI_V4`. */
  readonly metadataUri: string;
  /** Milliseconds between two metadata polls (`STOP_POLL_MS`; a local endpoint, no API quota). */
  readonly intervalMs: number;
  readonly log: Logger;
  /** Called once, with the first signal seen. */
  readonly onStopping: (signal: StopSignal) => void;
  /**
   * The target's health in its target group: asked every `intervalMs` (`TARGET_HEALTH_POLL_MS`, computed by the stack
   * so that the whole fleet stays within its share of the account's ELB API rate) once the task's private IP is known
   * (from the metadata), for `port`. Defaults to none: the metadata alone starts the drain.
   */
  readonly targetHealth?: {
    readonly port: number;
    readonly intervalMs: number;
    readonly describe: (id: string, port: number) => Promise<TargetHealth>;
  };
  /** Timers. Defaults to the process's (unref'd: the watch never keeps the process alive). */
  readonly scheduler?: Scheduler;
  /** Uniform in [0, 1), for the jitter. Defaults to `Math.random`. */
  readonly random?: () => number;
}

/**
 * Watches for the start of the task's deregistration through two signals, each on its own loop, and calls
 * `onStopping` once, on whichever comes first:
 *
 * - the ECS task metadata endpoint v4 (`${ECS_CONTAINER_METADATA_URI_V4}/task`) reporting `DesiredStatus` `STOPPED`,
 *   every `intervalMs`. No AWS page says when it turns STOPPED relative to deregistration (containers-roadmap#2012:
 *   the metadata has no `DEACTIVATING`), so it is not the only signal;
 * - the target's own state in its target group (`DescribeTargetHealth` → `TargetHealth.State` = `draining`), which is
 *   what the Elastic Load Balancing User Guide documents for a deregistering target: it is `draining` for the whole
 *   deregistration delay, while the load balancer keeps its open connections. Every call counts against the
 *   account's `Describe*` bucket, shared by everything in the account and Region ("Request throttling for the ELB
 *   API"), so it runs every `targetHealth.intervalMs`, the first call at a random point of the first interval (tasks
 *   started together do not poll in step), and after a `Throttling`/`ThrottlingException` answer it backs off:
 *   the n-th throttled answer in a row waits a jittered `interval x 2^n` (between half and all of it, at most
 *   {@link TARGET_HEALTH_MAX_BACKOFF} intervals), never less than the interval. An answer that gets through ends the
 *   backoff.
 *
 * Why: behind an ALB, ECS deregisters the task, waits out the deregistration delay and only then sends SIGTERM; the ALB
 * closes the streams still open at the end of that delay
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/load-balancer-connection-draining.html). A drain started
 * by SIGTERM therefore never runs.
 *
 * A source that fails (unreachable, malformed, throttled, access denied) is logged once per failure streak and polled
 * again; it never throws, and the other source still counts. Returns a function that stops the watch.
 */
export function watchTaskStop(options: TaskStopWatchOptions): () => void {
  const { log, intervalMs } = options;
  const timers = options.scheduler ?? processTimers;
  const random = options.random ?? Math.random;
  const url = `${options.metadataUri.replace(/\/+$/, '')}/task`;
  let stopped = false;
  const failing = { metadata: false, 'target-health': false };
  let ip: string | undefined;
  let metadataTimer: unknown;
  let targetTimer: unknown;

  const end = (): void => {
    stopped = true;
    timers.clearTimeout(metadataTimer);
    timers.clearTimeout(targetTimer);
  };
  const fire = (signal: StopSignal): void => {
    if (stopped) return;
    end();
    options.onStopping(signal);
  };
  const failed = (source: StopSignal, what: string, err: unknown, extra?: Record<string, unknown>): void => {
    if (!failing[source]) log.warn({ source, err: err instanceof Error ? err.message : String(err), ...extra }, `${what} unreadable; still polling (SIGTERM still drains)`);
    failing[source] = true;
  };
  const recovered = (source: StopSignal, what: string): void => {
    if (failing[source]) log.info({ source }, `${what} readable again`);
    failing[source] = false;
  };

  const checkMetadata = async (): Promise<void> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1000, intervalMs)) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = (await res.json()) as TaskMetadata;
      if (body === null || typeof body !== 'object' || typeof body.DesiredStatus !== 'string') throw new Error('no DesiredStatus in the answer');
      recovered('metadata', 'ecs task metadata');
      ip ??= body.Containers?.flatMap((c) => c.Networks ?? []).flatMap((n) => n.IPv4Addresses ?? [])[0];
      if (body.DesiredStatus === 'STOPPED') fire('metadata');
    } catch (err) {
      failed('metadata', 'ecs task metadata', err);
    }
  };
  const metadataLoop = (): void => {
    if (stopped) return;
    metadataTimer = timers.setTimeout(() => void checkMetadata().finally(metadataLoop), intervalMs);
  };

  const th = options.targetHealth;
  let throttledInARow = 0;
  /** Milliseconds to the next target health call: the interval, or the backoff after throttled answers. */
  const targetDelay = (interval: number): number => {
    if (throttledInARow === 0) return interval;
    const ceiling = interval * Math.min(2 ** throttledInARow, TARGET_HEALTH_MAX_BACKOFF);
    return Math.max(interval, Math.round(ceiling / 2 + (random() * ceiling) / 2));
  };
  const checkTarget = async (describe: NonNullable<typeof th>['describe'], port: number, id: string): Promise<void> => {
    try {
      const health = await describe(id, port);
      throttledInARow = 0;
      recovered('target-health', 'target health');
      if (health.state === 'draining') fire('target-health');
    } catch (err) {
      const code = (err as { code?: unknown } | undefined)?.code;
      if (typeof code === 'string' && THROTTLING_CODES.has(code)) throttledInARow++;
      else throttledInARow = 0;
      failed('target-health', 'target health', err, throttledInARow > 0 ? { code, backoff: 'the next calls wait longer than TARGET_HEALTH_POLL_MS' } : undefined);
    }
  };
  const targetLoop = (delayMs: number): void => {
    if (stopped || !th) return;
    targetTimer = timers.setTimeout(() => {
      // No IP yet (the metadata has not answered): no call, ask again after the next metadata poll.
      if (!ip) return targetLoop(intervalMs);
      void checkTarget(th.describe, th.port, ip).finally(() => targetLoop(targetDelay(th.intervalMs)));
    }, delayMs);
  };

  metadataLoop();
  if (th) targetLoop(Math.floor(random() * th.intervalMs));
  return end;
}
