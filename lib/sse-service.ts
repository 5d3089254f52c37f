import { SERVICE_SETTINGS, CORE_ENV, SERVICE_ENV } from '../contract/settings';
import * as path from 'node:path';
import { Duration, IgnoreMode, Names, Token, Validations } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { acknowledgeWildcardResource } from './acknowledge';
import { DEFAULTS } from './defaults';
import { drainTiming, maxTasksForDelay, minDeregistrationDelaySeconds, TARGET_HEALTH_BUDGET_PER_SECOND, targetHealthPollMs } from './drain-timing';
import { checkOrigins, checkRange, checkSetting, invalid } from './errors';
import type { RuntimeLogLevel } from './realtime-function';
import type { RedisPubSub } from './redis-pub-sub';
import { SSE_CONTAINER_PORT, SSE_PROXY_HOPS, SseLoadBalancerBase, type SseLoadBalancerProps } from './sse-load-balancer';

export { SSE_CONTAINER_PORT, SSE_LIVENESS_PATH, SSE_PROXY_HOPS } from './sse-load-balancer';

/** Repository root: the Docker build context of service/Dockerfile. */
export const REPOSITORY_ROOT = path.join(__dirname, '..');

/**
 * Paths never hashed into the image asset nor sent to the build, on top of the .dockerignore allow-list (which keeps
 * the image hash tied to the service's inputs only). Big trees are listed here too so no ignore file change can make
 * `cdk synth` walk them.
 */
export const IMAGE_EXCLUDES = ['cdk.out', 'node_modules', '.git', 'dist', 'coverage'];

/**
 * Fargate task sizes: the task memories (MiB) each task CPU accepts, as the ECS developer guide lists them ("Task CPU
 * and memory"; "Troubleshoot Amazon ECS task definition invalid CPU or memory errors"). 8192 and 16384 need Linux
 * platform 1.4.0, which is the default.
 */
export const FARGATE_MEMORY_BY_CPU: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: [1024, 2048, 3072, 4096],
  1024: [2048, 3072, 4096, 5120, 6144, 7168, 8192],
  2048: steps(4096, 16_384, 1024),
  4096: steps(8192, 30_720, 1024),
  8192: steps(16_384, 61_440, 4096),
  16_384: steps(32_768, 122_880, 8192),
};

function steps(from: number, to: number, by: number): number[] {
  return Array.from({ length: (to - from) / by + 1 }, (_, i) => from + i * by);
}

/** `a, b or c`, or `a to z in steps of n` for a longer run. */
function listMemories(m: readonly number[]): string {
  if (m.length > 7) return `${m[0]} to ${m[m.length - 1]} in steps of ${m[1] - m[0]}`;
  return `${m.slice(0, -1).join(', ')} or ${m[m.length - 1]}`;
}

/** Checks `cpu` and `memoryMiB` form a Fargate task size; one line naming the valid memories for the CPU when not. */
function checkFargateSize(scope: Construct, cpu: number, memoryMiB: number): void {
  if (Token.isUnresolved(cpu) || Token.isUnresolved(memoryMiB)) return;
  const memories = FARGATE_MEMORY_BY_CPU[cpu];
  if (!memories) {
    const cpus = Object.keys(FARGATE_MEMORY_BY_CPU).map(Number);
    invalid(scope, `cpu ${cpu} is not a Fargate task CPU`, `Use ${cpus.slice(0, -1).join(', ')} or ${cpus[cpus.length - 1]}`);
  }
  if (!memories.includes(memoryMiB)) {
    invalid(scope, `cpu ${cpu} with memoryMiB ${memoryMiB} is not a Fargate task size`, `For cpu ${cpu} use memoryMiB ${listMemories(memories)}`);
  }
}

