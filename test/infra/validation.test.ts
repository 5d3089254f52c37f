/**
 * Every validation has a test that it fails, with a message that names the construct path (or the cdk.json key)
 * and the fix. Construct checks run in constructors, before any synthesis, so these tests are cheap.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { readStageConfig, StageConfigError } from '../../bin/config';
import { BlueprintValidationError } from '../../lib/errors';
import { Network, type NetworkProps } from '../../lib/network';
import { Observability } from '../../lib/observability';
import { LAMBDA_DIR, RealtimeFunction, type RealtimeFunctionProps } from '../../lib/realtime-function';
import { RealtimeStack } from '../../lib/realtime-stack';
import { RedisPubSub, type RedisPubSubProps } from '../../lib/redis-pub-sub';
import { SseService, type SseServiceProps } from '../../lib/sse-service';
import type { RealtimeStageConfig } from '../../lib/stage-config';
import { TicketApi, type TicketApiProps } from '../../lib/ticket-api';
import { RealtimeWebSocketApi, type RealtimeWebSocketApiProps } from '../../lib/websocket-api';
import { buildStack, CDK_CONTEXT, newApp, STAGES } from './support';

/** A stack with a VPC and Redis, for constructing one construct under test (`Fixture/<id>`). */
function fixture(env?: { account: string; region: string }) {
  const stack = new Stack(newApp(), 'Fixture', { env });
  const vpc = new Network(stack, 'Network').vpc;
  const redis = new RedisPubSub(stack, 'Redis', { vpc });
  return { stack, vpc, redis };
}

const CERT = 'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000';

