/**
 * The tasks part of the SSE service (SseService): task, container environment and secrets, drain timing against the
 * load balancer, ECS service, autoscaling, and the checks on its props.
 */
import { Duration } from 'aws-cdk-lib';
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import { drainTiming, TARGET_HEALTH_BUDGET_PER_SECOND } from '../../lib/drain-timing';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { SseService, type SseServiceProps } from '../../lib/sse-service';
import { attributes, buildStack, containerEnv, expectDrainInsideDelay, fixture, logicalIdOf, stopSequence, templateOf, useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)));

  test('ALB idle timeout: at least twice the heartbeat, above the long-poll timeout', () => {
    const lbAttrs = new Capture();
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { LoadBalancerAttributes: lbAttrs });
    const idleSeconds = Number(attributes(lbAttrs.asArray())['idle_timeout.timeout_seconds']);
    const env = containerEnv(template);
    expect(idleSeconds * 1000).toBeGreaterThanOrEqual(2 * Number(env.HEARTBEAT_MS));
    expect(idleSeconds * 1000).toBeGreaterThan(Number(env.POLL_TIMEOUT_MS));
    expect(env).toMatchObject({ HEARTBEAT_MS: '15000', POLL_TIMEOUT_MS: '25000' });
  });

  test('drain timing: DRAIN_TIMEOUT_MS, STOP_POLL_MS, TARGET_HEALTH_POLL_MS, container StopTimeout and the deregistration delay agree (30 s, dev maxTasks 4)', () => {
    const seq = stopSequence(template);
    expect(seq).toEqual({ delaySeconds: 30, ...drainTiming(30, 4) });
    expect(seq.targetHealthPollMs).toBe(4000);
    expectDrainInsideDelay(seq);
  });

  test('TRUST_PROXY_HOPS: 1 behind the ALB (client IP = right-most X-Forwarded-For entry)', () => {
    expect(containerEnv(template).TRUST_PROXY_HOPS).toBe('1');
  });

  test('SSE task: ARM64, nofile ulimit of at least 65536, port 8080, read-only root filesystem', () => {
    const ulimits = new Capture();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      RequiresCompatibilities: ['FARGATE'],
      ContainerDefinitions: [
        Match.objectLike({
          Ulimits: ulimits,
          PortMappings: [{ ContainerPort: 8080, Protocol: 'tcp' }],
          ReadonlyRootFilesystem: true,
        }),
      ],
    });
    const nofile = (ulimits.asArray() as { Name: string; SoftLimit: number; HardLimit: number }[]).find((u) => u.Name === 'nofile');
    expect(nofile?.SoftLimit).toBeGreaterThanOrEqual(65536);
    expect(nofile?.HardLimit).toBeGreaterThanOrEqual(65536);
  });

  test('SSE task: Redis AUTH and the session secret come in as ECS secrets, never as plain environment', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Secrets: Match.arrayWith([
            { Name: 'SESSION_SECRET', ValueFrom: stack.resolve(stack.sse.sessionSecret.secretArn) },
            { Name: 'REDIS_PASSWORD', ValueFrom: stack.resolve(stack.redis.authToken.secretArn) },
          ]),
        }),
      ],
    });
    const env = containerEnv(template);
    expect(Object.keys(env)).not.toEqual(expect.arrayContaining(['REDIS_PASSWORD']));
    expect(Object.keys(env)).not.toEqual(expect.arrayContaining(['SESSION_SECRET']));
    expect(env).toMatchObject({
      PORT: '8080',
      REDIS_URL: stack.resolve(stack.redis.url),
      KEY_PREFIX: 'rt:',
      ALLOWED_ORIGINS: 'http://localhost:5173',
      LOG_LEVEL: 'debug',
    });
  });

  test('session secret: generated, at least 32 characters, no commas (the runtime splits on them)', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Description: Match.stringLikeRegexp('SESSION_SECRET'),
      GenerateSecretString: { PasswordLength: Match.anyValue(), ExcludePunctuation: true },
    });
    const secrets = template.findResources('AWS::SecretsManager::Secret');
    for (const s of Object.values(secrets)) {
      expect(s.Properties.GenerateSecretString.PasswordLength).toBeGreaterThanOrEqual(32);
    }
  });

  test('ECS service: circuit breaker with rollback, no public IP, private subnets', () => {
    template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DeploymentConfiguration: Match.objectLike({
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
        MinimumHealthyPercent: 100,
      }),
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
  });

  test('ECS service: no DesiredCount (every update would reset an autoscaled fleet to it); the scalable target, created after the service, raises it to minTasks', () => {
    const services = Object.entries(template.findResources('AWS::ECS::Service'));
    expect(services).toHaveLength(1);
    const [serviceId, service] = services[0];
    expect(service.Properties).not.toHaveProperty('DesiredCount');
    const [target] = Object.values(template.findResources('AWS::ApplicationAutoScaling::ScalableTarget'));
    expect(target.Properties.MinCapacity).toBe(1);
    // The target names the service (Fn::GetAtt Name), so CloudFormation registers it, and applies MinCapacity, after the service exists.
    expect(JSON.stringify(target.Properties.ResourceId)).toContain(`"${serviceId}"`);
  });

  test('autoscaling: target tracking on ALB connections per healthy task and on CPU', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 1,
      MaxCapacity: 4,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 10000,
        CustomizedMetricSpecification: {
          Metrics: Match.arrayWith([
            Match.objectLike({ Id: 'connections', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ActiveConnectionCount' }) }) }),
            Match.objectLike({ Id: 'tasks', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'HealthyHostCount' }) }) }),
            Match.objectLike({ Expression: 'connections / tasks', ReturnData: true }),
          ]),
        },
      }),
    });
  });
});

