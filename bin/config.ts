import type { Node } from 'constructs';
import { z } from 'zod';
import { IAM_PRINCIPAL_ARN_PATTERN, ORIGIN_PATTERN, trustedPrincipalFix } from '../lib/errors';
import type { RealtimeStageConfig } from '../lib/stage-config';

/** The stage built when `-c stage=...` is not given. */
export const DEFAULT_STAGE = 'dev';

/** A stage config that cannot be used; the message is one line naming the bad key. */
export class StageConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageConfigError';
  }
}

const int = () => z.number().int();
const throttle = { throttleRateLimit: int().optional(), throttleBurstLimit: int().optional() };
const origin = z.string().regex(ORIGIN_PATTERN, 'must be an origin like https://app.example.com (scheme and host, no "*", path or trailing slash)');

const trustedPrincipal = z.string().superRefine((arn, ctx) => {
  if (!IAM_PRINCIPAL_ARN_PATTERN.test(arn)) ctx.addIssue({ code: 'custom', message: `must be an IAM role or user ARN (${trustedPrincipalFix(arn)})` });
});

const JwtAuth = z.strictObject({
  type: z.literal('jwt'),
  issuer: z.string().regex(/^https:\/\/\S+$/, 'must be the https URL of the token issuer (iss)'),
  audience: z.array(z.string().min(1)).min(1, 'needs at least one audience (aud, or the Cognito app client id)'),
});
const IamAuth = z.strictObject({ type: z.literal('iam') });

const VpcAttributes = z.strictObject({
  vpcId: z.string().regex(/^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/, 'must be a VPC id like vpc-0abc123'),
  availabilityZones: z.array(z.string()).min(2, 'needs at least 2 Availability Zones'),
  publicSubnetIds: z.array(z.string().regex(/^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/, 'must be a subnet id')).min(2),
  privateSubnetIds: z.array(z.string().regex(/^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/, 'must be a subnet id')).min(2),
});

/** Schema of one `stages.<name>` entry in cdk.json context. Unknown keys are errors (they are usually typos). */
export const StageConfigSchema = z
  .strictObject({
    account: z.string().regex(/^\d{12}$/, 'must be a 12-digit AWS account id').optional(),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a region like eu-west-1').optional(),
    network: z
      .strictObject({
        maxAzs: int().optional(),
        natGateways: int().optional(),
        flowLogs: z.boolean().optional(),
        vpcId: z.string().regex(/^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/, 'must be a VPC id like vpc-0abc123').optional(),
        vpcAttributes: VpcAttributes.optional(),
      })
      .optional(),
    redis: z
      .strictObject({
        engine: z.enum(['valkey', 'redis']).optional(),
        engineVersion: z.string().optional(),
        nodeType: z.string().optional(),
        nodes: int().optional(),
        port: int().optional(),
        keyPrefix: z.string().optional(),
        snapshotRetentionDays: int().optional(),
        removalPolicy: z.enum(['snapshot', 'destroy']).optional(),
      })
      .optional(),
    sse: z
      .strictObject({
        cpu: int().optional(),
        memoryMiB: int().optional(),
        minTasks: int().optional(),
        maxTasks: int().optional(),
        targetConnectionsPerTask: int().optional(),
        targetCpuPercent: int().optional(),
        heartbeatMs: int().optional(),
        pollTimeoutMs: int().optional(),
        idleTimeoutSeconds: int().optional(),
        deregistrationDelaySeconds: int().optional(),
        stickinessSeconds: int().optional(),
        nofileLimit: int().optional(),
        certificateArn: z.string().regex(/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]+$/, 'must be an ACM certificate ARN').optional(),
        domainName: z.string().optional(),
        containerInsights: z.boolean().optional(),
      })
      .optional(),
    webSocket: z.strictObject({ stageName: z.string().optional(), messageReservedConcurrency: int().optional(), ...throttle }).optional(),
    ticketApi: z.strictObject({ auth: z.discriminatedUnion('type', [JwtAuth, IamAuth]).optional(), ...throttle }).optional(),
    publishApi: z.strictObject({ reservedConcurrency: int().optional(), ...throttle }).optional(),
    limits: z.strictObject({ userPublishPerMinute: int().optional(), userNewChannelsPerHour: int().optional() }).optional(),
    trustedPrincipals: z.array(trustedPrincipal).optional(),
    allowedOrigins: z.array(origin).optional(),
    namespaces: z.record(z.string(), z.unknown()).optional(),
    ticketTtlSeconds: int().optional(),
    maxPayloadBytes: int().optional(),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
    logRetentionDays: int().optional(),
    alarmTopicArn: z.string().regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/, 'must be an SNS topic ARN').optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.account === undefined) !== (c.region === undefined)) {
      ctx.addIssue({ code: 'custom', path: [c.account === undefined ? 'account' : 'region'], message: 'set account and region together, or neither (environment-agnostic)' });
    }
    if (c.network?.vpcId && (c.account === undefined || c.region === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['network', 'vpcId'], message: 'looking a VPC up needs the stage\'s account and region; set both, or describe the VPC with vpcAttributes (works offline)' });
    }
  });

type Assignable<T extends RealtimeStageConfig> = T;
/** The parsed config; it fails to compile when the schema and {@link RealtimeStageConfig} drift apart. */
export type ParsedStageConfig = Assignable<z.infer<typeof StageConfigSchema>>;

/** A parsed stage. */
export interface StageSelection {
  readonly stageName: string;
  readonly config: RealtimeStageConfig;
}

/**
 * Reads `stage` (default {@link DEFAULT_STAGE}) and `stages` from the context (cdk.json, `-c`), and parses that stage.
 * Throws {@link StageConfigError} with one line naming the bad key.
 */
export function readStageConfig(node: Node): StageSelection {
  const stageName = String(node.tryGetContext('stage') ?? DEFAULT_STAGE);
  const stages: unknown = node.tryGetContext('stages');
  if (typeof stages !== 'object' || stages === null || Array.isArray(stages)) {
    throw new StageConfigError('cdk.json context has no "stages" object: add "stages": { "dev": {} } to the context of cdk.json');
  }
  const raw = (stages as Record<string, unknown>)[stageName];
  if (raw === undefined) {
    const known = Object.keys(stages).join(', ') || '(none)';
    throw new StageConfigError(`Unknown stage "${stageName}": cdk.json context "stages" defines ${known}. Pass -c stage=<one of those>, or add "${stageName}" to "stages".`);
  }
  const parsed = StageConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const [first, ...rest] = parsed.error.issues;
    const path = ['stages', stageName, ...first.path.map(String)];
    // An unknown key is named itself, not its parent: it is usually a typo of a known one.
    const unknown = first.code === 'unrecognized_keys' ? first.keys : [];
    const key = [...path, ...unknown.slice(0, 1)].join('.');
    const message = unknown.length > 0 ? 'unknown key (a typo? see docs/DEPLOY.md for the keys)' : first.message;
    const more = rest.length + Math.max(0, unknown.length - 1);
    throw new StageConfigError(`Invalid stage config ${key}: ${message}${more > 0 ? ` (and ${more} more)` : ''}`);
  }
  return { stageName, config: parsed.data };
}
