import { Stack, type StackProps } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { invalid } from './errors';
import { type OutputName, RealtimeApi } from './realtime-api';
import { alarmTopicOf, logRetentionOf, networkProps, type RealtimeStageConfig, sseServiceProps } from './stage-config';

export { OUTPUT_NAMES, type OutputName } from './realtime-api';

/** Properties of a {@link RealtimeStack}. */
export interface RealtimeStackProps extends StackProps {
  /** Stage name (dev, prod, ...): the SSM path `/realtime/{stageName}/...`. */
  readonly stageName: string;
  /**
   * The stage's settings.
   * @default {} - every construct default
   */
  readonly config?: RealtimeStageConfig;
}

const STAGE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const RETENTION_DAYS = new Set<number>(Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number'));

/**
 * The blueprint's own stack: one {@link RealtimeApi} built from a stage of cdk.json. It converts the JSON stage config
 * into construct props (`lib/stage-config.ts`: durations, imported VPC, certificate and alarm topic) and writes the
 * endpoints to SSM under `/realtime/{stageName}/`. The construct's id is `Default`, which CDK leaves out of logical ids,
 * so every resource keeps the logical id it had when the stack composed the parts itself.
 */
export class RealtimeStack extends Stack {
  public readonly api: RealtimeApi;

  constructor(scope: Construct, id: string, props: RealtimeStackProps) {
    super(scope, id, props);
    const config = props.config ?? {};
    if (!STAGE_NAME.test(props.stageName)) {
      invalid(this, `stageName "${props.stageName}" is not valid`, 'Use 1 to 32 lowercase letters, digits or "-", starting with a letter (it becomes the SSM path /realtime/{stageName}/)');
    }
    if (config.logRetentionDays !== undefined && !RETENTION_DAYS.has(config.logRetentionDays)) {
      invalid(this, `logRetentionDays (${config.logRetentionDays}) is not a CloudWatch Logs retention`, `Use one of ${[...RETENTION_DAYS].join(', ')}`);
    }
    const logRetention = logRetentionOf(config.logRetentionDays);
    // The stack is the scope of the imports (construct ids Vpc, Certificate, AlarmTopic), as before.
    const { vpc, flowLogRetention: _flowLogRetention, ...network } = networkProps(this, config.network, logRetention);
    const { account: _account, region: _region, network: _network, sse, alarmTopicArn, logRetentionDays: _days, ...rest } = config;

    this.api = new RealtimeApi(this, 'Default', {
      ...rest,
      vpc,
      network,
      sse: sseServiceProps(this, sse),
      logRetention,
      alarmTopic: alarmTopicOf(this, alarmTopicArn),
      parameterPath: `/realtime/${props.stageName}`,
    });
  }

  public get network() {
    return this.api.network;
  }
  public get redis() {
    return this.api.redis;
  }
  public get webSocket() {
    return this.api.webSocket;
  }
  public get webSocketMode() {
    return this.api.webSocketMode;
  }
  public get sse() {
    return this.api.sse;
  }
  public get ticketApi() {
    return this.api.ticketApi;
  }
  public get publishApi() {
    return this.api.publishApi;
  }
  public get observability() {
    return this.api.observability;
  }
  public get webSocketFanout() {
    return this.api.webSocketFanout;
  }
  /** Output values by name. */
  public get endpoints(): Readonly<Partial<Record<OutputName, string>>> {
    return this.api.endpoints;
  }
}