/** Properties of an {@link SseService}: its load-balancer part ({@link SseLoadBalancerProps}) and its tasks. */
export interface SseServiceProps extends SseLoadBalancerProps {
  /** Redis the tasks subscribe to. */
  readonly redis: RedisPubSub;
  /**
   * Container image of the SSE server.
   * @default - built from service/Dockerfile with the repository root as context (built at deploy, never at synth)
   */
  readonly image?: ecs.ContainerImage;
  /**
   * Task CPU units (a Fargate size: 256, 512, 1024, ...).
   * @default 256
   */
  readonly cpu?: number;
  /**
   * Task memory in MiB (a Fargate size matching cpu): the task definition's `memoryLimitMiB`.
   * @default 512
   */
  readonly memoryMiB?: number;
  /**
   * Fewest running tasks: the scalable target's minimum, which raises a new service (ECS starts it at 1) and is never
   * sent as the service's `DesiredCount` (a deploy keeps the count autoscaling reached).
   * @default 2
   */
  readonly minTasks?: number;
  /**
   * Most running tasks.
   * @default 10
   */
  readonly maxTasks?: number;
  /**
   * Target of the connection scaling policy: ALB active connections (client and target side) per healthy task.
   * @default 10000
   */
  readonly targetConnectionsPerTask?: number;
  /**
   * Target average CPU of the CPU scaling policy, in percent.
   * @default 60
   */
  readonly targetCpuPercent?: number;
  /**
   * Interval of the SSE heartbeat comment in milliseconds (`HEARTBEAT_MS`); at most half the ALB idle timeout.
   * @default 15000
   */
  readonly heartbeatMs?: number;
  /**
   * Longest wait of the adaptive write window in milliseconds (`MAX_WRITE_DELAY_MS`, 0 to 1000): while the event
   * loop spends under 30 % of its time flushing (counted as a write per event), a task writes each event at once; above that it
   * lets a stream's next events gather into one write for what `latencyBudgetMs` leaves, at most this long. 0 writes every event at once.
   * @default 100
   */
  readonly maxWriteDelayMs?: number;
  /**
   * Queueing delay each event is kept under by the adaptive write window, in milliseconds (`LATENCY_BUDGET_MS`, 1 to
   * 5000): the task measures what a window costs besides its wait (event-loop lag, the flush) and waits only what is
   * left. Higher spends less CPU per delivery under load, lower keeps latency down (docs/BENCHMARKS.md has the curve).
   * @default 100
   */
  readonly latencyBudgetMs?: number;
  /**
   * A fixed write window in milliseconds (`WRITE_DELAY_MS`, 0 to 1000), the manual override of the adaptive one: every
   * window waits this long, at any load. 0 leaves the window adaptive.
   * @default 0
   */
  readonly writeDelayMs?: number;
  /**
   * Longest wait of a long-poll request in milliseconds (`POLL_TIMEOUT_MS`); below the ALB idle timeout.
   * @default 25000
   */
  readonly pollTimeoutMs?: number;
  /**
   * Open files per task (`nofile` ulimit, soft and hard): one per connection plus Redis and logs (65536 to 1048576).
   * @default 65536
   */
  readonly nofileLimit?: number;
  /**
   * Browser origins allowed to read streams (`ALLOWED_ORIGINS`, CORS with credentials).
   * @default [] - same-origin pages and non-browser clients only
   */
  readonly allowedOrigins?: readonly string[];
  /**
   * Environment shared by the runtime (namespaces, limits).
   * @default {}
   */
  readonly environment?: Record<string, string>;
  /** @default 'info' */
  readonly logLevel?: RuntimeLogLevel;
  /**
   * Retention of the container logs.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * ECS Container Insights (per-task CPU, memory and network metrics; billed as CloudWatch metrics).
   * @default true
   */
  readonly containerInsights?: boolean;
}

/**
 * The SSE and long-poll server on Fargate (ARM64) behind an internet-facing ALB. The load-balancer part (listeners,
 * target group with sticky sessions and the liveness health check, access logs, URLs) is {@link SseLoadBalancerBase};
 * this class adds the tasks: cluster, task definition and container (Redis AUTH and the session secret as ECS secrets,
 * `nofile` ulimit, read-only root), the service (circuit breaker with rollback) registered in the target group, a drain
 * that ends inside the deregistration delay (see `drainTiming`), and scaling on connections per task and on CPU.
 */
