/**
 * The load-balancer part of the SSE service (SseLoadBalancerBase, built through SseService): ALB, listeners, target
 * group (stickiness, liveness health check, deregistration delay), access logs, and the checks on its props.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { SseService, type SseServiceProps } from '../../lib/sse-service';
import { attributes, CERT, container, containerEnv, fixture, PROD_STAGE, useStageTemplate } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let template: Template;
  useStageTemplate('dev', (_s, t) => (template = t));

  test('load balancer stickiness: on, by load balancer cookie', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'stickiness.enabled', Value: 'true' },
        { Key: 'stickiness.type', Value: 'lb_cookie' },
      ]),
    });
  });

  test('load balancer: internet-facing, HTTP/2 on, invalid header fields dropped', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'routing.http2.enabled', Value: 'true' },
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
      ]),
    });
  });

  test('no certificate: one HTTP listener on port 80 forwarding to the tasks, and cookies not Secure', () => {
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    expect(containerEnv(template).COOKIE_SECURE).toBe('false');
  });

  test('health checks: the target group checks /healthz (liveness), and no health check uses the deep Redis readiness check', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { HealthCheckPath: '/healthz' });
    for (const tg of Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup'))) {
      expect(tg.Properties.HealthCheckPath).toBe('/healthz');
    }
    // an ECS container health check, if one is ever added, must use liveness too
    const healthCheck = container(template).HealthCheck;
    expect(JSON.stringify(healthCheck ?? {})).not.toMatch(/deep/);
    if (healthCheck) expect(JSON.stringify(healthCheck)).toMatch(/\/healthz/);
    expect(JSON.stringify(template.toJSON())).not.toMatch(/healthz\?deep/);
  });

  test('target group: health check on /healthz, short deregistration delay for endless streams', () => {
    const tgAttrs = new Capture();
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/healthz',
      Matcher: { HttpCode: '200' },
      Port: 8080,
      TargetType: 'ip',
      TargetGroupAttributes: tgAttrs,
    });
    expect(Number(attributes(tgAttrs.asArray())['deregistration_delay.timeout_seconds'])).toBeLessThanOrEqual(60);
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let template: Template;
  const prod = PROD_STAGE;
  useStageTemplate('prod', (_s, t) => (template = t));

  test('certificate: HTTPS listener on 443 with the certificate, and HTTP on 80 redirecting to it', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTPS',
      Port: 443,
      Certificates: [{ CertificateArn: prod.sse.certificateArn }],
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'redirect', RedirectConfig: Match.objectLike({ Protocol: 'HTTPS', Port: '443' }) })],
    });
  });

  test('certificate: cookies Secure, SSE URL is https on the configured domain', () => {
    expect(containerEnv(template).COOKIE_SECURE).toBe('true');
    template.hasOutput('SseUrl', { Value: `https://${prod.sse.domainName}/events` });
  });

  test('access logs: on, to an encrypted, SSL-only bucket (the region is known)', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'access_logs.s3.enabled', Value: 'true' }]),
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: Match.objectLike({ BlockPublicAcls: true, RestrictPublicBuckets: true }),
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });
});

describe('SseLoadBalancerBase validation (through SseService)', () => {
  const make = (props: Partial<SseServiceProps>, env?: { account: string; region: string }) => () => {
    const { stack, vpc, redis } = fixture(env);
    new SseService(stack, 'Sse', { vpc, redis, ...props });
  };
  const cert = (): acm.ICertificate => acm.Certificate.fromCertificateArn(new Stack(new App(), 'Certs'), 'Cert', CERT);

  test.each<[string, Partial<SseServiceProps>, RegExp]>([
    ['idle timeout above the ALB maximum', { idleTimeout: Duration.seconds(4001) }, /idleTimeout \(4001\) must be an integer from 1 to 4000 seconds/],
    ['deregistration delay above 3600 s', { deregistrationDelay: Duration.seconds(3601) }, /deregistrationDelay \(3601\) must be an integer from 0 to 3600 seconds/],
    ['stickiness above 7 days', { stickinessDuration: Duration.days(8) }, /stickinessDuration \(691200\) must be an integer from 1 to 604800 seconds/],
    ['domain name with a scheme', { domainName: 'https://events.example.com' }, /^Fixture\/Sse: domainName "https:\/\/events\.example\.com" is not a host name\. Set a host name like events\.example\.com/],
    ['access logs on an environment-agnostic stack', { accessLogs: true }, /^Fixture\/Sse: accessLogs needs the stack's region, but the stack is environment-agnostic\. Give the stack an env/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('certificate without domainName: fails', () => {
    expect(make({ certificate: cert() })).toThrow(/^Fixture\/Sse: certificate is set without domainName\. Set domainName to the host name the certificate covers/);
  });

  test('access log bucket with access logs off: fails', () => {
    expect(() => {
      const { stack, vpc, redis } = fixture({ account: '123456789012', region: 'eu-west-1' });
      new SseService(stack, 'Sse', { vpc, redis, accessLogs: false, accessLogsBucket: new s3.Bucket(stack, 'Logs') });
    }).toThrow(/^Fixture\/Sse: accessLogsBucket is set but accessLogs is false\. Drop accessLogsBucket, or turn accessLogs on$/);
  });
});
