/**
 * The presence sweeper of API Gateway connections (issue 24): created by RealtimeApi when a namespace has presence on
 * and the API Gateway WebSocket API exists; run every minute by EventBridge Scheduler; in the VPC with Redis; allowed to
 * GET this stage's `@connections` and nothing else. With presence on, `$connect` enqueues its joins on the fan-out queue
 * and the tasks get the queue in any mode with API Gateway.
 */
import { Stack, Validations, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { RealtimeApi, type RealtimeApiProps } from '../../lib/realtime-api';
import { logicalIdOf, newApp } from './support';

const ENV = { account: '123456789012', region: 'eu-west-1' };
const ROOM = { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, historyTtlSeconds: 600, presence: 'members' };

function build(props: RealtimeApiProps, nag = false) {
  const app = newApp();
  const reports: PolicyValidationPluginReport[] = [];
  if (nag) {
    const checks = new AwsSolutionsChecks(app);
    Validations.of(app).addPlugins({ name: checks.name, version: checks.version, validate: (context) => (reports.push(checks.validate(context)), reports[reports.length - 1]) });
  }
  const stack = new Stack(app, 'Consumer', { env: ENV });
  const api = new RealtimeApi(stack, 'Realtime', props);
  return { app, stack, api, template: Template.fromStack(stack), reports };
}

type Statement = { Action: unknown; Resource: unknown; Effect: string };
function statementsOf(b: ReturnType<typeof build>, role: unknown): Statement[] {
  const ref = { Ref: logicalIdOf(role as never) };
  return Object.values(b.template.findResources('AWS::IAM::Policy'))
    .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([ref]))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
}

describe('mode apigateway with a members namespace', () => {
  let b: ReturnType<typeof build>;
  beforeAll(() => {
    b = build({ webSocket: { mode: 'apigateway' }, namespaces: { chat: { subscribe: 'authenticated' }, room: ROOM } }, true);
  });

  test('schedule: one EventBridge Scheduler schedule, rate(1 minute), invoking the sweeper without retries', () => {
    const fn = b.api.presenceSweeper!.function.function;
    b.template.resourcePropertiesCountIs('AWS::Scheduler::Schedule', { Description: 'Runs the presence sweeper of API Gateway connections' }, 1);
    b.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 minute)',
      Target: { Arn: b.stack.resolve(fn.functionArn), RetryPolicy: { MaximumRetryAttempts: 0 } },
    });
  });

  test('IAM: execute-api:ManageConnections on this stage’s GET @connections only; nothing on the queue, nothing else on the management API', () => {
    const statements = statementsOf(b, b.api.presenceSweeper!.function.function.role);
    const manage = statements.filter((s) => JSON.stringify(s.Action).includes('execute-api'));
    const apiRef = b.stack.resolve(b.api.webSocket!.api.apiId);
    expect(manage).toEqual([
      expect.objectContaining({
        Action: 'execute-api:ManageConnections',
        Effect: 'Allow',
        Resource: { 'Fn::Join': ['', ['arn:aws:execute-api:eu-west-1:123456789012:', apiRef, '/live/GET/@connections/*']] },
      }),
    ]);
    expect(JSON.stringify(statements)).not.toMatch(/sqs:|lambda:InvokeFunction|\/(POST|DELETE|\*)\/@connections/);
  });

  test('network: in the VPC, with Redis (REDIS_URL, its AUTH token, ingress from its security group) and the stage’s management endpoint', () => {
    const id = logicalIdOf(b.api.presenceSweeper!.function.function);
    const fn = b.template.toJSON().Resources[id].Properties as { VpcConfig?: { SubnetIds: unknown[] }; Environment: { Variables: Record<string, unknown> } };
    expect(fn.VpcConfig?.SubnetIds.length).toBeGreaterThan(0);
    expect(Object.keys(fn.Environment.Variables)).toEqual(expect.arrayContaining(['REDIS_URL', 'REDIS_SECRET_ARN', 'KEY_PREFIX', 'NAMESPACES_JSON', 'WS_MANAGEMENT_ENDPOINT']));
    const sg = b.stack.resolve(b.api.presenceSweeper!.function.function.connections.securityGroups[0].securityGroupId);
    b.template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', { SourceSecurityGroupId: sg, FromPort: 6379 });
  });

  test('$connect: the fan-out queue’s URL and sqs:SendMessage on it (its joins), still no management API', () => {
    const connect = b.api.webSocket!.connectFunction.function;
    const vars = (b.template.toJSON().Resources[logicalIdOf(connect)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(vars.WS_FANOUT_QUEUE_URL).toEqual(b.stack.resolve(b.api.webSocketFanout!.queue.queueUrl));
    expect(vars.WS_MANAGEMENT_ENDPOINT).toBeUndefined();
    const statements = JSON.stringify(statementsOf(b, connect.role));
    expect(statements).toMatch(/sqs:SendMessage/);
    expect(statements).not.toMatch(/execute-api/);
  });

  test('tasks: the fan-out queue (their presence events), in mode apigateway too', () => {
    b.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: Match.arrayWith([Match.objectLike({ Environment: Match.arrayWith([{ Name: 'WS_FANOUT_QUEUE_URL', Value: b.stack.resolve(b.api.webSocketFanout!.queue.queueUrl) }]) })]),
    });
  });

  test('guardrails: cdk-nag finds nothing unacknowledged', () => {
    b.app.synth();
    expect(b.reports).toHaveLength(1);
    expect(b.reports[0].violations.map((v) => `${v.severity} ${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });
});

describe('no sweeper without presence or without API Gateway', () => {
  test.each<[string, RealtimeApiProps]>([
    ['presence off (the default)', { webSocket: { mode: 'apigateway' } }],
    ['mode tasks (no API Gateway connections)', { webSocket: { mode: 'tasks' }, namespaces: { room: ROOM } }],
  ])('%s: no sweeper, no schedule for it, $connect without the queue', (_name, props) => {
    const b = build(props);
    expect(b.api.presenceSweeper).toBeUndefined();
    b.template.resourcePropertiesCountIs('AWS::Scheduler::Schedule', { Description: 'Runs the presence sweeper of API Gateway connections' }, 0);
    const connect = b.api.webSocket?.connectFunction.function;
    if (connect) expect(JSON.stringify(statementsOf(b, connect.role))).not.toMatch(/sqs:/);
  });
});
