import { CORE_SETTINGS, CORE_ENV, LAMBDA_ENV } from '../contract/settings';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArnFormat, CfnOutput, Stack } from 'aws-cdk-lib';
import type * as cognito from 'aws-cdk-lib/aws-cognito';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { MAX_HISTORY_BYTES_PER_CHANNEL, MAX_HISTORY_SIZE } from '../contract/limits';
import { DEFAULTS } from './defaults';
import { checkRange, checkSetting, invalid } from './errors';
import { RealtimeCanary, type RealtimeCanaryProps } from './canary';
import { LoadBalancerWaf, type LoadBalancerWafProps } from './load-balancer-waf';
import { Network, type NetworkProps } from './network';
import { Observability } from './observability';
import { PublishApi, type PublishApiProps } from './publish-api';
import { PACKAGE_ROOT, type RuntimeLogLevel } from './realtime-function';
import { RealtimeDomain, type RealtimeDomainProps } from './realtime-domain';
import { RedisPubSub, type RedisPubSubProps } from './redis-pub-sub';
import { SseService, type SseServiceProps } from './sse-service';
import { PresenceSweeper } from './presence-sweeper';
import { TicketApi, type TicketApiProps, type TicketAuth } from './ticket-api';
import { RealtimeWebSocketApi, type RealtimeWebSocketApiProps } from './websocket-api';
import { WebSocketFanout, type WebSocketFanoutProps } from './websocket-fanout';
import { BackendEvents, type BackendEventsProps } from './backend-events';
import { webSocketSetup, type WebSocketMode } from './stage-config';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';

/** Names of the endpoint outputs; `npm run dev` prints the same names for the local stack and `npm run smoke` reads them. */
/** `WebSocketUrl` (API Gateway) exists with `webSocket.mode` `apigateway` and `both`, `LiveUrl` (the tasks' `/live`) with `tasks` and `both`. */
export const OUTPUT_NAMES = ['TicketUrl', 'SseUrl', 'PollUrl', 'WebSocketUrl', 'LiveUrl', 'PublishUrl', 'RedisEndpoint'] as const;
export type OutputName = (typeof OUTPUT_NAMES)[number];

const OUTPUT_DESCRIPTIONS: Record<OutputName, string> = {
  TicketUrl: 'POST here (JWT or IAM) for a single-use connect ticket',
  SseUrl: 'EventSource URL: GET ?channels=a,b&ticket=T',
  PollUrl: 'Long-poll fallback: GET ?channels=a,b&cursor=C',
  WebSocketUrl: 'WebSocket URL on API Gateway: connect with ?ticket=T',
  LiveUrl: 'WebSocket URL on the tasks (same protocol): connect with ?ticket=T',
  PublishUrl: 'POST here (IAM-signed) to publish an event',
  RedisEndpoint: 'Primary endpoint (host:port) of the pub/sub Redis, TLS + AUTH',
};

/** Tickets for users of a Cognito user pool: the ticket API's JWT authorizer trusts the pool's tokens for these app clients. */
export interface TicketCognitoAuth {
  readonly type: 'cognito';
  /** The pool whose ID or access tokens browsers send (`Authorization: Bearer ...`). */
  readonly userPool: cognito.IUserPool;
  /** App clients whose tokens are accepted (`aud` of ID tokens, `client_id` of access tokens); at least one. */
  readonly userPoolClients: readonly cognito.IUserPoolClient[];
}

/** How `POST /tickets` authenticates callers: IAM, a JWT issuer, or a Cognito user pool. */
export type RealtimeTicketAuth = TicketAuth | TicketCognitoAuth;

/** Props every runtime construct gets from {@link RealtimeApi} itself. */
type Shared = 'vpc' | 'redis' | 'environment' | 'logLevel' | 'logRetention';

