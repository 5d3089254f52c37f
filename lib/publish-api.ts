import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { HttpEndpoint } from './http-endpoint';
import { LAMBDA_DIR, RealtimeFunction, type RuntimeLogLevel } from './realtime-function';
import type { RedisPubSub } from './redis-pub-sub';

/** Properties of a {@link PublishApi}. */
export interface PublishApiProps {
  readonly redis: RedisPubSub;
  readonly vpc: ec2.IVpc;
  /**
   * Entry file of the publisher.
   * @default lambda/publish.ts
   */
  readonly entry?: string;
  /** @default 200 */
  readonly throttleRateLimit?: number;
  /** @default 400 */
  readonly throttleBurstLimit?: number;
  /**
   * Environment shared by the runtime (namespaces, limits).
   * @default {}
   */
  readonly environment?: Record<string, string>;
  /** @default 'info' */
  readonly logLevel?: RuntimeLogLevel;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * `POST /publish` for trusted backends: an HTTP API with IAM (SigV4) authorisation in front of the publish Lambda.
 * Grant a backend with {@link grantPublish}; give the function WebSocket fan-out with
 * `RealtimeWebSocketApi.grantManageConnections(publishApi.handler)`.
 */
export class PublishApi extends Construct {
  public readonly handler: RealtimeFunction;
  public readonly endpoint: HttpEndpoint;
  /** `https://.../publish` */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: PublishApiProps) {
    super(scope, id);
    this.handler = new RealtimeFunction(this, 'Publisher', {
      entry: props.entry ?? path.join(LAMBDA_DIR, 'publish.ts'),
      description: 'POST /publish: validates, appends to history, publishes and fans out',
      vpc: props.vpc,
      environment: props.environment,
      logLevel: props.logLevel,
      logRetention: props.logRetention,
      // Fan-out to many WebSocket connections takes longer than a ticket; HTTP APIs wait at most 30 s.
      memorySize: 512,
      timeout: Duration.seconds(25),
    });
    props.redis.connect(this.handler);

    this.endpoint = new HttpEndpoint(this, 'Http', {
      description: 'Realtime publish API (IAM)',
      path: '/publish',
      handler: this.handler,
      authorizer: new HttpIamAuthorizer(),
      throttleRateLimit: props.throttleRateLimit ?? 200,
      throttleBurstLimit: props.throttleBurstLimit ?? 400,
      logRetention: props.logRetention,
    });
    this.url = this.endpoint.url;
  }

  /** Lets a backend principal call `POST /publish` (`execute-api:Invoke` on that route of this API only). */
  public grantPublish(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.endpoint.api.arnForExecuteApi('POST', '/publish', this.endpoint.stage.stageName)],
    });
  }
}
