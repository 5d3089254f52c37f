import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct, type IConstruct } from 'constructs';
import { checkRange } from './errors';
import type { HttpEndpoint } from './http-endpoint';
import type { RealtimeFunction } from './realtime-function';
import type { RedisPubSub } from './redis-pub-sub';
import type { SseService } from './sse-service';
import type { RealtimeWebSocketApi } from './websocket-api';

/** Properties of an {@link Observability}. */
export interface ObservabilityProps {
  readonly sse: SseService;
  readonly redis: RedisPubSub;
  /**
   * The API Gateway WebSocket API: its integration-error alarm and dashboard graph.
   * @default - none (`webSocket.mode` `tasks`: WebSockets are on the SSE tasks, watched with them)
   */
  readonly webSocket?: RealtimeWebSocketApi;
  /** The HTTP APIs (tickets, publish). */
  readonly httpEndpoints: readonly HttpEndpoint[];
  /** Every Lambda of the stack. */
  readonly functions: readonly RealtimeFunction[];
  /**
   * Topic every alarm notifies (on ALARM and on OK).
   * @default - alarms without actions: watch them on the dashboard or attach actions later via `alarms`
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Connection alarm: ALB active connections above this percent of the fleet's ceiling (maxTasks x targetConnectionsPerTask).
   * @default 80
   */
  readonly connectionCeilingPercent?: number;
  /**
   * Redis engine CPU alarm threshold, percent.
   * @default 80
   */
  readonly redisCpuPercent?: number;
  /**
   * Redis memory alarm threshold (DatabaseMemoryUsagePercentage at or above it for 3 minutes), percent. With
   * `maxmemory-policy` noeviction, writes fail at 100%.
   * @default 80
   */
  readonly redisMemoryPercent?: number;
}

