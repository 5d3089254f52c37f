/**
 * WebSocketFanout: the SQS FIFO work queue and its dead-letter queue, the alarm on dead letters, the worker's event
 * source (batch item failures), its permissions (POST on this API's connections only; receive on the queue), the
 * publishers' SendMessage and variables, and the checks on its props.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { LAMBDA_ENV, SERVICE_ENV } from '../../contract/env';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { RealtimeWebSocketApi } from '../../lib/websocket-api';
import { WebSocketFanout, type WebSocketFanoutProps } from '../../lib/websocket-fanout';
import { buildStack, containerEnv, fixture, logicalIdOf, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

describe('dev stage (cdk.json) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  const policiesOf = (fn: { function: { role?: unknown } }) =>
    Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: logicalIdOf(fn.function.role as never) }]))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown; Effect: string }[]);
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('queue: FIFO, explicit deduplication ids, SQS-managed encryption, TLS only, visibility six times the worker timeout, dead letters after 5 receipts', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: true,
      ContentBasedDeduplication: false,
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: stack.resolve(stack.webSocketFanout!.deadLetterQueue.queueArn), maxReceiveCount: 5 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { FifoQueue: true, MessageRetentionPeriod: 14 * 24 * 3600, SqsManagedSseEnabled: true });
    // The fan-out's two (the backend events' example queue and its DLQ are standard queues, lib/backend-events.ts).
    expect(Object.keys(template.findResources('AWS::SQS::Queue', { Properties: { FifoQueue: true } }))).toHaveLength(2);
    // enforceSSL: both queues deny non-TLS access.
    const fanoutQueues = [stack.webSocketFanout!.queue, stack.webSocketFanout!.deadLetterQueue].map((q) => JSON.stringify([stack.resolve(q.queueUrl)]));
    const denies = Object.values(template.findResources('AWS::SQS::QueuePolicy')).filter((p) => fanoutQueues.includes(JSON.stringify(p.Properties.Queues)) && JSON.stringify(p).includes('"aws:SecureTransport":"false"'));
    expect(denies).toHaveLength(2);
  });

  test('dead letters: an alarm at one message received from the DLQ (its consumer takes them at once: the visible count stays 0), notifying nothing unless a topic is set; the oldest work item over a minute alarms too', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'NumberOfMessagesReceived',
      Statistic: 'Sum',
      Namespace: 'AWS/SQS',
      Dimensions: [{ Name: 'QueueName', Value: stack.resolve(stack.webSocketFanout!.deadLetterQueue.queueName) }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 60 });
    expect(stack.observability.alarms).toEqual(expect.arrayContaining(stack.webSocketFanout!.alarms));
  });

  test('event source mapping: the worker reads the queue, 10 per batch, batch item failures reported, concurrency capped at the shard count', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: stack.resolve(stack.webSocketFanout!.queue.queueArn),
      FunctionName: stack.resolve(stack.webSocketFanout!.worker.function.functionName),
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 4 },
    });
    // The worker's and the dead-letter consumer's.
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('fan-out worker'), MemorySize: 1024, Timeout: 60 });
  });

  test('worker IAM: execute-api:ManageConnections POST on this API\'s stage only, receive/delete on its queue, no SendMessage', () => {
    const statements = policiesOf(stack.webSocketFanout!.worker);
    const manage = statements.filter((s) => JSON.stringify(s.Action).includes('execute-api'));
    expect(manage).toEqual([
      expect.objectContaining({
        Action: 'execute-api:ManageConnections',
        Effect: 'Allow',
        Resource: {
          'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':execute-api:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':', stack.resolve(stack.webSocket!.api.apiId), '/live/POST/@connections/*']],
        },
      }),
    ]);
    const sqsActions = statements.filter((s) => JSON.stringify(s.Action).includes('sqs:')).flatMap((s) => [s.Action].flat());
    expect(sqsActions).toEqual(expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:DeleteMessage']));
    expect(sqsActions).not.toContain('sqs:SendMessage');
    expect(JSON.stringify(statements)).not.toMatch(/\/(GET|DELETE|\*)\/@connections/);
  });

  test('dead-letter consumer: reads the DLQ (10 per batch, batch item failures reported, at most 2 at once); its visibility covers six times the timeout', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: stack.resolve(stack.webSocketFanout!.deadLetterQueue.queueArn),
      FunctionName: stack.resolve(stack.webSocketFanout!.deadLetterConsumer.function.functionName),
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { FifoQueue: true, MessageRetentionPeriod: 14 * 24 * 3600, VisibilityTimeout: 360 });
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('dead letters: closes the connections'), Timeout: 60 });
  });

  test("dead-letter consumer IAM: execute-api:ManageConnections DELETE on this API's stage only (no POST), receive/delete on the DLQ only, no SendMessage", () => {
    const statements = policiesOf(stack.webSocketFanout!.deadLetterConsumer);
    const manage = statements.filter((s) => JSON.stringify(s.Action).includes('execute-api'));
    expect(manage).toEqual([
      expect.objectContaining({
        Action: 'execute-api:ManageConnections',
        Effect: 'Allow',
        Resource: {
          'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':execute-api:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':', stack.resolve(stack.webSocket!.api.apiId), '/live/DELETE/@connections/*']],
        },
      }),
    ]);
    expect(JSON.stringify(statements)).not.toMatch(/\/(GET|POST|\*)\/@connections/);
    const sqs = statements.filter((s) => JSON.stringify(s.Action).includes('sqs:'));
    expect(sqs.flatMap((s) => [s.Action].flat())).toEqual(expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:DeleteMessage']));
    expect(sqs.flatMap((s) => [s.Action].flat())).not.toContain('sqs:SendMessage');
    for (const s of sqs) expect(s.Resource).toEqual(stack.resolve(stack.webSocketFanout!.deadLetterQueue.queueArn));
    // It finds the connections in Redis and closes them through the management endpoint of this API.
    const fn = Object.values(template.findResources('AWS::Lambda::Function')).find((f) => /dead letters: closes/.test(String(f.Properties.Description)));
    expect(Object.keys(fn!.Properties.Environment.Variables)).toEqual(expect.arrayContaining([LAMBDA_ENV.wsManagementEndpoint]));
  });

  test('publishers: publish and ws-message may SendMessage to the queue and get its variables; nothing else may (but the tasks in mode both)', () => {
    const senders = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.PolicyDocument).includes('sqs:SendMessage'))
      .flatMap((p) => p.Properties.Roles as unknown[]);
    const role = (f: { function: { role?: unknown } }) => ({ Ref: logicalIdOf(f.function.role as never) });
    const tasks = stack.webSocketMode === 'both' ? [{ Ref: logicalIdOf(stack.sse.taskDefinition.taskRole) }] : [];
    expect(senders).toHaveLength(2 + tasks.length);
    expect(senders).toEqual(expect.arrayContaining([role(stack.publishApi.handler), role(stack.webSocket!.messageFunction), ...tasks]));
    for (const fn of [stack.publishApi.handler, stack.webSocket!.messageFunction]) {
      template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: Match.absent(),
        Environment: {
          Variables: Match.objectLike({
            [LAMBDA_ENV.wsFanoutQueueUrl]: stack.resolve(stack.webSocketFanout!.queue.queueUrl),
            [LAMBDA_ENV.wsFanoutShards]: '4',
            [LAMBDA_ENV.wsFanoutInlineMax]: '200',
            [LAMBDA_ENV.wsReplayInlineMax]: '100',
          }),
        },
      });
      const vars = (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(vars[LAMBDA_ENV.wsFanoutQueueUrl]).toEqual(stack.resolve(stack.webSocketFanout!.queue.queueUrl));
    }
    const worker = (template.toJSON().Resources[logicalIdOf(stack.webSocketFanout!.worker.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(worker[LAMBDA_ENV.wsFanoutQueueUrl]).toBeUndefined();
    expect(worker[LAMBDA_ENV.wsManagementEndpoint]).toBeDefined();
  });
});

describe('webSocket.mode both: a publish on the tasks\' /live reaches API Gateway connections through the queue', () => {
  const taskRoleStatements = (stack: RealtimeStack, template: Template) =>
    Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: logicalIdOf(stack.sse.taskDefinition.taskRole) }]))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);

  test('mode both: the container gets the queue URL and shard count; the task role may sqs:SendMessage on that queue only, and nothing on the management API', () => {
    const stack = buildStack({ webSocket: { mode: 'both' }, webSocketFanout: { shards: 8 } });
    const template = templateOf(stack);
    expect(containerEnv(template)).toMatchObject({ [SERVICE_ENV.wsFanoutQueueUrl]: stack.resolve(stack.webSocketFanout!.queue.queueUrl), [SERVICE_ENV.wsFanoutShards]: '8' });
    const sqs = taskRoleStatements(stack, template).filter((s) => JSON.stringify(s.Action).includes('sqs:'));
    expect(sqs).toEqual([expect.objectContaining({ Action: 'sqs:SendMessage', Resource: stack.resolve(stack.webSocketFanout!.queue.queueArn) })]);
    expect(JSON.stringify(taskRoleStatements(stack, template))).not.toContain('execute-api');
  });

  test.each(['apigateway', 'tasks'] as const)('mode %s: no queue variables on the container, no SQS permission on the task role', (mode) => {
    const stack = buildStack({ webSocket: { mode } });
    const template = templateOf(stack);
    expect(containerEnv(template)[SERVICE_ENV.wsFanoutQueueUrl]).toBeUndefined();
    expect(JSON.stringify(taskRoleStatements(stack, template))).not.toContain('sqs:');
  });
});

describe('stage keys', () => {
  test('webSocketFanout.shards, inlineMax, maxReceiveCount, batchSize pass through to the queue, the mapping and the variables', () => {
    const stack = buildStack({ ...WITH_API_GATEWAY_WEBSOCKETS, webSocketFanout: { shards: 16, inlineMax: 50, maxReceiveCount: 3, batchSize: 5 } });
    const template = templateOf(stack);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { BatchSize: 5, ScalingConfig: { MaximumConcurrency: 16 } });
    template.hasResourceProperties('AWS::SQS::Queue', { RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }) });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [LAMBDA_ENV.wsFanoutShards]: '16', [LAMBDA_ENV.wsFanoutInlineMax]: '50' }) },
    });
  });

  test('one shard: the mapping still allows two invocations (the SQS minimum of MaximumConcurrency)', () => {
    templateOf(buildStack({ ...WITH_API_GATEWAY_WEBSOCKETS, webSocketFanout: { shards: 1 } })).hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 2 } });
  });
});

describe('WebSocketFanout validation', () => {
  const make = (props: Partial<WebSocketFanoutProps>) => () => {
    const { stack, vpc, redis } = fixture();
    const webSocket = new RealtimeWebSocketApi(stack, 'WebSocket', { vpc, redis });
    new WebSocketFanout(stack, 'Fanout', { vpc, redis, webSocket, ...props });
  };

  test.each<[string, Partial<WebSocketFanoutProps>, RegExp]>([
    ['zero shards', { shards: 0 }, /^Fixture\/Fanout: shards \(0\) must be an integer from 1 to 256\. Set shards within that range$/],
    ['too many shards', { shards: 257 }, /shards \(257\) must be an integer from 1 to 256/],
    ['negative inlineMax', { inlineMax: -1 }, /inlineMax \(-1\) must be an integer from 0 to 1000000/],
    ['batch above the FIFO maximum', { batchSize: 11 }, /batchSize \(11\) must be an integer from 1 to 10/],
    ['zero receipts', { maxReceiveCount: 0 }, /maxReceiveCount \(0\) must be an integer from 1 to 1000/],
    ['zero replay', { replayInlineMax: 0 }, /replayInlineMax \(0\) must be an integer from 1 to 10000/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('defaults: valid', () => {
    expect(make({})).not.toThrow();
  });
});
