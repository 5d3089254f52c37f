/**
 * RedisPubSub: TLS + AUTH, Multi-AZ, the noeviction parameter group, removal policy, who may connect, and the
 * checks on its props.
 */
import { Stack } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { Network } from '../../lib/network';
import { RedisPubSub, type RedisPubSubProps } from '../../lib/redis-pub-sub';
import { buildStack, logicalIdOf, newApp, onlyLogicalId, type Resources, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('Redis: in-transit encryption and an AUTH token resolved from Secrets Manager, encrypted at rest', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      TransitEncryptionEnabled: true,
      AtRestEncryptionEnabled: true,
      AuthToken: {
        'Fn::Join': ['', ['{{resolve:secretsmanager:', stack.resolve(stack.redis.authToken.secretArn), ':SecretString:::}}']],
      },
      Engine: 'valkey',
    });
  });

  test('Redis with one node (dev): no Multi-AZ, no automatic failover', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      NumCacheClusters: 1,
      MultiAZEnabled: false,
      AutomaticFailoverEnabled: false,
    });
  });

  test('Redis memory: a valkey8 parameter group with maxmemory-policy noeviction, used by the replication group', () => {
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', {
      CacheParameterGroupFamily: 'valkey8',
      Properties: { 'maxmemory-policy': 'noeviction' },
    });
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      CacheParameterGroupName: { Ref: onlyLogicalId(template, 'AWS::ElastiCache::ParameterGroup') },
    });
  });

  test('Redis removal policy (dev: destroy): deleted with the stack, no final snapshot', () => {
    const [group] = Object.values(template.findResources('AWS::ElastiCache::ReplicationGroup'));
    expect(group.DeletionPolicy ?? 'Delete').toBe('Delete');
    expect(group.UpdateReplacePolicy ?? 'Delete').toBe('Delete');
  });

  test('Redis security group: ingress only from the SSE task and the Lambda security groups, on the Redis port', () => {
    const redisSg = stack.resolve(stack.redis.securityGroup.securityGroupId);
    const allowed = [
      stack.resolve(stack.sse.service.connections.securityGroups[0].securityGroupId),
      ...[...stack.webSocket!.functions, stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler, stack.webSocketFanout!.worker, stack.webSocketFanout!.deadLetterConsumer].map((f) => stack.resolve(f.connections.securityGroups[0].securityGroupId)),
    ];
    const ingress = Object.values(template.findResources('AWS::EC2::SecurityGroupIngress', { Properties: { GroupId: redisSg } })) as Resources[string][];
    expect(ingress.map((r) => r.Properties.SourceSecurityGroupId)).toEqual(expect.arrayContaining(allowed));
    expect(ingress).toHaveLength(allowed.length);
    for (const rule of ingress) {
      expect(rule.Properties).toMatchObject({ IpProtocol: 'tcp', FromPort: 6379, ToPort: 6379 });
      expect(rule.Properties).not.toHaveProperty('CidrIp');
      expect(rule.Properties).not.toHaveProperty('CidrIpv6');
    }
    // and no inline ingress on the group itself
    const groupId = onlyLogicalId(template, 'AWS::EC2::SecurityGroup', { GroupDescription: Match.stringLikeRegexp('Realtime Redis') });
    expect(template.toJSON().Resources[groupId].Properties.SecurityGroupIngress).toBeUndefined();
  });

  test('Lambdas read the Redis AUTH token: every function role may GetSecretValue on that secret only', () => {
    const secret = stack.resolve(stack.redis.authToken.secretArn);
    for (const fn of [...stack.webSocket!.functions, stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler]) {
      const role = logicalIdOf(fn.function.role!);
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: role }],
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['secretsmanager:GetSecretValue']), Resource: secret })]) },
      });
    }
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let template: Template;
  useStageTemplate('prod', (_s, t) => (template = t));

  test('Redis with two nodes: Multi-AZ with automatic failover', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      NumCacheClusters: 2,
      MultiAZEnabled: true,
      AutomaticFailoverEnabled: true,
      CacheNodeType: 'cache.t4g.small',
    });
  });

  test('Redis removal policy (prod: snapshot): a final snapshot before deletion or replacement', () => {
    template.hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });
});

