import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { RealtimeFunctionProps, RuntimeLogLevel } from './realtime-function';
import type { RedisPubSub } from './redis-pub-sub';

/**
 * Props shared by the API constructs whose Lambdas run the realtime runtime: {@link RealtimeWebSocketApi},
 * {@link TicketApi} and {@link PublishApi}. Each construct documents only what is its own.
 */
export interface RuntimeApiProps {
  /** Redis the handlers use; each function is connected to it (`connect`: ingress, AUTH token, `REDIS_*`). */
  readonly redis: RedisPubSub;
  /** VPC of the handlers (Redis is only reachable inside it). */
  readonly vpc: ec2.IVpc;
  /**
   * Steady-state requests (WebSocket: messages) per second across the API's stage (1 to 10000).
   * @default - the API's entry in `DEFAULTS` (lib/defaults.ts): 500 for the WebSocket API, 100 for the ticket API,
   * 200 for the publish API
   */
  readonly throttleRateLimit?: number;
  /**
   * Burst of requests (WebSocket: messages) across the API's stage (1 to 5000).
   * @default - the API's entry in `DEFAULTS` (lib/defaults.ts): 1000 for the WebSocket API, 200 for the ticket API,
   * 400 for the publish API
   */
  readonly throttleBurstLimit?: number;
  /**
   * Environment shared by the runtime (namespaces, limits); the construct's own variables are set after it and win.
   * @default {}
   */
  readonly environment?: RealtimeFunctionProps['environment'];
  /**
   * Log level of the handlers.
   * @default 'info'
   */
  readonly logLevel?: RuntimeLogLevel;
  /**
   * Retention of the API's access log and of the handlers' logs.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
}

/** {@link RuntimeApiProps} of the HTTP APIs whose IAM-authorised routes let trusted backends act for any user. */
export interface TrustedCallerApiProps extends RuntimeApiProps {
  /**
   * IAM principals (role or user ARNs) trusted by the IAM-authorised routes (`TRUSTED_PRINCIPALS`). An IAM-signed caller
   * acts for any user (mints tickets naming it, publishes as it, revokes it), so the functions refuse IAM callers not
   * listed here; an assumed-role session (`arn:aws:sts::ACCT:assumed-role/NAME/SESSION`) matches its role
   * (`arn:aws:iam::ACCT:role/NAME`). HTTP APIs have no resource policies, so the check is in the functions; an IAM grant
   * alone is not enough. JWT callers are not affected.
   * @default [] - no IAM caller is trusted: IAM-signed calls are refused
   */
  readonly trustedPrincipals?: readonly string[];
}
