/**
 * The delivery canary in the template: off by default, on in prod; EventBridge Scheduler every minute without retries;
 * the function outside the VPC with its endpoints; least privilege (the two IAM routes it calls, nothing else) and
 * trust (its role joins the trusted principals of tickets and publish); alarms on any loss (2 of 3 runs) and on p99
 * over the stage threshold; its row first on the dashboard; and the checks on its settings.
 */
import { Stack } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { CANARY_ENV, LAMBDA_ENV } from '../../contract/settings';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { buildStack, logicalIdOf, PROD_STAGE, templateOf } from './support';

describe('off by default', () => {
  test('canary unset: no schedule, no canary function', () => {
    const t = templateOf(buildStack());
    t.resourceCountIs('AWS::Scheduler::Schedule', 0);
    expect(JSON.stringify(t.toJSON())).not.toContain(CANARY_ENV.endpoints);
  });
  test('prod in cdk.json turns it on', () => {
    expect(PROD_STAGE.canary).toEqual({ enabled: true });
  });
});

describe('canary.enabled (webSocket.mode both, JWT tickets)', () => {
  let stack: RealtimeStack;
  let t: Template;
  let fnId: string;
  let roleId: string;
  beforeAll(() => {
    stack = buildStack({
      canary: { enabled: true, latencyThresholdMs: 750 },
      webSocket: { mode: 'both' },
      ticketApi: { auth: { type: 'jwt', issuer: 'https://issuer.example.com', audience: ['app'] } },
      trustedPrincipals: ['arn:aws:iam::123456789012:role/backend'],
    });
    t = templateOf(stack);
    fnId = logicalIdOf(stack.api.canary!.function.function);
    roleId = Stack.of(stack).resolve(stack.api.canary!.function.function.role!.roleArn)['Fn::GetAtt'][0];
  });

  test('schedule: rate(1 minute), the canary function as target, no retries', () => {
    t.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Target: { Arn: { 'Fn::GetAtt': [fnId, 'Arn'] }, RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 } },
    });
  });

  test('schedule role: assumed by EventBridge Scheduler of this account only; it may invoke the canary only', () => {
    const role = Object.values(t.findResources('AWS::IAM::Role', { Properties: { AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'scheduler.amazonaws.com' } })] } } }));
    expect(role).toHaveLength(1);
    expect(role[0].Properties.AssumeRolePolicyDocument.Statement[0].Condition).toEqual({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } });
    const policies = Object.values(t.findResources('AWS::IAM::Policy')).filter((p) => JSON.stringify(p.Properties.Roles).includes('ScheduleRole'));
    const actions = policies.flatMap((p) => p.Properties.PolicyDocument.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat()));
    expect([...new Set(actions)]).toEqual(['lambda:InvokeFunction']);
  });

  test('function: outside the VPC, the endpoints it probes, the backend ticket route', () => {
    const fn = t.toJSON().Resources[fnId];
    expect(fn.Properties.VpcConfig).toBeUndefined();
    const env = fn.Properties.Environment.Variables;
    expect(Object.keys(env)).toEqual(expect.arrayContaining([CANARY_ENV.endpoints, CANARY_ENV.ticketUrl, CANARY_ENV.burst, CANARY_ENV.namespace]));
    const endpoints = JSON.stringify(Stack.of(stack).resolve(env[CANARY_ENV.endpoints]));
    for (const name of ['TicketUrl', 'SseUrl', 'PollUrl', 'PublishUrl', 'LiveUrl', 'WebSocketUrl']) expect(endpoints).toContain(name);
    expect(endpoints).not.toContain('RedisEndpoint');
    expect(JSON.stringify(env[CANARY_ENV.ticketUrl])).toContain('/backend/tickets');
  });

  test('least privilege: the function role may invoke POST /backend/tickets and POST /publish, nothing else but its logs and traces', () => {
    const policies = Object.values(t.findResources('AWS::IAM::Policy')).filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]));
    const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);
    const invoke = statements.filter((s) => [s.Action].flat().includes('execute-api:Invoke'));
    expect(invoke).toHaveLength(1);
    const resources = JSON.stringify(invoke[0].Resource);
    expect(resources).toContain('/POST/backend/tickets');
    expect(resources).toContain('/POST/publish');
    expect(resources).not.toContain('revoke');
    const others = statements.flatMap((s) => [s.Action].flat()).filter((a) => a !== 'execute-api:Invoke');
    expect(others.every((a) => /^xray:/.test(a))).toBe(true);
  });

  test('trust: the ticket issuer and publish list the canary role beside the stage principals; revoke does not', () => {
    for (const fn of [stack.ticketApi.handler, stack.publishApi.handler]) {
      const env = t.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment.Variables;
      expect(env[LAMBDA_ENV.trustedPrincipals]).toEqual({ 'Fn::Join': ['', ['arn:aws:iam::123456789012:role/backend,', { 'Fn::GetAtt': [roleId, 'Arn'] }]] });
    }
    const revokeEnv = t.toJSON().Resources[logicalIdOf(stack.publishApi.revokeHandler.function)].Properties.Environment.Variables;
    expect(revokeEnv[LAMBDA_ENV.trustedPrincipals]).toBe('arn:aws:iam::123456789012:role/backend');
  });

  test('alarms: any loss over all transports in 2 of 3 runs (missing runs breach); p99 over canary.latencyThresholdMs in 2 of 3', () => {
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'CanaryLost',
      Namespace: 'RealtimeBlueprint',
      Dimensions: Match.arrayWith([{ Name: 'Transport', Value: 'all' }, { Name: 'service', Value: 'canary' }]),
      Statistic: 'Sum',
      Period: 60,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
      TreatMissingData: 'breaching',
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'CanaryLatencyP99',
      Dimensions: Match.arrayWith([{ Name: 'Transport', Value: 'all' }]),
      Statistic: 'Maximum',
      Threshold: 750,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
    });
    expect(stack.observability.alarms).toEqual(expect.arrayContaining(stack.api.canary!.alarms));
  });

  test('dashboard: the canary row comes first', () => {
    const dash = Object.values(t.findResources('AWS::CloudWatch::Dashboard'))[0];
    const body = JSON.stringify(Stack.of(stack).resolve(dash.Properties.DashboardBody));
    const canaryAt = body.indexOf('Delivery (canary');
    expect(canaryAt).toBeGreaterThan(-1);
    expect(canaryAt).toBeLessThan(body.indexOf('## SSE'));
    expect(body).toContain('CanaryLatencyP99');
  });
});

describe('validation', () => {
  test.each<[string, object, RegExp]>([
    ['a namespace the stage does not have', { canary: { enabled: true, namespace: 'rooms' }, namespaces: { chat: { subscribe: 'authenticated' } } }, /canary.namespace "rooms" is not one of namespaces/],
    ['a burst of 0', { canary: { enabled: true, burst: 0 } }, /burst/],
    ['an interval over an hour', { canary: { enabled: true, intervalMinutes: 61 } }, /intervalMinutes/],
  ])('%s: fails at synth', (_what, config, message) => {
    expect(() => buildStack(config)).toThrow(message);
  });
});
