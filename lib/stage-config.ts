import { Duration, Validations } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { z } from 'zod';
import { DEFAULTS } from './defaults';
import { IAM_PRINCIPAL_ARN_PATTERN, invalid, ORIGIN_PATTERN, trustedPrincipalFix } from './errors';
import type { RealtimeCanaryProps } from './canary';
import type { LoadBalancerWafProps } from './load-balancer-waf';
import type { NetworkProps } from './network';
import type { PublishApiProps } from './publish-api';
import type { RedisPubSubProps } from './redis-pub-sub';
import type { SseServiceProps } from './sse-service';
import type { TicketApiProps } from './ticket-api';
import type { RealtimeWebSocketApiProps } from './websocket-api';

/**
 * The stage config: what `stages.<name>` in cdk.json may hold, as one zod schema. The types below are inferred from it
 * (there is no second, hand-written copy), defaults live in `DEFAULTS` (lib/defaults.ts), and the meaning of each key is
 * the construct prop of the same name (and the table in docs/DEPLOY.md).
 *
 * Each section is named and shaped like the props of its construct, so the stack passes it through: `network` →
 * {@link NetworkProps}, `redis` → {@link RedisPubSubProps}, `sse` → {@link SseServiceProps}, `webSocket` →
 * {@link RealtimeWebSocketApiProps}, `ticketApi` → {@link TicketApiProps}, `publishApi` → {@link PublishApiProps}. JSON
 * has no `Duration` or construct references, so those few keys carry their unit or kind in the name and are converted
 * here, in the functions at the end of this file ({@link sseServiceProps}, {@link networkProps}, {@link logRetentionOf},
 * {@link alarmTopicOf}): `<prop>Seconds` → `Duration`, `<prop>Days` → `RetentionDays`, `<prop>Arn` → an imported
 * resource, `vpcId`/`vpcAttributes` → `vpc`. The type checks at the bottom of this file fail to compile if a
 * section key is not a prop of its construct.
 */

const int = () => z.number().int();
const throttle = { throttleRateLimit: int().optional(), throttleBurstLimit: int().optional() };
const origin = z.string().regex(ORIGIN_PATTERN, 'must be an origin like https://app.example.com (scheme and host, no "*", path or trailing slash)');
const VPC_ID = /^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/;
const SUBNET_ID = /^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/;

const trustedPrincipal = z.string().superRefine((arn, ctx) => {
  if (!IAM_PRINCIPAL_ARN_PATTERN.test(arn)) ctx.addIssue({ code: 'custom', message: `must be an IAM role or user ARN (${trustedPrincipalFix(arn)})` });
});

const JwtAuth = z.strictObject({
  type: z.literal('jwt'),
  issuer: z.string().regex(/^https:\/\/\S+$/, 'must be the https URL of the token issuer (iss)'),
  audience: z.array(z.string().min(1)).min(1, 'needs at least one audience (aud, or the Cognito app client id)'),
});
const IamAuth = z.strictObject({ type: z.literal('iam') });

/** An existing VPC described by ids (no lookup, no credentials needed). */
const VpcAttributes = z.strictObject({
  vpcId: z.string().regex(VPC_ID, 'must be a VPC id like vpc-0abc123'),
  availabilityZones: z.array(z.string()).min(2, 'needs at least 2 Availability Zones'),
  /** One per AZ, in the order of availabilityZones: the load balancer's subnets. */
  publicSubnetIds: z.array(z.string().regex(SUBNET_ID, 'must be a subnet id')).min(2),
  /** One per AZ, in the order of availabilityZones: private subnets with a NAT route. */
  privateSubnetIds: z.array(z.string().regex(SUBNET_ID, 'must be a subnet id')).min(2),
});

