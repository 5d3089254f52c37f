import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { CORE_ENV } from '../contract/settings';
import { ESBUILD_OPTIONS } from '../contract/bundling';
import { Construct } from 'constructs';
import { acknowledgeManagedPolicy, acknowledgeWildcardResource } from './acknowledge';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

/** Runtime of every Lambda of the blueprint: the newest Node.js that Lambda runs, the one the bundles target. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/**
 * The bundling options of every Lambda: `contract/bundling.ts` (shared with `npm run build` and the SSE image)
 * in `NodejsFunction` terms. The AWS SDK v3 is bundled on purpose (`bundleAwsSDK`, no external modules): pinned by
 * package-lock and tree-shaken, no surprise from the runtime's copy.
 */
export const LAMBDA_BUNDLING: nodejs.BundlingOptions = {
  minify: ESBUILD_OPTIONS.minify,
  sourceMap: ESBUILD_OPTIONS.sourcemap,
  // DEFAULT is esbuild's `--sourcemap`: a linked .map file, as `sourcemap: true` in the build script.
  sourceMapMode: nodejs.SourceMapMode.DEFAULT,
  sourcesContent: ESBUILD_OPTIONS.sourcesContent,
  target: ESBUILD_OPTIONS.target,
  format: ESBUILD_OPTIONS.format === 'cjs' ? nodejs.OutputFormat.CJS : nodejs.OutputFormat.ESM,
  bundleAwsSDK: ESBUILD_OPTIONS.external.length === 0,
  externalModules: [...ESBUILD_OPTIONS.external],
  esbuildArgs: { '--legal-comments': ESBUILD_OPTIONS.legalComments },
};
/** Graviton: cheaper per GB-second than x86 for the same work. */
export const LAMBDA_ARCHITECTURE = lambda.Architecture.ARM_64;

/**
 * Variables read by the Lambda platform and its libraries (Node.js itself, Powertools), not by the blueprint's runtime
 * parsers: so they are not part of `contract/settings.ts`, but they are still spelled once, here.
 */
export const PLATFORM_ENV = {
  nodeOptions: 'NODE_OPTIONS',
  powertoolsLogLevel: 'POWERTOOLS_LOG_LEVEL',
  powertoolsServiceName: 'POWERTOOLS_SERVICE_NAME',
} as const;

/** Log levels understood by both Powertools (Lambdas) and pino (SSE service). */
export type RuntimeLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Folder of the Lambda entry files, relative to this file. */
export const LAMBDA_DIR = path.join(__dirname, '..', 'lambda');

/**
 * Root of this package: the nearest folder above this file with a package.json. In the repository that is the
 * repository; installed, `node_modules/realtime-blueprint` (this file is then `dist-lib/lib/realtime-function.js`).
 */
export const PACKAGE_ROOT = packageRoot(__dirname);

/**
 * The prebuilt bundle of a Lambda entry that the package ships (`dist/lambda/<name>/index.js`, written by
 * `npm run build` with the same esbuild settings), used only when the TypeScript entry itself is absent: installed from
 * the package, the functions deploy these bundles and need no esbuild; in the repository they bundle from source.
 */
export function prebuiltBundle(entry: string): string | undefined {
  if (fs.existsSync(entry)) return undefined;
  const dir = path.join(PACKAGE_ROOT, 'dist', 'lambda', path.basename(entry).replace(/\.[cm]?[jt]s$/, ''));
  return fs.existsSync(path.join(dir, 'index.js')) ? dir : undefined;
}

function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.join(__dirname, '..');
  }
}

/** Properties of a {@link RealtimeFunction}. */
export interface RealtimeFunctionProps {
  /** Path of the TypeScript entry file; it must export `handler`. */
  readonly entry: string;
  /**
   * Service name in every log line (`POWERTOOLS_SERVICE_NAME`).
   * @default - the construct id
   */
  readonly serviceName?: string;
  /** @default - no description */
  readonly description?: string;
  /**
   * Environment of the caller. Mandated keys (`NODE_OPTIONS` gets `--enable-source-maps`) are merged in, never replaced.
   * @default {}
   */
  readonly environment?: Record<string, string>;
  /**
   * Memory in MiB (128 to 10240).
   * @default 256
   */
  readonly memorySize?: number;
  /**
   * Longest invocation.
   * @default Duration.seconds(10)
   */
  readonly timeout?: Duration;
  /**
   * Log level of the handler (`LOG_LEVEL`, `POWERTOOLS_LOG_LEVEL`).
   * @default 'info'
   */
  readonly logLevel?: RuntimeLogLevel;
  /**
   * How long the function's log group keeps events.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Concurrency reserved for (and capping) this function (1 to 10000): a flood of calls then throttles this function
   * instead of taking the account's whole concurrency. It is taken from the account's quota, of which Lambda keeps at
   * least 100 unreserved, so a reservation fails to deploy on an account whose quota is below it plus 100.
   * @default - none: the function draws on the account's unreserved pool
   */
  readonly reservedConcurrentExecutions?: number;
  /**
   * X-Ray tracing mode.
   * @default lambda.Tracing.ACTIVE
   */
  readonly tracing?: lambda.Tracing;
  /**
   * VPC to run in (needed to reach Redis).
   * @default - not in a VPC
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets within `vpc`; they need egress (NAT) to reach Secrets Manager and the API Gateway management endpoint.
   * @default - the VPC's private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
}

/**
 * The one bundling wrapper for every Lambda of the blueprint.
 *
 * Mandated: Node.js 24 on ARM64; the esbuild settings of `contract/bundling.ts` ({@link LAMBDA_BUNDLING}: minified,
 * with source maps that `--enable-source-maps` applies to stack traces, the AWS SDK v3 clients bundled so the deployed
 * code runs exactly the versions the tests ran); a log group with retention; Powertools logger settings.
 * The caller's settings come next and defaults last.
 */
export class RealtimeFunction extends Construct implements iam.IGrantable, ec2.IConnectable {
  /**
   * The underlying function: pass it to integrations, authorizers and alarms. A `NodejsFunction` bundled at synth in
   * the repository; a `lambda.Function` on the prebuilt bundle when installed from the package ({@link prebuiltBundle}).
   */
  public readonly function: lambda.Function;
  /** The function's log group. */
  public readonly logGroup: logs.LogGroup;
  public readonly grantPrincipal: iam.IPrincipal;