describe('configs that switch behaviour', () => {
  test.each<[string, string | undefined, string]>([
    ['valkey', undefined, 'valkey8'],
    ['valkey', '7.2', 'valkey7'],
    ['redis', undefined, 'redis7'],
    ['redis', '7.0', 'redis7'],
  ])('Redis parameter group for %s %s: family %s, maxmemory-policy noeviction', (engine, engineVersion, family) => {
    const template = templateOf(buildStack({ redis: { engine: engine as 'valkey' | 'redis', engineVersion } }));
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', { CacheParameterGroupFamily: family, Properties: { 'maxmemory-policy': 'noeviction' } });
  });

  test('Redis removal policy by default: a final snapshot before deletion or replacement', () => {
    templateOf(buildStack()).hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });
});

describe('redis.shards', () => {
  test('redis.shards 1 (default): a cluster-mode-disabled group on its primary endpoint, no REDIS_MODE', () => {
    const stack = buildStack();
    const template = templateOf(stack);
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { NumCacheClusters: 2, NumNodeGroups: Match.absent(), ReplicasPerNodeGroup: Match.absent() });
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', { Properties: { 'maxmemory-policy': 'noeviction', 'cluster-enabled': Match.absent() } });
    expect(stack.resolve(stack.redis.endpointAddress)).toEqual({ 'Fn::GetAtt': [stack.resolve(stack.redis.replicationGroup.logicalId), 'PrimaryEndPoint.Address'] });
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) expect(fn.Properties.Environment?.Variables?.REDIS_MODE).toBeUndefined();
  });

  describe('redis.shards 3, nodes 2: cluster mode enabled', () => {
    let stack: RealtimeStack;
    let template: Template;
    beforeAll(() => {
      stack = buildStack({ redis: { shards: 3, nodes: 2 } });
      template = templateOf(stack);
    });

    test('NumNodeGroups 3 with one replica per shard, automatic failover and Multi-AZ, no NumCacheClusters', () => {
      template.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 1);
      template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
        NumNodeGroups: 3,
        ReplicasPerNodeGroup: 1,
        NumCacheClusters: Match.absent(),
        AutomaticFailoverEnabled: true,
        MultiAZEnabled: true,
        TransitEncryptionEnabled: true,
        AtRestEncryptionEnabled: true,
      });
    });

    test('a cluster-on parameter group (cluster-enabled yes, noeviction) of the engine family, used by the group', () => {
      template.resourceCountIs('AWS::ElastiCache::ParameterGroup', 1);
      template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', { CacheParameterGroupFamily: 'valkey8', Properties: { 'cluster-enabled': 'yes', 'maxmemory-policy': 'noeviction' } });
      template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { CacheParameterGroupName: { Ref: onlyLogicalId(template, 'AWS::ElastiCache::ParameterGroup') } });
    });

    test('tasks and Lambdas on the configuration endpoint (rediss://) with REDIS_MODE=cluster', () => {
      const id = stack.resolve(stack.redis.replicationGroup.logicalId);
      const url = { 'Fn::Join': ['', ['rediss://', { 'Fn::GetAtt': [id, 'ConfigurationEndPoint.Address'] }, ':', { 'Fn::GetAtt': [id, 'ConfigurationEndPoint.Port'] }]] };
      const fns = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => f.Properties.Environment?.Variables?.REDIS_URL);
      expect(fns.length).toBeGreaterThan(0);
      for (const fn of fns) expect(fn.Properties.Environment.Variables).toMatchObject({ REDIS_URL: url, REDIS_MODE: 'cluster' });
      template.hasResourceProperties('AWS::ECS::TaskDefinition', {
        ContainerDefinitions: Match.arrayWith([
          Match.objectLike({ Environment: Match.arrayWith([{ Name: 'REDIS_URL', Value: url }, { Name: 'REDIS_MODE', Value: 'cluster' }]) }),
        ]),
      });
    });

    test('alarms per shard: engine CPU, memory and evictions of each shard\'s nodes ({group}-000N-00M)', () => {
      const id = stack.resolve(stack.redis.replicationGroup.logicalId);
      for (const metric of ['EngineCPUUtilization', 'DatabaseMemoryUsagePercentage', 'Evictions']) {
        const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter((a) =>
          (a.Properties.Metrics ?? []).some((m: { MetricStat?: { Metric?: { MetricName?: string } } }) => m.MetricStat?.Metric?.MetricName === metric),
        );
        expect(alarms).toHaveLength(3);
        const members = alarms.map((a) =>
          a.Properties.Metrics.filter((m: { MetricStat?: unknown }) => m.MetricStat).map((m: { MetricStat: { Metric: { Dimensions: { Value: unknown }[] } } }) => JSON.stringify(m.MetricStat.Metric.Dimensions[0].Value)),
        );
        for (const [i, shard] of members.entries()) {
          expect(shard).toEqual([1, 2].map((n) => JSON.stringify({ 'Fn::Join': ['', [{ Ref: id }, `-000${i + 1}-00${n}`]] })));
        }
      }
    });
  });
});