/** `network`: {@link NetworkProps}, with the existing VPC given by id (lookup) or by attributes (offline). */
const NetworkSection = z.strictObject({
  maxAzs: int().optional(),
  natGateways: int().optional(),
  flowLogs: z.boolean().optional(),
  interfaceEndpoints: z.boolean().optional(),
  /** Use this existing VPC, found by `Vpc.fromLookup` (needs the stage's account and region, and credentials at synth). */
  vpcId: z.string().regex(VPC_ID, 'must be a VPC id like vpc-0abc123').optional(),
  /** Use this existing VPC, described by ids (works offline). */
  vpcAttributes: VpcAttributes.optional(),
});

/** `redis`: {@link RedisPubSubProps}. */
const RedisSection = z.strictObject({
  engine: z.enum(['valkey', 'redis']).optional(),
  engineVersion: z.string().optional(),
  nodeType: z.string().optional(),
  nodes: int().optional(),
  shards: int().optional(),
  port: int().optional(),
  keyPrefix: z.string().optional(),
  snapshotRetentionDays: int().optional(),
  removalPolicy: z.enum(['snapshot', 'destroy']).optional(),
});

/** `sse`: {@link SseServiceProps}; `idleTimeoutSeconds`, `deregistrationDelaySeconds`, `stickinessDurationSeconds` and `certificateArn` are converted. */
const SseSection = z.strictObject({
  cpu: int().optional(),
  memoryMiB: int().optional(),
  minTasks: int().optional(),
  maxTasks: int().optional(),
  targetConnectionsPerTask: int().optional(),
  targetCpuPercent: int().optional(),
  heartbeatMs: int().optional(),
  pollTimeoutMs: int().optional(),
  maxWriteDelayMs: int().optional(),
  latencyBudgetMs: int().optional(),
  writeDelayMs: int().optional(),
  idleTimeoutSeconds: int().optional(),
  deregistrationDelaySeconds: int().optional(),
  stickinessDurationSeconds: int().optional(),
  nofileLimit: int().optional(),
  certificateArn: z.string().regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]+$/, 'must be an ACM certificate ARN').optional(),
  domainName: z.string().optional(),
  containerInsights: z.boolean().optional(),
  deletionProtection: z.boolean().optional(),
});

/**
 * Where WebSockets terminate: `apigateway` (the API Gateway WebSocket API and its Lambdas), `tasks` (`/live` on the SSE
 * tasks, behind the same ALB listener; no API Gateway WebSocket resources), or `both` (both endpoints; tickets name the
 * tasks' one, and API Gateway keeps serving what was connected to it).
 */
export const WEB_SOCKET_MODES = ['apigateway', 'tasks', 'both'] as const;
export type WebSocketMode = (typeof WEB_SOCKET_MODES)[number];

/** What the stack reads from the `webSocket` section itself (the rest passes through to {@link RealtimeWebSocketApiProps}). */
export interface WebSocketModeProps {
  /**
   * Where WebSockets terminate (see {@link WEB_SOCKET_MODES}). New stacks use `tasks`; `both` is the migration mode of a
   * stack that served WebSockets on API Gateway (its connections stay there until they end).
   * @default 'tasks'
   */
  readonly mode?: WebSocketMode;
}

