import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import type { Construct } from 'constructs';
import { acknowledgeWildcardResource } from './acknowledge';
import type { RealtimeFunction } from './realtime-function';

/** What {@link scheduleInvoke} schedules. */
export interface ScheduledInvokeProps {
  /** The schedule's rate (EventBridge Scheduler `rate(...)`: whole minutes at least). */
  readonly rate: Duration;
  /** The schedule's description. */
  readonly description: string;
  /** The schedule role's description. */
  readonly roleDescription: string;
}

/**
 * EventBridge Scheduler invoking `fn` every `rate`, in `scope` as `ScheduleRole` and `Schedule`: the schedule's own role
 * may invoke this function only, and only for schedules of this account; no retries (a late run is no better than the
 * next one), events older than a minute dropped. Used by the canary and the presence sweeper.
 */
export function scheduleInvoke(scope: Construct, fn: RealtimeFunction, props: ScheduledInvokeProps): scheduler.Schedule {
  const role = new iam.Role(scope, 'ScheduleRole', {
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(scope).account } } }),
    description: props.roleDescription,
  });
  const schedule = new scheduler.Schedule(scope, 'Schedule', {
    schedule: scheduler.ScheduleExpression.rate(props.rate),
    description: props.description,
    target: new targets.LambdaInvoke(fn.function, { role, retryAttempts: 0, maxEventAge: Duration.minutes(1) }),
  });
  acknowledgeWildcardResource(
    role,
    `${fn.function.functionArn}:*`,
    "Lambda's grantInvoke names the function and its qualifiers (versions, aliases) of this one function; the schedule invokes the unqualified ARN",
  );
  return schedule;
}