export class SseService extends SseLoadBalancerBase {
  public readonly cluster: ecs.Cluster;
  public readonly taskDefinition: ecs.FargateTaskDefinition;
  public readonly container: ecs.ContainerDefinition;
  public readonly service: ecs.FargateService;
  /** Secret that signs the reconnect cookie (`SESSION_SECRET`). */
  public readonly sessionSecret: secretsmanager.Secret;
  /** Tasks the service may scale to. */
  public readonly maxTasks: number;
  public readonly targetConnectionsPerTask: number;

  constructor(scope: Construct, id: string, props: SseServiceProps) {
    super(scope, id, props);
    const d = DEFAULTS.sse;
    const heartbeatMs = props.heartbeatMs ?? d.heartbeatMs;
    const pollTimeoutMs = props.pollTimeoutMs ?? d.pollTimeoutMs;
    const maxWriteDelayMs = props.maxWriteDelayMs ?? d.maxWriteDelayMs;
    const latencyBudgetMs = props.latencyBudgetMs ?? d.latencyBudgetMs;
    const writeDelayMs = props.writeDelayMs ?? d.writeDelayMs;
    const nofile = props.nofileLimit ?? d.nofileLimit;
    const minTasks = props.minTasks ?? d.minTasks;
    this.maxTasks = props.maxTasks ?? d.maxTasks;
    this.targetConnectionsPerTask = props.targetConnectionsPerTask ?? d.targetConnectionsPerTask;
    const targetCpuPercent = props.targetCpuPercent ?? d.targetCpuPercent;
    const origins = props.allowedOrigins ?? DEFAULTS.allowedOrigins;
    const idleTimeout = this.idleTimeout;
    const deregistrationDelay = this.deregistrationDelay;

    checkFargateSize(this, props.cpu ?? d.cpu, props.memoryMiB ?? d.memoryMiB);
    checkSetting(this, 'heartbeatMs', heartbeatMs, SERVICE_SETTINGS.heartbeatMs, ' ms');
    checkSetting(this, 'pollTimeoutMs', pollTimeoutMs, SERVICE_SETTINGS.pollTimeoutMs, ' ms');
    checkSetting(this, 'maxWriteDelayMs', maxWriteDelayMs, SERVICE_SETTINGS.maxWriteDelayMs, ' ms');
    checkSetting(this, 'latencyBudgetMs', latencyBudgetMs, SERVICE_SETTINGS.latencyBudgetMs, ' ms');
    checkSetting(this, 'writeDelayMs', writeDelayMs, SERVICE_SETTINGS.writeDelayMs, ' ms');
    checkRange(this, 'nofileLimit', nofile, 65536, 1_048_576);
    checkRange(this, 'minTasks', minTasks, 1, 1000);
    checkRange(this, 'maxTasks', this.maxTasks, minTasks, 1000);
    const delaySeconds = deregistrationDelay.toSeconds();
    const timing = drainTiming(delaySeconds, this.maxTasks);
    if (!timing) {
      const pollSeconds = targetHealthPollMs(this.maxTasks) / 1000;
      const fewer = maxTasksForDelay(delaySeconds);
      invalid(
        this,
        `deregistrationDelay (${delaySeconds} s) leaves no time to drain the streams${this.maxTasks > 1 ? ` with maxTasks ${this.maxTasks}` : ''}: ` +
          `each task polls DescribeTargetHealth every ${pollSeconds} s (so that ${this.maxTasks} ${this.maxTasks === 1 ? 'task makes' : 'tasks make'} at most ${TARGET_HEALTH_BUDGET_PER_SECOND} request/s account-wide), ` +
          `so the drain starts up to ${pollSeconds} s after ECS deregisters the task and must end before the load balancer cuts the streams`,
        `Raise deregistrationDelay (sse.deregistrationDelaySeconds) to at least ${minDeregistrationDelaySeconds(this.maxTasks)} seconds` +
          (fewer >= minTasks && fewer < this.maxTasks ? ` or lower maxTasks (sse.maxTasks) to at most ${fewer}` : ''),
      );
    }
    checkRange(this, 'targetConnectionsPerTask', this.targetConnectionsPerTask, 100, 1_000_000);
    checkRange(this, 'targetCpuPercent', targetCpuPercent, 10, 95, ' percent');
    checkOrigins(this, 'allowedOrigins', origins);
    if (!idleTimeout.isUnresolved() && heartbeatMs * 2 > idleTimeout.toMilliseconds()) {
      invalid(
        this,
        `heartbeatMs (${heartbeatMs}) must be at most half the ALB idle timeout (${idleTimeout.toSeconds()} s), or idle streams are cut between heartbeats`,
        'Lower heartbeatMs or raise idleTimeout',
      );
    }
    if (!idleTimeout.isUnresolved() && pollTimeoutMs >= idleTimeout.toMilliseconds()) {
      invalid(
        this,
        `pollTimeoutMs (${pollTimeoutMs}) must be below the ALB idle timeout (${idleTimeout.toSeconds()} s), or long polls are cut before they answer`,
        'Lower pollTimeoutMs or raise idleTimeout',
      );
    }

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: (props.containerInsights ?? d.containerInsights) ? ecs.ContainerInsights.ENABLED : ecs.ContainerInsights.DISABLED,
    });
    if (props.containerInsights === false) {
      Validations.of(this.cluster).acknowledge({ id: 'AwsSolutions-ECS4', reason: 'Container Insights turned off by configuration (containerInsights: false) to save metric cost.' });
    }

    this.sessionSecret = new secretsmanager.Secret(this, 'SessionSecret', {
      description: `Signs the SSE reconnect cookie (${SERVICE_ENV.sessionSecret})`,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    Validations.of(this.sessionSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Rotation would sign new cookies with a key running tasks do not have until they restart; the runtime accepts a comma list of keys for a planned rotation with a deploy instead.',
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? d.cpu,
      memoryLimitMiB: props.memoryMiB ?? d.memoryMiB,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });

    const logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH });
    this.container = this.taskDefinition.addContainer('Sse', {
      image:
        props.image ??
        ecs.ContainerImage.fromAsset(REPOSITORY_ROOT, {
          file: 'service/Dockerfile',
          platform: Platform.LINUX_ARM64,
          ignoreMode: IgnoreMode.DOCKER,
          exclude: IMAGE_EXCLUDES,
        }),
      essential: true,
      readonlyRootFilesystem: true,
      portMappings: [{ containerPort: SSE_CONTAINER_PORT, protocol: ecs.Protocol.TCP }],
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'sse', logGroup }),
      ulimits: [{ name: ecs.UlimitName.NOFILE, softLimit: nofile, hardLimit: nofile }],
      // SIGTERM to SIGKILL: covers a drain started by SIGTERM when the metadata signal never came (drainTiming).
      stopTimeout: Duration.seconds(timing.stopTimeoutSeconds),
      environment: {
        // defaults
        [CORE_ENV.logLevel]: props.logLevel ?? DEFAULTS.logLevel,
        // the caller
        ...props.environment,
        // mandated: these must match the load balancer and listener of the load-balancer part
        [SERVICE_ENV.port]: String(SSE_CONTAINER_PORT),
        [SERVICE_ENV.heartbeatMs]: String(heartbeatMs),
        [SERVICE_ENV.pollTimeoutMs]: String(pollTimeoutMs),
        [SERVICE_ENV.maxWriteDelayMs]: String(maxWriteDelayMs),
        [SERVICE_ENV.latencyBudgetMs]: String(latencyBudgetMs),
        [SERVICE_ENV.writeDelayMs]: String(writeDelayMs),
        // Drain when the task metadata says STOPPED (polled every STOP_POLL_MS, a local endpoint) or the target is
        // draining in its target group (DescribeTargetHealth every TARGET_HEALTH_POLL_MS: the fleet at maxTasks within
        // the ELB API budget), ending inside the deregistration delay after the later of the two (drainTiming).
        [SERVICE_ENV.drainTimeoutMs]: String(timing.drainTimeoutMs),
        [SERVICE_ENV.stopPollMs]: String(timing.stopPollMs),
        [SERVICE_ENV.targetHealthPollMs]: String(timing.targetHealthPollMs),
        [SERVICE_ENV.targetGroupArn]: this.targetGroup.targetGroupArn,
        // Exactly one proxy (the ALB) appends to X-Forwarded-For: the client IP for per-IP limits is that entry.
        [SERVICE_ENV.trustProxyHops]: String(SSE_PROXY_HOPS),
        [SERVICE_ENV.allowedOrigins]: origins.join(','),
        [SERVICE_ENV.cookieSecure]: String(this.https),
      },
      secrets: { [SERVICE_ENV.sessionSecret]: ecs.Secret.fromSecretsManager(this.sessionSecret) },
    });
    acknowledgeWildcardResource(
      this.taskDefinition.obtainExecutionRole(),
      '*',
      'ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are scoped to the asset repository.',
    );
    // The drain's second signal: the task reads its own target's health (TargetHealth.State `draining`).
    this.taskDefinition.addToTaskRolePolicy(new iam.PolicyStatement({ actions: ['elasticloadbalancing:DescribeTargetHealth'], resources: ['*'] }));
    acknowledgeWildcardResource(
      this.taskDefinition.taskRole,
      '*',
      'elasticloadbalancing:DescribeTargetHealth has no resource type in the Service Authorization Reference (Elastic Load Balancing V2: Describe actions take Resource "*" only); it is read-only, and the task asks only for its own target.',
    );
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The plain environment holds only non-secret settings (port, timeouts, origins, Redis host); the Redis AUTH token and the session secret are ECS secrets from Secrets Manager.',
    });

    const taskSecurityGroup = new ec2.SecurityGroup(this, 'TaskSecurityGroup', {
      vpc: props.vpc,
      description: 'Realtime SSE tasks: ingress from the load balancer only',
      allowAllOutbound: true,
    });
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      // No desiredCount: CloudFormation would send it on every update and reset an autoscaled fleet to it. ECS starts
      // a new service at 1 task and the scalable target (minTasks) raises it; later updates keep the current count.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [taskSecurityGroup],
      assignPublicIp: false,
      healthCheckGracePeriod: Duration.seconds(60),
    });
    props.redis.connectContainer(this.container, this.service);
    // Join the load-balancer part: the tasks register in its target group (ingress from the load balancer follows).
    this.targetGroup.addTarget(this.service.loadBalancerTarget({ containerName: this.container.containerName, containerPort: SSE_CONTAINER_PORT }));

    this.addScaling(minTasks, targetCpuPercent);
  }

  /** ALB active connections (client and target side) per healthy task: the metric the connection policy tracks. */
  private addScaling(minTasks: number, targetCpuPercent: number): void {
    const scaling = this.service.autoScaleTaskCount({ minCapacity: minTasks, maxCapacity: this.maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: targetCpuPercent,
      scaleInCooldown: Duration.minutes(5),
      scaleOutCooldown: Duration.minutes(1),
    });
    // Target tracking on metric math: the L2 policy takes single metrics only.
    const target = scaling.node.findChild('Target') as appscaling.ScalableTarget;
    const policy = new appscaling.CfnScalingPolicy(this, 'ConnectionsPerTaskScaling', {
      policyName: '',
      policyType: 'TargetTrackingScaling',
      scalingTargetId: target.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: this.targetConnectionsPerTask,
        scaleInCooldown: 300,
        scaleOutCooldown: 60,
        customizedMetricSpecification: {
          metrics: [
            {
              id: 'connections',
              returnData: false,
              metricStat: {
                stat: 'Sum',
                metric: {
                  namespace: 'AWS/ApplicationELB',
                  metricName: 'ActiveConnectionCount',
                  dimensions: [{ name: 'LoadBalancer', value: this.loadBalancer.loadBalancerFullName }],
                },
              },
            },
            {
              id: 'tasks',
              returnData: false,
              metricStat: {
                stat: 'Average',
                metric: {
                  namespace: 'AWS/ApplicationELB',
                  metricName: 'HealthyHostCount',
                  dimensions: [
                    { name: 'TargetGroup', value: this.targetGroup.targetGroupFullName },
                    { name: 'LoadBalancer', value: this.loadBalancer.loadBalancerFullName },
                  ],
                },
              },
            },
            { id: 'perTask', expression: 'connections / tasks', label: 'ALB connections per healthy task', returnData: true },
          ],
        },
      },
    });
    policy.policyName = Names.uniqueId(policy);
  }
}