/** `webSocket`: `mode` ({@link WebSocketModeProps}, read by the stack), the rest {@link RealtimeWebSocketApiProps}. */
const WebSocketSection = z.strictObject({
  mode: z.enum(WEB_SOCKET_MODES).optional(),
  stageName: z.string().optional(),
  messageReservedConcurrency: int().optional(),
  accessLogs: z.boolean().optional(),
  ...throttle,
});
/** `webSocketFanout`: {@link WebSocketFanoutProps}. */
const WebSocketFanoutSection = z.strictObject({
  shards: int().optional(),
  inlineMax: int().optional(),
  replayInlineMax: int().optional(),
  maxReceiveCount: int().optional(),
  batchSize: int().optional(),
});
/** `ticketApi`: {@link TicketApiProps}. */
const TicketApiSection = z.strictObject({ auth: z.discriminatedUnion('type', [JwtAuth, IamAuth]).optional(), ...throttle });
/** `publishApi`: {@link PublishApiProps}. */
const PublishApiSection = z.strictObject({ reservedConcurrency: int().optional(), ...throttle });
/** `waf`: AWS WAF on the SSE load balancer, `waf` of RealtimeApi ({@link LoadBalancerWafProps} and `enabled`). */
const WafSection = z.strictObject({ enabled: z.boolean().optional(), rateLimit: int().optional(), rateLimitWindowSeconds: int().optional(), healthCheckRateLimit: int().optional() });
/** `backendEvents`: `backendEvents` of RealtimeApi (lib/backend-events.ts `BackendEventsProps` and `enabled`). */
const BackendEventsSection = z.strictObject({
  enabled: z.boolean().optional(),
  debounceMs: int().optional(),
  exampleQueue: z.boolean().optional(),
  webhook: z
    .strictObject({
      url: z.string(),
      apiKeySecretArn: z.string(),
      apiKeyHeader: z.string().optional(),
      rateLimitPerSecond: int().optional(),
      eventTypes: z.array(z.enum(['channel.occupied', 'channel.vacated', 'user.revoked', 'client.publish'])).optional(),
    })
    .optional(),
});
/** `limits`: per-user limits of the runtime on publishing (`USER_PUBLISH_PER_MINUTE`, `USER_NEW_CHANNELS_PER_HOUR`, `USER_RETAINED_BYTES`); unset keys leave the runtime's defaults. */
const LimitsSection = z.strictObject({ userPublishPerMinute: int().optional(), userNewChannelsPerHour: int().optional(), userRetainedBytes: int().optional() });

/** `canary`: the delivery canary (`canary` of RealtimeApi, {@link RealtimeCanaryProps} and `enabled`); on in prod in cdk.json. */
const CanarySection = z.strictObject({ enabled: z.boolean().optional(), intervalMinutes: int().optional(), burst: int().optional(), latencyThresholdMs: int().optional(), namespace: z.string().optional() });

/** Schema of one `stages.<name>` entry in cdk.json context. Unknown keys are errors (they are usually typos). */
export const StageConfigSchema = z
  .strictObject({
    /** Account to deploy to; with region, pins the stack's environment (needed for vpcId lookup and ALB access logs). */
    account: z.string().regex(/^\d{12}$/, 'must be a 12-digit AWS account id').optional(),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a region like eu-west-1').optional(),
    network: NetworkSection.optional(),
    redis: RedisSection.optional(),
    sse: SseSection.optional(),
    webSocket: WebSocketSection.optional(),
    webSocketFanout: WebSocketFanoutSection.optional(),
    ticketApi: TicketApiSection.optional(),
    publishApi: PublishApiSection.optional(),
    limits: LimitsSection.optional(),
    waf: WafSection.optional(),
    backendEvents: BackendEventsSection.optional(),
    canary: CanarySection.optional(),
    /** IAM role or user ARNs trusted by the IAM-authorised routes: `trustedPrincipals` of TicketApi and PublishApi. */
    trustedPrincipals: z.array(trustedPrincipal).optional(),
    /** Browser origins: `allowedOrigins` of TicketApi and SseService. */
    allowedOrigins: z.array(origin).optional(),
    /** Channel namespace policies, passed to the runtime as `NAMESPACES_JSON`. */
    namespaces: z.record(z.string(), z.unknown()).optional(),
    ticketTtlSeconds: int().optional(),
    maxPayloadBytes: int().optional(),
    /** `logLevel` of every construct. */
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
    /** `logRetention` of every construct, in days. */
    logRetentionDays: int().optional(),
    /** SNS topic every alarm notifies: `alarmTopic` of Observability. */
    alarmTopicArn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/, 'must be an SNS topic ARN').optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.account === undefined) !== (c.region === undefined)) {
      ctx.addIssue({ code: 'custom', path: [c.account === undefined ? 'account' : 'region'], message: 'set account and region together, or neither (environment-agnostic)' });
    }
    if (c.network?.vpcId && (c.account === undefined || c.region === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['network', 'vpcId'], message: 'looking a VPC up needs the stage\'s account and region; set both, or describe the VPC with vpcAttributes (works offline)' });
    }
  });