/** A CloudWatch dashboard of the whole path and alarms for 5xx, target health, Lambda errors, Redis CPU/memory/evictions and connections. */
export class Observability extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;
  /** Every alarm, to attach further actions. */
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const ceilingPercent = props.connectionCeilingPercent ?? 80;
    checkRange(this, 'connectionCeilingPercent', ceilingPercent, 1, 100, ' percent');
    checkRange(this, 'redisCpuPercent', props.redisCpuPercent, 1, 100, ' percent');
    checkRange(this, 'redisMemoryPercent', props.redisMemoryPercent, 1, 100, ' percent');

    const { sse, redis, webSocket } = props;
    const alb = sse.loadBalancer.metrics;
    const tg = sse.targetGroup.metrics;
    const fiveMinutes = { period: Duration.minutes(5), statistic: 'Sum' };
    const oneMinute = { period: Duration.minutes(1) };

    // SSE: load balancer and targets
    const elb5xx = alb.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, fiveMinutes);
    const target5xx = alb.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, fiveMinutes);
    const healthy = tg.healthyHostCount({ ...oneMinute, statistic: 'Minimum' });
    const unhealthy = tg.unhealthyHostCount({ ...oneMinute, statistic: 'Maximum' });
    const connections = alb.activeConnectionCount({ ...oneMinute, statistic: 'Sum' });
    const ceiling = Math.floor((sse.maxTasks * sse.targetConnectionsPerTask * ceilingPercent) / 100);

    this.alarm('SseElb5xx', elb5xx, 10, 'Load balancer 5xx answers (no healthy target, timeouts) on the SSE endpoint');
    this.alarm('SseTarget5xx', target5xx, 10, 'SSE tasks answering 5xx');
    this.alarm('SseUnhealthyTargets', unhealthy, 1, 'An SSE task fails its /healthz liveness check: the process is stuck or out of resources (Redis outages do not fail it; see the Redis alarms and the 5xx alarms)', {
      evaluationPeriods: 3,
    });
    this.alarm('SseNoHealthyTargets', healthy, 1, 'No healthy SSE task behind the load balancer', {
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 2,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    this.alarm('SseConnectionsNearCeiling', connections, ceiling, `ALB connections above ${ceilingPercent}% of what maxTasks can hold at the scaling target`, {
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
    });

    // HTTP APIs and WebSocket
    for (const endpoint of props.httpEndpoints) {
      this.alarm(`${ownedId(endpoint)}5xx`, endpoint.api.metricServerError(fiveMinutes), 5, `${endpoint.node.path}: 5xx answers`);
    }
    const wsErrors = webSocket?.stage.metric('IntegrationError', fiveMinutes);
    if (wsErrors) this.alarm('WebSocketIntegrationErrors', wsErrors, 5, 'WebSocket routes whose Lambda integration failed');

    // Lambdas
    for (const fn of props.functions) {
      this.alarm(`${ownedId(fn)}Errors`, fn.function.metricErrors(fiveMinutes), 5, `${fn.node.path}: invocation errors`);
    }

    // Redis
    const redisCpu = redis.metricMax('EngineCPUUtilization', 'Redis engine CPU % (max over nodes)');
    const redisMemory = redis.metricMax('DatabaseMemoryUsagePercentage', 'Redis memory % (max over nodes)');
    const redisConnections = redis.metricMax('CurrConnections', 'Redis client connections (max over nodes)');
    const redisEvictions = redis.metricMax('Evictions', 'Redis evictions (max over nodes)');
    // Cluster mode: CPU, memory and eviction alarms per shard (a hot shard is the one that fails its channels' writes;
    // and an alarm's metric math takes at most 10 metrics, one shard's nodes).
    const shards: (number | undefined)[] = redis.shards > 1 ? Array.from({ length: redis.shards }, (_, i) => i + 1) : [undefined];
    for (const shard of shards) {
      const id = shard === undefined ? '' : `Shard${shard}`;
      const on = shard === undefined ? '' : ` (shard ${String(shard).padStart(4, '0')})`;
      const cpu = shard === undefined ? redisCpu : redis.metricMax('EngineCPUUtilization', `Redis engine CPU %${on}`, shard);
      const memory = shard === undefined ? redisMemory : redis.metricMax('DatabaseMemoryUsagePercentage', `Redis memory %${on}`, shard);
      this.alarm(`RedisEngineCpu${id}`, cpu, props.redisCpuPercent ?? 80, `Redis engine CPU high${on}: pub/sub fan-out is single-threaded`, {
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
      });
      // maxmemory-policy is noeviction: at 100% every write (publish, ticket, connect) fails, so warn well before.
      this.alarm(`RedisMemory${id}`, memory, props.redisMemoryPercent ?? 80, `Redis memory high${on}: at 100% writes fail (noeviction); history streams or subscriber buffers growing`, {
        evaluationPeriods: 3,
      });
      // Any eviction means keys were lost (tickets, connection registry, history): noeviction should make this impossible.
      const evictions = shard === undefined ? redisEvictions : redis.metricMax('Evictions', `Redis evictions${on}`, shard);
      this.alarm(`RedisEvictions${id}`, evictions, 0, `Redis evicted keys${on}: the maxmemory-policy is not noeviction (parameter group changed?); tickets, connections or history were lost`, {
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }


    if (props.alarmTopic) {
      const action = new actions.SnsAction(props.alarmTopic);
      for (const alarm of this.alarms) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    const graph = (title: string, left: cloudwatch.IMetric[], right: cloudwatch.IMetric[] = []) =>
      new cloudwatch.GraphWidget({ title, left, right, width: 8, height: 6 });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({ markdown: '## SSE (Fargate behind the ALB)', width: 24, height: 1 }),
      graph('Connections', [connections], [healthy, unhealthy]),
      graph('5xx', [elb5xx, target5xx], [alb.requestCount(fiveMinutes)]),
      graph('Task CPU and memory', [sse.service.metricCpuUtilization(oneMinute), sse.service.metricMemoryUtilization(oneMinute)]),
    );
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({ markdown: '## APIs and WebSocket', width: 24, height: 1 }),
      graph('HTTP APIs: requests and 5xx', props.httpEndpoints.map((e) => e.api.metricCount(fiveMinutes)), props.httpEndpoints.map((e) => e.api.metricServerError(fiveMinutes))),
      ...(webSocket && wsErrors
        ? [graph('WebSocket: connects and messages', [webSocket.stage.metric('ConnectCount', fiveMinutes), webSocket.stage.metric('MessageCount', fiveMinutes)], [wsErrors])]
        : []),
      graph('Lambda errors', props.functions.map((f) => f.function.metricErrors({ ...fiveMinutes, label: ownedId(f) }))),
    );
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({ markdown: '## Redis', width: 24, height: 1 }),
      graph('Engine CPU %', [redisCpu]),
      graph('Memory %', [redisMemory]),
      graph('Evictions (should stay 0: noeviction)', [redisEvictions]),
      graph('Client connections', [redisConnections]),
    );
  }

  private alarm(id: string, metric: cloudwatch.IMetric, threshold: number, description: string, options: Partial<cloudwatch.CreateAlarmOptions> = {}): void {
    this.alarms.push(
      new cloudwatch.Alarm(this, id, {
        metric,
        threshold,
        alarmDescription: description,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...options,
      }),
    );
  }
}

/** Id of the construct that owns `c` followed by the id of `c`, e.g. `TicketApiIssuer`: readable and unique alarm ids. */
function ownedId(c: IConstruct): string {
  return `${c.node.scope?.node.id ?? ''}${c.node.id}`;
}
