/**
 * One set of esbuild settings (contract/bundling.ts) for the three builds: `npm run build` (scripts/build.ts),
 * the CDK bundling wrapper (RealtimeFunction) and the SSE image (service/Dockerfile).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { build } from 'esbuild';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { LAMBDA_BUNDLING, LAMBDA_DIR, LAMBDA_RUNTIME, RealtimeFunction } from '../../lib/realtime-function';
import { lambdaBuildOptions, parseTarget, serviceBuildOptions } from '../../scripts/build';
import { ESBUILD_OPTIONS, NODE_MAJOR, SERVICE_BUNDLE, SERVICE_ESBUILD_OPTIONS, SERVICE_NODE_FLAGS } from '../../contract/bundling';
import { newApp, REPO_ROOT } from './support';

/** Props every NodejsFunction of a test receives (captured by a subclass standing in for the real one). */
const mockNodejsProps: nodejs.NodejsFunctionProps[] = [];
jest.mock('aws-cdk-lib/aws-lambda-nodejs', () => {
  const actual = jest.requireActual('aws-cdk-lib/aws-lambda-nodejs');
  class CapturingNodejsFunction extends actual.NodejsFunction {
    constructor(scope: never, id: string, props: nodejs.NodejsFunctionProps) {
      mockNodejsProps.push(props);
      super(scope, id, props);
    }
  }
  return { ...actual, NodejsFunction: CapturingNodejsFunction };
});

describe('contract/bundling.ts', () => {
  test('dependency-free: it imports nothing (the Docker build stage and lib/ load it alone)', () => {
    const source = fs.readFileSync(path.join(REPO_ROOT, 'contract', 'bundling.ts'), 'utf8');
    expect(source).not.toMatch(/^\s*import\s|require\(/m);
  });

  test('target: the Node.js major of the Lambda runtime', () => {
    expect(ESBUILD_OPTIONS.target).toBe(`node${NODE_MAJOR}`);
    expect(LAMBDA_RUNTIME.name).toBe(`nodejs${NODE_MAJOR}.x`);
  });

  test('service bundle: the shared settings, unminified', () => {
    expect(SERVICE_ESBUILD_OPTIONS).toEqual({ ...ESBUILD_OPTIONS, minify: false });
  });
});

describe('CDK bundling wrapper (RealtimeFunction)', () => {
  test('LAMBDA_BUNDLING: the shared settings in NodejsFunction terms', () => {
    expect(LAMBDA_BUNDLING).toEqual({
      minify: ESBUILD_OPTIONS.minify,
      sourceMap: ESBUILD_OPTIONS.sourcemap,
      sourceMapMode: 'default', // esbuild's plain --sourcemap: a linked .map, like sourcemap: true
      sourcesContent: ESBUILD_OPTIONS.sourcesContent,
      target: ESBUILD_OPTIONS.target,
      format: ESBUILD_OPTIONS.format,
      bundleAwsSDK: true,
      externalModules: [...ESBUILD_OPTIONS.external],
      esbuildArgs: { '--legal-comments': ESBUILD_OPTIONS.legalComments },
    });
  });

  test('the asset of every RealtimeFunction is bundled with LAMBDA_BUNDLING, on the matching runtime', () => {
    mockNodejsProps.length = 0;
    new RealtimeFunction(new Stack(newApp(), 'Fixture'), 'Fn', { entry: path.join(LAMBDA_DIR, 'ws-connect.ts') });
    expect(mockNodejsProps).toHaveLength(1);
    expect(mockNodejsProps[0].bundling).toEqual(LAMBDA_BUNDLING);
    expect(mockNodejsProps[0].runtime).toBe(LAMBDA_RUNTIME);
    expect(lambda.Runtime.NODEJS_24_X.name).toBe(LAMBDA_RUNTIME.name);
  });

  test('a CDK-bundled asset and `npm run build` produce the same bundle for the same entry, byte for byte', async () => {
    const app = newApp({ bundle: true });
    const fn = new RealtimeFunction(new Stack(app, 'Fixture'), 'Fn', { entry: path.join(LAMBDA_DIR, 'ws-connect.ts') });
    const cdkAsset = path.join(app.outdir, (fn.function.node.findChild('Code') as unknown as { assetPath: string }).assetPath);
    // the build script's options for that entry, run from the repository root into a temporary directory
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-build-'));
    await build({ ...lambdaBuildOptions('ws-connect.ts'), absWorkingDir: REPO_ROOT, outfile: path.join(out, 'index.js') });
    expect(fs.readFileSync(path.join(cdkAsset, 'index.js'), 'utf8')).toBe(fs.readFileSync(path.join(out, 'index.js'), 'utf8'));
    const map = JSON.parse(fs.readFileSync(path.join(cdkAsset, 'index.js.map'), 'utf8'));
    expect(map.sourcesContent).toBeUndefined();
  }, 60_000);
});

describe('npm run build (scripts/build.ts)', () => {
  test('Lambda bundles: the shared settings, one per entry under dist/lambda/NAME/index.js', () => {
    expect(lambdaBuildOptions('publish.ts')).toEqual({
      ...ESBUILD_OPTIONS,
      external: [...ESBUILD_OPTIONS.external],
      logLevel: 'warning',
      entryPoints: [path.join('lambda', 'publish.ts')],
      outfile: path.join('dist', 'lambda', 'publish', 'index.js'),
    });
  });

  test('service bundle: the service settings, to the file the image runs', () => {
    expect(serviceBuildOptions()).toEqual({
      ...SERVICE_ESBUILD_OPTIONS,
      external: [...SERVICE_ESBUILD_OPTIONS.external],
      logLevel: 'warning',
      entryPoints: [SERVICE_BUNDLE.entry],
      outfile: SERVICE_BUNDLE.outfile,
    });
  });

  test.each([
    [[], 'all'],
    [['service'], 'service'],
    [['lambda'], 'lambda'],
  ])('targets: %j builds %s', (args, target) => {
    expect(parseTarget(args)).toBe(target);
  });

  test('targets: anything else fails with the usage', () => {
    expect(() => parseTarget(['docker'])).toThrow(/^usage: npm run build \[-- all\|lambda\|service\]/);
  });

  test('package.json: `npm run build` runs scripts/build.ts', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.build).toBe('tsx scripts/build.ts');
  });
});