/** `sse` of {@link RealtimeApiProps}: {@link SseServiceProps} without what RealtimeApi passes. */
export type RealtimeSseOptions = Omit<SseServiceProps, Shared | 'allowedOrigins'>;
/** `webSocket` of {@link RealtimeApiProps}. */
export interface RealtimeWebSocketOptions extends Partial<Omit<RealtimeWebSocketApiProps, Shared>> {
  /**
   * Where WebSockets terminate: `apigateway` (the API Gateway WebSocket API and its Lambdas), `tasks` (`/live` on the SSE
   * tasks, behind the same ALB listener; no API Gateway WebSocket resources), or `both` (both endpoints; tickets name
   * the tasks' one, and API Gateway keeps serving what was connected to it: the migration mode).
   * @default 'tasks'
   */
  readonly mode?: WebSocketMode;
}
/** `ticketApi` of {@link RealtimeApiProps}: {@link TicketApiProps} without the URLs RealtimeApi fills in, `auth` widened to Cognito. */
export interface RealtimeTicketApiOptions extends Omit<TicketApiProps, Shared | 'sseUrl' | 'webSocketUrl' | 'trustedPrincipals' | 'allowedOrigins' | 'auth'> {
  /**
   * Who may mint tickets.
   * @default { type: 'iam' }
   */
  readonly auth?: RealtimeTicketAuth;
}
/** `publishApi` of {@link RealtimeApiProps}. */
export type RealtimePublishApiOptions = Omit<PublishApiProps, Shared | 'trustedPrincipals'>;

/** `waf` of {@link RealtimeApiProps}: {@link LoadBalancerWafProps} and whether to create the web ACL at all. */
export interface RealtimeWafOptions extends Omit<LoadBalancerWafProps, 'loadBalancer'> {
  /**
   * Whether AWS WAF protects the SSE load balancer (a web ACL costs a monthly fee per ACL and rule, and per request).
   * @default true
   */
  readonly enabled?: boolean;
}

/** `backendEvents` of {@link RealtimeApiProps}: {@link BackendEventsProps} and whether to emit them at all. */
export interface RealtimeBackendEventsOptions extends BackendEventsProps {
  /**
   * Whether the deployment emits backend events (channel occupancy, `user.revoked`, `client.publish`) on its own
   * EventBridge bus (BACKEND_EVENTS).
   * @default true
   */
  readonly enabled?: boolean;
}

/** Per-user limits of the runtime on publishing. */
export interface RealtimeLimits {
  /**
   * Events one user may publish per minute (`USER_PUBLISH_PER_MINUTE`, 0 = no limit; range and default: its row in
   * contract/settings.ts).
   * @default - the runtime's default, 300
   */
  readonly userPublishPerMinute?: number;
  /**
   * Channels one user may bring into existence per hour (`USER_NEW_CHANNELS_PER_HOUR`, 0 = no limit; range: its row in contract/settings.ts).
   * @default - the runtime's default, 50
   */
  readonly userNewChannelsPerHour?: number;
  /**
   * Bytes of events one user may publish per namespace within one window of its history TTL (`USER_RETAINED_BYTES`,
   * 0 to 1073741824, 0 = no limit): one user then keeps at most three times this in Redis per namespace.
   * @default - the runtime's default, 8388608 (8 MiB)
   */
  readonly userRetainedBytes?: number;
}

