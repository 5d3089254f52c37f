/**
 * RealtimeWebSocketApi: the ticket authorizer on $connect, the protocol routes, the throttled stage,
 * execute-api:ManageConnections per method, and the checks on its props.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { MESSAGE_ROUTES, RealtimeWebSocketApi, type RealtimeWebSocketApiProps, TICKET_IDENTITY_SOURCE } from '../../lib/websocket-api';
import { DEFAULTS } from '../../lib/defaults';
import { blueprintFunctions, buildStack, fixture, logicalIdOf, onlyLogicalId, PROD_STAGE, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('WebSocket authorizer: REQUEST type, identity source is the ticket query string, on $connect', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'REQUEST',
      IdentitySource: [TICKET_IDENTITY_SOURCE],
    });
    expect(TICKET_IDENTITY_SOURCE).toBe('route.request.querystring.ticket');
    const authorizerId = onlyLogicalId(template, 'AWS::ApiGatewayV2::Authorizer');
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
      RouteKey: '$connect',
      AuthorizationType: 'CUSTOM',
      AuthorizerId: { Ref: authorizerId },
    });
  });

  test('WebSocket routes: selection by $request.body.action, the protocol routes of 2/4 and $default', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'WEBSOCKET', RouteSelectionExpression: '$request.body.action' });
    const wsApi = stack.resolve(stack.webSocket!.api.apiId);
    const keys = Object.values(template.findResources('AWS::ApiGatewayV2::Route', { Properties: { ApiId: wsApi } })).map((r) => r.Properties.RouteKey);
    expect(keys.sort()).toEqual(['$connect', '$default', '$disconnect', ...MESSAGE_ROUTES].sort());
  });

  test('WebSocket stage: throttled; no access logs by default (API Gateway refuses AccessLogSettings until the account has a CloudWatch Logs role)', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      ApiId: stack.resolve(stack.webSocket!.api.apiId),
      StageName: 'live',
      DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: 500, ThrottlingBurstLimit: 1000 }),
      AccessLogSettings: Match.absent(),
    });
    // Nothing in the template depends on the account-level setting: no stage logs anywhere, no AWS::ApiGateway::Account.
    template.resourceCountIs('AWS::ApiGateway::Account', 0);
    expect(stack.webSocket!.accessLogGroup).toBeUndefined();
  });

  test('execute-api:ManageConnections: POST and DELETE for the inline fan-outs (publish, ws-message), POST only for the fan-out worker, DELETE only for revoke and the fan-out dead-letter consumer, on this API\'s stage, nothing else', () => {
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) =>
      (p.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[])
        .filter((st) => JSON.stringify(st.Action).includes('execute-api:ManageConnections') || JSON.stringify(st.Action).includes('execute-api:*'))
        .map((st) => ({ roles: p.Properties.Roles as unknown[], action: st.Action, resource: st.Resource })),
    );
    const apiRef = stack.resolve(stack.webSocket!.api.apiId);
    const arn = (method: string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':execute-api:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':', apiRef, `/live/${method}/@connections/*`]],
    });
    const role = (f: { function: { role?: unknown } }) => ({ Ref: logicalIdOf(f.function.role as never) });
    expect(statements).toEqual(
      expect.arrayContaining([
        // One statement each (CDK merges the two grants): DELETE closes a connection whose post failed after every retry.
        { roles: [role(stack.publishApi.handler)], action: 'execute-api:ManageConnections', resource: [arn('DELETE'), arn('POST')] },
        { roles: [role(stack.webSocket!.messageFunction)], action: 'execute-api:ManageConnections', resource: [arn('DELETE'), arn('POST')] },
        { roles: [role(stack.webSocketFanout!.worker)], action: 'execute-api:ManageConnections', resource: arn('POST') },
        { roles: [role(stack.publishApi.revokeHandler)], action: 'execute-api:ManageConnections', resource: arn('DELETE') },
        { roles: [role(stack.webSocketFanout!.deadLetterConsumer)], action: 'execute-api:ManageConnections', resource: arn('DELETE') },
      ]),
    );
    expect(statements).toHaveLength(5);
    expect(JSON.stringify(statements)).not.toMatch(/\/(GET|\*)\/@connections/);
  });

  test('WS_MANAGEMENT_ENDPOINT: set on exactly the functions that fan out or close connections, to https://{api}.execute-api.{region}/{stage}', () => {
    const withEndpoint = Object.keys(blueprintFunctions(template)).filter((id) => {
      const vars = (template.toJSON().Resources[id].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      return 'WS_MANAGEMENT_ENDPOINT' in vars;
    });
    expect(withEndpoint.sort()).toEqual([stack.publishApi.handler, stack.webSocket!.messageFunction, stack.publishApi.revokeHandler, stack.webSocketFanout!.worker, stack.webSocketFanout!.deadLetterConsumer].map((f) => logicalIdOf(f.function)).sort());
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          WS_MANAGEMENT_ENDPOINT: {
            'Fn::Join': ['', ['https://', stack.resolve(stack.webSocket!.api.apiId), '.execute-api.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, '/live']],
          },
        }),
      },
    });
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  const prod = PROD_STAGE;
  useStageTemplate('prod', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('execute-api:ManageConnections: still only this API\'s stage with a pinned account and region', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'execute-api:ManageConnections',
            Resource: { 'Fn::Join': ['', [`arn:aws:execute-api:${prod.region}:${prod.account}:`, stack.resolve(stack.webSocket!.api.apiId), '/live/POST/@connections/*']] },
          }),
        ]),
      },
    });
  });
});

describe('webSocket.accessLogs: the stage says the account\'s API Gateway CloudWatch Logs role is set', () => {
  test('accessLogs true: AccessLogSettings to a log group with the stage\'s retention; still no AWS::ApiGateway::Account (the account setting is not the stack\'s)', () => {
    const stack = buildStack({ webSocket: { mode: 'both', accessLogs: true }, logRetentionDays: 14 });
    const template = templateOf(stack);
    const group = stack.webSocket!.accessLogGroup!;
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      ApiId: stack.resolve(stack.webSocket!.api.apiId),
      AccessLogSettings: Match.objectLike({ DestinationArn: stack.resolve(group.logGroupArn) }),
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 14 });
    expect(Object.keys(template.findResources('AWS::Logs::LogGroup'))).toContain(logicalIdOf(group));
    template.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  test('accessLogs false (the default, DEFAULTS.webSocket.accessLogs): no log settings on the stage', () => {
    expect(DEFAULTS.webSocket.accessLogs).toBe(false);
    const template = templateOf(buildStack({ webSocket: { mode: 'apigateway', accessLogs: false } }));
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: 'live', AccessLogSettings: Match.absent() });
  });
});

describe('RealtimeWebSocketApi validation', () => {
  const make = (props: Partial<RealtimeWebSocketApiProps>) => () => {
    const { stack, vpc, redis } = fixture();
    new RealtimeWebSocketApi(stack, 'WebSocket', { vpc, redis, ...props });
  };

  test.each<[string, Partial<RealtimeWebSocketApiProps>, RegExp]>([
    ['stage name with spaces', { stageName: 'my stage' }, /^Fixture\/WebSocket: stageName "my stage" is not a valid stage name\. Use 1 to 64 letters, digits, "-" or "_"$/],
    ['stage name $default', { stageName: '$default' }, /stageName "\$default" is not a valid stage name/],
    ['zero rate limit', { throttleRateLimit: 0 }, /throttleRateLimit \(0\) must be an integer from 1 to 10000 per second/],
    ['burst above 5000', { throttleBurstLimit: 6000 }, /throttleBurstLimit \(6000\) must be an integer from 1 to 5000/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });
});