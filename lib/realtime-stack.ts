import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { CORE_ENV } from '../contract/env';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';
import { Network } from './network';
import { Observability } from './observability';
import { PublishApi } from './publish-api';
import { RedisPubSub } from './redis-pub-sub';
import { SseService } from './sse-service';
import { alarmTopicOf, logRetentionOf, networkProps, type RealtimeStageConfig, sseServiceProps, type WebSocketMode, webSocketSetup } from './stage-config';
import { TicketApi } from './ticket-api';
import { RealtimeWebSocketApi } from './websocket-api';

/**
 * Names of the stack outputs; `npm run dev` prints the same names for the local stack. `WebSocketUrl` (API Gateway)
 * exists with `webSocket.mode` `apigateway` and `both`, `LiveUrl` (the tasks' `/live`) with `tasks` and `both`.
 */
export const OUTPUT_NAMES = ['TicketUrl', 'SseUrl', 'PollUrl', 'WebSocketUrl', 'LiveUrl', 'PublishUrl', 'RedisEndpoint'] as const;
export type OutputName = (typeof OUTPUT_NAMES)[number];

/** Properties of a {@link RealtimeStack}. */
export interface RealtimeStackProps extends StackProps {
  /** Stage name (dev, prod, ...): the SSM path `/realtime/{stageName}/...`. */
  readonly stageName: string;
  /**
   * The stage's settings.
   * @default {} - every construct default
   */
  readonly config?: RealtimeStageConfig;
}