describe('RedisPubSub validation', () => {
  const make = (props: Partial<RedisPubSubProps>) => () => {
    const stack = new Stack(newApp(), 'Fixture');
    new RedisPubSub(stack, 'Redis', { vpc: new Network(stack, 'Network').vpc, ...props });
  };

  test.each<[string, Partial<RedisPubSubProps>, RegExp]>([
    ['unknown engine', { engine: 'memcached' as never }, /^Fixture\/Redis: engine "memcached" is not supported\. Use "valkey" or "redis"$/],
    ['Redis older than 7', { engine: 'redis', engineVersion: '6.2' }, /^Fixture\/Redis: engineVersion "6\.2" is not supported for redis\. Use Redis 7\.x$/],
    ['Valkey older than 7.2', { engineVersion: '7.0' }, /engineVersion "7\.0" is not supported for valkey\. Use Valkey 7\.2 or 8\.x$/],
    ['node type without cache. prefix', { nodeType: 't4g.micro' }, /nodeType "t4g\.micro" is not an ElastiCache node type\. Use a name like cache\.t4g\.micro/],
    ['no nodes', { nodes: 0 }, /nodes \(0\) must be an integer from 1 to 6/],
    ['more than 6 nodes', { nodes: 7 }, /nodes \(7\) must be an integer from 1 to 6/],
    ['privileged port', { port: 80 }, /port \(80\) must be an integer from 1024 to 65535/],
    ['key prefix with a space', { keyPrefix: 'my app:' }, /keyPrefix "my app:" is not valid\. Use 1 to 32 letters, digits, ":", "_" or "-"/],
    ['snapshots kept too long', { snapshotRetentionDays: 36 }, /snapshotRetentionDays \(36\) must be an integer from 0 to 35 days/],
    ['no shards', { shards: 0 }, /shards \(0\) must be an integer from 1 to 90/],
    ['cluster mode without replicas', { shards: 3, nodes: 1 }, /^Fixture\/Redis: shards 3 with nodes 1: a shard without a replica loses its slots on a node failure\. Use nodes >= 2/],
    ['more than 90 nodes in a cluster', { shards: 46, nodes: 2 }, /shards 46 × nodes 2 is more than the 90 nodes ElastiCache allows a cluster by default/],
    ['removal policy retain', { removalPolicy: 'retain' as never }, /^Fixture\/Redis: removalPolicy "retain" is not supported\. Use "snapshot" \(a final snapshot before deletion\) or "destroy"$/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });
});