describe('drain on the target\'s health', () => {
  test('the container gets its target group\'s ARN; the task role may elasticloadbalancing:DescribeTargetHealth (on "*": the action has no resource type), acknowledged for cdk-nag on that role only', () => {
    const stack = buildStack();
    const template = templateOf(stack);
    expect(containerEnv(template).TARGET_GROUP_ARN).toEqual(stack.resolve(stack.sse.targetGroup.targetGroupArn));
    const statements = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: logicalIdOf(stack.sse.taskDefinition.taskRole) }]))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);
    expect(statements.filter((s) => JSON.stringify(s.Action).includes('elasticloadbalancing'))).toEqual([
      expect.objectContaining({ Action: 'elasticloadbalancing:DescribeTargetHealth', Effect: 'Allow', Resource: '*' }),
    ]);
  });
});

describe('configs that switch behaviour', () => {
  test.each([
    [10, 2],
    [30, 10],
    [90, 10],
    [300, 10],
    [30, 22],
    [60, 50],
  ])('drain timing with deregistrationDelaySeconds %i and maxTasks %i: DRAIN_TIMEOUT_MS, TARGET_HEALTH_POLL_MS, StopTimeout and the delay agree', (delay, maxTasks) => {
    const seq = stopSequence(templateOf(buildStack({ sse: { deregistrationDelaySeconds: delay, minTasks: 1, maxTasks } })));
    expect(seq).toEqual({ delaySeconds: delay, ...drainTiming(delay, maxTasks) });
    // The task's environment carries the computed interval: the fleet at maxTasks stays within the ELB API budget.
    expect((maxTasks * 1000) / seq.targetHealthPollMs).toBeLessThanOrEqual(TARGET_HEALTH_BUDGET_PER_SECOND);
    expectDrainInsideDelay(seq);
  });

  test('default stage (no sse config): maxTasks 10 polls DescribeTargetHealth every 10 s and drains for 17 s in the 30 s delay', () => {
    expect(stopSequence(templateOf(buildStack()))).toEqual({ delaySeconds: 30, drainTimeoutMs: 17_000, stopPollMs: 2000, targetHealthPollMs: 10_000, stopTimeoutSeconds: 22 });
  });
});