describe('SSE image (service/Dockerfile)', () => {
  const dockerfile = fs.readFileSync(path.join(REPO_ROOT, 'service', 'Dockerfile'), 'utf8');
  const instructions = dockerfile.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  const dockerignore = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');

  test('bundles with the shared build script (`npm run build -- service`), never with its own esbuild command', () => {
    expect(instructions.filter((l) => l.startsWith('RUN '))).toEqual(['RUN npm ci --no-audit --no-fund --ignore-scripts', 'RUN npm run build -- service']);
    expect(instructions.filter((l) => /\besbuild\b(?!-options\.ts)/.test(l))).toEqual([]);
  });

  test('base images: the Node.js major of contract/bundling.ts, for both stages', () => {
    expect(instructions).toContain(`ARG NODE_MAJOR=${NODE_MAJOR}`);
    const froms = instructions.filter((l) => l.startsWith('FROM '));
    expect(froms).toHaveLength(2);
    for (const from of froms) expect(from).toMatch(/ node:\$\{NODE_MAJOR\}-bookworm-slim AS \w+$/);
  });

  /**
   * The image's `CMD`: the service's node flags (contract/bundling.ts) and the bundle, nothing else: `npm run bench`'s
   * `ours` runs the same flags, so the bench measures the process as deployed.
   */
  const cmd = `CMD ${JSON.stringify(['node', ...SERVICE_NODE_FLAGS, SERVICE_BUNDLE.outfile]).replaceAll(',', ', ')}`;

  test('runs the bundle the build script writes with the service\'s node flags, the ones the bench runs', () => {
    expect(instructions).toContain(`COPY --from=build --chown=node:node /src/${path.dirname(SERVICE_BUNDLE.outfile)} ./${path.dirname(SERVICE_BUNDLE.outfile)}`);
    expect(instructions[instructions.length - 1]).toBe(cmd);
  });

  test('the young generation is pinned (SERVICE_NODE_FLAGS): not left to Node, which sizes it from the task\'s memory (1 MiB of semi-space at 512 MiB)', () => {
    expect(SERVICE_NODE_FLAGS).toContain('--max-semi-space-size=16');
    // The prebuilt image (npm run build:lib, dist/service/Dockerfile) runs the same command.
    const prebuilt = fs.readFileSync(path.join(REPO_ROOT, 'service', 'Dockerfile.prebuilt'), 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
    expect(prebuilt[prebuilt.length - 1]).toBe(cmd);
  });

  test('source maps are not applied to the service\'s stack traces (Node formats a stack on every socket error; DESIGN, decisions)', () => {
    expect(SERVICE_NODE_FLAGS).not.toContain('--enable-source-maps');
    for (const file of ['Dockerfile', 'Dockerfile.prebuilt']) expect(fs.readFileSync(path.join(REPO_ROOT, 'service', file), 'utf8')).not.toMatch(/^CMD .*enable-source-maps/m);
  });

  test('build context: .dockerignore lets in the build script, its settings and every tree the service imports', () => {
    for (const entry of ['!scripts/build.ts', '!contract/**', '!core/**', '!service/**']) {
      expect(dockerignore).toContain(entry);
    }
    for (const copied of ['scripts/build.ts', 'contract', 'core', 'service']) {
      expect(instructions.some((l) => l.startsWith('COPY ') && l.split(/\s+/).includes(copied))).toBe(true);
    }
  });

  test('the build script needs nothing outside the image context when building the service', () => {
    // `npm run build -- service` must not read lambda/ (not in the context): run it in a copy holding only the context.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-image-context-'));
    for (const p of ['package.json', 'tsconfig.json', 'contract', 'core', 'service', 'scripts/build.ts']) {
      fs.cpSync(path.join(REPO_ROOT, p), path.join(dir, p), { recursive: true });
    }
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    execFileSync(path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), ['scripts/build.ts', 'service'], { cwd: dir, stdio: 'pipe' });
    expect(fs.existsSync(path.join(dir, SERVICE_BUNDLE.outfile))).toBe(true);
    expect(fs.existsSync(path.join(dir, `${SERVICE_BUNDLE.outfile}.map`))).toBe(true);
  }, 60_000);
});
