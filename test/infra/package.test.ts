/**
 * The package as another CDK app sees it: `npm pack` (after what its `prepack` runs: `npm run build`, `npm run build:lib`), the
 * tarball unpacked as `node_modules/realtime-blueprint` of a temporary app next to aws-cdk-lib, constructs and zod (the
 * only modules dist-lib/ loads), examples/basic/app.ts compiled by tsc against the packed declarations, and `cdk synth`
 * of it. esbuild is not reachable from there, so the synth proves the functions use the prebuilt bundles.
 *
 * `npm install --offline <tarball>` cannot work in this sandbox (the npm cache holds none of the package's
 * dependencies), hence the unpacked tarball with the three modules linked in.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './support';

interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, unknown>;
}

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) => {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

let files: string[];
let appDir: string;
let template: { Resources: Record<string, Resource>; Outputs: Record<string, { Value: unknown }> };
let assets: { files: Record<string, { source: { path: string } }>; dockerImages: Record<string, { source: { directory: string } }> };

beforeAll(() => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-pack-'));
  // What `prepack` runs, then the packing itself (its --json answer alone on stdout).
  run('npm', ['run', 'build'], REPO_ROOT);
  run('npm', ['run', 'build:lib'], REPO_ROOT);
  const [packed] = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], REPO_ROOT)) as { filename: string; files: { path: string }[] }[];
  files = packed.files.map((f) => f.path);

  appDir = path.join(tmp, 'app');
  const pkgDir = path.join(appDir, 'node_modules', 'realtime-blueprint');
  fs.mkdirSync(pkgDir, { recursive: true });
  run('tar', ['-xzf', path.join(tmp, packed.filename), '-C', pkgDir, '--strip-components=1'], tmp);
  for (const dep of ['aws-cdk-lib', 'constructs', 'zod']) fs.symlinkSync(path.join(REPO_ROOT, 'node_modules', dep), path.join(appDir, 'node_modules', dep), 'dir');
  for (const f of ['app.ts', 'tsconfig.json']) fs.copyFileSync(path.join(REPO_ROOT, 'examples', 'basic', f), path.join(appDir, f));

  run(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', appDir], appDir);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^AWS_|^CDK_|^NODE_ENV$|^JEST/.test(k)) env[k] = v;
  Object.assign(env, { AWS_EC2_METADATA_DISABLED: 'true', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', CDK_DISABLE_CLI_TELEMETRY: 'true' });
  run(path.join(REPO_ROOT, 'node_modules', '.bin', 'cdk'), ['synth', '--quiet', '--no-notices', '--app', 'node app.js', '-o', 'cdk.out'], appDir, env);
  template = JSON.parse(fs.readFileSync(path.join(appDir, 'cdk.out', 'MyRealtime.template.json'), 'utf8'));
  assets = JSON.parse(fs.readFileSync(path.join(appDir, 'cdk.out', 'MyRealtime.assets.json'), 'utf8'));
}, 300_000);

const ofType = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type);

describe('npm pack', () => {
  test('tarball: the compiled constructs with declarations, one prebuilt bundle per Lambda entry, the SSE bundle with its Dockerfile; no sources or tests', () => {
    expect(files).toEqual(expect.arrayContaining(['package.json', 'dist-lib/lib/index.js', 'dist-lib/lib/index.d.ts', 'dist-lib/lib/realtime-api.d.ts', 'dist/service/main.js', 'dist/service/Dockerfile']));
    const entries = fs.readdirSync(path.join(REPO_ROOT, 'lambda')).filter((f) => f.endsWith('.ts'));
    for (const entry of entries) expect(files).toContain(`dist/lambda/${entry.replace(/\.ts$/, '')}/index.js`);
    expect(files.filter((f) => /^(lib|lambda|core|service|test|local|bin)\/.*\.ts$/.test(f) || f.startsWith('test/'))).toEqual([]);
  });

  test('package.json: main and types point into dist-lib/', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', 'realtime-blueprint', 'package.json'), 'utf8'));
    expect([pkg.main, pkg.types]).toEqual(['dist-lib/lib/index.js', 'dist-lib/lib/index.d.ts']);
  });
});

describe('examples/basic synthesised from the packed package', () => {
  test('functions: every one deploys a prebuilt bundle (index.handler from an asset of dist/lambda/NAME), none bundled at synth', () => {
    const fns = ofType('AWS::Lambda::Function').filter((f) => (f.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables?.NODE_OPTIONS);
    // webSocket.mode tasks (the default): ticket issuer, publisher, revoker, history reader; the WebSocket Lambdas exist with apigateway or both.
    expect(fns).toHaveLength(4);
    for (const fn of fns) expect([fn.Properties.Handler, fn.Properties.Runtime, fn.Properties.Architectures]).toEqual(['index.handler', 'nodejs24.x', ['arm64']]);
    const bundles = Object.values(assets.files).map((a) => path.join(appDir, 'cdk.out', a.source.path)).filter((p) => fs.existsSync(path.join(p, 'index.js')));
    expect(bundles).toHaveLength(4);
    for (const dir of bundles) expect(fs.readdirSync(dir).sort()).toEqual(['index.js', 'index.js.map']);
  });

  test('SSE image: built from the prebuilt bundle and its runtime-only Dockerfile', () => {
    const images = Object.values(assets.dockerImages);
    expect(images).toHaveLength(1);
    const dir = path.join(appDir, 'cdk.out', images[0].source.directory);
    expect(fs.readdirSync(dir).sort()).toEqual(['Dockerfile', 'main.js', 'main.js.map']);
    expect(fs.readFileSync(path.join(dir, 'Dockerfile'), 'utf8')).toMatch(/COPY --chown=node:node main\.js main\.js\.map/);
  });

  test("the caller's parts: its VPC (no second one), its alarm topic on every alarm, its Cognito pool and client for tickets", () => {
    expect(ofType('AWS::EC2::VPC')).toHaveLength(1);
    const topic = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::SNS::Topic')![0];
    const alarms = ofType('AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThan(10);
    for (const a of alarms) expect(a.Properties.AlarmActions).toEqual([{ Ref: topic }]);
    const [jwt] = ofType('AWS::ApiGatewayV2::Authorizer').filter((a) => a.Properties.AuthorizerType === 'JWT');
    expect(jwt.Properties.JwtConfiguration).toEqual({ Audience: ['example-app-client-id'], Issuer: expect.objectContaining({ 'Fn::Join': expect.anything() }) });
    expect(JSON.stringify(jwt.Properties.JwtConfiguration)).toContain('/eu-west-1_EXAMPLE');
  });

  test('outputs: the six endpoints and the events bus under the construct\'s prefix (npm run smoke finds them by name)', () => {
    const names = Object.keys(template.Outputs).map((k) => k.replace(/^Realtime/, '').replace(/[0-9A-F]{8}$/, ''));
    expect(names.sort()).toEqual(['EventBusArn', 'LiveUrl', 'PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl']);
  });
});
