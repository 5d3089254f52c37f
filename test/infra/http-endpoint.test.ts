/**
 * HttpEndpoint, the building block of the ticket and publish APIs: throttled, access-logged $default stages, CORS from
 * allowedOrigins, literal POST routes, and the checks on its props (through TicketApi, whose endpoint is TicketApi/Http).
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { TicketApi, type TicketApiProps } from '../../lib/ticket-api';
import { buildStack, fixture, useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let template: Template;
  useStageTemplate('dev', (_s, t) => (template = t));

  test('HTTP API stages: throttled and access-logged; CORS on the ticket API from allowedOrigins, none on publish', () => {
    template.resourcePropertiesCountIs('AWS::ApiGatewayV2::Stage', { StageName: '$default', DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: Match.anyValue() }), AccessLogSettings: Match.anyValue() }, 2);
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      Description: 'Realtime ticket API',
      CorsConfiguration: Match.objectLike({ AllowOrigins: ['http://localhost:5173'], AllowMethods: ['POST'] }),
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      Description: 'Realtime publish API (IAM)',
      CorsConfiguration: Match.absent(),
    });
  });
});

describe('HttpEndpoint validation (through TicketApi)', () => {
  const make = (props: Partial<TicketApiProps>) => () => {
    const { stack, vpc, redis } = fixture();
    new TicketApi(stack, 'TicketApi', { vpc, redis, sseUrl: 'https://events.example.com/events', webSocketUrl: 'wss://ws.example.com/live', ...props });
  };

  test.each<[string, Partial<TicketApiProps>, RegExp]>([
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Fixture\/TicketApi\/Http: allowedOrigins entry "\*" is not an origin\. List origins as scheme:\/\/host\[:port\]/],
    ['origin with a path', { allowedOrigins: ['https://app.example.com/'] }, /allowedOrigins entry "https:\/\/app\.example\.com\/" is not an origin/],
    ['zero rate limit', { throttleRateLimit: 0 }, /^Fixture\/TicketApi\/Http: throttleRateLimit \(0\) must be an integer from 1 to 10000 per second/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });
});

describe('HttpEndpoint.addPostRoute validation', () => {
  test('path with a parameter or a trailing slash: fails', () => {
    const stack = buildStack();
    expect(() => stack.publishApi.endpoint.addPostRoute('Extra', '/a/{id}', stack.publishApi.handler)).toThrow(
      /^Realtime-test\/PublishApi\/Http: path "\/a\/\{id\}" is not literal path segments\. Use a path like \/revoke or \/backend\/tickets$/,
    );
    expect(() => stack.publishApi.endpoint.addPostRoute('Extra2', '/a/', stack.publishApi.handler)).toThrow(/is not literal path segments/);
  });
});