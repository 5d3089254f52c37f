/**
 * BackendEvents: the stage's EventBridge bus, `events:PutEvents` on it for the task role only, the runtime's variables,
 * the example rule to an SQS queue with a dead-letter queue, the optional webhook, and the checks on its props.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { CORE_ENV, SERVICE_ENV } from '../../contract/env';
import { BackendEvents } from '../../lib/backend-events';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { buildStack, containerEnv, fixture, logicalIdOf, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

type Statement = { Action: string | string[]; Resource: unknown; Effect: string };
const statements = (template: Template): { roles: unknown; statement: Statement }[] =>
  Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) =>
    (p.Properties.PolicyDocument.Statement as Statement[]).map((statement) => ({ roles: p.Properties.Roles, statement })),
  );
const puts = (template: Template) => statements(template).filter((s) => ([] as string[]).concat(s.statement.Action).some((a) => a.startsWith('events:')));

describe('dev stage (cdk.json) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('bus: one custom EventBridge bus per stage, named by CloudFormation', () => {
    template.resourceCountIs('AWS::Events::EventBus', 1);
  });

  test('PutEvents: only the task role, only on this bus (the Lambdas write the outbox in Redis, they call no AWS API for it)', () => {
    const found = puts(template);
    expect(found).toHaveLength(1);
    expect(found[0].statement).toEqual({ Action: 'events:PutEvents', Effect: 'Allow', Resource: stack.resolve(stack.api.backendEvents!.bus.eventBusArn) });
    expect(found[0].roles).toEqual([{ Ref: logicalIdOf(stack.sse.taskDefinition.taskRole) }]);
  });

  test('runtime: the tasks get the bus ARN, the debounce and BACKEND_EVENTS; every Lambda gets BACKEND_EVENTS', () => {
    expect(containerEnv(template)).toMatchObject({
      [SERVICE_ENV.eventBusName]: stack.resolve(stack.api.backendEvents!.bus.eventBusArn),
      [SERVICE_ENV.occupancyDebounceMs]: '5000',
      [CORE_ENV.backendEvents]: 'true',
    });
    const fns = Object.values(template.findResources('AWS::Lambda::Function', { Properties: { Environment: { Variables: { NODE_OPTIONS: Match.anyValue() } } } }));
    expect(fns.length).toBeGreaterThan(4);
    for (const fn of fns) expect((fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables[CORE_ENV.backendEvents]).toBe('true');
  });

  test('example rule: every backend event to an encrypted, TLS-only queue; EventBridge retries 24 h, then the DLQ; the consumer 5 times, then the DLQ', () => {
    const be = stack.api.backendEvents!;
    template.hasResourceProperties('AWS::Events::Rule', {
      EventBusName: stack.resolve(be.bus.eventBusName),
      EventPattern: { source: ['realtime'], 'detail-type': ['channel.occupied', 'channel.vacated', 'user.revoked', 'client.publish'] },
      Targets: [
        Match.objectLike({
          Arn: stack.resolve(be.queue!.queueArn),
          DeadLetterConfig: { Arn: stack.resolve(be.deadLetterQueue.queueArn) },
          RetryPolicy: { MaximumEventAgeInSeconds: 86400, MaximumRetryAttempts: 185 },
        }),
      ],
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: stack.resolve(be.deadLetterQueue.queueArn), maxReceiveCount: 5 },
    });
    // The bus may send to both queues (their policies), and both refuse anything but TLS.
    for (const q of [be.queue!, be.deadLetterQueue]) {
      const policy = Object.values(template.findResources('AWS::SQS::QueuePolicy')).find((p) => JSON.stringify(p.Properties.Queues) === JSON.stringify([stack.resolve(q.queueUrl)]));
      expect(JSON.stringify(policy)).toContain('"aws:SecureTransport":"false"');
      expect(JSON.stringify(policy)).toContain('events.amazonaws.com');
    }
    template.resourceCountIs('AWS::Events::ApiDestination', 0);
  });
});

describe('props', () => {
  const webhook = { url: 'https://hooks.example.com/realtime', apiKeySecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:realtime-hook-AbCdEf' };

  test('webhook: an API destination (POST, rate limit) with an API-key connection from the secret, and a rule for the chosen types with retries and the DLQ', () => {
    const { stack } = fixture();
    const be = new BackendEvents(stack, 'Events', { webhook: { ...webhook, rateLimitPerSecond: 5, eventTypes: ['client.publish'] } });
    const t = templateOf(stack);
    t.hasResourceProperties('AWS::Events::ApiDestination', { HttpMethod: 'POST', InvocationEndpoint: webhook.url, InvocationRateLimitPerSecond: 5 });
    t.hasResourceProperties('AWS::Events::Connection', {
      AuthorizationType: 'API_KEY',
      AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: Match.stringLikeRegexp(`resolve:secretsmanager:${webhook.apiKeySecretArn}`) } },
    });
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['realtime'], 'detail-type': ['client.publish'] },
      Targets: [Match.objectLike({ Arn: stack.resolve(be.webhook!.apiDestinationArn), DeadLetterConfig: { Arn: stack.resolve(be.deadLetterQueue.queueArn) } })],
    });
  });

  test('exampleQueue false: no example queue or rule (the DLQ stays for the webhook)', () => {
    const { stack } = fixture();
    new BackendEvents(stack, 'Events', { exampleQueue: false });
    const t = templateOf(stack);
    t.resourceCountIs('AWS::Events::Rule', 0);
    t.resourceCountIs('AWS::Events::EventBus', 1);
  });

  test('backendEvents.enabled false: no bus, no PutEvents, no BACKEND_EVENTS', () => {
    const stack = buildStack({ backendEvents: { enabled: false } });
    const t = templateOf(stack);
    t.resourceCountIs('AWS::Events::EventBus', 0);
    expect(puts(t)).toEqual([]);
    expect(containerEnv(t)[CORE_ENV.backendEvents]).toBeUndefined();
    expect(containerEnv(t)[SERVICE_ENV.eventBusName]).toBeUndefined();
  });

  test('a stage sets the debounce: the tasks get it', () => {
    const t = templateOf(buildStack({ backendEvents: { debounceMs: 20_000 } }));
    expect(containerEnv(t)[SERVICE_ENV.occupancyDebounceMs]).toBe('20000');
  });

  test.each([
    [{ debounceMs: -1 }, /debounceMs/],
    [{ debounceMs: 600_001 }, /debounceMs/],
    [{ webhook: { ...webhook, url: 'http://hooks.example.com' } }, /https:\/\//],
    [{ webhook: { ...webhook, apiKeySecretArn: 'my-secret' } }, /Secrets Manager secret ARN/],
    [{ webhook: { ...webhook, rateLimitPerSecond: 0 } }, /rateLimitPerSecond/],
  ])('invalid props %j: a readable error', (props, message) => {
    const { stack } = fixture();
    expect(() => new BackendEvents(stack, 'Events', props)).toThrow(message);
  });
});
