/**
 * RealtimeFunction, the one bundling wrapper: runtime, architecture, tracing, VPC, the environment every function
 * gets, mandated settings over the caller's over defaults, and the checks on its props. (Its esbuild settings: bundling.test.ts.)
 */
import { Duration, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { LAMBDA_DIR, RealtimeFunction, type RealtimeFunctionProps } from '../../lib/realtime-function';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { blueprintFunctions, newApp, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('Lambdas: ten (with the history reader, the fan-out worker and its dead-letter consumer), all Node.js 24 on ARM64, bundled with source maps enabled, traced, in the VPC', () => {
    const fns = Object.values(blueprintFunctions(template));
    expect(fns).toHaveLength(10);
    for (const fn of fns) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        TracingConfig: { Mode: 'Active' },
        VpcConfig: expect.objectContaining({ SubnetIds: expect.any(Array) }),
      });
    }
  });

  test('Lambda environment: Redis, runtime limits and Powertools settings on every function', () => {
    for (const fn of Object.values(blueprintFunctions(template))) {
      expect((fn.Properties.Environment as { Variables: object }).Variables).toMatchObject({
        REDIS_URL: stack.resolve(stack.redis.url),
        REDIS_SECRET_ARN: stack.resolve(stack.redis.authToken.secretArn),
        KEY_PREFIX: 'rt:',
        TICKET_TTL_SECONDS: '30',
        MAX_PAYLOAD_BYTES: '32768',
        LOG_LEVEL: 'debug',
        POWERTOOLS_LOG_LEVEL: 'DEBUG',
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
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