/** A stage config that cannot be used; the message is one line naming the bad key. */
export class StageConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageConfigError';
  }
}

/**
 * Parses `stages.<stageName>` (a stage known to exist) with {@link StageConfigSchema}: what `cdk synth` (bin/config.ts)
 * and the cost planner (cost/stage.ts) read, so both see the same keys, types and errors. Throws
 * {@link StageConfigError} with one line naming the first bad key and counting the rest.
 */
export function parseStageConfig(stageName: string, raw: unknown): RealtimeStageConfig {
  const parsed = StageConfigSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const [first, ...rest] = parsed.error.issues;
  const path = ['stages', stageName, ...first.path.map(String)];
  // An unknown key is named itself, not its parent: it is usually a typo of a known one.
  const unknown = first.code === 'unrecognized_keys' ? first.keys : [];
  const key = [...path, ...unknown.slice(0, 1)].join('.');
  const message = unknown.length > 0 ? 'unknown key (a typo? see docs/DEPLOY.md for the keys)' : first.message;
  const more = rest.length + Math.max(0, unknown.length - 1);
  throw new StageConfigError(`Invalid stage config ${key}: ${message}${more > 0 ? ` (and ${more} more)` : ''}`);
}

/**
 * Everything a stage (dev, prod, ...) may set, as written under `stages.<name>` in cdk.json context, inferred from
 * {@link StageConfigSchema}. Every field is optional; a missing field takes its `DEFAULTS` entry, or stays unset.
 */
export type RealtimeStageConfig = z.infer<typeof StageConfigSchema>;
export type NetworkConfig = z.infer<typeof NetworkSection>;
export type VpcAttributesConfig = z.infer<typeof VpcAttributes>;
export type RedisConfig = z.infer<typeof RedisSection>;
export type SseConfig = z.infer<typeof SseSection>;
export type WebSocketConfig = z.infer<typeof WebSocketSection>;
export type TicketApiConfig = z.infer<typeof TicketApiSection>;
export type PublishApiConfig = z.infer<typeof PublishApiSection>;
export type LimitsConfig = z.infer<typeof LimitsSection>;
export type WafConfig = z.infer<typeof WafSection>;
export type CanaryConfig = z.infer<typeof CanarySection>;

/** Keys converted at the boundary (JSON cannot hold a `Duration` or a construct). */
type SseConverted = 'idleTimeoutSeconds' | 'deregistrationDelaySeconds' | 'stickinessDurationSeconds' | 'certificateArn';
type NetworkConverted = 'vpcId' | 'vpcAttributes';
/** Keys the stack reads itself. */
type WebSocketOwn = 'mode';

/**
 * The `webSocket` section: its `mode` (default `DEFAULTS.webSocket.mode`) and, unless the mode is `tasks`, the props of
 * the API Gateway WebSocket API. API keys with mode `tasks` are refused: they would configure nothing.
 */
export function webSocketSetup(scope: Construct, webSocket: WebSocketConfig = {}): { mode: WebSocketMode; api?: Partial<RealtimeWebSocketApiProps> } {
  const { mode = DEFAULTS.webSocket.mode, ...api } = webSocket;
  if (mode === 'tasks') {
    const set = Object.keys(api).filter((k) => api[k as keyof typeof api] !== undefined);
    if (set.length) {
      invalid(scope, `webSocket.mode is "tasks" but webSocket.${set.join(', webSocket.')} configure the API Gateway WebSocket API, which this mode does not create`, 'Drop those keys, or use mode "both" or "apigateway"');
    }
    return { mode };
  }
  return { mode, api };
}

/**
 * The `sse` section as {@link SseServiceProps}: every key passes through under its own name but the converted ones,
 * `<prop>Seconds` → `Duration.seconds`, `certificateArn` → an imported certificate (construct `Certificate` in `scope`).
 */
