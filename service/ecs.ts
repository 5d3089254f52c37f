import type { Logger } from 'pino';

/**
 * What the task metadata endpoint v4 `/task` answers, as far as we read it. AWS documents the fields:
 * https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4-response.html
 */
export interface TaskMetadata {
  readonly DesiredStatus?: string;
  readonly KnownStatus?: string;
}

/**
 * Watches the ECS task metadata endpoint v4 (`${ECS_CONTAINER_METADATA_URI_V4}/task`) every
 * `intervalMs` and calls `onStopping` once, when `DesiredStatus` is `STOPPED`.
 *
 * Why: behind an ALB, ECS deregisters the task, waits out the deregistration delay and only then
 * sends SIGTERM; the ALB closes the streams still open at the end of that delay
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/load-balancer-connection-draining.html).
 * A drain started by SIGTERM therefore never runs. ECS sets the desired status to STOPPED when it
 * decides to stop the task, at the start of that sequence, so the task can move its streams away
 * (jittered) while the ALB still holds them. That DesiredStatus turns STOPPED at the start of
 * deactivation is what we rely on; it is not verified on AWS by this repository's tests (they use
 * a local emulator of the endpoint). The alternative is the target's `draining` state from elbv2
 * DescribeTargetHealth (as awslabs/nlb-sidecar-for-ecs does), which needs IAM and API calls.
 *
 * An unreachable or malformed endpoint is logged once per failure streak and polled again; it never
 * throws. Returns a function that stops the watch.
 */
export function watchTaskStop(metadataUri: string, intervalMs: number, log: Logger, onStopping: () => void): () => void {
  const url = `${metadataUri.replace(/\/+$/, '')}/task`;
  let stopped = false;
  let failing = false;
  let timer: NodeJS.Timeout | undefined;

  const check = async (): Promise<void> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1000, intervalMs)) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = (await res.json()) as TaskMetadata;
      if (body === null || typeof body !== 'object' || typeof body.DesiredStatus !== 'string') throw new Error('no DesiredStatus in the answer');
      if (failing) log.info({ url }, 'ecs task metadata readable again');
      failing = false;
      if (body.DesiredStatus === 'STOPPED' && !stopped) {
        stopped = true;
        onStopping();
      }
    } catch (err) {
      if (!failing) log.warn({ url, err: err instanceof Error ? err.message : String(err) }, 'ecs task metadata unreadable; still polling (SIGTERM still drains)');
      failing = true;
    }
  };

  const loop = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      check().finally(loop);
    }, intervalMs);
    timer.unref();
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