/** Properties of a {@link RealtimeApi}. Every part is created unless the caller passes its own. */
export interface RealtimeApiProps {
  /**
   * An existing VPC: public subnets for the load balancer, private subnets with egress (NAT) for the tasks, Lambdas
   * and Redis. Excludes the settings of `network`.
   * @default - a new VPC ({@link Network} with `network`)
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Settings of the new VPC.
   * @default - {@link NetworkProps} defaults: 2 AZs, 1 NAT gateway, flow logs
   */
  readonly network?: Omit<NetworkProps, 'vpc' | 'flowLogRetention'>;
  /**
   * Settings of the Redis replication group.
   * @default - {@link RedisPubSubProps} defaults: Valkey 8.0, 2 cache.t4g.micro nodes, final snapshot on deletion
   */
  readonly redis?: Omit<RedisPubSubProps, 'vpc'>;
  /**
   * Settings of the SSE service: tasks, load balancer, and `certificate` with `domainName` for HTTPS on the ALB.
   * @default - {@link SseServiceProps} defaults: 2 to 10 tasks, HTTP on port 80
   */
  readonly sse?: RealtimeSseOptions;
  /**
   * Where WebSockets terminate (`mode`) and, with `apigateway` or `both`, settings of the API Gateway WebSocket API.
   * @default - mode `tasks`: `/live` on the SSE tasks, no API Gateway WebSocket API
   */
  readonly webSocket?: RealtimeWebSocketOptions;
  /**
   * Settings of the ticket API, `auth` included (IAM, a JWT issuer, or a Cognito user pool).
   * @default - IAM tickets, 100 requests/s
   */
  readonly ticketApi?: RealtimeTicketApiOptions;
  /**
   * Settings of the publish API.
   * @default - 200 requests/s, no reserved concurrency
   */
  readonly publishApi?: RealtimePublishApiOptions;
  /**
   * IAM role or user ARNs trusted by the IAM-authorised routes (ticket, publish, revoke): such a caller acts for any user.
   * @default [] - every IAM-signed call is refused
   */
  readonly trustedPrincipals?: readonly string[];
  /**
   * Browser origins for CORS on `POST /tickets` and the SSE service (`https://host[:port]`, no `*`).
   * @default [] - same-origin pages and backends only
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Channel namespace policies (`NAMESPACES_JSON`, at most 2048 bytes as JSON).
   * @default - the runtime's: `scores` (public), `chat` (authenticated), `user` (owner)
   */
  readonly namespaces?: Record<string, unknown>;
  /**
   * Ticket lifetime in seconds (`TICKET_TTL_SECONDS`, 5 to 300).
   * @default 30
   */
  readonly ticketTtlSeconds?: number;
  /**
   * Largest event envelope in bytes (`MAX_PAYLOAD_BYTES`, 256 to 32768).
   * @default 32768
   */
  readonly maxPayloadBytes?: number;
  /**
   * Per-user publish limits of the functions that publish (publish API, WebSocket messages).
   * @default - the runtime's defaults
   */
  readonly limits?: RealtimeLimits;
  /**
   * Log level of the Lambdas and the SSE service.
   * @default 'info'
   */
  readonly logLevel?: RuntimeLogLevel;
  /**
   * Retention of every log group (and of a new VPC's flow logs).
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Topic every alarm notifies (on ALARM and on OK).
   * @default - alarms without actions (on the dashboard)
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * The sharded WebSocket fan-out of large audiences (SQS FIFO queue, dead-letter queue, worker): shards, inline
   * threshold, replay threshold, receive count, batch size.
   * @default - {@link DEFAULTS}.webSocketFanout
   */
  readonly webSocketFanout?: Omit<WebSocketFanoutProps, 'webSocket' | 'vpc' | 'redis' | 'environment' | 'logLevel' | 'logRetention'>;
  /**
   * One domain for every endpoint: a hosted zone and a name; one DNS-validated certificate, HTTPS on the load balancer,
   * API Gateway custom domains with API mappings, alias records, and the outputs on these hosts. Excludes
   * `sse.certificate` and `sse.domainName`.
   * @default - the endpoints keep their AWS names (the load balancer over HTTP unless `sse.certificate` is given)
   */
  readonly domain?: RealtimeDomainProps;
  /**
   * AWS WAF on the SSE load balancer: the AWS managed common rule set (scoped for the streaming paths) and per-IP rate
   * limits on `/events`, `/poll`, `/live` and `/healthz`. The API Gateway APIs cannot take a web ACL; their stage
   * throttling protects them.
   * @default - on, 1000 requests per IP per 5 minutes on the streaming paths, 100 on /healthz
   */
  readonly waf?: RealtimeWafOptions;
  /**
   * Backend events on the stage's EventBridge bus: `channel.occupied` / `channel.vacated`, `user.revoked`, `client.publish`
   * (namespaces with `clientEvents: true`), with an example rule to an SQS queue and an optional webhook.
   * @default - on, 5 s debounce, the example queue, no webhook
   */
  readonly backendEvents?: RealtimeBackendEventsOptions;
  /**
   * The delivery canary: a Lambda outside the VPC, run by EventBridge Scheduler, that connects over every transport
   * through the public endpoints, publishes a numbered burst and reports loss and latency per transport (alarms on any
   * loss and on p99, first on the dashboard). Its role is added to the trusted principals of tickets and publish.
   * @default - off (`enabled` false); cdk.json turns it on in prod
   */
  readonly canary?: RealtimeCanaryOptions;
  /**
   * Whether to add the endpoints as stack outputs (`TicketUrl`, `SseUrl`, `PollUrl`, `LiveUrl` and/or `WebSocketUrl` by
   * `webSocket.mode`, `PublishUrl`, `RedisEndpoint`), which `cdk deploy --outputs-file` writes and `npm run smoke` reads.
   * @default true
   */
  readonly outputs?: boolean;
  /**
   * SSM Parameter Store path under which each endpoint is written as `{parameterPath}/{OutputName}`, e.g. `/realtime/prod`.
   * @default - no parameters
   */
  readonly parameterPath?: string;
}

