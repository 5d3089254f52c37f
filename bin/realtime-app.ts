import { type App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { RealtimeStack } from '../lib/realtime-stack';
import { readStageConfig } from './config';

/**
 * Builds the stage named by the `stage` context (default dev) into `app`, with the cdk-nag AwsSolutions pack registered
 * as a validation plugin (findings fail `cdk synth`; acknowledgements live on the constructs they concern).
 */
export function buildRealtimeApp(app: App): RealtimeStack {
  const { stageName, config } = readStageConfig(app.node);
  const stack = new RealtimeStack(app, `Realtime-${stageName}`, {
    stageName,
    config,
    env: config.account && config.region ? { account: config.account, region: config.region } : undefined,
    description: `Realtime blueprint, stage ${stageName}: SSE and WebSockets on Fargate (or API Gateway, webSocket.mode), Redis pub/sub`,
  });
  Tags.of(stack).add('realtime:stage', stageName);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return stack;
}