  constructor(scope: Construct, id: string, props: RealtimeFunctionProps) {
    super(scope, id);
    checkRange(this, 'memorySize', props.memorySize, 128, 10240, ' MiB');
    checkRange(this, 'reservedConcurrentExecutions', props.reservedConcurrentExecutions, 1, 10000);
    if (props.timeout && !props.timeout.isUnresolved() && (props.timeout.toSeconds() < 1 || props.timeout.toSeconds() > 900)) {
      invalid(this, `timeout (${props.timeout.toSeconds()} s) must be from 1 to 900 seconds`, 'Set a timeout Lambda accepts');
    }
    if (props.vpcSubnets && !props.vpc) {
      invalid(this, 'vpcSubnets is set without vpc', 'Pass vpc as well, or drop vpcSubnets');
    }
    const logLevel = props.logLevel ?? DEFAULTS.logLevel;
    const callerEnv = props.environment ?? {};
    const tracing = props.tracing ?? lambda.Tracing.ACTIVE;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    });

    const environment: Record<string, string> = {
      // defaults
      [CORE_ENV.logLevel]: logLevel,
      [PLATFORM_ENV.powertoolsLogLevel]: logLevel.toUpperCase(),
      [PLATFORM_ENV.powertoolsServiceName]: props.serviceName ?? id,
      // the caller
      ...callerEnv,
      // mandated: source maps must apply, whatever else the caller passes to node
      [PLATFORM_ENV.nodeOptions]: withSourceMaps(callerEnv[PLATFORM_ENV.nodeOptions]),
    };

    const common = {
      description: props.description,
      runtime: LAMBDA_RUNTIME,
      architecture: LAMBDA_ARCHITECTURE,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout ?? Duration.seconds(10),
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      tracing,
      logGroup: this.logGroup,
      environment,
      vpc: props.vpc,
      vpcSubnets: props.vpc ? (props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }) : undefined,
    };
    const prebuilt = prebuiltBundle(props.entry);
    this.function = prebuilt
      ? new lambda.Function(this, 'Handler', { ...common, code: lambda.Code.fromAsset(prebuilt), handler: 'index.handler' })
      : new nodejs.NodejsFunction(this, 'Handler', { ...common, entry: props.entry, handler: 'handler', bundling: LAMBDA_BUNDLING });
    this.grantPrincipal = this.function.grantPrincipal;

    const role = this.function.role;
    if (role) {
      acknowledgeManagedPolicy(role, 'service-role/AWSLambdaBasicExecutionRole', 'The AWS-maintained minimum for writing the function\'s logs; a hand-written copy would only drift.');
      if (props.vpc) {
        acknowledgeManagedPolicy(role, 'service-role/AWSLambdaVPCAccessExecutionRole', 'The AWS-maintained minimum for the network interfaces a function in a VPC needs (Redis is only reachable there).');
      }
      if (tracing === lambda.Tracing.ACTIVE) {
        acknowledgeWildcardResource(role, '*', 'X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions; "*" is the only resource they accept.');
      }
    }
  }

  /** Security groups of the function (it needs `vpc` to have any). */
  public get connections(): ec2.Connections {
    return this.function.connections;
  }

  /** Adds an environment variable; mandated keys set by `connect`/`bind` helpers go through here. */
  public addEnvironment(key: string, value: string): this {
    this.function.addEnvironment(key, value);
    return this;
  }
}

/**
 * A stage's reservation as the function's `reservedConcurrentExecutions`: 0 and unset both mean no reservation (the
 * property absent), never Lambda's 0, which throttles every call. Checks 0 to 10000 under `name` in `scope`.
 *
 * A reservation is taken from the account's concurrency quota, of which Lambda keeps 100 unreserved: the reservations
 * of a stack plus 100 must fit the quota (`aws lambda get-account-settings`), so none is the default.
 */
export function reservation(scope: Construct, name: string, value: number | undefined): number | undefined {
  checkRange(scope, name, value, 0, 10000);
  return value === 0 ? undefined : value;
}

function withSourceMaps(nodeOptions: string | undefined): string {
  if (!nodeOptions) return '--enable-source-maps';
  return nodeOptions.split(/\s+/).includes('--enable-source-maps') ? nodeOptions : `${nodeOptions} --enable-source-maps`;
}
