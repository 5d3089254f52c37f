/**
 * The smaller deployability items of issue 19 (7), each on the template: the Fargate size checked at synth, FIFO
 * high throughput on the fan-out queue, the Redis AUTH acknowledgement and its rotation path, ALB deletion protection
 * in prod, optional VPC interface endpoints, distinct API names, and retention on every log group (custom resources').
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Validations } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { attributes, buildStack, buildStageApp, logicalIdOf, PROD_STAGE, REPO_ROOT, type Resources, templateOf, WITH_API_GATEWAY_WEBSOCKETS } from './support';

const DEPLOY_MD = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'DEPLOY.md'), 'utf8');

describe('sse.cpu / sse.memoryMiB: a Fargate task size, checked at synth', () => {
  test.each<[number, number, string]>([
    [256, 4096, 'For cpu 256 use memoryMiB 512, 1024 or 2048'],
    [512, 512, 'For cpu 512 use memoryMiB 1024, 2048, 3072 or 4096'],
    [1024, 1024, 'For cpu 1024 use memoryMiB 2048, 3072, 4096, 5120, 6144, 7168 or 8192'],
    [2048, 20_480, 'For cpu 2048 use memoryMiB 4096 to 16384 in steps of 1024'],
    [8192, 17_000, 'For cpu 8192 use memoryMiB 16384 to 61440 in steps of 4096'],
  ])('cpu %i with memoryMiB %i: one line naming the valid memories', (cpu, memoryMiB, fix) => {
    const run = () => buildStack({ sse: { cpu, memoryMiB } });
    expect(run).toThrow(`Realtime-test/Sse: cpu ${cpu} with memoryMiB ${memoryMiB} is not a Fargate task size. ${fix}`);
    try {
      run();
    } catch (e) {
      expect((e as Error).message.split('\n')).toHaveLength(1);
    }
  });

  test('a CPU Fargate does not offer: one line naming the CPUs it does', () => {
    expect(() => buildStack({ sse: { cpu: 300 } })).toThrow(/^Realtime-test\/Sse: cpu 300 is not a Fargate task CPU\. Use 256, 512, 1024, 2048, 4096, 8192 or 16384$/);
  });

  test.each([[256, 512], [512, 1024], [4096, 30_720], [16_384, 122_880]])('cpu %i with memoryMiB %i: builds', (cpu, memoryMiB) => {
    templateOf(buildStack({ sse: { cpu, memoryMiB } })).hasResourceProperties('AWS::ECS::TaskDefinition', { Cpu: String(cpu), Memory: String(memoryMiB) });
  });
});

describe('the WebSocket fan-out queue: FIFO high throughput', () => {
  test('per message group throughput and deduplication (the shard is the message group)', () => {
    const stack = buildStack(WITH_API_GATEWAY_WEBSOCKETS);
    const queue = templateOf(stack).toJSON().Resources[logicalIdOf(stack.webSocketFanout!.queue)];
    expect(queue.Properties).toMatchObject({ FifoQueue: true, FifoThroughputLimit: 'perMessageGroupId', DeduplicationScope: 'messageGroup' });
  });
});

describe('Redis AUTH token: a truthful acknowledgement and a working rotation path', () => {
  test('AwsSolutions-SMG4 names the ROTATE-then-SET sequence CloudFormation cannot express, and where the manual path is', () => {
    const stack = buildStack();
    const acks = stack.redis.authToken.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string | { reason: string }>));
    const found = acks.find(([id]) => id.endsWith('AwsSolutions-SMG4'))?.[1];
    const reason = typeof found === 'string' ? found : (found?.reason ?? '');
    expect(reason).toMatch(/ROTATE/);
    expect(reason).toMatch(/SET/);
    expect(reason).toMatch(/docs\/DEPLOY\.md/);
    // It does not claim a deploy rotates: the template carries no update strategy (CloudFormation has none).
    expect(reason).not.toMatch(/rotate with a deploy/i);
    expect(JSON.stringify(templateOf(stack).toJSON())).not.toMatch(/AuthTokenUpdateStrategy/);
  });

  test('docs/DEPLOY.md: the rotation in order (ROTATE, the secret, the tasks and functions, then SET)', () => {
    const section = DEPLOY_MD.slice(DEPLOY_MD.indexOf('### Rotating the Redis AUTH token'));
    expect(section.length).toBeGreaterThan(100);
    const steps = ['--auth-token-update-strategy ROTATE', 'put-secret-value', '--force-new-deployment', 'update-function-configuration', '--auth-token-update-strategy SET'];
    const at = steps.map((s) => section.indexOf(s));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });
});

describe('ALB deletion protection', () => {
  const albAttributes = (t: Template) => attributes(Object.values(t.findResources('AWS::ElasticLoadBalancingV2::LoadBalancer'))[0].Properties.LoadBalancerAttributes);
  test('prod (sse.deletionProtection in cdk.json): on', () => {
    expect(PROD_STAGE.sse.deletionProtection).toBe(true);
    expect(albAttributes(templateOf(buildStageApp('prod').stack))['deletion_protection.enabled']).toBe('true');
  });
  test('by default: off (a dev stack deletes cleanly)', () => {
    expect(albAttributes(templateOf(buildStack()))['deletion_protection.enabled']).not.toBe('true');
  });
});

describe('network.interfaceEndpoints: VPC endpoints for what the tasks and functions call, instead of the NAT gateway', () => {
  const services = (t: Template) =>
    Object.values(t.findResources('AWS::EC2::VPCEndpoint')).map((e) => [JSON.stringify(e.Properties.ServiceName).replace(/^.*(ecr\.api|ecr\.dkr|\.logs|\.sqs|\.secretsmanager|\.s3)".*$/, '$1').replace(/^\./, ''), e.Properties.VpcEndpointType ?? 'Gateway']);
  test('on: ECR (api, dkr), CloudWatch Logs, SQS, Secrets Manager as interface endpoints with private DNS, S3 (ECR layers) as a gateway endpoint', () => {
    const t = templateOf(buildStack({ network: { interfaceEndpoints: true } }));
    expect(services(t).sort()).toEqual(
      [['ecr.api', 'Interface'], ['ecr.dkr', 'Interface'], ['logs', 'Interface'], ['s3', 'Gateway'], ['secretsmanager', 'Interface'], ['sqs', 'Interface']].sort(),
    );
    for (const e of Object.values(t.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Interface' } }))) expect(e.Properties.PrivateDnsEnabled).toBe(true);
    // Never execute-api: a private-DNS execute-api endpoint would send PostToConnection to private APIs only (403).
    expect(JSON.stringify(t.findResources('AWS::EC2::VPCEndpoint'))).not.toMatch(/execute-api/);
  });
  test('by default: none', () => {
    templateOf(buildStack()).resourceCountIs('AWS::EC2::VPCEndpoint', 0);
  });
  test('with an existing VPC: refused like the other new-VPC settings', () => {
    const vpcAttributes = { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['a', 'b'], publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'], privateSubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] };
    expect(() => buildStack({ network: { interfaceEndpoints: true, vpcAttributes } })).toThrow(/^Realtime-test\/Network: interfaceEndpoints only apply to a new VPC/);
  });
  test('docs/DEPLOY.md warns that a private-DNS execute-api endpoint in an existing VPC makes PostToConnection fail with 403', () => {
    expect(DEPLOY_MD).toMatch(/execute-api[^\n]*private DNS[^]*PostToConnection[^]*403/);
  });
});

describe('API names: the three APIs are told apart in the console', () => {
  test('ticket, publish and WebSocket APIs: distinct names, each with the stack name', () => {
    const stack = buildStack(WITH_API_GATEWAY_WEBSOCKETS);
    const names = Object.values(templateOf(stack).findResources('AWS::ApiGatewayV2::Api')).map((a) => a.Properties.Name as string);
    expect(names).toHaveLength(3);
    expect(new Set(names).size).toBe(3);
    expect(names.sort()).toEqual([`${stack.stackName}-publish`, `${stack.stackName}-tickets`, `${stack.stackName}-websocket`]);
  });
});

describe('log retention: every Lambda writes to a log group of the stack with the stage\'s retention, custom resources\' included', () => {
  const check = (stack: RealtimeStack, days: number) => {
    const t = templateOf(stack);
    const groups = t.findResources('AWS::Logs::LogGroup') as Resources;
    const fns = Object.entries(t.findResources('AWS::Lambda::Function') as Resources);
    expect(fns.length).toBeGreaterThan(3);
    for (const [id, fn] of fns) {
      const ref = (fn.Properties.LoggingConfig as { LogGroup?: { Ref?: string } } | undefined)?.LogGroup?.Ref;
      expect([id, ref !== undefined && ref in groups]).toEqual([id, true]);
      expect([id, groups[ref as string].Properties.RetentionInDays]).toEqual([id, days]);
    }
    for (const [id, g] of Object.entries(groups)) expect([id, g.Properties.RetentionInDays]).toEqual([id, days]);
  };
  test('dev (7 days)', () => check(buildStageApp('dev').stack, 7));
  test('prod (90 days)', () => check(buildStageApp('prod').stack, 90));
  test('webSocket.mode both (14 days)', () => check(buildStack({ ...WITH_API_GATEWAY_WEBSOCKETS, logRetentionDays: 14 }), 14));
});