describe('SseService validation', () => {
  const make = (props: Partial<SseServiceProps>, env?: { account: string; region: string }) => () => {
    const { stack, vpc, redis } = fixture(env);
    new SseService(stack, 'Sse', { vpc, redis, ...props });
  };

  test.each<[string, Partial<SseServiceProps>, RegExp]>([
    [
      'heartbeat above half the idle timeout',
      { heartbeatMs: 40_000 },
      /^Fixture\/Sse: heartbeatMs \(40000\) must be at most half the ALB idle timeout \(60 s\), or idle streams are cut between heartbeats\. Lower heartbeatMs or raise idleTimeout$/,
    ],
    ['heartbeat with a short idle timeout', { idleTimeout: Duration.seconds(20) }, /heartbeatMs \(15000\) must be at most half the ALB idle timeout \(20 s\)/],
    [
      'long-poll longer than the idle timeout',
      { pollTimeoutMs: 60_000 },
      /^Fixture\/Sse: pollTimeoutMs \(60000\) must be below the ALB idle timeout \(60 s\), or long polls are cut before they answer\. Lower pollTimeoutMs or raise idleTimeout$/,
    ],
    ['nofile below 65536', { nofileLimit: 1024 }, /^Fixture\/Sse: nofileLimit \(1024\) must be an integer from 65536 to 1048576\. Set nofileLimit within that range$/],
    ['nofile above the Fargate maximum', { nofileLimit: 2_000_000 }, /nofileLimit \(2000000\) must be an integer from 65536 to 1048576/],
    [
      'deregistration delay too short to drain',
      { deregistrationDelay: Duration.seconds(5), minTasks: 1, maxTasks: 1 },
      /^Fixture\/Sse: deregistrationDelay \(5 s\) leaves no time to drain the streams: .*\. Raise deregistrationDelay \(sse\.deregistrationDelaySeconds\) to at least 10 seconds$/,
    ],
    [
      'maxTasks too many for the delay: their DescribeTargetHealth polls, at the ELB API budget, come too late to drain',
      { deregistrationDelay: Duration.seconds(30), maxTasks: 40 },
      /^Fixture\/Sse: deregistrationDelay \(30 s\) leaves no time to drain the streams with maxTasks 40: each task polls DescribeTargetHealth every 40 s \(so that 40 tasks make at most 1 request\/s account-wide\), so the drain starts up to 40 s after ECS deregisters the task and must end before the load balancer cuts the streams\. Raise deregistrationDelay \(sse\.deregistrationDelaySeconds\) to at least 48 seconds or lower maxTasks \(sse\.maxTasks\) to at most 22$/,
    ],
    ['maxTasks below minTasks', { minTasks: 5, maxTasks: 3 }, /maxTasks \(3\) must be an integer from 5 to 1000/],
    ['no tasks', { minTasks: 0 }, /minTasks \(0\) must be an integer from 1 to 1000/],
    ['connection target too low', { targetConnectionsPerTask: 10 }, /targetConnectionsPerTask \(10\) must be an integer from 100 to 1000000/],
    ['CPU target too low', { targetCpuPercent: 5 }, /targetCpuPercent \(5\) must be an integer from 10 to 95 percent/],
    ['heartbeat below 1 s', { heartbeatMs: 500 }, /heartbeatMs \(500\) must be an integer from 1000 to 300000 ms/],
    ['write budget above 1 s', { maxWriteDelayMs: 1500 }, /maxWriteDelayMs \(1500\) must be an integer from 0 to 1000 ms/],
    ['negative fixed write window', { writeDelayMs: -1 }, /writeDelayMs \(-1\) must be an integer from 0 to 1000 ms/],
    ['zero latency budget', { latencyBudgetMs: 0 }, /latencyBudgetMs \(0\) must be an integer from 1 to 5000 ms/],
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Fixture\/Sse: allowedOrigins entry "\*" is not an origin/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('valid settings at the limits: builds', () => {
    expect(make({ heartbeatMs: 30_000, pollTimeoutMs: 59_000, idleTimeout: Duration.seconds(60), nofileLimit: 1_048_576, maxWriteDelayMs: 1000, writeDelayMs: 0 })).not.toThrow();
  });
});