const RETENTION_DAYS = new Set<number>(Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number'));
const PARAMETER_PATH = /^(\/[A-Za-z0-9_.-]+)+$/;

/**
 * The whole realtime blueprint as one construct, to drop into any CDK app: network (or your VPC), Redis pub/sub, the
 * WebSocket API, the SSE service on Fargate, the ticket and publish APIs, observability (alarms to your topic), and the
 * endpoints as outputs and SSM parameters. It only composes the constructs of this package; `RealtimeStack` is a thin
 * user of it. Installed from the package, it deploys the prebuilt Lambda bundles and SSE service bundle the package ships
 * (no esbuild, no repository layout needed); in the repository it bundles from source.
 */
export class RealtimeApi extends Construct {
  public readonly network: Network;
  public readonly redis: RedisPubSub;
  /** Where WebSockets terminate (`webSocket.mode`). */
  public readonly webSocketMode: WebSocketMode;
  /** The API Gateway WebSocket API; none with `webSocket.mode` `tasks`. */
  public readonly webSocket?: RealtimeWebSocketApi;
  public readonly sse: SseService;
  public readonly ticketApi: TicketApi;
  public readonly publishApi: PublishApi;
  public readonly observability: Observability;
  /** The sharded WebSocket fan-out: queue, dead-letter queue, worker, dead-letter consumer. */
  public readonly webSocketFanout?: WebSocketFanout;
  /** The presence sweeper of API Gateway connections, when a namespace has presence on and the WebSocket API exists. */
  public readonly presenceSweeper?: PresenceSweeper;
  /** The custom domain, when `domain` is set. */
  public readonly domain?: RealtimeDomain;
  /** AWS WAF on the load balancer, unless `waf.enabled` is false. */
  public readonly waf?: LoadBalancerWaf;
  /** Backend events (the bus, the example queue, the webhook), unless `backendEvents.enabled` is false. */
  public readonly backendEvents?: BackendEvents;
  /** The delivery canary, when `canary.enabled`. */
  public readonly canary?: RealtimeCanary;
  /** Endpoint values by output name. */
  public readonly endpoints: Readonly<Partial<Record<OutputName, string>>>;

  constructor(scope: Construct, id: string, props: RealtimeApiProps = {}) {
    super(scope, id);
    if (props.logRetention !== undefined && !RETENTION_DAYS.has(props.logRetention)) {
      invalid(this, `logRetention (${props.logRetention}) is not a CloudWatch Logs retention`, `Use one of ${[...RETENTION_DAYS].join(', ')}`);
    }
    checkSetting(this, 'ticketTtlSeconds', props.ticketTtlSeconds, CORE_SETTINGS.ticketTtlSeconds, ' seconds');
    checkSetting(this, 'maxPayloadBytes', props.maxPayloadBytes, CORE_SETTINGS.maxPayloadBytes, ' bytes');
    // The runtime's range: 0 turns a limit off.
    checkSetting(this, 'limits.userPublishPerMinute', props.limits?.userPublishPerMinute, CORE_SETTINGS.userPublishPerMinute);
    checkSetting(this, 'limits.userNewChannelsPerHour', props.limits?.userNewChannelsPerHour, CORE_SETTINGS.userNewChannelsPerHour);
    checkSetting(this, 'limits.userRetainedBytes', props.limits?.userRetainedBytes, CORE_SETTINGS.userRetainedBytes, ' bytes');
    if (props.domain && (props.sse?.certificate || props.sse?.domainName)) {
      invalid(this, 'domain is set together with sse.certificate or sse.domainName', 'Drop sse.certificate and sse.domainName: domain gives the load balancer its certificate and host');
    }
    if (props.parameterPath !== undefined && !PARAMETER_PATH.test(props.parameterPath)) {
      invalid(this, `parameterPath "${props.parameterPath}" is not an SSM path`, 'Use a path like /realtime/prod (leading "/", no trailing "/")');
    }
    const logRetention = props.logRetention ?? (DEFAULTS.logRetentionDays as logs.RetentionDays);
    const logLevel = props.logLevel ?? DEFAULTS.logLevel;
    const allowedOrigins = props.allowedOrigins ?? DEFAULTS.allowedOrigins;
    const trustedPrincipals = props.trustedPrincipals ?? DEFAULTS.trustedPrincipals;

    const runtimeEnv: Record<string, string> = {
      [CORE_ENV.ticketTtlSeconds]: String(props.ticketTtlSeconds ?? DEFAULTS.ticketTtlSeconds),
      [CORE_ENV.maxPayloadBytes]: String(props.maxPayloadBytes ?? DEFAULTS.maxPayloadBytes),
    };
    const { enabled: eventsEnabled = DEFAULTS.backendEvents.enabled, ...eventsProps } = props.backendEvents ?? {};
    // Every runtime writes its backend events to the outbox in Redis; the tasks relay it to the bus.
    if (eventsEnabled) runtimeEnv[CORE_ENV.backendEvents] = 'true';
    if (props.namespaces !== undefined) {
      const json = JSON.stringify(props.namespaces);
      // Lambda allows 4 KB of environment in total; leave room for the rest.
      if (json.length > 2048) {
        invalid(this, `namespaces is ${json.length} bytes as JSON (${CORE_ENV.namespacesJson}), over 2048`, 'Merge namespaces with the same policy, or shorten their names');
      }
      runtimeEnv[CORE_ENV.namespacesJson] = json;
      // What one replay page and one channel's memory allow (the runtime checks the same at start).
      const payload = props.maxPayloadBytes ?? DEFAULTS.maxPayloadBytes;
      for (const [ns, policy] of Object.entries(props.namespaces)) {
        const size = (policy as { historySize?: unknown } | null)?.historySize;
        if (typeof size !== 'number') continue;
        checkRange(this, `namespaces.${ns}.historySize`, size, 0, MAX_HISTORY_SIZE, ' events');
        if (size * payload > MAX_HISTORY_BYTES_PER_CHANNEL) {
          invalid(this, `namespaces.${ns}.historySize (${size}) × maxPayloadBytes (${payload}) is over ${MAX_HISTORY_BYTES_PER_CHANNEL} bytes per channel`, `Keep at most ${Math.floor(MAX_HISTORY_BYTES_PER_CHANNEL / payload)} events, or lower maxPayloadBytes`);
        }
      }
    }

    // Network refuses new-VPC settings next to an existing vpc.
    this.network = new Network(this, 'Network', { ...props.network, vpc: props.vpc, flowLogRetention: props.vpc ? undefined : logRetention });
    const vpc = this.network.vpc;

    this.redis = new RedisPubSub(this, 'Redis', { vpc, ...props.redis });

    const runtime = { vpc, redis: this.redis, environment: runtimeEnv, logLevel, logRetention };
    const ws = webSocketSetup(this, props.webSocket);
    this.webSocketMode = ws.mode;
    if (ws.api) this.webSocket = new RealtimeWebSocketApi(this, 'WebSocket', { ...runtime, ...ws.api });
    const webSocket = this.webSocket;
    // Tickets name the tasks' endpoint whenever it serves (`both`: new connections move there; API Gateway keeps the rest).
    const onTasks = ws.mode !== 'apigateway';

    const domain = props.domain ? new RealtimeDomain(this, 'Domain', props.domain) : undefined;
    this.domain = domain;
    const sseDomain = domain ? { certificate: domain.certificate, domainName: domain.sseHost } : {};
    this.sse = new SseService(this, 'Sse', { image: prebuiltServiceImage(), ...runtime, ...props.sse, ...sseDomain, allowedOrigins });
    if (eventsEnabled) {
      this.backendEvents = new BackendEvents(this, 'BackendEvents', eventsProps);
      this.backendEvents.connectTasks(this.sse.container, this.sse.taskDefinition.taskRole);
    }
    const apiGatewayUrl = webSocket ? (domain ? domain.mapWebSocketApi(webSocket.api, webSocket.stage) : webSocket.url) : undefined;
    const webSocketUrl = onTasks ? this.sse.liveUrl : apiGatewayUrl!;

    this.ticketApi = new TicketApi(this, 'TicketApi', {
      ...runtime,
      ...props.ticketApi,
      auth: ticketAuth(props.ticketApi?.auth),
      sseUrl: this.sse.eventsUrl,
      webSocketUrl,
      trustedPrincipals,
      allowedOrigins,
    });

    this.publishApi = new PublishApi(this, 'PublishApi', { ...runtime, ...props.publishApi, trustedPrincipals });
    // The two functions that fan out inline to WebSocket connections, POST and DELETE (to close a connection that missed
    // an event): publish (here) and the message handler (in RealtimeWebSocketApi). The revoker closes connections,
    // DELETE only; the queue's worker posts, POST only.
    webSocket?.grantInlineFanout(this.publishApi.handler);
    webSocket?.grantCloseConnections(this.publishApi.revokeHandler);
    // Large audiences and long replays go through the fan-out queue: both publishers may enqueue, the worker posts.
    // Large audiences and long replays of the API Gateway path go through the fan-out queue: both publishers may enqueue, the worker posts.
    const fanout = webSocket ? new WebSocketFanout(this, 'WebSocketFanout', { ...runtime, ...props.webSocketFanout, webSocket }) : undefined;
    this.webSocketFanout = fanout;
    const publishers = webSocket ? [this.publishApi.handler, webSocket.messageFunction] : [this.publishApi.handler];
    if (fanout) for (const publisher of publishers) fanout.connectPublisher(publisher);
    // Mode both: a publish on the tasks' /live reaches the connections still on API Gateway through the same queue.
    // Presence: the tasks' presence events (joins, settles) reach them the same way, in any mode with API Gateway, and
    // $connect enqueues its joins there; the presence sweeper ends the connections whose $disconnect was lost.
    const presence = Object.values(props.namespaces ?? {}).some((ns) => ((ns as { presence?: unknown } | null)?.presence ?? 'off') !== 'off');
    if (fanout && (ws.mode === 'both' || presence)) fanout.connectTasks(this.sse.container, this.sse.taskDefinition.taskRole);
    if (fanout && webSocket && presence) {
      fanout.connectPublisher(webSocket.connectFunction);
      this.presenceSweeper = new PresenceSweeper(this, 'PresenceSweeper', { ...runtime, webSocket });
    }
    // The functions that publish get the per-user publish limits; unset keys leave the runtime's defaults.
    for (const publisher of publishers) {
      for (const [key, value] of Object.entries(publishLimitsEnvironment(props.limits))) publisher.addEnvironment(key, value);
    }
    // WebSocket clients on the tasks publish there too (`/live`): the same limits.
    if (onTasks) for (const [key, value] of Object.entries(publishLimitsEnvironment(props.limits))) this.sse.container.addEnvironment(key, value);
    // Hooks: lambda:InvokeFunction on the named functions only, for the callers only: the ticket issuer asks the
    // subscribe hooks; the message handler (API Gateway) and the tasks (`/live`) ask the publish hooks.
    const hooks = hookFunctionArns(this, props.namespaces);
    const invoke = (grantee: iam.IGrantable, arns: string[]) => {
      if (arns.length) grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: arns }));
    };
    invoke(this.ticketApi.handler.function, hooks.subscribe);
    if (webSocket) invoke(webSocket.messageFunction.function, hooks.publish);
    if (onTasks) invoke(this.sse.taskDefinition.taskRole, hooks.publish);

    let ticketUrl = this.ticketApi.url;
    let publishUrl = this.publishApi.url;
    if (domain) {
      domain.aliasLoadBalancer(this.sse.loadBalancer);
      ticketUrl = `${domain.mapHttpApi('Tickets', domain.ticketHost, this.ticketApi.endpoint.api, this.ticketApi.endpoint.stage)}/tickets`;
      publishUrl = `${domain.mapHttpApi('Publish', domain.publishHost, this.publishApi.endpoint.api, this.publishApi.endpoint.stage)}/publish`;
    }
    this.endpoints = {
      TicketUrl: ticketUrl,
      SseUrl: this.sse.eventsUrl,
      PollUrl: this.sse.pollUrl,
      WebSocketUrl: apiGatewayUrl,
      LiveUrl: onTasks ? this.sse.liveUrl : undefined,
      PublishUrl: publishUrl,
      RedisEndpoint: `${this.redis.endpointAddress}:${this.redis.endpointPort}`,
    };
    if (props.canary?.enabled ?? DEFAULTS.canary.enabled) {
      const { enabled: _enabled, ...canaryProps } = props.canary ?? {};
      if (props.namespaces !== undefined && !Object.prototype.hasOwnProperty.call(props.namespaces, canaryProps.namespace ?? DEFAULTS.canary.namespace)) {
        invalid(this, `canary.namespace "${canaryProps.namespace ?? DEFAULTS.canary.namespace}" is not one of namespaces`, 'Set canary.namespace to a namespace a ticket holder may subscribe to');
      }
      const { RedisEndpoint: _redis, ...endpoints } = this.endpoints;
      this.canary = new RealtimeCanary(this, 'Canary', {
        ...canaryProps,
        endpoints: endpoints as RealtimeCanaryProps['endpoints'],
        ticketApi: this.ticketApi,
        publishApi: this.publishApi,
        logLevel,
        logRetention,
      });
      // It mints tickets and publishes as a trusted backend: its role joins the stage's trusted principals.
      const trusted = [...trustedPrincipals, this.canary.function.function.role!.roleArn].join(',');
      for (const fn of [this.ticketApi.handler, this.publishApi.handler]) fn.addEnvironment(LAMBDA_ENV.trustedPrincipals, trusted);
    }

    this.observability = new Observability(this, 'Observability', {
      sse: this.sse,
      redis: this.redis,
      webSocket,
      httpEndpoints: [this.ticketApi.endpoint, this.publishApi.endpoint],
      functions: [
        ...(webSocket?.functions ?? []),
        this.ticketApi.handler,
        this.publishApi.handler,
        this.publishApi.revokeHandler,
        this.publishApi.historyHandler,
        ...(fanout ? [fanout.worker, fanout.deadLetterConsumer] : []),
        ...(this.presenceSweeper ? [this.presenceSweeper.function] : []),
      ],
      alarmTopic: props.alarmTopic,
      canary: this.canary,
    });
    // The fan-out's own alarms (dead letters, waiting work) notify the same topic and are listed with the others.
    for (const alarm of fanout?.alarms ?? []) {
      if (props.alarmTopic) {
        alarm.addAlarmAction(new SnsAction(props.alarmTopic));
        alarm.addOkAction(new SnsAction(props.alarmTopic));
      }
      this.observability.alarms.push(alarm);
    }

    if (props.waf?.enabled ?? DEFAULTS.waf.enabled) {
      const { enabled: _enabled, ...wafProps } = props.waf ?? {};
      this.waf = new LoadBalancerWaf(this, 'Waf', { ...wafProps, loadBalancer: this.sse.loadBalancer });
    }

    for (const name of OUTPUT_NAMES) {
      const value = this.endpoints[name];
      if (value === undefined) continue;
      if (props.outputs ?? true) new CfnOutput(this, name, { value, description: OUTPUT_DESCRIPTIONS[name] });
      if (props.parameterPath !== undefined) {
        new ssm.StringParameter(this, `${name}Parameter`, {
          parameterName: `${props.parameterPath}/${name}`,
          stringValue: value,
          description: OUTPUT_DESCRIPTIONS[name],
        });
      }
    }
    if (this.backendEvents) {
      // Not an endpoint of the wire contract: the bus backends attach their own rules to (another stack imports it by ARN).
      const description = 'ARN of the EventBridge bus of the backend events (source realtime): add your own rules to it';
      const value = this.backendEvents.bus.eventBusArn;
      if (props.outputs ?? true) new CfnOutput(this, 'EventBusArn', { value, description });
      if (props.parameterPath !== undefined) {
        new ssm.StringParameter(this, 'EventBusArnParameter', { parameterName: `${props.parameterPath}/EventBusArn`, stringValue: value, description });
      }
    }
    if (props.sse?.domainName && (props.outputs ?? true)) {
      // With a custom domain, the load balancer's own name is what the DNS record must point at.
      new CfnOutput(this, 'SseLoadBalancerDnsName', {
        value: this.sse.loadBalancer.loadBalancerDnsName,
        description: `Point ${props.sse.domainName} (CNAME or Route 53 alias) at this name`,
      });
    }
  }

  /** Lets a backend principal call `POST /publish`; list it in `trustedPrincipals` too. */
  public grantPublish(grantee: Parameters<PublishApi['grantPublish']>[0]) {
    return this.publishApi.grantPublish(grantee);
  }

  /** Lets a backend principal call `GET /history`; list it in `trustedPrincipals` too. */
  public grantHistory(grantee: Parameters<PublishApi['grantHistory']>[0]) {
    return this.publishApi.grantHistory(grantee);
  }
}