export function sseServiceProps(scope: Construct, sse: SseConfig = {}): Partial<SseServiceProps> {
  const { idleTimeoutSeconds, deregistrationDelaySeconds, stickinessDurationSeconds, certificateArn, ...same } = sse;
  return {
    ...same,
    idleTimeout: seconds(idleTimeoutSeconds),
    deregistrationDelay: seconds(deregistrationDelaySeconds),
    stickinessDuration: seconds(stickinessDurationSeconds),
    certificate: certificateArn ? acm.Certificate.fromCertificateArn(scope, 'Certificate', certificateArn) : undefined,
  };
}

/**
 * The `network` section as {@link NetworkProps}: `vpcId` (a lookup) or `vpcAttributes` (offline) become `vpc`, imported
 * in `scope` as construct `Vpc`; a new VPC's flow logs keep `flowLogRetention`.
 */
export function networkProps(scope: Construct, network: NetworkConfig = {}, flowLogRetention?: logs.RetentionDays): NetworkProps {
  const { vpcId, vpcAttributes, ...same } = network;
  if (vpcId && vpcAttributes) {
    invalid(scope, 'network.vpcId and network.vpcAttributes are both set', 'Keep one: vpcId looks the VPC up, vpcAttributes describes it');
  }
  const vpc = vpcId ? ec2.Vpc.fromLookup(scope, 'Vpc', { vpcId }) : vpcAttributes ? importVpc(scope, vpcAttributes) : undefined;
  return { ...same, vpc, flowLogRetention: vpc ? undefined : flowLogRetention };
}

function importVpc(scope: Construct, a: VpcAttributesConfig): ec2.IVpc {
  const vpc = ec2.Vpc.fromVpcAttributes(scope, 'Vpc', {
    vpcId: a.vpcId,
    availabilityZones: [...a.availabilityZones],
    publicSubnetIds: [...a.publicSubnetIds],
    privateSubnetIds: [...a.privateSubnetIds],
  });
  Validations.of(vpc).acknowledge({
    id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
    reason: 'Nothing in this stack reads the route tables of the imported subnets (no gateway endpoints or routes are added to them).',
  });
  return vpc;
}

/** `logRetentionDays` as the `logRetention` of every construct (the stack checks it is a CloudWatch Logs value). */
export function logRetentionOf(days: number | undefined): logs.RetentionDays {
  return (days ?? DEFAULTS.logRetentionDays) as logs.RetentionDays;
}

/** `alarmTopicArn` as the `alarmTopic` of Observability, imported in `scope` as construct `AlarmTopic`. */
export function alarmTopicOf(scope: Construct, arn: string | undefined): sns.ITopic | undefined {
  return arn ? sns.Topic.fromTopicArn(scope, 'AlarmTopic', arn) : undefined;
}

function seconds(value: number | undefined): Duration | undefined {
  return value === undefined ? undefined : Duration.seconds(value);
}

/**
 * Compile-time checks that each section is named like its construct's props: every key that passes through must be a
 * prop of the same name and a compatible type. A section key renamed on one side only fails to compile here.
 */
type PassesThrough<Section, Props> = { [K in keyof Section]-?: K extends keyof Props ? (NonNullable<Section[K]> extends NonNullable<Props[K]> ? true : false) : false }[keyof Section];
type Check<T extends true> = T;
export type StageSectionsMatchProps = [
  Check<PassesThrough<Omit<NetworkConfig, NetworkConverted>, NetworkProps>>,
  Check<PassesThrough<RedisConfig, RedisPubSubProps>>,
  Check<PassesThrough<Omit<SseConfig, SseConverted>, SseServiceProps>>,
  Check<PassesThrough<Omit<WebSocketConfig, WebSocketOwn>, RealtimeWebSocketApiProps>>,
  Check<PassesThrough<TicketApiConfig, TicketApiProps>>,
  Check<PassesThrough<PublishApiConfig, PublishApiProps>>,
  Check<PassesThrough<Omit<WafConfig, 'enabled'>, LoadBalancerWafProps>>,
  Check<PassesThrough<Omit<CanaryConfig, 'enabled'>, RealtimeCanaryProps>>,
];