describe('Network validation', () => {
  const make = (props: NetworkProps) => () => new Network(new Stack(newApp(), 'Fixture'), 'Network', props);

  test.each<[string, NetworkProps, RegExp]>([
    ['maxAzs below 2', { maxAzs: 1 }, /^Fixture\/Network: maxAzs \(1\) must be an integer from 2 to 6\. Set maxAzs within that range$/],
    ['no NAT gateway', { natGateways: 0 }, /^Fixture\/Network: natGateways \(0\) must be an integer from 1 to 2\. Set natGateways within that range$/],
    ['more NAT gateways than AZs', { maxAzs: 2, natGateways: 3 }, /natGateways \(3\) must be an integer from 1 to 2/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('existing vpc with new-VPC options: fails, naming the options to drop', () => {
    const stack = new Stack(newApp(), 'Fixture');
    const vpc = new ec2.Vpc(stack, 'Existing');
    expect(() => new Network(stack, 'Network', { vpc, maxAzs: 3, flowLogs: false })).toThrow(
      /^Fixture\/Network: maxAzs, flowLogs only apply to a new VPC, but an existing vpc was given\. Drop maxAzs, flowLogs, or drop vpc to create one$/,
    );
  });

  test('errors are BlueprintValidationError', () => {
    expect(make({ maxAzs: 7 })).toThrow(BlueprintValidationError);
  });
});

describe('RedisPubSub validation', () => {
  const make = (props: Partial<RedisPubSubProps>) => () => {
    const stack = new Stack(newApp(), 'Fixture');
    new RedisPubSub(stack, 'Redis', { vpc: new Network(stack, 'Network').vpc, ...props });
  };

  test.each<[string, Partial<RedisPubSubProps>, RegExp]>([
    ['unknown engine', { engine: 'memcached' as never }, /^Fixture\/Redis: engine "memcached" is not supported\. Use "valkey" or "redis"$/],
    ['Redis older than 7', { engine: 'redis', engineVersion: '6.2' }, /^Fixture\/Redis: engineVersion "6\.2" is not supported for redis\. Use Redis 7\.x$/],
    ['Valkey older than 7.2', { engineVersion: '7.0' }, /engineVersion "7\.0" is not supported for valkey\. Use Valkey 7\.2 or 8\.x$/],
    ['node type without cache. prefix', { nodeType: 't4g.micro' }, /nodeType "t4g\.micro" is not an ElastiCache node type\. Use a name like cache\.t4g\.micro/],
    ['no nodes', { nodes: 0 }, /nodes \(0\) must be an integer from 1 to 6/],
    ['more than 6 nodes', { nodes: 7 }, /nodes \(7\) must be an integer from 1 to 6/],
    ['privileged port', { port: 80 }, /port \(80\) must be an integer from 1024 to 65535/],
    ['key prefix with a space', { keyPrefix: 'my app:' }, /keyPrefix "my app:" is not valid\. Use 1 to 32 letters, digits, ":", "_" or "-"/],
    ['snapshots kept too long', { snapshotRetentionDays: 36 }, /snapshotRetentionDays \(36\) must be an integer from 0 to 35 days/],
    ['removal policy retain', { removalPolicy: 'retain' as never }, /^Fixture\/Redis: removalPolicy "retain" is not supported\. Use "snapshot" \(a final snapshot before deletion\) or "destroy"$/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });
});

describe('RealtimeFunction (the bundling wrapper)', () => {
  const entry = `${LAMBDA_DIR}/ws-connect.ts`;
  const make = (props: Partial<RealtimeFunctionProps>) => () => new RealtimeFunction(new Stack(newApp(), 'Fixture'), 'Fn', { entry, ...props });

  test.each<[string, Partial<RealtimeFunctionProps>, RegExp]>([
    ['memory below 128 MiB', { memorySize: 64 }, /^Fixture\/Fn: memorySize \(64\) must be an integer from 128 to 10240 MiB/],
    ['timeout above 15 minutes', { timeout: Duration.seconds(901) }, /^Fixture\/Fn: timeout \(901 s\) must be from 1 to 900 seconds\. Set a timeout Lambda accepts$/],
    ['reserved concurrency of 0 (would throttle every call)', { reservedConcurrentExecutions: 0 }, /^Fixture\/Fn: reservedConcurrentExecutions \(0\) must be an integer from 1 to 10000\. Set reservedConcurrentExecutions within that range$/],
  ])('%s: fails', (_name, props, message) => {
    expect(make(props)).toThrow(message);
  });

  test('vpcSubnets without vpc: fails', () => {
    expect(make({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } })).toThrow(/^Fixture\/Fn: vpcSubnets is set without vpc\. Pass vpc as well, or drop vpcSubnets$/);
  });

  test('mandated settings win, then the caller, then defaults: NODE_OPTIONS keeps the caller flags and gains source maps', () => {
    const stack = new Stack(newApp(), 'Fixture');
    const fn = new RealtimeFunction(stack, 'Fn', {
      entry,
      logLevel: 'warn',
      environment: { NODE_OPTIONS: '--max-old-space-size=200', LOG_LEVEL: 'error', EXTRA: 'kept' },
    });
    const vars = stack.resolve((fn.function.node.defaultChild as lambda.CfnFunction).environment).variables;
    expect(vars).toMatchObject({
      NODE_OPTIONS: '--max-old-space-size=200 --enable-source-maps',
      LOG_LEVEL: 'error', // the caller's value beats the default derived from logLevel
      POWERTOOLS_LOG_LEVEL: 'WARN',
      EXTRA: 'kept',
    });
  });

  test('NODE_OPTIONS that already enables source maps is left as the caller wrote it', () => {
    const stack = new Stack(newApp(), 'Fixture');
    const fn = new RealtimeFunction(stack, 'Fn', { entry, environment: { NODE_OPTIONS: '--enable-source-maps --no-warnings' } });
    expect(stack.resolve((fn.function.node.defaultChild as lambda.CfnFunction).environment).variables.NODE_OPTIONS).toBe('--enable-source-maps --no-warnings');
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

describe('TicketApi and HttpEndpoint validation', () => {
  const make = (props: Partial<TicketApiProps>) => () => {
    const { stack, vpc, redis } = fixture();
    new TicketApi(stack, 'TicketApi', { vpc, redis, sseUrl: 'https://events.example.com/events', webSocketUrl: 'wss://ws.example.com/live', ...props });
  };

  test.each<[string, Partial<TicketApiProps>, RegExp]>([
    ['JWT issuer over http', { auth: { type: 'jwt', issuer: 'http://issuer.example.com', audience: ['app'] } }, /^Fixture\/TicketApi: auth\.issuer "http:\/\/issuer\.example\.com" is not an https URL\. Set auth\.issuer to the token issuer/],
    ['JWT without audience', { auth: { type: 'jwt', issuer: 'https://issuer.example.com', audience: [] } }, /^Fixture\/TicketApi: auth\.audience is empty\. List at least one accepted audience/],
    ['unknown auth type', { auth: { type: 'none' } as never }, /auth\.type "none" is not supported\. Use \{ type: "jwt", issuer, audience \} or \{ type: "iam" \}/],
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Fixture\/TicketApi\/Http: allowedOrigins entry "\*" is not an origin\. List origins as scheme:\/\/host\[:port\]/],
    ['origin with a path', { allowedOrigins: ['https://app.example.com/'] }, /allowedOrigins entry "https:\/\/app\.example\.com\/" is not an origin/],
    ['zero rate limit', { throttleRateLimit: 0 }, /^Fixture\/TicketApi\/Http: throttleRateLimit \(0\) must be an integer from 1 to 10000 per second/],
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

describe('HttpEndpoint.addPostRoute validation', () => {
  test('path with a parameter or a trailing slash: fails', () => {
    const stack = buildStack();
    expect(() => stack.publishApi.endpoint.addPostRoute('Extra', '/a/{id}', stack.publishApi.handler)).toThrow(
      /^Realtime-test\/PublishApi\/Http: path "\/a\/\{id\}" is not literal path segments\. Use a path like \/revoke or \/backend\/tickets$/,
    );
    expect(() => stack.publishApi.endpoint.addPostRoute('Extra2', '/a/', stack.publishApi.handler)).toThrow(/is not literal path segments/);
  });
});

describe('SseService validation', () => {
  const make = (props: Partial<SseServiceProps>, env?: { account: string; region: string }) => () => {
    const { stack, vpc, redis } = fixture(env);
    new SseService(stack, 'Sse', { vpc, redis, ...props });
  };
  const cert = (): acm.ICertificate => acm.Certificate.fromCertificateArn(new Stack(new App(), 'Certs'), 'Cert', CERT);

  test.each<[string, Partial<SseServiceProps>, RegExp]>([
    [
      'heartbeat above half the idle timeout',
      { heartbeatMs: 40_000 },
      /^Fixture\/Sse: heartbeatMs \(40000\) must be at most half the ALB idle timeout \(60 s\), or idle streams are cut between heartbeats\. Lower heartbeatMs or raise idleTimeout$/,
    ],
    ['heartbeat with a short idle timeout', { idleTimeout: Duration.seconds(20) }, /heartbeatMs \(15000\) must be at most half the ALB idle timeout \(20 s\)/],
    [
      'long-poll longer than the idle timeout',
      { pollTimeoutMs: 60_000 },
      /^Fixture\/Sse: pollTimeoutMs \(60000\) must be below the ALB idle timeout \(60 s\), or long polls are cut before they answer\. Lower pollTimeoutMs or raise idleTimeout$/,
    ],
    ['idle timeout above the ALB maximum', { idleTimeout: Duration.seconds(4001) }, /idleTimeout \(4001\) must be an integer from 1 to 4000 seconds/],
    ['nofile below 65536', { nofileLimit: 1024 }, /^Fixture\/Sse: nofileLimit \(1024\) must be an integer from 65536 to 1048576\. Set nofileLimit within that range$/],
    ['nofile above the Fargate maximum', { nofileLimit: 2_000_000 }, /nofileLimit \(2000000\) must be an integer from 65536 to 1048576/],
    ['deregistration delay above 3600 s', { deregistrationDelay: Duration.seconds(3601) }, /deregistrationDelay \(3601\) must be an integer from 0 to 3600 seconds/],
    [
      'deregistration delay too short to drain',
      { deregistrationDelay: Duration.seconds(5) },
      /^Fixture\/Sse: deregistrationDelay \(5 s\) leaves no time to drain the streams: .*\. Set deregistrationDelay \(sse\.deregistrationDelaySeconds\) to at least 10 seconds$/,
    ],
    ['stickiness above 7 days', { stickinessDuration: Duration.days(8) }, /stickinessDuration \(691200\) must be an integer from 1 to 604800 seconds/],
    ['maxTasks below minTasks', { minTasks: 5, maxTasks: 3 }, /maxTasks \(3\) must be an integer from 5 to 1000/],
    ['no tasks', { minTasks: 0 }, /minTasks \(0\) must be an integer from 1 to 1000/],
    ['connection target too low', { targetConnectionsPerTask: 10 }, /targetConnectionsPerTask \(10\) must be an integer from 100 to 1000000/],
    ['CPU target too low', { targetCpuPercent: 5 }, /targetCpuPercent \(5\) must be an integer from 10 to 95 percent/],
    ['heartbeat below 1 s', { heartbeatMs: 500 }, /heartbeatMs \(500\) must be an integer from 1000 to 300000 ms/],
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Fixture\/Sse: allowedOrigins entry "\*" is not an origin/],
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

  test('valid settings at the limits: builds', () => {
    expect(make({ heartbeatMs: 30_000, pollTimeoutMs: 59_000, idleTimeout: Duration.seconds(60), nofileLimit: 1_048_576 })).not.toThrow();
  });
});

describe('Observability validation', () => {
  test('connection ceiling of 0 percent: fails', () => {
    const stack = buildStack();
    expect(
      () =>
        new Observability(stack, 'Extra', {
          sse: stack.sse,
          redis: stack.redis,
          webSocket: stack.webSocket,
          httpEndpoints: [],
          functions: [],
          connectionCeilingPercent: 0,
        }),
    ).toThrow(/^Realtime-test\/Extra: connectionCeilingPercent \(0\) must be an integer from 1 to 100 percent/);
  });
});

describe('RealtimeStack validation', () => {
  const make = (config: RealtimeStageConfig, stageName = 'test') => () => new RealtimeStack(newApp(), 'Realtime', { stageName, config });

  test.each<[string, RealtimeStageConfig, RegExp]>([
    ['log retention that CloudWatch does not offer', { logRetentionDays: 8 }, /^Realtime: logRetentionDays \(8\) is not a CloudWatch Logs retention\. Use one of 1, 3, 5, 7, 14, 30/],
    ['ticket TTL below 5 s', { ticketTtlSeconds: 2 }, /^Realtime: ticketTtlSeconds \(2\) must be an integer from 5 to 300 seconds/],
    ['payload above the WebSocket frame size', { maxPayloadBytes: 40_000 }, /maxPayloadBytes \(40000\) must be an integer from 256 to 32768 bytes/],
    [
      'namespaces too big for the Lambda environment',
      { namespaces: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`namespace-${i}`, { subscribe: 'authenticated', publish: 'authenticated' }])) },
      /^Realtime: namespaces is \d+ bytes as JSON \(NAMESPACES_JSON\), over 2048\. Merge namespaces/,
    ],
    [
      'vpcId and vpcAttributes together',
      { network: { vpcId: 'vpc-0123456789abcdef0', vpcAttributes: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: [], publicSubnetIds: [], privateSubnetIds: [] } } },
      /^Realtime: network\.vpcId and network\.vpcAttributes are both set\. Keep one/,
    ],
    [
      'new-VPC options on an existing VPC',
      {
        network: {
          natGateways: 2,
          vpcAttributes: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['a', 'b'], publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'], privateSubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] },
        },
      },
      /^Realtime\/Network: natGateways only apply to a new VPC/,
    ],
    ['publish reserved concurrency of 0', { publishApi: { reservedConcurrency: 0 } }, /^Realtime\/PublishApi\/Publisher: reservedConcurrentExecutions \(0\) must be an integer from 1 to 10000/],
    ['WebSocket message reserved concurrency above 10000', { webSocket: { messageReservedConcurrency: 20_000 } }, /^Realtime\/WebSocket\/Message: reservedConcurrentExecutions \(20000\) must be an integer from 1 to 10000/],
    ['negative publish limit', { limits: { userPublishPerMinute: -1 } }, /^Realtime: limits\.userPublishPerMinute \(-1\) must be an integer from 0 to 1000000\. Set limits\.userPublishPerMinute within that range$/],
    ['new-channel limit above the runtime maximum', { limits: { userNewChannelsPerHour: 1_000_001 } }, /^Realtime: limits\.userNewChannelsPerHour \(1000001\) must be an integer from 0 to 1000000/],
    ['SSE heartbeat too close to the idle timeout', { sse: { heartbeatMs: 20_000, idleTimeoutSeconds: 30 } }, /^Realtime\/Sse: heartbeatMs \(20000\) must be at most half the ALB idle timeout \(30 s\)/],
  ])('%s: fails', (_name, config, message) => {
    expect(make(config)).toThrow(message);
  });

  test('stage name that cannot be an SSM path segment: fails', () => {
    expect(make({}, 'Prod_1')).toThrow(/^Realtime: stageName "Prod_1" is not valid\. Use 1 to 32 lowercase letters, digits or "-", starting with a letter/);
  });
});

describe('stage config (cdk.json context, zod)', () => {
  const read = (stage: unknown, stages: unknown = { [String(stage)]: {} }) => () =>
    readStageConfig(new App({ context: { stages, ...(stage === undefined ? {} : { stage }) } }).node);
  const readConfig = (config: unknown) => read('x', { x: config });

  test('no stage given: the dev stage is read', () => {
    expect(read(undefined, { dev: { logLevel: 'warn' } })()).toEqual({ stageName: 'dev', config: { logLevel: 'warn' } });
  });

  test('unknown stage: fails naming the stages that exist', () => {
    expect(read('typo', { dev: {}, prod: {} })).toThrow(
      /^Unknown stage "typo": cdk\.json context "stages" defines dev, prod\. Pass -c stage=<one of those>, or add "typo" to "stages"\.$/,
    );
  });

  test('no stages in the context: fails saying what to add', () => {
    expect(read('dev', null)).toThrow(/^cdk\.json context has no "stages" object: add "stages": \{ "dev": \{\} \} to the context of cdk\.json$/);
  });

  test.each<[string, unknown, RegExp]>([
    ['unknown key (a typo)', { sse: { heartbeat: 1000 } }, /^Invalid stage config stages\.x\.sse\.heartbeat: unknown key/],
    ['unknown top-level key', { origins: [] }, /^Invalid stage config stages\.x\.origins: unknown key/],
    ['string where a number goes', { sse: { heartbeatMs: '15000' } }, /^Invalid stage config stages\.x\.sse\.heartbeatMs: .*expected number, received string$/],
    ['fractional number', { redis: { nodes: 1.5 } }, /^Invalid stage config stages\.x\.redis\.nodes: .*expected int/],
    ['bad account id', { account: '1234', region: 'eu-west-1' }, /^Invalid stage config stages\.x\.account: must be a 12-digit AWS account id$/],
    ['bad region', { account: '123456789012', region: 'Europe' }, /^Invalid stage config stages\.x\.region: must be a region like eu-west-1$/],
    ['account without region', { account: '123456789012' }, /^Invalid stage config stages\.x\.region: set account and region together, or neither \(environment-agnostic\)$/],
    ['VPC lookup without an environment', { network: { vpcId: 'vpc-0123456789abcdef0' } }, /^Invalid stage config stages\.x\.network\.vpcId: looking a VPC up needs the stage's account and region/],
    ['bad VPC id', { network: { vpcId: 'my-vpc' } }, /^Invalid stage config stages\.x\.network\.vpcId: must be a VPC id like vpc-0abc123/],
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Invalid stage config stages\.x\.allowedOrigins\.0: must be an origin like https:\/\/app\.example\.com/],
    ['JWT without audience', { ticketApi: { auth: { type: 'jwt', issuer: 'https://issuer.example.com' } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.audience: /],
    ['JWT issuer over http', { ticketApi: { auth: { type: 'jwt', issuer: 'http://issuer.example.com', audience: ['a'] } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.issuer: must be the https URL of the token issuer \(iss\)$/],
    ['unknown auth type', { ticketApi: { auth: { type: 'none' } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.type: /],
    ['bad certificate ARN', { sse: { certificateArn: 'my-cert' } }, /^Invalid stage config stages\.x\.sse\.certificateArn: must be an ACM certificate ARN$/],
    ['bad log level', { logLevel: 'verbose' }, /^Invalid stage config stages\.x\.logLevel: /],
    ['bad alarm topic ARN', { alarmTopicArn: 'ops' }, /^Invalid stage config stages\.x\.alarmTopicArn: must be an SNS topic ARN$/],
    ['unknown Redis engine', { redis: { engine: 'memcached' } }, /^Invalid stage config stages\.x\.redis\.engine: /],
    ['Redis removal policy retain', { redis: { removalPolicy: 'retain' } }, /^Invalid stage config stages\.x\.redis\.removalPolicy: /],
    ['publish limit as a string', { limits: { userPublishPerMinute: '60' } }, /^Invalid stage config stages\.x\.limits\.userPublishPerMinute: .*expected number, received string$/],
    ['unknown limit (a typo)', { limits: { publishPerMinute: 60 } }, /^Invalid stage config stages\.x\.limits\.publishPerMinute: unknown key/],
    ['trusted principal that is not an ARN', { trustedPrincipals: ['backend'] }, /^Invalid stage config stages\.x\.trustedPrincipals\.0: must be an IAM role or user ARN \(List IAM role or user ARNs, like arn:aws:iam::123456789012:role\/my-backend\)$/],
    [
      'trusted principal given as an assumed-role session',
      { trustedPrincipals: ['arn:aws:iam::123456789012:role/ok', 'arn:aws:sts::123456789012:assumed-role/backend/session'] },
      /^Invalid stage config stages\.x\.trustedPrincipals\.1: must be an IAM role or user ARN \(List the role of that session instead: arn:aws:iam::123456789012:role\/backend\)$/,
    ],
    ['trustedPrincipals as one string', { trustedPrincipals: 'arn:aws:iam::123456789012:role/ok' }, /^Invalid stage config stages\.x\.trustedPrincipals: .*expected array/],
    ['reserved concurrency as a fraction', { publishApi: { reservedConcurrency: 2.5 } }, /^Invalid stage config stages\.x\.publishApi\.reservedConcurrency: .*expected int/],
  ])('%s: fails with one line naming the key', (_name, config, message) => {
    const run = readConfig(config);
    expect(run).toThrow(StageConfigError);
    expect(run).toThrow(message);
    expect(run).toThrow(/^[^\n]+$/); // one line
  });

  test('several problems: the first is named, the rest counted', () => {
    expect(readConfig({ logLevel: 'loud', sse: { cpu: 'big' }, redis: { nodez: 2 } })).toThrow(/^Invalid stage config stages\.x\.\S+: .* \(and 2 more\)$/);
  });

  test('every stage in cdk.json parses', () => {
    for (const name of STAGES) expect(read(name, CDK_CONTEXT.stages)().stageName).toBe(name);
  });
});
