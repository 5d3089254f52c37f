import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import { Secret as EcsSecret } from 'aws-cdk-lib/aws-ecs';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { CORE_ENV } from '../contract/env';
import { Construct } from 'constructs';
import { DEFAULTS, REDIS_ENGINE_VERSION_DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';
import type { RealtimeFunction } from './realtime-function';

/** Engines of the replication group; both speak the Redis protocol the runtime uses (pub/sub, streams, GETDEL). */
export type RedisEngine = 'valkey' | 'redis';

/** Properties of a {@link RedisPubSub}. */
export interface RedisPubSubProps {
  /** VPC of the replication group. */
  readonly vpc: ec2.IVpc;
  /**
   * Subnets of the cache subnet group.
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Engine: Valkey (open-source Redis fork, about 20% cheaper on ElastiCache) or Redis OSS.
   * @default 'valkey'
   */
  readonly engine?: RedisEngine;
  /**
   * Engine version: Valkey 7.2 or 8.x, or Redis 7.x.
   * @default '8.0' for valkey, '7.1' for redis
   */
  readonly engineVersion?: string;
  /**
   * Node type.
   * @default 'cache.t4g.micro'
   */
  readonly nodeType?: string;
  /**
   * Nodes per shard (1 primary + replicas, 1 to 6). With more than one, Multi-AZ automatic failover is on.
   * @default 2
   */
  readonly nodes?: number;
  /**
   * Shards (node groups), 1 to 90. 1 is a cluster-mode-disabled replication group (one primary: the runtime's
   * `REDIS_URL` is its primary endpoint). 2 or more is cluster mode enabled (`NumNodeGroups`, `nodes - 1` replicas per
   * shard, a parameter group with `cluster-enabled yes`): the runtime reaches it through the configuration endpoint with
   * `REDIS_MODE=cluster`, and alarms watch each shard. Changing between 1 and 2+ creates a new replication group (its
   * data does not move; every client resets once). The runtime refuses `REDIS_MODE=cluster` until publishes run on
   * positions per channel (issue 23; docs/DESIGN.md, "Redis Cluster").
   * @default 1
   */
  readonly shards?: number;
  /**
   * TCP port.
   * @default 6379
   */
  readonly port?: number;
  /**
   * Prefix of every key the runtime writes (`KEY_PREFIX`), so stages or apps can share one cache.
   * @default 'rt:'
   */
  readonly keyPrefix?: string;
  /**
   * Days of daily snapshots kept (0 turns snapshots off). History streams survive a failover without them; snapshots
   * only help after losing every node.
   * @default 1
   */
  readonly snapshotRetentionDays?: number;
  /**
   * What happens to the replication group when it leaves the stack (stack deletion, or a change that replaces it):
   * `snapshot` takes a final snapshot first (CloudFormation DeletionPolicy and UpdateReplacePolicy `Snapshot`),
   * `destroy` deletes it with its data.
   * @default 'snapshot'
   */
  readonly removalPolicy?: RedisRemovalPolicy;
}

/**
 * What CloudFormation does with the replication group when it leaves the stack. There is no `retain`: a retained group
 * would keep its subnet group, security group and parameter group in use, and deleting the stack would fail on them.
 */
export type RedisRemovalPolicy = 'snapshot' | 'destroy';

/**
 * The eviction policy the runtime needs: at maxmemory, writes fail loudly instead of Redis silently evicting tickets,
 * the connection registry or history. (ElastiCache's default parameter groups use volatile-lru.)
 */
export const MAXMEMORY_POLICY = 'noeviction';

/** ElastiCache parameter group family of an engine version: valkey8, valkey7 or redis7. */
export function parameterGroupFamily(engine: RedisEngine, engineVersion: string): string {
  return `${engine}${engineVersion.split('.')[0]}`;
}

const KEY_PREFIX = /^[A-Za-z0-9:_-]{1,32}$/;
const NODE_TYPE = /^cache\.[a-z0-9]+\.[a-z0-9]+$/;

/**
 * ElastiCache replication group for pub/sub and channel history: in-transit encryption required, an AUTH token
 * generated in Secrets Manager, encryption at rest, Multi-AZ failover with more than one node, `maxmemory-policy`
 * noeviction, a final snapshot before deletion (by default), and a security group that admits only what
 * {@link connect} and {@link connectContainer} name.
 */
export class RedisPubSub extends Construct implements ec2.IConnectable {
  /** The AUTH token (a plain string secret). */
  public readonly authToken: secretsmanager.Secret;
  public readonly connections: ec2.Connections;
  public readonly securityGroup: ec2.SecurityGroup;
  public readonly replicationGroup: elasticache.CfnReplicationGroup;
  /** Parameter group of the replication group: `maxmemory-policy` {@link MAXMEMORY_POLICY}. */
  public readonly parameterGroup: elasticache.CfnParameterGroup;
  /** Primary endpoint host name (cluster mode: the configuration endpoint's). */
  public readonly endpointAddress: string;
  /** Primary endpoint port (cluster mode: the configuration endpoint's). */
  public readonly endpointPort: string;
  /** `rediss://host:port` (TLS), as the runtime expects in `REDIS_URL`. */
  public readonly url: string;
  public readonly keyPrefix: string;
  /** Nodes per shard. */
  public readonly nodes: number;
  /** Shards (node groups); more than one is cluster mode enabled. */
  public readonly shards: number;
  /** `cluster` with more than one shard (the runtime's `REDIS_MODE`), else `single`. */
  public readonly mode: 'single' | 'cluster';

  constructor(scope: Construct, id: string, props: RedisPubSubProps) {
    super(scope, id);
    const engine = props.engine ?? DEFAULTS.redis.engine;
    const engineVersion = props.engineVersion ?? REDIS_ENGINE_VERSION_DEFAULTS[engine];
    const nodeType = props.nodeType ?? DEFAULTS.redis.nodeType;
    const port = props.port ?? DEFAULTS.redis.port;
    this.nodes = props.nodes ?? DEFAULTS.redis.nodes;
    this.shards = props.shards ?? DEFAULTS.redis.shards;
    this.mode = this.shards > 1 ? 'cluster' : 'single';
    this.keyPrefix = props.keyPrefix ?? DEFAULTS.redis.keyPrefix;

    if (engine !== 'valkey' && engine !== 'redis') {
      invalid(this, `engine "${engine as string}" is not supported`, 'Use "valkey" or "redis"');
    }
    const versionOk = engine === 'valkey' ? /^(7\.2|8\.\d+)$/.test(engineVersion) : /^7\.\d+$/.test(engineVersion);
    if (!versionOk) {
      invalid(this, `engineVersion "${engineVersion}" is not supported for ${engine}`, engine === 'valkey' ? 'Use Valkey 7.2 or 8.x' : 'Use Redis 7.x');
    }
    if (!NODE_TYPE.test(nodeType)) {
      invalid(this, `nodeType "${nodeType}" is not an ElastiCache node type`, 'Use a name like cache.t4g.micro or cache.r7g.large');
    }
    checkRange(this, 'nodes', this.nodes, 1, 6);
    checkRange(this, 'shards', this.shards, 1, 90);
    if (this.shards * this.nodes > 90) {
      invalid(this, `shards ${this.shards} × nodes ${this.nodes} is more than the 90 nodes ElastiCache allows a cluster by default`, 'Use fewer shards or nodes (or raise the quota with AWS first and keep this check in step)');
    }
    if (this.shards > 1 && this.nodes < 2) {
      invalid(this, `shards ${this.shards} with nodes ${this.nodes}: a shard without a replica loses its slots on a node failure`, 'Use nodes >= 2 (a primary and a replica per shard) with cluster mode');
    }
    checkRange(this, 'port', port, 1024, 65535);
    checkRange(this, 'snapshotRetentionDays', props.snapshotRetentionDays, 0, 35, ' days');
    const removalPolicy = props.removalPolicy ?? DEFAULTS.redis.removalPolicy;
    if (removalPolicy !== 'snapshot' && removalPolicy !== 'destroy') {
      invalid(this, `removalPolicy "${removalPolicy as string}" is not supported`, 'Use "snapshot" (a final snapshot before deletion) or "destroy"');
    }
    if (!KEY_PREFIX.test(this.keyPrefix)) {
      invalid(this, `keyPrefix "${this.keyPrefix}" is not valid`, `Use 1 to 32 letters, digits, ":", "_" or "-" (the runtime checks ${CORE_ENV.keyPrefix} the same way)`);
    }

    this.authToken = new secretsmanager.Secret(this, 'AuthToken', {
      description: 'ElastiCache AUTH token of the realtime pub/sub replication group',
      // ElastiCache AUTH tokens: 16-128 printable characters without / " @ or spaces.
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    Validations.of(this.authToken).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'Rotating an AUTH token is an ordered change on the replication group: ModifyReplicationGroup with AuthTokenUpdateStrategy ROTATE (old and new token both valid), then the secret, the tasks and the functions move to the new token, then SET (old token refused). CloudFormation cannot express it (AWS::ElastiCache::ReplicationGroup has no update strategy, and a changed secret alone changes no template), and no rotation function here drives it; the manual path is docs/DEPLOY.md, "Rotating the Redis AUTH token".',
    });

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Realtime Redis: ingress only from the SSE tasks and the Lambdas that connect',
      allowAllOutbound: false,
    });
    this.connections = new ec2.Connections({ securityGroups: [this.securityGroup], defaultPort: ec2.Port.tcp(port) });

    const subnetGroup = new elasticache.CfnSubnetGroup(this, 'SubnetGroup', {
      description: 'Realtime Redis subnets',
      subnetIds: props.vpc.selectSubnets(props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds,
    });

    const cluster = this.mode === 'cluster';
    // A parameter group's cluster-enabled cannot change while a group uses it: cluster mode has its own (and its own
    // replication group, so moving between 1 and 2+ shards creates the new one before deleting the old).
    this.parameterGroup = new elasticache.CfnParameterGroup(this, cluster ? 'ClusterParameters' : 'Parameters', {
      cacheParameterGroupFamily: parameterGroupFamily(engine, engineVersion),
      description: cluster
        ? 'Realtime pub/sub, cluster mode: cluster-enabled, noeviction (writes fail at maxmemory instead of evicting tickets, connections or history)'
        : 'Realtime pub/sub: noeviction (writes fail at maxmemory instead of evicting tickets, connections or history)',
      properties: cluster ? { 'cluster-enabled': 'yes', 'maxmemory-policy': MAXMEMORY_POLICY } : { 'maxmemory-policy': MAXMEMORY_POLICY },
    });

    const multiAz = this.nodes > 1;
    this.replicationGroup = new elasticache.CfnReplicationGroup(this, cluster ? 'ClusterGroup' : 'ReplicationGroup', {
      replicationGroupDescription: cluster ? `Realtime pub/sub and channel history, ${this.shards} shards` : 'Realtime pub/sub and channel history',
      engine,
      engineVersion,
      cacheNodeType: nodeType,
      ...(cluster ? { numNodeGroups: this.shards, replicasPerNodeGroup: this.nodes - 1 } : { numCacheClusters: this.nodes }),
      automaticFailoverEnabled: multiAz,
      multiAzEnabled: multiAz,
      port,
      cacheSubnetGroupName: subnetGroup.ref,
      cacheParameterGroupName: this.parameterGroup.ref,
      securityGroupIds: [this.securityGroup.securityGroupId],
      transitEncryptionEnabled: true,
      atRestEncryptionEnabled: true,
      authToken: this.authToken.secretValue.unsafeUnwrap(),
      autoMinorVersionUpgrade: true,
      snapshotRetentionLimit: props.snapshotRetentionDays ?? DEFAULTS.redis.snapshotRetentionDays,
    });
    if (removalPolicy === 'snapshot') {
      // CloudFormation has no final-snapshot property on a replication group: DeletionPolicy Snapshot is the way.
      this.replicationGroup.applyRemovalPolicy(RemovalPolicy.SNAPSHOT);
    }
    if (!multiAz) {
      Validations.of(this.replicationGroup).acknowledge({
        id: 'AwsSolutions-AEC4',
        reason: 'This stage runs a single node by configuration (nodes = 1) to save cost; history streams are rebuilt from new events after a node loss. Set nodes >= 2 for Multi-AZ failover.',
      });
    }
    if (port === 6379) {
      Validations.of(this.replicationGroup).acknowledge({
        id: 'AwsSolutions-AEC5',
        reason: 'A non-default port is obscurity, not control: the cache is reachable only from the listed security groups, over TLS, with an AUTH token.',
      });
    }

    // Cluster mode: the configuration endpoint, from which clients learn every shard (CLUSTER SLOTS).
    this.endpointAddress = cluster ? this.replicationGroup.attrConfigurationEndPointAddress : this.replicationGroup.attrPrimaryEndPointAddress;
    this.endpointPort = cluster ? this.replicationGroup.attrConfigurationEndPointPort : this.replicationGroup.attrPrimaryEndPointPort;
    this.url = `rediss://${this.endpointAddress}:${this.endpointPort}`;
  }

  /** Grants reading the AUTH token. */
  public grantConnect(grantee: iam.IGrantable): iam.Grant {
    return this.authToken.grantRead(grantee);
  }

  /**
   * Lets a Lambda use Redis: security group ingress, read access to the AUTH token, and the environment the runtime
   * reads at cold start (`REDIS_URL`, `REDIS_SECRET_ARN`, `KEY_PREFIX`, and `REDIS_MODE` in cluster mode).
   */
  public connect(fn: RealtimeFunction): void {
    this.connections.allowDefaultPortFrom(fn, `from ${fn.node.id}`);
    this.grantConnect(fn);
    fn.addEnvironment(CORE_ENV.redisUrl, this.url);
    fn.addEnvironment(CORE_ENV.redisSecretArn, this.authToken.secretArn);
    fn.addEnvironment(CORE_ENV.keyPrefix, this.keyPrefix);
    if (this.mode === 'cluster') fn.addEnvironment(CORE_ENV.redisMode, this.mode);
  }

  /**
   * Lets a container use Redis: security group ingress from `peer` (the service), `REDIS_URL` and `KEY_PREFIX`, and the
   * AUTH token injected as the ECS secret `REDIS_PASSWORD` (the execution role gets read access).
   */
  public connectContainer(container: ecs.ContainerDefinition, peer: ec2.IConnectable): void {
    this.connections.allowDefaultPortFrom(peer, `from ${container.node.id}`);
    container.addEnvironment(CORE_ENV.redisUrl, this.url);
    container.addEnvironment(CORE_ENV.keyPrefix, this.keyPrefix);
    if (this.mode === 'cluster') container.addEnvironment(CORE_ENV.redisMode, this.mode);
    container.addSecret(CORE_ENV.redisPassword, EcsSecret.fromSecretsManager(this.authToken));
  }

  /**
   * Member cluster ids: ElastiCache names them `{replicationGroupId}-001`, `-002`, ...; in cluster mode
   * `{replicationGroupId}-0001-001` (shard, then node). `shard` (1-based) picks one shard's nodes.
   */
  private memberIds(shard?: number): string[] {
    const nodes = (prefix: string) => Array.from({ length: this.nodes }, (_, i) => `${prefix}-${String(i + 1).padStart(3, '0')}`);
    if (this.mode === 'single') return nodes(this.replicationGroup.ref);
    const shards = shard === undefined ? Array.from({ length: this.shards }, (_, i) => i + 1) : [shard];
    return shards.flatMap((s) => nodes(`${this.replicationGroup.ref}-${String(s).padStart(4, '0')}`));
  }

  /**
   * Highest value of an ElastiCache node metric across the members (primary and replicas swap on failover), or across
   * one shard's members (`shard`, 1-based, cluster mode).
   */
  public metricMax(metricName: string, label: string, shard?: number): cloudwatch.IMetric {
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    this.memberIds(shard).forEach((cacheClusterId, i) => {
      usingMetrics[`m${i}`] = new cloudwatch.Metric({
        namespace: 'AWS/ElastiCache',
        metricName,
        dimensionsMap: { CacheClusterId: cacheClusterId },
        statistic: 'Maximum',
        period: Duration.minutes(1),
      });
    });
    const ids = Object.keys(usingMetrics);
    return new cloudwatch.MathExpression({
      expression: ids.length === 1 ? ids[0] : `MAX([${ids.join(', ')}])`,
      usingMetrics,
      label,
      period: Duration.minutes(1),
    });
  }
}
