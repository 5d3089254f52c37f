/**
 * TicketApi: POST /tickets with IAM or JWT, the backend route for JWT stages, the URLs the issuer hands out, and the
 * checks on its props.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { TicketApi, type TicketApiProps } from '../../lib/ticket-api';
import { fixture, onlyLogicalId, PROD_STAGE, useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)));

  test('ticket route (dev default): POST /tickets with IAM authorisation', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'AWS_IAM' });
  });

  test('backend tickets (IAM stage): POST /tickets itself serves backends, no second route', () => {
    const ticketApi = stack.resolve(stack.ticketApi.endpoint.api.apiId);
    const keys = Object.values(template.findResources('AWS::ApiGatewayV2::Route', { Properties: { ApiId: ticketApi } })).map((r) => r.Properties.RouteKey);
    expect(keys).toEqual(['POST /tickets']);
    expect(stack.ticketApi.backendUrl).toBe(stack.ticketApi.url);
  });

  test('ticket issuer: knows the public SSE URL and, in webSocket.mode tasks (the default), the tasks\' WebSocket URL', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SSE_URL: stack.resolve(stack.sse.eventsUrl), WS_URL: stack.resolve(stack.sse.liveUrl) }) },
    });
    expect(JSON.stringify(stack.resolve(stack.sse.eventsUrl))).toMatch(/\/events/);
    expect(JSON.stringify(stack.resolve(stack.sse.liveUrl))).toMatch(/ws:\/\/.*\/live/);
    expect(stack.webSocketMode).toBe('tasks');
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let stack: RealtimeStack;
  let template: Template;
  const prod = PROD_STAGE;
  useStageTemplate('prod', (s, t) => ((stack = s), (template = t)));

  test('ticket route: JWT authorizer with the configured issuer and audience', () => {
    const auth = (prod.ticketApi as { auth: { issuer: string; audience: string[] } }).auth;
    const authorizerId = onlyLogicalId(template, 'AWS::ApiGatewayV2::Authorizer', { AuthorizerType: 'JWT' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: auth.issuer, Audience: auth.audience },
      IdentitySource: ['$request.header.Authorization'],
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'JWT', AuthorizerId: { Ref: authorizerId } });
  });

  test('backend ticket route (JWT stage): POST /backend/tickets with IAM on the same API and issuer, for granted namespaces', () => {
    const ticketApi = stack.resolve(stack.ticketApi.endpoint.api.apiId);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { ApiId: ticketApi, RouteKey: 'POST /backend/tickets', AuthorizationType: 'AWS_IAM' });
    const issuer = stack.resolve(stack.ticketApi.handler.function.functionArn);
    const integrations = Object.values(template.findResources('AWS::ApiGatewayV2::Integration', { Properties: { ApiId: ticketApi } }));
    expect(integrations.map((i) => stack.resolve(i.Properties.IntegrationUri))).toEqual([issuer, issuer]);
  });
});

describe('TicketApi validation', () => {
  const make = (props: Partial<TicketApiProps>) => () => {
    const { stack, vpc, redis } = fixture();
    new TicketApi(stack, 'TicketApi', { vpc, redis, sseUrl: 'https://events.example.com/events', webSocketUrl: 'wss://ws.example.com/live', ...props });
  };

  test.each<[string, Partial<TicketApiProps>, RegExp]>([
    ['JWT issuer over http', { auth: { type: 'jwt', issuer: 'http://issuer.example.com', audience: ['app'] } }, /^Fixture\/TicketApi: auth\.issuer "http:\/\/issuer\.example\.com" is not an https URL\. Set auth\.issuer to the token issuer/],
    ['JWT without audience', { auth: { type: 'jwt', issuer: 'https://issuer.example.com', audience: [] } }, /^Fixture\/TicketApi: auth\.audience is empty\. List at least one accepted audience/],
    ['unknown auth type', { auth: { type: 'none' } as never }, /auth\.type "none" is not supported\. Use \{ type: "jwt", issuer, audience \} or \{ type: "iam" \}/],
    ['trusted principal that is not an ARN', { trustedPrincipals: ['my-backend'] }, /^Fixture\/TicketApi: trustedPrincipals entry "my-backend" is not an IAM role or user ARN\. List IAM role or user ARNs, like arn:aws:iam::123456789012:role\/my-backend$/],
    ['trusted principal with a wildcard', { trustedPrincipals: ['arn:aws:iam::123456789012:role/*'] }, /trustedPrincipals entry "arn:aws:iam::123456789012:role\/\*" is not an IAM role or user ARN/],
    [
      'trusted principal given as an assumed-role session',
      { trustedPrincipals: ['arn:aws:sts::123456789012:assumed-role/backend/i-0abc'] },
      /is not an IAM role or user ARN\. List the role of that session instead: arn:aws:iam::123456789012:role\/backend$/,
    ],
    [
      'trusted principals too long for the Lambda environment',
      { trustedPrincipals: Array.from({ length: 20 }, (_, i) => `arn:aws:iam::123456789012:role/some/long/path/backend-service-number-${i}`) },
      /^Fixture\/TicketApi: trustedPrincipals is \d+ characters as TRUSTED_PRINCIPALS, over 1024\. Trust fewer principals/,
    ],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });
});
