import type { RuntimeLogLevel } from './realtime-function';
import type { RedisEngine, RedisRemovalPolicy } from './redis-pub-sub';
import type { TicketAuth } from './ticket-api';

/** An existing VPC described by ids (no lookup, no credentials needed). */
export interface VpcAttributesConfig {
  readonly vpcId: string;
  readonly availabilityZones: readonly string[];
  /** One per AZ, in the order of availabilityZones: the load balancer's subnets. */
  readonly publicSubnetIds: readonly string[];
  /** One per AZ, in the order of availabilityZones: private subnets with a NAT route. */
  readonly privateSubnetIds: readonly string[];
}

/** Network settings of a stage. */
export interface NetworkConfig {
  /** @default 2 */
  readonly maxAzs?: number;
  /** @default 1 */
  readonly natGateways?: number;
  /** @default true */
  readonly flowLogs?: boolean;
  /**
   * Use this existing VPC, found by `Vpc.fromLookup` (needs the stage's account and region, and credentials at synth).
   * @default - a new VPC
   */
  readonly vpcId?: string;
  /**
   * Use this existing VPC, described by ids (works offline).
   * @default - a new VPC
   */
  readonly vpcAttributes?: VpcAttributesConfig;
}

/** Redis settings of a stage (see {@link RedisPubSubProps}). */
export interface RedisConfig {
  /** @default 'valkey' */
  readonly engine?: RedisEngine;
  /** @default '8.0' for valkey, '7.1' for redis */
  readonly engineVersion?: string;
  /** @default 'cache.t4g.micro' */
  readonly nodeType?: string;
  /** @default 2 */
  readonly nodes?: number;
  /** @default 6379 */
  readonly port?: number;
  /** @default 'rt:' */
  readonly keyPrefix?: string;
  /** @default 1 */
  readonly snapshotRetentionDays?: number;
  /**
   * `snapshot`: a final snapshot before the replication group is deleted or replaced; `destroy`: delete it with its data.
   * @default 'snapshot'
   */
  readonly removalPolicy?: RedisRemovalPolicy;
}

/**
 * Per-user limits of the runtime on publishing, for the functions that publish (publish API, WebSocket messages).
 * An unset key leaves the variable unset, so the runtime's own default applies.
 */
export interface LimitsConfig {
  /**
   * Events one user may publish per minute (`USER_PUBLISH_PER_MINUTE`, 0 to 1000000; 0 turns the limit off).
   * Backends (trusted IAM callers) are not limited.
   * @default - the runtime's default (300)
   */
  readonly userPublishPerMinute?: number;
  /**
   * Channels one user may bring into existence per hour (`USER_NEW_CHANNELS_PER_HOUR`, 0 to 1000000; 0 turns the
   * limit off).
   * @default - the runtime's default (50)
   */
  readonly userNewChannelsPerHour?: number;
}

/** SSE service settings of a stage (see {@link SseServiceProps}). */
export interface SseConfig {
  /** @default 256 */
  readonly cpu?: number;
  /** @default 512 */
  readonly memoryMiB?: number;
  /** @default 2 */
  readonly minTasks?: number;
  /** @default 10 */
  readonly maxTasks?: number;
  /** @default 10000 */
  readonly targetConnectionsPerTask?: number;
  /** @default 60 */
  readonly targetCpuPercent?: number;
  /** @default 15000 */
  readonly heartbeatMs?: number;
  /** @default 25000 */
  readonly pollTimeoutMs?: number;
  /** @default 60 */
  readonly idleTimeoutSeconds?: number;
  /** @default 30 */
  readonly deregistrationDelaySeconds?: number;
  /** @default 3600 */
  readonly stickinessSeconds?: number;
  /** @default 65536 */
  readonly nofileLimit?: number;
  /**
   * ACM certificate ARN for HTTPS (HTTP/2); requires domainName.
   * @default - HTTP only
   */
  readonly certificateArn?: string;
  /**
   * Public host name of the SSE endpoint (your DNS record pointing at the load balancer).
   * @default - the load balancer's DNS name
   */
  readonly domainName?: string;
  /** @default true */
  readonly containerInsights?: boolean;
}

/** Throttling of an API stage. */
export interface ThrottleConfig {
  readonly throttleRateLimit?: number;
  readonly throttleBurstLimit?: number;
}

/** WebSocket settings of a stage. */
export interface WebSocketConfig extends ThrottleConfig {
  /** @default 'live' */
  readonly stageName?: string;
  /**
   * Reserved concurrency of the WebSocket message handler (it fans out published events).
   * @default 100
   */
  readonly messageReservedConcurrency?: number;
}

/** Publish API settings of a stage. */
export interface PublishApiConfig extends ThrottleConfig {
  /**
   * Reserved concurrency of the publish function (it fans out to WebSocket connections).
   * @default 100
   */
  readonly reservedConcurrency?: number;
}

/** Ticket API settings of a stage. */
export interface TicketApiConfig extends ThrottleConfig {
  /** @default { type: 'iam' } */
  readonly auth?: TicketAuth;
}

/**
 * Everything a stage (dev, prod, ...) may set, as written under `stages.<name>` in cdk.json context.
 * Every field is optional; a missing field takes the construct's default.
 */
export interface RealtimeStageConfig {
  /**
   * Account to deploy to; with region, pins the stack's environment (needed for vpcId lookup).
   * @default - environment-agnostic: the account of the deploying credentials
   */
  readonly account?: string;
  /** @default - environment-agnostic: the region of the deploying credentials */
  readonly region?: string;
  readonly network?: NetworkConfig;
  readonly redis?: RedisConfig;
  readonly sse?: SseConfig;
  readonly webSocket?: WebSocketConfig;
  readonly ticketApi?: TicketApiConfig;
  readonly publishApi?: PublishApiConfig;
  /** @default - the runtime's defaults */
  readonly limits?: LimitsConfig;
  /**
   * IAM role or user ARNs trusted by the IAM-authorised routes (`POST /publish`, `POST /revoke`, and `POST /tickets`
   * with IAM auth), as `TRUSTED_PRINCIPALS` of the ticket issuer, publish and revoke functions. Such a caller may mint
   * tickets for, publish as and revoke any user. An assumed-role session matches its role. No wildcard, no account-wide
   * token: every trusted backend is named.
   * @default [] - no IAM caller is trusted: IAM-signed calls are refused
   */
  readonly trustedPrincipals?: readonly string[];
  /**
   * Browser origins allowed to call the ticket API and read SSE streams.
   * @default []
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Channel namespace policies, passed to the runtime as `NAMESPACES_JSON`.
   * @default - the runtime's built-in namespaces (scores, chat, user)
   */
  readonly namespaces?: Readonly<Record<string, unknown>>;
  /** @default 30 */
  readonly ticketTtlSeconds?: number;
  /** @default 32768 */
  readonly maxPayloadBytes?: number;
  /** @default 'info' */
  readonly logLevel?: RuntimeLogLevel;
  /** @default 30 */
  readonly logRetentionDays?: number;
  /**
   * SNS topic ARN every alarm notifies.
   * @default - alarms without actions
   */
  readonly alarmTopicArn?: string;
}
