import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { Construct } from 'constructs';
import { LAMBDA_DIR, RealtimeFunction } from './realtime-function';
import type { RuntimeApiProps } from './runtime-api-props';
import { scheduleInvoke } from './scheduled-invoke';
import type { RealtimeWebSocketApi } from './websocket-api';

/** Properties of a {@link PresenceSweeper}. */
export interface PresenceSweeperProps extends Omit<RuntimeApiProps, 'throttleRateLimit' | 'throttleBurstLimit'> {
  /** The WebSocket API whose connections it asks about (GetConnection on this API's stage only). */
  readonly webSocket: RealtimeWebSocketApi;
  /**
   * Entry file of the handler.
   * @default lambda/presence-sweeper.ts
   */
  readonly entry?: string;
}

/** How often the sweeper runs: EventBridge Scheduler's smallest rate (its unit is the minute; targets are invoked with 60 s precision). */
export const PRESENCE_SWEEP_RATE = Duration.minutes(1);

/**
 * The presence sweeper of API Gateway connections (issue 24; docs/DESIGN.md, "Presence"): a Lambda in the VPC with
 * Redis, run by EventBridge Scheduler every minute, that asks API Gateway (GetConnection) about each connection whose
 * presence lease ended and ends the gone ones, since `$disconnect` is best-effort. Its role may `GET` this stage's
 * `@connections` and nothing else on the management API; the schedule's role may invoke this function only. Created by
 * {@link RealtimeApi} when a namespace has presence on and the API Gateway WebSocket API exists.
 */
export class PresenceSweeper extends Construct {
  public readonly function: RealtimeFunction;
  public readonly schedule: scheduler.Schedule;

  constructor(scope: Construct, id: string, props: PresenceSweeperProps) {
    super(scope, id);
    this.function = new RealtimeFunction(this, 'Function', {
      entry: props.entry ?? path.join(LAMBDA_DIR, 'presence-sweeper.ts'),
      description: 'Presence: asks API Gateway about connections whose presence lease ended (GetConnection); ends the gone ones',
      vpc: props.vpc,
      environment: props.environment,
      logLevel: props.logLevel,
      logRetention: props.logRetention,
      // A run stops asking 10 s before this (lambda/handlers/presence-sweeper.ts); the next run goes on.
      timeout: Duration.seconds(50),
    });
    props.redis.connect(this.function);
    props.webSocket.grantGetConnections(this.function);

    // No retries: a late run is no better than the next one, a minute later.
    this.schedule = scheduleInvoke(this, this.function, {
      rate: PRESENCE_SWEEP_RATE,
      description: 'Runs the presence sweeper of API Gateway connections',
      roleDescription: 'EventBridge Scheduler: invokes the presence sweeper',
    });
  }
}
