import { Duration, SecretValue, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { SERVICE_ENV } from '../contract/env';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

/** The `source` of every backend event (core/backend-events.ts `EVENT_SOURCE`). */
export const BACKEND_EVENT_SOURCE = 'realtime';
/** The detail-types the runtime emits (core/backend-events.ts). */
export const BACKEND_EVENT_TYPES = ['channel.occupied', 'channel.vacated', 'user.revoked', 'client.publish'] as const;

/** An HTTP webhook for backend events: an EventBridge API destination with its connection. */
export interface BackendEventsWebhook {
  /** The HTTPS endpoint that receives each event as a POST of the EventBridge event (JSON). */
  readonly url: string;
  /** ARN of a Secrets Manager secret holding the API key the endpoint expects (a plain string). */
  readonly apiKeySecretArn: string;
  /**
   * The header that carries the API key.
   * @default 'x-api-key'
   */
  readonly apiKeyHeader?: string;
  /**
   * Invocations per second at most (1 to 300); EventBridge holds the rest and retries.
   * @default 10
   */
  readonly rateLimitPerSecond?: number;
  /**
   * The detail-types sent to the webhook.
   * @default - all of them
   */
  readonly eventTypes?: readonly (typeof BACKEND_EVENT_TYPES)[number][];
}

/** Properties of {@link BackendEvents}. */
export interface BackendEventsProps {
  /**
   * Milliseconds a channel stays without subscribers before `channel.vacated` (OCCUPANCY_DEBOUNCE_MS, 0 to 600000).
   * @default 5000
   */
  readonly debounceMs?: number;
  /**
   * The example consumer: a rule sending every backend event to an SQS queue (encrypted, TLS only, 4 days), with a
   * dead-letter queue for what EventBridge could not deliver and what the consumer failed 5 times.
   * @default true
   */
  readonly exampleQueue?: boolean;
  /**
   * An HTTP webhook (API destination and connection with an API key).
   * @default - none
   */
  readonly webhook?: BackendEventsWebhook;
}

/**
 * Backend events on EventBridge: the stage's own bus, the tasks that relay the outbox to it (`events:PutEvents` on this
 * bus only, {@link connectTasks}), an example rule to an SQS queue with a dead-letter queue, and an optional webhook
 * (API destination). Rules of your own: `new events.Rule(scope, id, { eventBus: backendEvents.bus, eventPattern: { source:
 * ['realtime'], detailType: ['channel.vacated'] } })`.
 */
export class BackendEvents extends Construct {
  public readonly bus: events.EventBus;
  /** The example consumer's queue, when `exampleQueue`. */
  public readonly queue?: sqs.Queue;
  /** Events no target could take (EventBridge's retries spent) and messages the example consumer failed. */
  public readonly deadLetterQueue: sqs.Queue;
  public readonly webhook?: events.ApiDestination;
  public readonly debounceMs: number;

  constructor(scope: Construct, id: string, props: BackendEventsProps = {}) {
    super(scope, id);
    this.debounceMs = props.debounceMs ?? DEFAULTS.backendEvents.debounceMs;
    checkRange(this, 'debounceMs', props.debounceMs, 0, 600_000, ' ms');
    if (props.webhook) {
      if (!/^https:\/\/[^\s]+$/.test(props.webhook.url)) invalid(this, `webhook.url "${props.webhook.url}" is not an https:// URL`, 'API destinations call HTTPS endpoints only');
      if (!/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/.test(props.webhook.apiKeySecretArn)) {
        invalid(this, 'webhook.apiKeySecretArn is not a Secrets Manager secret ARN', 'Store the API key in Secrets Manager and give its ARN');
      }
      checkRange(this, 'webhook.rateLimitPerSecond', props.webhook.rateLimitPerSecond, 1, 300, '/s');
    }

    this.bus = new events.EventBus(this, 'Bus');
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    Validations.of(this.deadLetterQueue).acknowledge({ id: 'AwsSolutions-SQS3', reason: 'This is the dead-letter queue of the backend events (rule targets and the example queue).' });
    const all = { source: [BACKEND_EVENT_SOURCE], detailType: [...BACKEND_EVENT_TYPES] };
    // EventBridge retries a target for up to 24 hours (185 attempts) by default; then the event goes to the DLQ.
    const delivery = { deadLetterQueue: this.deadLetterQueue, maxEventAge: Duration.hours(24), retryAttempts: 185 };

    if (props.exampleQueue ?? DEFAULTS.backendEvents.exampleQueue) {
      this.queue = new sqs.Queue(this, 'ExampleQueue', {
        retentionPeriod: Duration.days(4),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
      });
      new events.Rule(this, 'ExampleRule', {
        eventBus: this.bus,
        description: 'Example: every backend event to an SQS queue',
        eventPattern: all,
        targets: [new targets.SqsQueue(this.queue, delivery)],
      });
    }

    if (props.webhook) {
      const connection = new events.Connection(this, 'WebhookConnection', {
        description: 'API key of the backend events webhook',
        authorization: events.Authorization.apiKey(props.webhook.apiKeyHeader ?? 'x-api-key', SecretValue.secretsManager(props.webhook.apiKeySecretArn)),
      });
      this.webhook = new events.ApiDestination(this, 'Webhook', {
        connection,
        endpoint: props.webhook.url,
        httpMethod: events.HttpMethod.POST,
        rateLimitPerSecond: props.webhook.rateLimitPerSecond ?? 10,
      });
      new events.Rule(this, 'WebhookRule', {
        eventBus: this.bus,
        description: 'Backend events to the webhook',
        eventPattern: { source: all.source, detailType: [...(props.webhook.eventTypes ?? BACKEND_EVENT_TYPES)] },
        targets: [new targets.ApiDestination(this.webhook, delivery)],
      });
    }
  }

  /** The tasks relay the outbox to the bus: the bus's ARN and the debounce in their environment, `events:PutEvents` on this bus only. */
  public connectTasks(container: ecs.ContainerDefinition, taskRole: iam.IGrantable): void {
    // The ARN: PutEvents takes it as EventBusName, and its region is the signing region.
    container.addEnvironment(SERVICE_ENV.eventBusName, this.bus.eventBusArn);
    container.addEnvironment(SERVICE_ENV.occupancyDebounceMs, String(this.debounceMs));
    this.bus.grantPutEventsTo(taskRole);
  }
}
