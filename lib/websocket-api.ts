import * as path from 'node:path';
import { Stack, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { WebSocketLambdaAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { WebSocketLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { LAMBDA_ENV } from '../contract/settings';
import { Construct, type IConstruct } from 'constructs';
import { acknowledgeWildcardResource } from './acknowledge';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';
import { LAMBDA_DIR, RealtimeFunction, reservation } from './realtime-function';
import type { RuntimeApiProps } from './runtime-api-props';
import { WS_ACTIONS } from '../contract/ws';

/** The query string parameter that carries the single-use ticket on connect. */
export const TICKET_IDENTITY_SOURCE = 'route.request.querystring.ticket';
/** The frame field that selects a route: `{"action": "subscribe", ...}`. */
export const ROUTE_SELECTION_EXPRESSION = '$request.body.action';
/**
 * Routes of the WebSocket protocol (besides `$connect`, `$disconnect` and `$default`): the actions of `contract/ws.ts`,
 * the one list the runtime parses and the local gateway routes too.
 */
export const MESSAGE_ROUTES = WS_ACTIONS;

/** Entry files of the WebSocket Lambdas. */
export interface WebSocketEntries {
  /** @default lambda/ws-authorizer.ts */
  readonly authorizer?: string;
  /** @default lambda/ws-connect.ts */
  readonly connect?: string;
  /** @default lambda/ws-disconnect.ts */
  readonly disconnect?: string;
  /** @default lambda/ws-message.ts */
  readonly message?: string;
}

/** Properties of a {@link RealtimeWebSocketApi}. */
export interface RealtimeWebSocketApiProps extends RuntimeApiProps {
  /**
   * Entry files of the handlers.
   * @default - the files in lambda/
   */
  readonly entries?: WebSocketEntries;
  /**
   * Name of the stage, the last path segment of the URL (`wss://{api}.execute-api.{region}.amazonaws.com/{stageName}`).
   * @default 'live'
   */
  readonly stageName?: string;
  /**
   * Reserved concurrency of the message handler, which fans published events out to connections (0 to 10000; 0 =
   * none): an opt-in cap, taken from the account's concurrency quota (Lambda keeps 100 of it unreserved). Without it
   * the handler's concurrency is bounded by the stage throttle (`throttleRateLimit` times the frame's duration).
   * @default - none
   */
  readonly messageReservedConcurrency?: number;
  /**
   * Whether the stage writes access logs to CloudWatch Logs. API Gateway refuses them on a WebSocket stage until the
   * account's CloudWatch Logs role is set in this region (`BadRequestException: CloudWatch Logs role ARN must be set
   * in account settings`): a one-time account setting that this construct never creates (`AWS::ApiGateway::Account` is
   * one per account and region, overwritten by whoever sets it last, and deleting its stack does not reset it). Set
   * true once the account has it (docs/DEPLOY.md, "Before the first deploy").
   * @default false
   */
  readonly accessLogs?: boolean;
}

const STAGE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * API Gateway WebSocket API: a REQUEST authorizer that redeems `?ticket=` on `$connect`, the protocol routes selected by
 * `action`, a throttled stage (access logs once the account allows them: `accessLogs`), optional reserved concurrency on the message handler (it fans out), and
 * `execute-api:ManageConnections` on this stage only, per method: POST for the functions that fan out
 * ({@link grantPostToConnections}), DELETE for the one that closes connections ({@link grantCloseConnections}).
 */
export class RealtimeWebSocketApi extends Construct {
  public readonly api: apigwv2.WebSocketApi;
  public readonly stage: apigwv2.WebSocketStage;
  public readonly authorizerFunction: RealtimeFunction;
  public readonly connectFunction: RealtimeFunction;
  public readonly disconnectFunction: RealtimeFunction;
  public readonly messageFunction: RealtimeFunction;
  /** `wss://...` URL clients connect to. */
  public readonly url: string;
  /** `https://...` URL of the management API (`@connections`) of this stage. */
  public readonly managementEndpoint: string;
  /** The access log group; none unless `accessLogs` is true. */
  public readonly accessLogGroup?: logs.LogGroup;

  constructor(scope: Construct, id: string, props: RealtimeWebSocketApiProps) {
    super(scope, id);
    const stageName = props.stageName ?? DEFAULTS.webSocket.stageName;
    if (!STAGE_NAME.test(stageName) || stageName === '$default') {
      invalid(this, `stageName "${stageName}" is not a valid stage name`, 'Use 1 to 64 letters, digits, "-" or "_"');
    }
    checkRange(this, 'throttleRateLimit', props.throttleRateLimit, 1, 10000, ' per second');
    checkRange(this, 'throttleBurstLimit', props.throttleBurstLimit, 1, 5000);

    const fnProps = (entry: string, description: string) => ({
      entry,
      description,
      vpc: props.vpc,
      environment: props.environment,
      logLevel: props.logLevel,
      logRetention: props.logRetention,
    });
    const entries = props.entries ?? {};
    this.authorizerFunction = new RealtimeFunction(this, 'Authorizer', fnProps(entries.authorizer ?? path.join(LAMBDA_DIR, 'ws-authorizer.ts'), 'WebSocket $connect authorizer: redeems the ticket'));
    this.connectFunction = new RealtimeFunction(this, 'Connect', fnProps(entries.connect ?? path.join(LAMBDA_DIR, 'ws-connect.ts'), 'WebSocket $connect'));
    this.disconnectFunction = new RealtimeFunction(this, 'Disconnect', fnProps(entries.disconnect ?? path.join(LAMBDA_DIR, 'ws-disconnect.ts'), 'WebSocket $disconnect'));
    this.messageFunction = new RealtimeFunction(this, 'Message', {
      ...fnProps(entries.message ?? path.join(LAMBDA_DIR, 'ws-message.ts'), 'WebSocket frames: subscribe, unsubscribe, publish, ping'),
      reservedConcurrentExecutions: reservation(this, 'messageReservedConcurrency', props.messageReservedConcurrency),
    });
    for (const fn of this.functions) props.redis.connect(fn);

    const authorizer = new WebSocketLambdaAuthorizer('TicketAuthorizer', this.authorizerFunction.function, {
      identitySource: [TICKET_IDENTITY_SOURCE],
    });
    this.api = new apigwv2.WebSocketApi(this, 'Api', {
      apiName: `${Stack.of(this).stackName}-websocket`,
      description: 'Realtime WebSocket API',
      routeSelectionExpression: ROUTE_SELECTION_EXPRESSION,
      connectRouteOptions: {
        integration: new WebSocketLambdaIntegration('ConnectIntegration', this.connectFunction.function),
        authorizer,
      },
      disconnectRouteOptions: { integration: new WebSocketLambdaIntegration('DisconnectIntegration', this.disconnectFunction.function) },
      defaultRouteOptions: { integration: new WebSocketLambdaIntegration('DefaultIntegration', this.messageFunction.function) },
    });
    const routes: IConstruct[] = MESSAGE_ROUTES.map((route) =>
      this.api.addRoute(route, { integration: new WebSocketLambdaIntegration(`${route}Integration`, this.messageFunction.function) }),
    );
    // The built-in routes that WebSocketApi creates from the options above.
    routes.push(this.api.node.findChild('$disconnect-Route'), this.api.node.findChild('$default-Route'));
    for (const route of routes) {
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason: 'API Gateway runs WebSocket authorizers on $connect only; every later frame travels on a connection the ticket authorizer already admitted.',
      });
    }

    if (props.accessLogs ?? DEFAULTS.webSocket.accessLogs) {
      this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH });
    }
    this.stage = new apigwv2.WebSocketStage(this, 'Stage', {
      webSocketApi: this.api,
      stageName,
      autoDeploy: true,
      throttle: {
        rateLimit: props.throttleRateLimit ?? DEFAULTS.webSocket.throttleRateLimit,
        burstLimit: props.throttleBurstLimit ?? DEFAULTS.webSocket.throttleBurstLimit,
      },
      accessLogSettings: this.accessLogGroup ? { destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup) } : undefined,
    });
    if (!this.accessLogGroup) {
      Validations.of(this.stage).acknowledge({
        id: 'AwsSolutions-APIG1',
        reason: 'Access logs on a WebSocket stage need the account\'s API Gateway CloudWatch Logs role, an account-wide setting a stack should not own; they stay off until the stage sets webSocket.accessLogs (docs/DEPLOY.md). The Lambdas log every connect, frame and disconnect.',
      });
    }
    this.url = this.stage.url;
    this.managementEndpoint = this.stage.callbackUrl;

    this.grantInlineFanout(this.messageFunction);
  }

  /** The four WebSocket handlers. */
  public get functions(): RealtimeFunction[] {
    return [this.authorizerFunction, this.connectFunction, this.disconnectFunction, this.messageFunction];
  }

  /**
   * Lets a function send frames to this stage's connections, and nothing else: `execute-api:ManageConnections` on
   * `{api}/{stage}/POST/@connections/*` only (GET and DELETE stay denied). Sets `WS_MANAGEMENT_ENDPOINT`.
   */
  public grantPostToConnections(fn: RealtimeFunction): iam.Grant {
    return this.grantConnectionsMethod(fn, 'POST');
  }

  /**
   * What an inline fan-out needs: POST to this stage's connections, and DELETE to close a connection whose post failed
   * after every retry, so that its client resumes with `since` instead of missing the event (`core/fanout.ts`
   * `closeMissed`). GET stays denied.
   */
  public grantInlineFanout(fn: RealtimeFunction): void {
    this.grantPostToConnections(fn);
    this.grantCloseConnections(fn);
  }

  /**
   * Lets a function close this stage's connections, and nothing else: `execute-api:ManageConnections` on
   * `{api}/{stage}/DELETE/@connections/*` only. Sets `WS_MANAGEMENT_ENDPOINT`.
   */
  public grantCloseConnections(fn: RealtimeFunction): iam.Grant {
    return this.grantConnectionsMethod(fn, 'DELETE');
  }

  /**
   * Lets a function read this stage's connections (GetConnection), and nothing else: `execute-api:ManageConnections` on
   * `{api}/{stage}/GET/@connections/*` only (the presence sweeper). Sets `WS_MANAGEMENT_ENDPOINT`.
   */
  public grantGetConnections(fn: RealtimeFunction): iam.Grant {
    return this.grantConnectionsMethod(fn, 'GET');
  }

  private grantConnectionsMethod(fn: RealtimeFunction, method: 'POST' | 'DELETE' | 'GET'): iam.Grant {
    fn.addEnvironment(LAMBDA_ENV.wsManagementEndpoint, this.managementEndpoint);
    const arn = Stack.of(this).formatArn({
      service: 'execute-api',
      resource: this.api.apiId,
      resourceName: `${this.stage.stageName}/${method}/@connections/*`,
    });
    const grant = iam.Grant.addToPrincipal({ grantee: fn, actions: ['execute-api:ManageConnections'], resourceArns: [arn] });
    const role = fn.function.role;
    if (role) {
      acknowledgeWildcardResource(role, arn, `Connection ids are created at runtime; the wildcard covers ${method} on the @connections of this API's "${this.stage.stageName}" stage only.`);
    }
    return grant;
  }
}
