import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import type { CanaryEndpoints } from '../contract/canary';
import { CANARY_ENV } from '../contract/settings';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';
import type { PublishApi } from './publish-api';
import { LAMBDA_DIR, RealtimeFunction, type RuntimeLogLevel } from './realtime-function';
import { scheduleInvoke } from './scheduled-invoke';
import type { TicketApi } from './ticket-api';

/** Properties of a {@link RealtimeCanary}. */
export interface RealtimeCanaryProps {
  readonly endpoints: CanaryEndpoints;
  /** It mints its tickets here as a trusted backend (IAM), and is granted that route only. */
  readonly ticketApi: TicketApi;
  /** It publishes its bursts here (IAM), and is granted `POST /publish` only. */
  readonly publishApi: PublishApi;
  /**
   * Namespace of its channels (`<namespace>:canary-<random>`, a new one each run): one a ticket holder may subscribe to.
   * @default 'chat'
   */
  readonly namespace?: string;
  /**
   * Minutes between runs (EventBridge Scheduler `rate`), 1 to 60.
   * @default 1
   */
  readonly intervalMinutes?: number;
  /**
   * Events per burst, 1 to 100.
   * @default 10
   */
  readonly burst?: number;
  /**
   * Alarm when the worst transport's publish → receive p99 is above this, in milliseconds, for 2 of 3 runs.
   * @default 1000
   */
  readonly latencyThresholdMs?: number;
  /**
   * CloudWatch namespace of its metrics (the SSE service's `METRICS_NAMESPACE`).
   * @default 'RealtimeBlueprint'
   */
  readonly metricsNamespace?: string;
  /** @default 'info' */
  readonly logLevel?: RuntimeLogLevel;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The canary: a Lambda outside the VPC, run by EventBridge Scheduler every `intervalMinutes`, that measures delivery
 * through the public endpoints like a user (lambda/canary.ts, core/probe/canary.ts) and writes EMF metrics by
 * transport. Its role may mint backend tickets and publish, nothing else; the stack lists it in the trusted principals
 * of the ticket issuer and the publisher ({@link RealtimeCanary.role}). Alarms: any loss in 2 of 3 runs, and p99 over
 * the threshold in 2 of 3 runs.
 */
export class RealtimeCanary extends Construct {
  public readonly function: RealtimeFunction;
  public readonly schedule: scheduler.Schedule;
  /** Lost events over all transports per run (`Transport` = `all`). */
  public readonly lost: cloudwatch.Metric;
  /** The worst transport's publish → receive p99 per run. */
  public readonly p99: cloudwatch.Metric;
  /** Alarms: `LossAlarm` then `LatencyAlarm`. */
  public readonly alarms: cloudwatch.Alarm[];
  /** The latency alarm's threshold. */
  public readonly latencyThresholdMs: number;
  /** Metrics by transport, for the dashboard (labelled with the transport; `all` is unlabelled, so alarms keep the plain metric form). */
  public readonly metric: (name: string, transport: string, statistic?: string) => cloudwatch.Metric;

  constructor(scope: Construct, id: string, props: RealtimeCanaryProps) {
    super(scope, id);
    const interval = props.intervalMinutes ?? DEFAULTS.canary.intervalMinutes;
    const burst = props.burst ?? DEFAULTS.canary.burst;
    const p99Threshold = props.latencyThresholdMs ?? DEFAULTS.canary.latencyThresholdMs;
    this.latencyThresholdMs = p99Threshold;
    const namespace = props.namespace ?? DEFAULTS.canary.namespace;
    checkRange(this, 'intervalMinutes', interval, 1, 60, ' minutes');
    checkRange(this, 'burst', burst, 1, 100, ' events');
    checkRange(this, 'latencyThresholdMs', p99Threshold, 1, 60_000, ' ms');
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(namespace)) invalid(this, `namespace "${namespace}" is not a namespace name`, 'Use one of the stage namespaces a ticket holder may subscribe to, e.g. chat');
    const metricsNamespace = props.metricsNamespace ?? 'RealtimeBlueprint';
    // A run waits at most this long for a burst; the function's timeout leaves room for connecting and publishing.
    const timeoutMs = 10_000;

    // Outside the VPC: it reaches the endpoints the way users do, over the internet, and needs no NAT.
    this.function = new RealtimeFunction(this, 'Function', {
      entry: path.join(LAMBDA_DIR, 'canary.ts'),
      serviceName: 'canary',
      description: 'Realtime canary: delivery through the public endpoints, per transport',
      timeout: Duration.seconds(50),
      memorySize: 256,
      logLevel: props.logLevel,
      logRetention: props.logRetention,
      environment: {
        [CANARY_ENV.endpoints]: Stack.of(this).toJsonString(props.endpoints),
        [CANARY_ENV.ticketUrl]: props.ticketApi.backendUrl,
        [CANARY_ENV.namespace]: namespace,
        [CANARY_ENV.burst]: String(burst),
        [CANARY_ENV.timeoutMs]: String(timeoutMs),
        [CANARY_ENV.metricsNamespace]: metricsNamespace,
      },
    });
    props.ticketApi.grantBackendTickets(this.function);
    props.publishApi.grantPublish(this.function);

    // No retries: a run that starts late measures nothing useful, the next one comes within the interval.
    this.schedule = scheduleInvoke(this, this.function, { rate: Duration.minutes(interval), description: 'Runs the realtime canary', roleDescription: 'EventBridge Scheduler: invokes the realtime canary' });

    const period = Duration.minutes(interval);
    this.metric = (name, transport, statistic = 'Maximum') =>
      new cloudwatch.Metric({ namespace: metricsNamespace, metricName: name, dimensionsMap: { service: 'canary', Transport: transport }, period, statistic, label: transport === 'all' ? undefined : transport });
    this.lost = this.metric('CanaryLost', 'all', 'Sum');
    this.p99 = this.metric('CanaryLatencyP99', 'all');
    this.alarms = [
      new cloudwatch.Alarm(this, 'LossAlarm', {
        metric: this.lost,
        threshold: 1,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // A run that did not report (the function failed or timed out) is a loss of what it would have seen.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        alarmDescription: 'Canary: events published through /publish did not reach a transport (any loss, in 2 of the last 3 runs). Runbook: docs/DEPLOY.md, "CanaryLoss".',
      }),
      new cloudwatch.Alarm(this, 'LatencyAlarm', {
        metric: this.p99,
        threshold: p99Threshold,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `Canary: publish → receive p99 over ${p99Threshold} ms on the slowest transport (2 of the last 3 runs). Runbook: docs/DEPLOY.md, "CanaryLatency".`,
      }),
    ];
  }
}