/**
 * The ARNs of the functions the namespaces' hooks name (core/hooks.ts), by kind: a name (`fn`, `fn:alias`) or a partial
 * ARN (`123456789012:function:fn`) in this stack's partition, region and account; a full ARN as given. Lambda's Invoke
 * takes all three ("Invoke", https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html).
 */
function hookFunctionArns(scope: Construct, namespaces: Record<string, unknown> | undefined): { subscribe: string[]; publish: string[] } {
  const out = { subscribe: new Set<string>(), publish: new Set<string>() };
  const stack = Stack.of(scope);
  for (const policy of Object.values(namespaces ?? {})) {
    const hooks = (policy as { hooks?: Record<string, { function?: unknown } | undefined> } | null)?.hooks;
    for (const kind of ['subscribe', 'publish'] as const) {
      const fn = hooks?.[kind]?.function;
      if (typeof fn !== 'string') continue;
      const partial = /^(\d{12}):function:(.+)$/.exec(fn);
      const arn = fn.startsWith('arn:')
        ? fn
        : partial
          ? stack.formatArn({ service: 'lambda', account: partial[1], resource: 'function', resourceName: partial[2], arnFormat: ArnFormat.COLON_RESOURCE_NAME })
          : stack.formatArn({ service: 'lambda', resource: 'function', resourceName: fn, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
      out[kind].add(arn);
    }
  }
  return { subscribe: [...out.subscribe], publish: [...out.publish] };
}

function ticketAuth(auth: RealtimeTicketAuth | undefined): TicketAuth | undefined {
  if (auth?.type !== 'cognito') return auth;
  return { type: 'jwt', issuer: `https://${auth.userPool.userPoolProviderName}`, audience: auth.userPoolClients.map((c) => c.userPoolClientId) };
}

/** `canary` of {@link RealtimeApiProps}: the canary's settings and whether it is deployed. */
export interface RealtimeCanaryOptions extends Omit<RealtimeCanaryProps, 'endpoints' | 'ticketApi' | 'publishApi' | 'logLevel' | 'logRetention'> {
  /** @default false */
  readonly enabled?: boolean;
}

/** `USER_PUBLISH_PER_MINUTE`, `USER_NEW_CHANNELS_PER_HOUR` and `USER_RETAINED_BYTES`, only those that are set. */
function publishLimitsEnvironment(limits: RealtimeLimits | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  if (limits?.userPublishPerMinute !== undefined) env[CORE_ENV.userPublishPerMinute] = String(limits.userPublishPerMinute);
  if (limits?.userNewChannelsPerHour !== undefined) env[CORE_ENV.userNewChannelsPerHour] = String(limits.userNewChannelsPerHour);
  if (limits?.userRetainedBytes !== undefined) env[CORE_ENV.userRetainedBytes] = String(limits.userRetainedBytes);
  return env;
}

/**
 * The SSE image from the package's prebuilt bundle (`dist/service/`, with its runtime-only Dockerfile) when this code
 * runs from the installed package; undefined in the repository, where {@link SseService} builds service/Dockerfile.
 */
function prebuiltServiceImage(): ecs.ContainerImage | undefined {
  const dir = path.join(PACKAGE_ROOT, 'dist', 'service');
  if (fs.existsSync(path.join(PACKAGE_ROOT, 'service', 'main.ts')) || !fs.existsSync(path.join(dir, 'Dockerfile'))) return undefined;
  return ecs.ContainerImage.fromAsset(dir, { platform: Platform.LINUX_ARM64 });
}
