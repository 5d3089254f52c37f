import type { Logger } from 'pino';
import type { TargetHealth } from '../core/elb';

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

export interface TaskStopWatchOptions {
  /** `ECS_CONTAINER_METADATA_URI_V4`. */
  readonly metadataUri: string;
  /** Milliseconds between two rounds of polls. */
  readonly intervalMs: number;
  readonly log: Logger;
  /** Called once, with the first signal seen. */
  readonly onStopping: (signal: StopSignal) => void;
  /**
   * The target's health in its target group: asked each round once the task's private IP is known (from the
   * metadata), for `port`. Defaults to none: the metadata alone starts the drain.
   */
  readonly targetHealth?: {
    readonly port: number;
    readonly describe: (id: string, port: number) => Promise<TargetHealth>;
  };
}

/**
 * Watches for the start of the task's deregistration, every `intervalMs`, through two signals, and calls
 * `onStopping` once, on whichever comes first:
 *
 * - the ECS task metadata endpoint v4 (`${ECS_CONTAINER_METADATA_URI_V4}/task`) reporting `DesiredStatus` `STOPPED`.
 *   No AWS page says when it turns STOPPED relative to deregistration (containers-roadmap#2012: the metadata has no
 *   `DEACTIVATING`), so it is not the only signal;
 * - the target's own state in its target group (`DescribeTargetHealth` → `TargetHealth.State` = `draining`), which is
 *   what the Elastic Load Balancing User Guide documents for a deregistering target: it is `draining` for the whole
 *   deregistration delay, while the load balancer keeps its open connections.
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
  const url = `${options.metadataUri.replace(/\/+$/, '')}/task`;
  let stopped = false;
  const failing = { metadata: false, 'target-health': false };
  let ip: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  const fire = (signal: StopSignal): void => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    options.onStopping(signal);
  };
  const failed = (source: StopSignal, what: string, err: unknown): void => {
    if (!failing[source]) log.warn({ source, err: err instanceof Error ? err.message : String(err) }, `${what} unreadable; still polling (SIGTERM still drains)`);
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

  const checkTarget = async (): Promise<void> => {
    const th = options.targetHealth;
    if (!th || !ip) return;
    try {
      const health = await th.describe(ip, th.port);
      recovered('target-health', 'target health');
      if (health.state === 'draining') fire('target-health');
    } catch (err) {
      failed('target-health', 'target health', err);
    }
  };

  const loop = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      // The metadata first: it gives the target's IP; then both in parallel from the next round on.
      const round = ip ? Promise.all([checkMetadata(), checkTarget()]) : checkMetadata().then(checkTarget);
      round.finally(loop);
    }, intervalMs);
    timer.unref();
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
