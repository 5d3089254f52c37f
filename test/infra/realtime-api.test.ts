/**
 * RealtimeApi, the construct other CDK apps drop in: defaults, every part taken from the caller (VPC, alarm topic,
 * Cognito pool, certificate), one domain for every endpoint (with and without), the guardrails at zero with all of it,
 * and its validations.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Stack, Validations, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as route53 from 'aws-cdk-lib/aws-route53';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { RealtimeApi, type RealtimeApiProps } from '../../lib/realtime-api';
import { CERT, newApp } from './support';

const ENV = { account: '123456789012', region: 'eu-west-1' };

/** The part of `validation-report.json` (written by every synth with validation plugins) read here, as in guardrails.test.ts. */
interface ValidationReport {
  readonly pluginReports: { pluginName: string; conclusion: string; violations: { ruleName: string; severity?: string; violatingConstructs?: { constructPath: string }[] }[] }[];
}

function build(props: (stack: Stack) => RealtimeApiProps = () => ({})) {
  const app = newApp();
  const stack = new Stack(app, 'Consumer', { env: ENV });
  const api = new RealtimeApi(stack, 'Realtime', props(stack));
  return { app, stack, api, template: Template.fromStack(stack) };
}
const zoneOf = (stack: Stack) => route53.HostedZone.fromHostedZoneAttributes(stack, 'Zone', { hostedZoneId: 'Z0123456789ABCDEFGHIJ', zoneName: 'example.com' });

describe('defaults: new RealtimeApi(stack, id) in any stack', () => {
  let built: ReturnType<typeof build>;
  beforeAll(() => {
    built = build();
  });

  test('parts: a new VPC, Redis, the ticket and publish APIs, the SSE service (WebSockets on its tasks), WAF on its load balancer; no API Gateway WebSocket API', () => {
    const t = built.template;
    t.resourceCountIs('AWS::EC2::VPC', 1);
    t.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 1);
    t.resourceCountIs('AWS::ApiGatewayV2::Api', 2);
    t.resourcePropertiesCountIs('AWS::ApiGatewayV2::Api', { ProtocolType: 'WEBSOCKET' }, 0);
    expect(built.api.webSocketMode).toBe('tasks');
    t.resourceCountIs('AWS::ECS::Service', 1);
    t.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
  });

  test('outputs: the six endpoints and the backend events bus, named with the construct\'s prefix; no SSM parameters without parameterPath', () => {
    const names = Object.keys(built.template.findOutputs('*')).map((k) => k.replace(/^Realtime/, '').replace(/[0-9A-F]{8}$/, ''));
    expect(names.sort()).toEqual(['EventBusArn', 'LiveUrl', 'PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl']);
    const [bus] = Object.entries(built.template.findOutputs('*')).filter(([k]) => k.includes('EventBusArn')).map(([, v]) => v);
    expect(bus.Value).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/BackendEventsBus/), 'Arn'] });
    built.template.resourceCountIs('AWS::SSM::Parameter', 0);
  });

  test('endpoints: the AWS names (execute-api, the load balancer over HTTP)', () => {
    const s = built.stack;
    expect(s.resolve(built.api.endpoints.TicketUrl)).toEqual(s.resolve(built.api.ticketApi.url));
    expect(built.api.endpoints.WebSocketUrl).toBeUndefined();
    expect(s.resolve(built.api.endpoints.LiveUrl)).toEqual(s.resolve(built.api.sse.liveUrl));
    expect(JSON.stringify(s.resolve(built.api.endpoints.SseUrl))).toMatch(/^\{"Fn::Join":\["",\["http:\/\//);
  });

  test('outputs: false adds none; parameterPath writes one parameter per endpoint under it', () => {
    const { template } = build(() => ({ outputs: false, parameterPath: '/realtime/shop' }));
    expect(template.findOutputs('*')).toEqual({});
    for (const name of ['TicketUrl', 'SseUrl', 'PollUrl', 'LiveUrl', 'PublishUrl', 'RedisEndpoint', 'EventBusArn']) {
      template.hasResourceProperties('AWS::SSM::Parameter', { Name: `/realtime/shop/${name}` });
    }
  });

  test('backendEvents.enabled false: no bus, so no EventBusArn output', () => {
    const { template } = build(() => ({ backendEvents: { enabled: false } }));
    expect(Object.keys(template.findOutputs('*')).some((k) => k.includes('EventBusArn'))).toBe(false);
  });
});

describe("the caller's parts", () => {
  let built: ReturnType<typeof build>;
  let vpc: ec2.IVpc;
  let topic: sns.Topic;
  beforeAll(() => {
    built = build((stack) => {
      vpc = new ec2.Vpc(stack, 'TheirVpc', { maxAzs: 2 });
      topic = new sns.Topic(stack, 'TheirAlarms');
      const pool = cognito.UserPool.fromUserPoolId(stack, 'Pool', 'eu-west-1_AbCdEf');
      const client = cognito.UserPoolClient.fromUserPoolClientId(stack, 'Client', 'client-1');
      return { vpc, alarmTopic: topic, ticketApi: { auth: { type: 'cognito', userPool: pool, userPoolClients: [client] } }, sse: { certificate: { certificateArn: CERT } as never, domainName: 'events.example.com' } };
    });
  });

  test('vpc: used for everything, no second VPC', () => {
    built.template.resourceCountIs('AWS::EC2::VPC', 1);
    expect(built.api.network.vpc).toBe(vpc);
  });

  test('alarmTopic: every alarm notifies it on ALARM and OK', () => {
    const alarms = Object.values(built.template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(10);
    const ref = built.stack.resolve(topic.topicArn);
    for (const a of alarms) expect([a.Properties.AlarmActions, a.Properties.OKActions]).toEqual([[ref], [ref]]);
  });

  test('ticketApi.auth cognito: a JWT authorizer with the pool as issuer and the app clients as audience', () => {
    built.template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Audience: ['client-1'], Issuer: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('/eu-west-1_AbCdEf$')])] }) },
    });
  });

  test('sse.certificate and domainName: HTTPS listener with it, and the load balancer\'s DNS name as an output to point the record at', () => {
    built.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 443, Protocol: 'HTTPS', Certificates: [{ CertificateArn: CERT }] });
    expect(built.stack.resolve(built.api.endpoints.SseUrl)).toBe('https://events.example.com/events');
    expect(Object.keys(built.template.findOutputs('*')).some((k) => /SseLoadBalancerDnsName/.test(k))).toBe(true);
  });
});

