import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import * as iam from 'aws-cdk-lib/aws-iam';
import { LAMBDA_ENV } from '../contract/settings';
import { Construct } from 'constructs';
import { DEFAULTS } from './defaults';
import { checkTrustedPrincipals } from './errors';
import { HttpEndpoint } from './http-endpoint';
import { LAMBDA_DIR, RealtimeFunction, reservation, type RealtimeFunctionProps } from './realtime-function';
import type { TrustedCallerApiProps } from './runtime-api-props';

/** Properties of a {@link PublishApi}. Grant callers with {@link PublishApi.grantPublish}, {@link PublishApi.grantRevoke} and {@link PublishApi.grantHistory}, and list them in `trustedPrincipals`. */
export interface PublishApiProps extends TrustedCallerApiProps {
  /**
   * Entry file of the publisher.
   * @default lambda/publish.ts
   */
  readonly entry?: string;
  /**
   * Entry file of the revoker (`POST /revoke`).
   * @default lambda/revoke.ts
   */
  readonly revokeEntry?: string;
  /**
   * Entry file of the history reader (`GET /history`).
   * @default lambda/history.ts
   */
  readonly historyEntry?: string;
  /**
   * Reserved concurrency of the publisher, which fans events out to WebSocket connections (0 to 10000; 0 = none): an
   * opt-in cap, taken from the account's concurrency quota (Lambda keeps 100 of it unreserved). Without it the
   * publisher's concurrency is bounded by the stage throttle (`throttleRateLimit` times the call's duration).
   * @default - none
   */
  readonly reservedConcurrency?: number;
}

/**
 * `POST /publish`, `POST /revoke` and `GET /history` for trusted backends: an HTTP API with IAM (SigV4) authorisation in front of the
 * publish and revoke Lambdas. Grant a backend with {@link grantPublish} and {@link grantRevoke}; give the publisher
 * WebSocket fan-out with `RealtimeWebSocketApi.grantPostToConnections(publishApi.handler)` and the revoker the closing
 * of connections with `RealtimeWebSocketApi.grantCloseConnections(publishApi.revokeHandler)`.
 */
export class PublishApi extends Construct {
  public readonly handler: RealtimeFunction;
  /** The function behind `POST /revoke`: revokes a user's access and closes their WebSocket connections. */
  public readonly revokeHandler: RealtimeFunction;
  /** The function behind `GET /history`: pages of a channel's retained events for backends. */
  public readonly historyHandler: RealtimeFunction;
  public readonly endpoint: HttpEndpoint;
  /** `https://.../publish` */
  public readonly url: string;
  /** `https://.../revoke` */
  public readonly revokeUrl: string;
  /** `https://.../history` */
  public readonly historyUrl: string;

  constructor(scope: Construct, id: string, props: PublishApiProps) {
    super(scope, id);
    const trusted = props.trustedPrincipals ?? DEFAULTS.trustedPrincipals;
    checkTrustedPrincipals(this, 'trustedPrincipals', trusted);
    // Each function of this API: its entry, the shared runtime settings (VPC, environment, logs), Redis.
    const fn = (fid: string, entry: string, description: string, extra: Partial<RealtimeFunctionProps> = {}) => {
      const f = new RealtimeFunction(this, fid, { entry, description, vpc: props.vpc, environment: props.environment, logLevel: props.logLevel, logRetention: props.logRetention, ...extra });
      props.redis.connect(f);
      return f;
    };
    this.handler = fn('Publisher', props.entry ?? path.join(LAMBDA_DIR, 'publish.ts'), 'POST /publish: validates, appends to history, publishes and fans out', {
      // Fan-out to many WebSocket connections takes longer than a ticket; HTTP APIs wait at most 30 s.
      memorySize: 512,
      timeout: Duration.seconds(25),
      reservedConcurrentExecutions: reservation(this, 'reservedConcurrency', props.reservedConcurrency),
    });
    this.revokeHandler = fn('Revoker', props.revokeEntry ?? path.join(LAMBDA_DIR, 'revoke.ts'), 'POST /revoke: revokes a user\'s tickets and sessions and closes their WebSocket connections');
    // Reads Redis only: no management API, queue or invoke permission.
    this.historyHandler = fn('HistoryReader', props.historyEntry ?? path.join(LAMBDA_DIR, 'history.ts'), 'GET /history: pages of a channel\'s retained events for backends');
    // mandated after the caller's environment: who may publish, revoke and read history ('' trusts no IAM caller)
    for (const fn of [this.handler, this.revokeHandler, this.historyHandler]) fn.addEnvironment(LAMBDA_ENV.trustedPrincipals, trusted.join(','));

    this.endpoint = new HttpEndpoint(this, 'Http', {
      apiName: `${Stack.of(this).stackName}-publish`,
      description: 'Realtime publish API (IAM)',
      path: '/publish',
      handler: this.handler,
      authorizer: new HttpIamAuthorizer(),
      throttleRateLimit: props.throttleRateLimit ?? DEFAULTS.publishApi.throttleRateLimit,
      throttleBurstLimit: props.throttleBurstLimit ?? DEFAULTS.publishApi.throttleBurstLimit,
      logRetention: props.logRetention,
    });
    this.url = this.endpoint.url;
    this.endpoint.addPostRoute('RevokeIntegration', '/revoke', this.revokeHandler);
    this.revokeUrl = `${this.endpoint.api.apiEndpoint}/revoke`;
    this.endpoint.addGetRoute('HistoryIntegration', '/history', this.historyHandler);
    this.historyUrl = `${this.endpoint.api.apiEndpoint}/history`;
  }

  /** Lets a backend principal call `POST /publish` (`execute-api:Invoke` on that route of this API only). */
  public grantPublish(grantee: iam.IGrantable): iam.Grant {
    return this.grantInvoke(grantee, '/publish');
  }

  /** Lets a backend principal call `POST /revoke` (`execute-api:Invoke` on that route of this API only). */
  public grantRevoke(grantee: iam.IGrantable): iam.Grant {
    return this.grantInvoke(grantee, '/revoke');
  }

  /** Lets a backend principal call `GET /history` (`execute-api:Invoke` on that route of this API only). */
  public grantHistory(grantee: iam.IGrantable): iam.Grant {
    return this.grantInvoke(grantee, '/history', 'GET');
  }

  private grantInvoke(grantee: iam.IGrantable, routePath: string, method = 'POST'): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.endpoint.api.arnForExecuteApi(method, routePath, this.endpoint.stage.stageName)],
    });
  }
}
