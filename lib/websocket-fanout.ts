import { LAMBDA_SETTINGS, LAMBDA_ENV, SERVICE_ENV } from '../contract/settings';
import * as path from 'node:path';
import { Duration, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { DEFAULTS } from './defaults';
import { checkRange, checkSetting } from './errors';
import { LAMBDA_DIR, RealtimeFunction } from './realtime-function';
import type { RuntimeApiProps } from './runtime-api-props';
import type { RealtimeWebSocketApi } from './websocket-api';

/** Properties of a {@link WebSocketFanout}. */
export interface WebSocketFanoutProps extends Omit<RuntimeApiProps, 'throttleRateLimit' | 'throttleBurstLimit'> {
  /** The WebSocket API whose connections the worker posts to (POST on its `@connections` only). */
  readonly webSocket: RealtimeWebSocketApi;
  /**
   * Entry file of the worker.
   * @default - lambda/fanout-worker.ts
   */
  readonly entry?: string;
  /**
   * Entry file of the dead-letter consumer.
   * @default - lambda/fanout-dead-letters.ts
   */
  readonly deadLetterEntry?: string;
  /**
   * Shards of the connections: work items per large publish, FIFO message groups, and so the most worker invocations
   * that run at once (1 to 256).
   * @default 4
   */
  readonly shards?: number;
  /**
   * Channels with fewer WebSocket subscribers than this are posted inline by the publisher (lower latency), larger
   * ones through the queue (0 queues every publish; range: `WS_FANOUT_INLINE_MAX`'s row in contract/settings.ts).
   * @default 200
   */
  readonly inlineMax?: number;
  /**
   * Events of a `since` replay the message handler sends before the worker takes over (1 to 10000).
   * @default 100
   */
  readonly replayInlineMax?: number;
  /**
   * Receipts of a work item before it moves to the dead-letter queue (1 to 1000).
   * @default 5
   */
  readonly maxReceiveCount?: number;
  /**
   * Work items per worker invocation (1 to 10, the FIFO maximum).
   * @default 10
   */
  readonly batchSize?: number;
  /**
   * Timeout of the worker. The queue's visibility timeout is six times this, as Lambda advises for SQS sources.
   * @default Duration.seconds(60)
   */
  readonly workerTimeout?: Duration;
  /**
   * Memory of the worker in MiB; Lambda gives CPU in proportion (1769 MiB is one vCPU). A post costs about 0.1 ms of
   * one core (docs/BENCHMARKS.md), so 1024 MiB (~0.58 vCPU) keeps a worker's CPU above the ~2,000 posts/s its 32
   * posts in flight reach at AWS round trips.
   * @default 1024
   */
  readonly workerMemorySize?: number;
}

/**
 * The sharded WebSocket fan-out: an SQS FIFO queue of work items (one per event and shard, the shard as message group),
 * the worker function consuming the queue (batch item failures reported, at most `max(2, shards)` invocations at once)
 * with `execute-api:ManageConnections` POST on the API's connections only, and a dead-letter queue whose consumer
 * closes the connections an item never reached (`execute-api:ManageConnections` DELETE only): their clients resume
 * with `since`, so no connection stays open without an event it was due. Dead letters alarm.
 * {@link connectPublisher} lets a function enqueue (the publish and message handlers).
 */
export class WebSocketFanout extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly worker: RealtimeFunction;
  /** Consumes the dead-letter queue: closes the connections a dead-lettered item never reached (DeleteConnection). */
  public readonly deadLetterConsumer: RealtimeFunction;
  /** Alarms: anything in the dead-letter queue; the oldest work item waiting too long. */
  public readonly alarms: cloudwatch.Alarm[] = [];
  private readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: WebSocketFanoutProps) {
    super(scope, id);
    const d = DEFAULTS.webSocketFanout;
    const shards = props.shards ?? d.shards;
    const inlineMax = props.inlineMax ?? d.inlineMax;
    const replayInlineMax = props.replayInlineMax ?? d.replayInlineMax;
    const maxReceiveCount = props.maxReceiveCount ?? d.maxReceiveCount;
    const batchSize = props.batchSize ?? d.batchSize;
    checkSetting(this, 'shards', shards, LAMBDA_SETTINGS.wsFanoutShards);
    checkSetting(this, 'inlineMax', inlineMax, LAMBDA_SETTINGS.wsFanoutInlineMax);
    checkSetting(this, 'replayInlineMax', replayInlineMax, LAMBDA_SETTINGS.wsReplayInlineMax);
    checkRange(this, 'maxReceiveCount', maxReceiveCount, 1, 1000);
    checkRange(this, 'batchSize', batchSize, 1, 10);
    const timeout = props.workerTimeout ?? Duration.seconds(60);

    // Six times the function timeout, as Lambda advises for SQS sources (both queues have a consumer of that timeout).
    const visibilityTimeout = Token.isUnresolved(timeout.toSeconds()) ? Duration.minutes(6) : Duration.seconds(Math.min(43_200, timeout.toSeconds() * 6));
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      fifo: true,
      visibilityTimeout,
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      fifo: true,
      // Deduplication ids are explicit (`{event}-{shard}`): a retried publish does not enqueue a shard twice in 5 minutes.
      contentBasedDeduplication: false,
      // High-throughput FIFO: the quota applies per message group (the shard), not per queue, and deduplication ids are
      // unique within their group ({event}-{shard} with the shard as the group).
      fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
      visibilityTimeout,
      retentionPeriod: Duration.days(1),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount },
    });

    this.environment = {
      [LAMBDA_ENV.wsFanoutQueueUrl]: this.queue.queueUrl,
      [LAMBDA_ENV.wsFanoutShards]: String(shards),
      [LAMBDA_ENV.wsFanoutInlineMax]: String(inlineMax),
      [LAMBDA_ENV.wsReplayInlineMax]: String(replayInlineMax),
    };
    this.worker = new RealtimeFunction(this, 'Worker', {
      entry: props.entry ?? path.join(LAMBDA_DIR, 'fanout-worker.ts'),
      description: 'WebSocket fan-out worker: posts queued events to one shard of a channel\'s connections',
      vpc: props.vpc,
      environment: { ...props.environment, [LAMBDA_ENV.wsFanoutShards]: String(shards) },
      logLevel: props.logLevel,
      logRetention: props.logRetention,
      timeout,
      memorySize: props.workerMemorySize ?? 1024,
    });
    props.redis.connect(this.worker);
    props.webSocket.grantPostToConnections(this.worker);
    this.worker.function.addEventSource(
      new SqsEventSource(this.queue, { batchSize, reportBatchItemFailures: true, maxConcurrency: Math.max(2, Math.min(1000, shards)) }),
    );

    // A dead-lettered item's connections missed its event: the consumer closes them (DeleteConnection only) and their
    // clients resume with `since`. One at a time is enough (dead letters are rare), and the FIFO order does not matter:
    // closing is idempotent.
    this.deadLetterConsumer = new RealtimeFunction(this, 'DeadLetterConsumer', {
      entry: props.deadLetterEntry ?? path.join(LAMBDA_DIR, 'fanout-dead-letters.ts'),
      description: 'WebSocket fan-out dead letters: closes the connections a failed work item never reached, so they resume with since',
      vpc: props.vpc,
      environment: { ...props.environment },
      logLevel: props.logLevel,
      logRetention: props.logRetention,
      timeout,
    });
    props.redis.connect(this.deadLetterConsumer);
    props.webSocket.grantCloseConnections(this.deadLetterConsumer);
    this.deadLetterConsumer.function.addEventSource(
      new SqsEventSource(this.deadLetterQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );

    this.alarms.push(
      // The consumer takes dead letters at once, so the queue's visible count stays near 0: count receipts instead (a
      // message moved to a DLQ by its redrive policy is not counted in NumberOfMessagesSent). A consumer that fails to
      // settle one receives it again, so the alarm stays on until it does.
      new cloudwatch.Alarm(this, 'DeadLetters', {
        metric: this.deadLetterQueue.metricNumberOfMessagesReceived({ period: Duration.minutes(1), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `${this.node.path}: WebSocket fan-out work items failed ${maxReceiveCount} times and reached the dead-letter queue; its consumer closes the connections that missed them (they resume with since). Inspect the worker's and the consumer's logs for why the posts failed.`,
      }),
      new cloudwatch.Alarm(this, 'OldestWorkItem', {
        metric: this.queue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1), statistic: 'Maximum' }),
        threshold: 60,
        evaluationPeriods: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `${this.node.path}: WebSocket fan-out work items wait over a minute: workers throttled (management API quota, Lambda concurrency) or failing.`,
      }),
    );
  }

  /**
   * `webSocket.mode` `both`: lets the SSE tasks hand a `/live` publish to the queue for the connections still on API
   * Gateway (the worker posts it). Sets the queue URL and the shard count on the container and grants `sqs:SendMessage`
   * on this queue only: the tasks get nothing on the management API.
   */
  public connectTasks(container: ecs.ContainerDefinition, taskRole: iam.IGrantable): void {
    container.addEnvironment(SERVICE_ENV.wsFanoutQueueUrl, this.queue.queueUrl);
    container.addEnvironment(SERVICE_ENV.wsFanoutShards, this.environment[LAMBDA_ENV.wsFanoutShards]);
    this.queue.grant(taskRole, 'sqs:SendMessage');
  }

  /** Lets a function hand fan-outs and long replays to the queue: sets the queue's variables and grants SendMessage. */
  public connectPublisher(fn: RealtimeFunction): void {
    for (const [k, v] of Object.entries(this.environment)) fn.addEnvironment(k, v);
    this.queue.grantSendMessages(fn);
  }
}
