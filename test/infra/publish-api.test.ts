/**
 * PublishApi: POST /publish, POST /revoke and GET /history with IAM, each to its own function.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)));

  test('publish route: POST /publish with IAM authorisation', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /publish', AuthorizationType: 'AWS_IAM' });
  });

  test('revoke route: POST /revoke with IAM authorisation, on the publish API, to its own function', () => {
    const publishApi = stack.resolve(stack.publishApi.endpoint.api.apiId);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { ApiId: publishApi, RouteKey: 'POST /revoke', AuthorizationType: 'AWS_IAM' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      ApiId: publishApi,
      IntegrationUri: stack.resolve(stack.publishApi.revokeHandler.function.functionArn),
    });
  });

  test('history route: GET /history with IAM authorisation, on the publish API, to its own function that may not post, enqueue or invoke', () => {
    const publishApi = stack.resolve(stack.publishApi.endpoint.api.apiId);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { ApiId: publishApi, RouteKey: 'GET /history', AuthorizationType: 'AWS_IAM' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      ApiId: publishApi,
      IntegrationUri: stack.resolve(stack.publishApi.historyHandler.function.functionArn),
    });
    const role = stack.resolve(stack.publishApi.historyHandler.function.role!.roleName);
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: Match.arrayWith([role]) } });
    const actions = JSON.stringify(Object.values(policies).map((p) => p.Properties.PolicyDocument.Statement.map((st: { Action: unknown }) => st.Action)));
    expect(actions).not.toMatch(/execute-api:ManageConnections|sqs:SendMessage|lambda:InvokeFunction/);
  });
});
