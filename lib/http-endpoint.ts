import { Duration } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { checkOrigins, checkRange, invalid } from './errors';
import type { RealtimeFunction } from './realtime-function';

/** Properties of an {@link HttpEndpoint}. */
export interface HttpEndpointProps {
  /** What the API is for (the API description). */
  readonly description: string;
  /**
   * Name of the API (what the console and CLI list; not unique, not an identifier).
   * @default - the construct id, the same for every endpoint
   */
  readonly apiName?: string;
  /** Path of the one route, e.g. `/tickets`. */
  readonly path: string;
  /** The function behind `POST {path}`. */
  readonly handler: RealtimeFunction;
  /** Who may call the route; there is no unauthenticated variant. */
  readonly authorizer: apigwv2.IHttpRouteAuthorizer;
  /**
   * Browser origins allowed by CORS (`scheme://host[:port]`, no `*`).
   * @default [] - no CORS: same-origin pages and backends only
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Steady-state requests per second on the stage.
   * @default 100
   */
  readonly throttleRateLimit?: number;
  /**
   * Request burst on the stage.
   * @default 200
   */
  readonly throttleBurstLimit?: number;
  /**
   * Retention of the access log.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * One HTTP API with an authorised `POST` route to one Lambda (and more with {@link addPostRoute}, behind the same
 * authorizer), on a `$default` stage with throttling and access logs. The building block of {@link TicketApi} and
 * {@link PublishApi}.
 */
export class HttpEndpoint extends Construct {
  public readonly api: apigwv2.HttpApi;
  public readonly stage: apigwv2.HttpStage;
  public readonly route: apigwv2.HttpRoute;
  public readonly accessLogGroup: logs.LogGroup;
  /** `https://{api}.execute-api.{region}.amazonaws.com{path}` */
  public readonly url: string;
  private readonly authorizer: apigwv2.IHttpRouteAuthorizer;

  constructor(scope: Construct, id: string, props: HttpEndpointProps) {
    super(scope, id);
    checkRange(this, 'throttleRateLimit', props.throttleRateLimit, 1, 10000, ' per second');
    checkRange(this, 'throttleBurstLimit', props.throttleBurstLimit, 1, 5000);
    const origins = props.allowedOrigins ?? [];
    checkOrigins(this, 'allowedOrigins', origins);
    this.authorizer = props.authorizer;

    this.api = new apigwv2.HttpApi(this, 'Api', {
      apiName: props.apiName,
      description: props.description,
      createDefaultStage: false,
      corsPreflight:
        origins.length > 0
          ? {
              allowOrigins: [...origins],
              allowMethods: [apigwv2.CorsHttpMethod.POST],
              allowHeaders: ['authorization', 'content-type'],
              maxAge: Duration.minutes(10),
            }
          : undefined,
    });
    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH });
    this.stage = new apigwv2.HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: {
        rateLimit: props.throttleRateLimit ?? 100,
        burstLimit: props.throttleBurstLimit ?? 200,
      },
      accessLogSettings: { destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup) },
    });
    [this.route] = this.api.addRoutes({
      path: props.path,
      methods: [apigwv2.HttpMethod.POST],
      integration: new HttpLambdaIntegration('Integration', props.handler.function),
      authorizer: props.authorizer,
    });
    this.url = `${this.api.apiEndpoint}${props.path}`;
  }

  /**
   * Adds `POST {path}` to `handler`, behind the endpoint's authorizer unless another is given; returns the route.
   * `path` is one or more literal segments, like `/revoke` or `/backend/tickets`.
   */
  public addPostRoute(id: string, path: string, handler: RealtimeFunction, authorizer: apigwv2.IHttpRouteAuthorizer = this.authorizer): apigwv2.HttpRoute {
    return this.addRoute(id, apigwv2.HttpMethod.POST, path, handler, authorizer);
  }

  /** Adds `GET {path}` to `handler`, as {@link addPostRoute} does for `POST` (the history API's read). */
  public addGetRoute(id: string, path: string, handler: RealtimeFunction, authorizer: apigwv2.IHttpRouteAuthorizer = this.authorizer): apigwv2.HttpRoute {
    return this.addRoute(id, apigwv2.HttpMethod.GET, path, handler, authorizer);
  }

  private addRoute(id: string, method: apigwv2.HttpMethod, path: string, handler: RealtimeFunction, authorizer: apigwv2.IHttpRouteAuthorizer): apigwv2.HttpRoute {
    if (!/^(\/[A-Za-z0-9._-]+)+$/.test(path)) {
      invalid(this, `path "${path}" is not literal path segments`, 'Use a path like /revoke or /backend/tickets');
    }
    const [route] = this.api.addRoutes({
      path,
      methods: [method],
      integration: new HttpLambdaIntegration(id, handler.function),
      authorizer,
    });
    return route;
  }
}