const STAGE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const RETENTION_DAYS = new Set<number>(Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number'));

/**
 * The realtime blueprint on AWS: network, Redis pub/sub, WebSocket API, SSE service, ticket and publish APIs,
 * observability, and the endpoints as outputs and SSM parameters. It only composes the constructs.
 */
export class RealtimeStack extends Stack {
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
  /** Output values by name (those of this stage's mode). */
  public readonly endpoints: Readonly<Partial<Record<OutputName, string>>>;

  constructor(scope: Construct, id: string, props: RealtimeStackProps) {
    super(scope, id, props);
    const config = props.config ?? {};
    if (!STAGE_NAME.test(props.stageName)) {
      invalid(this, `stageName "${props.stageName}" is not valid`, 'Use 1 to 32 lowercase letters, digits or "-", starting with a letter (it becomes the SSM path /realtime/{stageName}/)');
    }
    if (config.logRetentionDays !== undefined && !RETENTION_DAYS.has(config.logRetentionDays)) {
      invalid(this, `logRetentionDays (${config.logRetentionDays}) is not a CloudWatch Logs retention`, `Use one of ${[...RETENTION_DAYS].join(', ')}`);
    }
    checkRange(this, 'ticketTtlSeconds', config.ticketTtlSeconds, 5, 300, ' seconds');
    checkRange(this, 'maxPayloadBytes', config.maxPayloadBytes, 256, 32768, ' bytes');
    // The runtime's range: 0 turns a limit off.
    checkRange(this, 'limits.userPublishPerMinute', config.limits?.userPublishPerMinute, 0, 1_000_000);
    checkRange(this, 'limits.userNewChannelsPerHour', config.limits?.userNewChannelsPerHour, 0, 1_000_000);
    const logRetention = logRetentionOf(config.logRetentionDays);
    const logLevel = config.logLevel ?? DEFAULTS.logLevel;
    const allowedOrigins = config.allowedOrigins ?? DEFAULTS.allowedOrigins;
    const trustedPrincipals = config.trustedPrincipals ?? DEFAULTS.trustedPrincipals;

    const runtimeEnv: Record<string, string> = {
      [CORE_ENV.ticketTtlSeconds]: String(config.ticketTtlSeconds ?? DEFAULTS.ticketTtlSeconds),
      [CORE_ENV.maxPayloadBytes]: String(config.maxPayloadBytes ?? DEFAULTS.maxPayloadBytes),
    };
    if (config.namespaces !== undefined) {
      const json = JSON.stringify(config.namespaces);
      // Lambda allows 4 KB of environment in total; leave room for the rest.
      if (json.length > 2048) {
        invalid(this, `namespaces is ${json.length} bytes as JSON (${CORE_ENV.namespacesJson}), over 2048`, 'Merge namespaces with the same policy, or shorten their names');
      }
      runtimeEnv[CORE_ENV.namespacesJson] = json;
    }

    // Each stage section is named like its construct's props (lib/stage-config.ts) and passes through; only the
    // settings every construct shares are added here.
    this.network = new Network(this, 'Network', networkProps(this, config.network, logRetention));
    const vpc = this.network.vpc;

    this.redis = new RedisPubSub(this, 'Redis', { vpc, ...config.redis });

    const runtime = { vpc, redis: this.redis, environment: runtimeEnv, logLevel, logRetention };
    const ws = webSocketSetup(this, config.webSocket);
    this.webSocketMode = ws.mode;
    if (ws.api) this.webSocket = new RealtimeWebSocketApi(this, 'WebSocket', { ...runtime, ...ws.api });
    const webSocket = this.webSocket;

    this.sse = new SseService(this, 'Sse', { ...runtime, ...sseServiceProps(this, config.sse), allowedOrigins });
    // Tickets name the tasks' endpoint whenever it serves (`both`: new connections move there; API Gateway keeps the rest).
    const onTasks = ws.mode !== 'apigateway';

    this.ticketApi = new TicketApi(this, 'TicketApi', {
      ...runtime,
      ...config.ticketApi,
      sseUrl: this.sse.eventsUrl,
      webSocketUrl: onTasks ? this.sse.liveUrl : webSocket!.url,
      trustedPrincipals,
      allowedOrigins,
    });

    this.publishApi = new PublishApi(this, 'PublishApi', { ...runtime, ...config.publishApi, trustedPrincipals });
    // The two functions that fan out to WebSocket connections, POST only: publish (here) and the message handler (in
    // RealtimeWebSocketApi). The revoker closes connections, DELETE only.
    webSocket?.grantPostToConnections(this.publishApi.handler);
    webSocket?.grantCloseConnections(this.publishApi.revokeHandler);
    // The functions that publish get the per-user publish limits; unset keys leave the runtime's defaults.
    for (const publisher of webSocket ? [this.publishApi.handler, webSocket.messageFunction] : [this.publishApi.handler]) {
      for (const [key, value] of Object.entries(publishLimitsEnvironment(config))) publisher.addEnvironment(key, value);
    }
    // WebSocket clients on the tasks publish there too (`/live`): the same limits.
    if (onTasks) for (const [key, value] of Object.entries(publishLimitsEnvironment(config))) this.sse.container.addEnvironment(key, value);

    this.observability = new Observability(this, 'Observability', {
      sse: this.sse,
      redis: this.redis,
      webSocket,
      httpEndpoints: [this.ticketApi.endpoint, this.publishApi.endpoint],
      functions: [...(webSocket?.functions ?? []), this.ticketApi.handler, this.publishApi.handler, this.publishApi.revokeHandler],
      alarmTopic: alarmTopicOf(this, config.alarmTopicArn),
    });

    this.endpoints = {
      TicketUrl: this.ticketApi.url,
      SseUrl: this.sse.eventsUrl,
      PollUrl: this.sse.pollUrl,
      WebSocketUrl: webSocket?.url,
      LiveUrl: onTasks ? this.sse.liveUrl : undefined,
      PublishUrl: this.publishApi.url,
      RedisEndpoint: `${this.redis.endpointAddress}:${this.redis.endpointPort}`,
    };
    const descriptions: Record<OutputName, string> = {
      TicketUrl: 'POST here (JWT or IAM) for a single-use connect ticket',
      SseUrl: 'EventSource URL: GET ?channels=a,b&ticket=T',
      PollUrl: 'Long-poll fallback: GET ?channels=a,b&cursor=C',
      WebSocketUrl: 'WebSocket URL on API Gateway: connect with ?ticket=T',
      LiveUrl: 'WebSocket URL on the tasks (same protocol): connect with ?ticket=T',
      PublishUrl: 'POST here (IAM-signed) to publish an event',
      RedisEndpoint: 'Primary endpoint (host:port) of the pub/sub Redis, TLS + AUTH',
    };
    for (const name of OUTPUT_NAMES) {
      const value = this.endpoints[name];
      if (value === undefined) continue;
      new CfnOutput(this, name, { value, description: descriptions[name] });
      new ssm.StringParameter(this, `${name}Parameter`, {
        parameterName: `/realtime/${props.stageName}/${name}`,
        stringValue: value,
        description: descriptions[name],
      });
    }
    this.addDnsTargetOutput(config.sse?.domainName);
  }

  /** With a custom domain, the load balancer's own name is what the DNS record must point at. */
  private addDnsTargetOutput(domainName: string | undefined): void {
    if (!domainName) return;
    new CfnOutput(this, 'SseLoadBalancerDnsName', {
      value: this.sse.loadBalancer.loadBalancerDnsName,
      description: `Point ${domainName} (CNAME or Route 53 alias) at this name`,
    });
  }
}

/** `USER_PUBLISH_PER_MINUTE` and `USER_NEW_CHANNELS_PER_HOUR` from the stage's `limits`, only those that are set. */
function publishLimitsEnvironment(config: RealtimeStageConfig): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.limits?.userPublishPerMinute !== undefined) env[CORE_ENV.userPublishPerMinute] = String(config.limits.userPublishPerMinute);
  if (config.limits?.userNewChannelsPerHour !== undefined) env[CORE_ENV.userNewChannelsPerHour] = String(config.limits.userNewChannelsPerHour);
  return env;
}
