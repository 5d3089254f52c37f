/**
 * Guardrails as tests: cdk-nag AwsSolutions (v3, a validation plugin) and the CloudFormation validator that
 * aws-cdk-lib ships, run on every stage of cdk.json exactly as `cdk synth` runs them (bundling included), must report
 * nothing unacknowledged, and every acknowledgement carries a reason. Each guardrail is also shown to bite.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CfnResource, Stack, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import type { RealtimeStageConfig } from '../../lib/stage-config';
import { buildStageApp, CDK_CONTEXT, newApp, REPO_ROOT, STAGES, stagesWith } from './support';

interface ReportViolation {
  readonly ruleName: string;
  readonly severity?: string;
  readonly violatingConstructs?: { constructPath: string }[];
}
interface ValidationReport {
  readonly pluginReports: { pluginName: string; conclusion: string; violations: ReportViolation[] }[];
}

function readReport(outdir: string): ValidationReport {
  return JSON.parse(fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
}

/** Every `Validations.of(x).acknowledge(...)` in the tree, with where it sits. */
function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, { reason?: string } | string>))
      .map(([id, v]) => ({ path: c.node.path, id, reason: typeof v === 'string' ? v : (v?.reason ?? '') })),
  );
}

describe.each<[string, RealtimeStageConfig]>([
  ['webSocket.mode both', { webSocket: { mode: 'both' } }],
  ['webSocket.mode apigateway', { webSocket: { mode: 'apigateway' } }],
  ['webSocket.mode both with accessLogs', { webSocket: { mode: 'both', accessLogs: true } }],
  ['network.interfaceEndpoints', { network: { interfaceEndpoints: true } }],
  ['redis.shards 3 (cluster mode)', { redis: { shards: 3, nodes: 2 } }],
])('%s (dev stage): cdk-nag and the CloudFormation validator', (_name, override) => {
  test('synthesis: no unacknowledged finding of any plugin', () => {
    const { app } = buildStageApp('dev', { context: { stages: stagesWith('dev', override) } });
    app.synth();
    const findings = readReport(app.outdir).pluginReports.flatMap((r) =>
      r.violations.map((v) => `${r.pluginName} ${v.severity ?? ''} ${v.ruleName} at ${(v.violatingConstructs ?? []).map((c) => c.constructPath).join(', ')}`),
    );
    expect(findings).toEqual([]);
  });
});

describe.each(STAGES)('stage %s: cdk-nag and the CloudFormation validator', (stage) => {
  let outdir: string;
  let missingContext: unknown[];
  let acks: { path: string; id: string; reason: string }[];
  beforeAll(() => {
    const { app } = buildStageApp(stage, { bundle: true });
    const assembly = app.synth(); // in tests (NODE_ENV=test) a failing validation throws here with the report
    outdir = app.outdir;
    missingContext = assembly.manifest.missing ?? [];
    // aws-cdk-lib itself acknowledges W3010 (literal AZs) on every stack; the rest are ours.
    acks = acknowledgements(app).filter((a) => a.id !== 'CloudFormation-Validate::W3010');
  });

  test('synthesis: no unacknowledged finding of any plugin, errors or warnings', () => {
    const findings = readReport(outdir).pluginReports.flatMap((r) =>
      r.violations.map((v) => `${r.pluginName} ${v.severity ?? ''} ${v.ruleName} at ${(v.violatingConstructs ?? []).map((c) => c.constructPath).join(', ')}`),
    );
    expect(findings).toEqual([]);
  });

  test('no lookups: every context value is in cdk.json, so `cdk synth` needs no AWS credentials', () => {
    expect(missingContext).toEqual([]);
  });

  test('acknowledgements: each on a construct below the stack (never the app or stack) with a real reason', () => {
    expect(acks.length).toBeGreaterThan(0);
    expect(acks.filter((a) => a.path.split('/').length < 2)).toEqual([]);
    expect(acks.filter((a) => a.reason.length < 40)).toEqual([]);
  });
});

describe('the guardrails bite', () => {
  test('cdk-nag: a non-compliant resource fails synthesis with its rule', () => {
    const app = newApp();
    const stack = new Stack(app, 'Bad');
    new sqs.Queue(stack, 'Queue', { enforceSSL: false });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).toThrow(/AwsSolutions-SQS4/);
  });

  test('CloudFormation validator: an invalid property fails synthesis (the flag makes findings errors)', () => {
    expect(CDK_CONTEXT['@aws-cdk/core:validateAgainstDefaultRules']).toBe(true);
    const app = newApp();
    new CfnResource(new Stack(app, 'Bad'), 'Queue', { type: 'AWS::SQS::Queue', properties: { VisibilityTimeout: 'soon' } });
    expect(() => app.synth()).toThrow(/CloudFormation Validate/);
  });
});

describe('the CDK CLI', () => {
  /** Runs the CLI from the repository root without AWS credentials (and without NODE_ENV=test). */
  function cdk(args: string[]) {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!/^AWS_|^CDK_|^NODE_ENV$|^JEST/.test(k)) env[k] = v;
    Object.assign(env, {
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
      AWS_CONFIG_FILE: '/nonexistent',
      CDK_DISABLE_CLI_TELEMETRY: 'true',
    });
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-cli-'));
    const result = spawnSync('npx', ['cdk', 'synth', '--quiet', '--no-notices', '-o', outdir, ...args], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 120_000 });
    return { ...result, outdir };
  }

  test('`cdk synth` with no arguments: the dev stage synthesises without AWS credentials', () => {
    const result = cdk([]);
    expect(result.status).toBe(0);
    const template = JSON.parse(fs.readFileSync(path.join(result.outdir, 'Realtime-dev.template.json'), 'utf8'));
    expect(Object.keys(template.Outputs)).toEqual(expect.arrayContaining(['TicketUrl', 'SseUrl', 'LiveUrl', 'PublishUrl', 'RedisEndpoint']));
  }, 120_000);

  test('`cdk synth -c stage=typo`: fails with one readable line naming the stage', () => {
    const result = cdk(['-c', 'stage=typo']);
    expect(result.status).not.toBe(0);
    const lines = result.stderr.split('\n').filter((l) => l.includes('typo'));
    expect(lines[0]).toMatch(/^Unknown stage "typo": cdk\.json context "stages" defines dev, prod\./);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }, 120_000);
});