describe('domain: one certificate and one name for every endpoint', () => {
  let built: ReturnType<typeof build>;
  beforeAll(() => {
    // webSocket.mode both: the API Gateway WebSocket API gets its custom domain too.
    built = build((stack) => ({ webSocket: { mode: 'both' }, domain: { hostedZone: zoneOf(stack), domainName: 'rt.example.com' } }));
  });

  test('certificate: one, for the name and *.name, DNS-validated in the zone', () => {
    built.template.resourceCountIs('AWS::CertificateManager::Certificate', 1);
    built.template.hasResourceProperties('AWS::CertificateManager::Certificate', {
      DomainName: 'rt.example.com',
      SubjectAlternativeNames: ['*.rt.example.com'],
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: 'rt.example.com', HostedZoneId: 'Z0123456789ABCDEFGHIJ' }],
    });
  });

  test('API Gateway: three custom domains with that certificate (TLS 1.2), each mapped to its API stage at the root', () => {
    const cert = Object.keys(built.template.findResources('AWS::CertificateManager::Certificate'))[0];
    for (const host of ['ws.rt.example.com', 'api.rt.example.com', 'publish.rt.example.com']) {
      built.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
        DomainName: host,
        DomainNameConfigurations: [Match.objectLike({ CertificateArn: { Ref: cert }, EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' })],
      });
    }
    const s = built.stack;
    const mappings = Object.values(built.template.findResources('AWS::ApiGatewayV2::ApiMapping')).map((m) => [m.Properties.ApiId, m.Properties.Stage, m.Properties.ApiMappingKey]);
    expect(mappings).toEqual(
      expect.arrayContaining([
        [s.resolve(built.api.webSocket!.api.apiId), s.resolve(built.api.webSocket!.stage.stageName), undefined],
        [s.resolve(built.api.ticketApi.endpoint.api.apiId), s.resolve(built.api.ticketApi.endpoint.stage.stageName), undefined],
        [s.resolve(built.api.publishApi.endpoint.api.apiId), s.resolve(built.api.publishApi.endpoint.stage.stageName), undefined],
      ]),
    );
    expect(mappings).toHaveLength(3);
  });

  test('load balancer: HTTPS on 443 with the same certificate, HTTP redirects', () => {
    const cert = Object.keys(built.template.findResources('AWS::CertificateManager::Certificate'))[0];
    built.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 443, Protocol: 'HTTPS', Certificates: [{ CertificateArn: { Ref: cert } }] });
    built.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 80, DefaultActions: [Match.objectLike({ Type: 'redirect' })] });
  });

  test('DNS: an A alias per host in the zone (events, ws, api, publish)', () => {
    const records = Object.values(built.template.findResources('AWS::Route53::RecordSet')).filter((r) => r.Properties.AliasTarget);
    expect(records.map((r) => [r.Properties.Name, r.Properties.Type, r.Properties.HostedZoneId]).sort()).toEqual(
      ['api', 'events', 'publish', 'ws'].map((h) => [`${h}.rt.example.com.`, 'A', 'Z0123456789ABCDEFGHIJ']),
    );
  });

  test('outputs and the URLs handed out with tickets use the domain', () => {
    const s = built.stack;
    expect(Object.fromEntries(Object.entries(built.api.endpoints).filter(([k]) => k !== 'RedisEndpoint').map(([k, v]) => [k, s.resolve(v)]))).toEqual({
      TicketUrl: 'https://api.rt.example.com/tickets',
      SseUrl: 'https://events.rt.example.com/events',
      PollUrl: 'https://events.rt.example.com/poll',
      WebSocketUrl: 'wss://ws.rt.example.com',
      LiveUrl: 'wss://events.rt.example.com/live',
      PublishUrl: 'https://publish.rt.example.com/publish',
    });
    // webSocket.mode both: tickets name the tasks' /live on the domain.
    built.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SSE_URL: 'https://events.rt.example.com/events', WS_URL: 'wss://events.rt.example.com/live' }) },
    });
    expect(Object.keys(built.template.findOutputs('*')).some((k) => /SseLoadBalancerDnsName/.test(k))).toBe(false);
  });

  test('without domain: no certificate, custom domain, mapping or record', () => {
    const { template } = build();
    for (const type of ['AWS::CertificateManager::Certificate', 'AWS::ApiGatewayV2::DomainName', 'AWS::ApiGatewayV2::ApiMapping', 'AWS::Route53::RecordSet']) template.resourceCountIs(type, 0);
  });

  test('guardrails: cdk-nag AwsSolutions and the CloudFormation validator at zero with domain, WAF and the caller\'s parts', () => {
    const app = newApp();
    const stack = new Stack(app, 'Consumer', { env: ENV });
    new RealtimeApi(stack, 'Realtime', { domain: { hostedZone: zoneOf(stack), domainName: 'rt.example.com' }, alarmTopic: sns.Topic.fromTopicArn(stack, 'Alarms', 'arn:aws:sns:eu-west-1:123456789012:alarms') });
    // cdk-nag as the validation plugin it is, with what it returns kept: a clean run leaves no trace in the report file.
    const nag = new AwsSolutionsChecks(app);
    const nagReports: PolicyValidationPluginReport[] = [];
    Validations.of(app).addPlugins({
      name: nag.name,
      version: nag.version,
      validate: (context) => {
        const report = nag.validate(context);
        nagReports.push(report);
        return report;
      },
    });
    app.synth(); // any finding fails synthesis here (cdk-nag fails on warnings too); the test reads what ran and what it found
    // cdk-nag ran once over this app, and found nothing unacknowledged, errors or warnings…
    expect(nagReports).toHaveLength(1);
    expect(nagReports[0].violations.map((v) => `${v.severity} ${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
    // …nor did any plugin of the report (the CloudFormation validator's findings land there).
    const report = JSON.parse(fs.readFileSync(path.join(app.outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
    const findings = report.pluginReports.flatMap((r) => r.violations.map((v) => `${r.pluginName} ${v.severity ?? ''} ${v.ruleName} at ${(v.violatingConstructs ?? []).map((c) => c.constructPath).join(', ')}`));
    expect(findings).toEqual([]);
  });
});

describe('RealtimeApi validation', () => {
  test.each<[string, (stack: Stack) => RealtimeApiProps, RegExp]>([
    ['domain with sse.certificate', (s) => ({ domain: { hostedZone: zoneOf(s), domainName: 'rt.example.com' }, sse: { domainName: 'events.example.com' } }), /^Consumer\/Realtime: domain is set together with sse\.certificate or sse\.domainName\. Drop sse\.certificate/],
    ['a parameterPath without a leading slash', () => ({ parameterPath: 'realtime/x' }), /^Consumer\/Realtime: parameterPath "realtime\/x" is not an SSM path/],
    ['a log retention CloudWatch does not offer', () => ({ logRetention: 8 as never }), /^Consumer\/Realtime: logRetention \(8\) is not a CloudWatch Logs retention/],
    ['new-VPC settings next to a vpc', (s) => ({ vpc: new ec2.Vpc(s, 'V'), network: { natGateways: 2 } }), /^Consumer\/Realtime\/Network: natGateways only apply to a new VPC/],
    ['a domain outside the zone', (s) => ({ domain: { hostedZone: zoneOf(s), domainName: 'rt.example.org' } }), /^Consumer\/Realtime\/Domain: domainName "rt\.example\.org" is not in the hosted zone example\.com/],
    ['two endpoints on one host label', (s) => ({ domain: { hostedZone: zoneOf(s), domainName: 'example.com', hostLabels: { tickets: 'ws' } } }), /^Consumer\/Realtime\/Domain: hostLabels must differ/],
    ['a WAF rate window WAF does not offer', () => ({ waf: { rateLimitWindowSeconds: 90 } }), /^Consumer\/Realtime\/Waf: rateLimitWindowSeconds \(90\) is not a rate-based rule window\. Use 60, 120, 300 or 600/],
    ['a history size over what one replay allows', () => ({ namespaces: { feed: { subscribe: 'public', historySize: 20_000 } } }), /^Consumer\/Realtime: namespaces\.feed\.historySize \(20000\) must be an integer from 0 to 10000 events/],
    ['a history over 64 MiB per channel', () => ({ namespaces: { feed: { subscribe: 'public', historySize: 4000 } } }), /^Consumer\/Realtime: namespaces\.feed\.historySize \(4000\) × maxPayloadBytes \(32768\) is over 67108864 bytes per channel\. Keep at most 2048 events/],
  ])('%s: fails', (_what, props, message) => {
    expect(() => build(props)).toThrow(message);
  });
});
