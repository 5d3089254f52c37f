/** RealtimeDomain on its own: the certificate (new or given), the hosts, the records and mappings it adds, its validations. */
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as route53 from 'aws-cdk-lib/aws-route53';
import { RealtimeDomain, type RealtimeDomainProps } from '../../lib/realtime-domain';
import { CERT, newApp } from './support';

function fixture(props: Partial<RealtimeDomainProps> | ((stack: Stack) => Partial<RealtimeDomainProps>) = {}) {
  const stack = new Stack(newApp(), 'Fixture', { env: { account: '123456789012', region: 'eu-west-1' } });
  const hostedZone = route53.HostedZone.fromHostedZoneAttributes(stack, 'Zone', { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' });
  const domain = new RealtimeDomain(stack, 'Domain', { hostedZone, domainName: 'example.com', ...(typeof props === 'function' ? props(stack) : props) });
  return { stack, domain };
}

describe('RealtimeDomain', () => {
  test('hosts: events, ws, api, publish under the name; hostLabels rename them', () => {
    expect(fixture().domain).toMatchObject({ sseHost: 'events.example.com', webSocketHost: 'ws.example.com', ticketHost: 'api.example.com', publishHost: 'publish.example.com' });
    expect(fixture({ domainName: 'rt.example.com', hostLabels: { sse: 'stream', tickets: 'tickets' } }).domain).toMatchObject({ sseHost: 'stream.rt.example.com', ticketHost: 'tickets.rt.example.com' });
  });

  test('certificate: a given one is used, none is created', () => {
    const { stack, domain } = fixture((stack) => ({ certificate: acm.Certificate.fromCertificateArn(stack, 'Certificate', CERT) }));
    expect(domain.certificate.certificateArn).toBe(CERT);
    expect(domain.node.tryFindChild('Certificate')).toBeUndefined(); // (an empty template fails the validator: checked on the tree)
    expect(stack.node.findAll().filter((c) => c instanceof acm.Certificate)).toEqual([]);
  });

  test('mapHttpApi / mapWebSocketApi / aliasLoadBalancer: a custom domain and mapping per API, an A alias per host; the URLs returned', () => {
    const { stack, domain } = fixture();
    const http = new apigwv2.HttpApi(stack, 'Http');
    const ws = new apigwv2.WebSocketApi(stack, 'Ws');
    const wsStage = new apigwv2.WebSocketStage(stack, 'WsStage', { webSocketApi: ws, stageName: 'live' });
    const alb = elbv2.ApplicationLoadBalancer.fromApplicationLoadBalancerAttributes(stack, 'Alb', {
      loadBalancerArn: 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/sse/0123456789abcdef',
      securityGroupId: 'sg-0123456789abcdef0',
      loadBalancerDnsName: 'sse-123.eu-west-1.elb.amazonaws.com',
      loadBalancerCanonicalHostedZoneId: 'Z32O12XQLNTSW2',
    });
    expect(domain.mapHttpApi('Tickets', domain.ticketHost, http, http.defaultStage!)).toBe('https://api.example.com');
    expect(domain.mapWebSocketApi(ws, wsStage)).toBe('wss://ws.example.com');
    domain.aliasLoadBalancer(alb);
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::ApiGatewayV2::DomainName', 2);
    t.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 2);
    t.hasResourceProperties('AWS::Route53::RecordSet', { Name: 'events.example.com.', Type: 'A', AliasTarget: Match.objectLike({ HostedZoneId: 'Z32O12XQLNTSW2' }) });
    t.resourceCountIs('AWS::Route53::RecordSet', 3);
  });

  test.each<[string, Partial<RealtimeDomainProps>, RegExp]>([
    ['a name with a scheme', { domainName: 'https://rt.example.com' }, /^Fixture\/Domain: domainName "https:\/\/rt\.example\.com" is not a lowercase host name/],
    ['a name outside the zone', { domainName: 'rt.example.net' }, /^Fixture\/Domain: domainName "rt\.example\.net" is not in the hosted zone example\.com/],
    ['a label that is not a DNS label', { hostLabels: { sse: 'Events!' } }, /^Fixture\/Domain: hostLabels sse "Events!" are not DNS labels/],
  ])('%s: fails', (_what, props, message) => {
    expect(() => fixture(props)).toThrow(message);
  });
});
