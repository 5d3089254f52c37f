/** Builds stacks the way bin/app.ts does, from the context in cdk.json, for the infra tests. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildRealtimeApp } from '../../bin/realtime-app';
import { DRAIN_MARGIN_MS, EXIT_MARGIN_SECONDS, FARGATE_MAX_STOP_TIMEOUT_SECONDS } from '../../lib/drain-timing';
import { Network } from '../../lib/network';
import { RealtimeStack } from '../../lib/realtime-stack';
import { RedisPubSub } from '../../lib/redis-pub-sub';
import type { RealtimeStageConfig } from '../../lib/stage-config';

export const REPO_ROOT = path.join(__dirname, '..', '..');
/** The context of cdk.json: pinned feature flags and the stages. */
export const CDK_CONTEXT: Record<string, unknown> = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')).context;
export const STAGES = Object.keys(CDK_CONTEXT.stages as object);

export interface BuildOptions {
  /** Extra context (e.g. `stage`). */
  readonly context?: Record<string, unknown>;
  /** Bundle the Lambdas with esbuild (slower); off by default: the template is the same apart from asset hashes. */
  readonly bundle?: boolean;
}

/** A fresh App with the cdk.json context, writing to a temporary directory. */
export function newApp(options: BuildOptions = {}): App {
  return new App({
    outdir: fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-infra-')),
    context: {
      ...CDK_CONTEXT,
      ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
      ...options.context,
    },
  });
}

/** The app bin/app.ts builds for `-c stage=<stage>`, with cdk-nag registered. */
export function buildStageApp(stage: string, options: BuildOptions = {}): { app: App; stack: RealtimeStack } {
  const app = newApp({ ...options, context: { stage, ...options.context } });
  return { app, stack: buildRealtimeApp(app) };
}

/** A stack from a config object (no cdk-nag plugin): for construct behaviour and validation tests. */
export function buildStack(config: RealtimeStageConfig = {}, stageName = 'test'): RealtimeStack {
  return new RealtimeStack(newApp(), `Realtime-${stageName}`, { stageName, config });
}

export function templateOf(stack: Stack): Template {
  return Template.fromStack(stack);
}

/** The logical id of the only resource of `type` whose properties match `props`. */
export function onlyLogicalId(template: Template, type: string, props?: Record<string, unknown>): string {
  const found = Object.keys(template.findResources(type, props ? { Properties: props } : undefined));
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0];
}

/** The logical id of the CloudFormation resource behind an L2 construct. */
export function logicalIdOf(construct: IConstruct): string {
  return Stack.of(construct).resolve((construct.node.defaultChild as CfnElement).logicalId);
}

/** Resources of a template, as `findResources` returns them. */
export type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/** A stack with a VPC and Redis, for constructing one construct under test (`Fixture/<id>`). */
export function fixture(env?: { account: string; region: string }) {
  const stack = new Stack(newApp(), 'Fixture', { env });
  const vpc = new Network(stack, 'Network').vpc;
  const redis = new RedisPubSub(stack, 'Redis', { vpc });
  return { stack, vpc, redis };
}

/** An ACM certificate ARN of the example account (the prod stage's). */
export const CERT = 'arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000';

/** Attributes of a load balancer or target group as a map. */
export function attributes(list: unknown): Record<string, string> {
  return Object.fromEntries((list as { Key: string; Value: string }[]).map((a) => [a.Key, a.Value]));
}

/** The environment of the SSE container as a map. */
export function containerEnv(template: Template): Record<string, unknown> {
  const [taskDef] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as Resources[string][];
  const [container] = taskDef.Properties.ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[];
  return Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]));
}

/** The SSE container definition (the task has one container). */
export function container(template: Template): Record<string, unknown> {
  const [taskDef] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as Resources[string][];
  const [c] = taskDef.Properties.ContainerDefinitions as Record<string, unknown>[];
  return c;
}

/** The stop sequence as deployed: target group deregistration delay, drain window, poll intervals, container stopTimeout. */
export function stopSequence(template: Template) {
  const [tg] = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')) as Resources[string][];
  const env = containerEnv(template);
  return {
    delaySeconds: Number(attributes(tg.Properties.TargetGroupAttributes)['deregistration_delay.timeout_seconds']),
    drainTimeoutMs: Number(env.DRAIN_TIMEOUT_MS),
    stopPollMs: Number(env.STOP_POLL_MS),
    targetHealthPollMs: Number(env.TARGET_HEALTH_POLL_MS),
    stopTimeoutSeconds: container(template).StopTimeout as number,
  };
}

/** Checks the relations drainTiming promises, on a deployed stop sequence. */
export function expectDrainInsideDelay(seq: ReturnType<typeof stopSequence>): void {
  // the later signal (the target health poll if the metadata never turns STOPPED) seen within one of its polls,
  // drained, with a margin, before the ALB cuts the streams
  expect(Math.max(seq.stopPollMs, seq.targetHealthPollMs) + seq.drainTimeoutMs + DRAIN_MARGIN_MS).toBeLessThanOrEqual(seq.delaySeconds * 1000);
  // SIGTERM fallback: the drain and the exit fit between SIGTERM and SIGKILL, within Fargate's ceiling
  expect(seq.stopTimeoutSeconds * 1000).toBeGreaterThanOrEqual(seq.drainTimeoutMs + EXIT_MARGIN_SECONDS * 1000);
  expect(seq.stopTimeoutSeconds).toBeLessThanOrEqual(FARGATE_MAX_STOP_TIMEOUT_SECONDS);
  expect(seq.drainTimeoutMs).toBeGreaterThan(0);
}

/** The blueprint's own functions (the CDK custom resource provider is not one): they all carry NODE_OPTIONS. */
export function blueprintFunctions(template: Template): Resources {
  return template.findResources('AWS::Lambda::Function', {
    Properties: { Environment: { Variables: { NODE_OPTIONS: Match.stringLikeRegexp('--enable-source-maps') } } },
  }) as Resources;
}

/** The `prod` stage as cdk.json gives it (what its tests compare the template with). */
export const PROD_STAGE = (CDK_CONTEXT.stages as Record<string, Record<string, Record<string, unknown>>>).prod;

/**
 * The stages of cdk.json with `stage`'s sections shallow-merged with `override` (a section of `override` replaces the
 * stage's section of the same name): the context a test passes to {@link buildStageApp} for a variant of a stage.
 */
export function stagesWith(stage: string, override: RealtimeStageConfig): Record<string, unknown> {
  const stages = CDK_CONTEXT.stages as Record<string, Record<string, unknown>>;
  return { ...stages, [stage]: { ...stages[stage], ...override } };
}

/** The API Gateway WebSocket path of a stage (its tests): `webSocket.mode` `both`, the migration mode. */
export const WITH_API_GATEWAY_WEBSOCKETS: RealtimeStageConfig = { webSocket: { mode: 'both' } };

/**
 * A `describe`'s stage fixture: the stage's stack and its template, built once before its tests; `override` replaces
 * sections of the stage (e.g. {@link WITH_API_GATEWAY_WEBSOCKETS}).
 */
export function useStageTemplate(stage: string, use: (stack: RealtimeStack, template: Template) => void, override?: RealtimeStageConfig): void {
  beforeAll(() => {
    const { stack } = buildStageApp(stage, override ? { context: { stages: stagesWith(stage, override) } } : {});
    use(stack, templateOf(stack));
  });
}
