/** Builds stacks the way bin/app.ts does, from the context in cdk.json, for the infra tests. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { Template } from 'aws-cdk-lib/assertions';
import { buildRealtimeApp } from '../../bin/realtime-app';
import { RealtimeStack } from '../../lib/realtime-stack';
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
