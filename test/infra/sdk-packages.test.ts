/**
 * The app teams' packages as an app team gets them: `npm pack` of `@realtime-blueprint/client` (client/) and
 * `@realtime-blueprint/server` (server-sdk/) after what their `prepack` runs (`node build.mjs`), their contents,
 * exports maps and size budgets; the client tarball installed by `npm install --offline` into an empty app; then
 * examples/chat-app built against both packed packages (tsc strict with NodeNext resolution and library checks on,
 * the page bundled by esbuild through the exports maps) and its backend run: it mints tickets and publishes
 * through `npm run dev --verify-signatures`, and a Node script on the packed client receives them.
 *
 * The server tarball's dependencies (the AWS SDK's credential chain and signer) cannot be fetched here (the npm
 * cache holds no registry metadata; `npm install --offline` of it fails with ENOTCACHED), so, as in
 * package.test.ts, the app's node_modules gets the unpacked tarball and links to those modules (and to React).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { REPO_ROOT } from './support';

interface Packed {
  readonly filename: string;
  readonly size: number;
  readonly files: { path: string }[];
}

/**
 * Size budgets: tarball bytes (source maps included), and the shipped entry points min+gz. The client tarball went from 44
 * to 48 KiB with the connection cursor's codec (dist/cursor.d.ts), gaps by prev and the reconnect spread (47,165 B).
 * With presence (issue 24) the client went from 6 to 7 KiB min+gz (test/runtime/client-size.test.ts says why) and the
 * tarball from 48 to 56 KiB (47,165 to 54,756 B: its code, declarations and source map, and the README's section).
 * Events waiting for a missing `prev` on WebSocket (API Gateway's crossing posts: the option, its code, comments in the
 * source map and the README's "Order") took it from 56,316 to 58,187 B: 58 KiB.
 */
const BUDGET = { clientTarball: 58 * 1024, serverTarball: 24 * 1024, clientGz: 7 * 1024, reactGz: 1024, serverGz: 4 * 1024 };
const KEYS = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLEAPP', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', AWS_REGION: 'eu-west-1' };

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) => {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};
/** The environment without this machine's AWS settings. */
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^AWS_|^JEST|^NODE_ENV$/.test(k)) env[k] = v;
  return { ...env, AWS_EC2_METADATA_DISABLED: 'true', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent' };
};

let tmp: string;
let client: Packed;
let server: Packed;
let appDir: string;
const pkgJson = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const gz = (file: string) => gzipSync(fs.readFileSync(file), { level: 9 }).length;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'realtime-sdk-pack-'));
  for (const dir of ['client', 'server-sdk']) run(process.execPath, ['build.mjs'], path.join(REPO_ROOT, dir));
  [client] = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], path.join(REPO_ROOT, 'client')));
  [server] = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], path.join(REPO_ROOT, 'server-sdk')));

  // The app: examples/chat-app's sources, both packages unpacked, their dependencies and React linked.
  appDir = path.join(tmp, 'chat-app');
  fs.cpSync(path.join(REPO_ROOT, 'examples', 'chat-app'), appDir, { recursive: true, filter: (src) => !/node_modules|dist/.test(path.relative(REPO_ROOT, src)) });
  for (const [name, tarball] of [['client', client.filename], ['server', server.filename]]) {
    const dir = path.join(appDir, 'node_modules', '@realtime-blueprint', name);
    fs.mkdirSync(dir, { recursive: true });
    run('tar', ['-xzf', path.join(tmp, tarball), '-C', dir, '--strip-components=1'], tmp);
  }
  for (const dep of ['react', 'react-dom', '@types/react', '@types/react-dom', '@types/node', '@aws-sdk/credential-provider-node', '@smithy/signature-v4']) {
    fs.mkdirSync(path.dirname(path.join(appDir, 'node_modules', dep)), { recursive: true });
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules', dep), path.join(appDir, 'node_modules', dep), 'dir');
  }
}, 240_000);

describe('npm pack: @realtime-blueprint/client', () => {
  test('tarball: ESM and declarations for "." and "./react", the README; no sources', () => {
    expect(client.filename).toBe('realtime-blueprint-client-0.1.0.tgz');
    expect(client.files.map((f) => f.path).sort()).toEqual(['README.md', 'dist/channels.d.ts', 'dist/cursor.d.ts', 'dist/index.d.ts', 'dist/index.js', 'dist/index.js.map', 'dist/react.d.ts', 'dist/react.js', 'dist/react.js.map', 'dist/schema.d.ts', 'package.json']);
  });

  test('package.json: an ESM package whose exports map names types and code per entry; React an optional peer', () => {
    const pkg = pkgJson(path.join(appDir, 'node_modules', '@realtime-blueprint', 'client'));
    expect(pkg.type).toBe('module');
    expect(pkg.exports).toEqual({
      '.': { types: './dist/index.d.ts', import: './dist/index.js' },
      './react': { types: './dist/react.d.ts', import: './dist/react.js' },
      './package.json': './package.json',
    });
    expect([pkg.dependencies, pkg.peerDependencies, pkg.peerDependenciesMeta]).toEqual([undefined, { react: '>=18' }, { react: { optional: true } }]);
  });

  test('npm install --offline of the tarball into an empty app; Node imports both entry points through the exports map', () => {
    const dir = path.join(tmp, 'plain-app');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'plain-app', private: true, type: 'module' }));
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(tmp, client.filename)], dir);
    expect(pkgJson(dir).dependencies).toEqual({ '@realtime-blueprint/client': `file:../${client.filename}` });
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules', 'react'), path.join(dir, 'node_modules', 'react'), 'dir');
    const out = run(process.execPath, ['--input-type=module', '-e', "const c = await import('@realtime-blueprint/client'); const r = await import('@realtime-blueprint/client/react'); console.log(JSON.stringify([Object.keys(c).sort(), Object.keys(r).sort()]))"], dir);
    expect(JSON.parse(out)).toEqual([
      ['Client', 'LATENCY_BUCKETS', 'RealtimeClientError', 'backoff', 'createClient', 'createTypedClient', 'ticketFrom', 'typed'],
      ['RealtimeProvider', 'createRealtimeHooks', 'useChannel', 'useConnectionState', 'usePresence', 'useRealtimeClient'],
    ]);
  }, 120_000);
});

describe('npm pack: @realtime-blueprint/server', () => {
  test('tarball: ESM, CommonJS and declarations (with the channel schema types it shares, nothing of the client else), the README; no sources', () => {
    expect(server.filename).toBe('realtime-blueprint-server-0.1.0.tgz');
    expect(server.files.map((f) => f.path).sort()).toEqual([
      'README.md',
      'dist/index.cjs',
      'dist/index.cjs.map',
      'dist/index.js',
      'dist/index.js.map',
      'dist/types/client/src/schema.d.ts',
      'dist/types/server-sdk/src/index.d.ts',
      'dist/types/server-sdk/src/sigv4.d.ts',
      'package.json',
    ]);
  });

  test('package.json: exports map for import and require, the AWS credential chain and signer as dependencies', () => {
    const pkg = pkgJson(path.join(appDir, 'node_modules', '@realtime-blueprint', 'server'));
    expect(pkg.exports['.']).toEqual({ types: './dist/types/server-sdk/src/index.d.ts', import: './dist/index.js', require: './dist/index.cjs' });
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['@aws-sdk/credential-provider-node', '@smithy/signature-v4']);
    const cjs = run(process.execPath, ['-e', "console.log(Object.keys(require('@realtime-blueprint/server')).sort().join())"], appDir);
    expect(cjs.trim()).toBe('RealtimeServerError,ServerClient,createServerClient');
  });
});

test(`size budget: client tarball ≤ ${BUDGET.clientTarball} B, server tarball ≤ ${BUDGET.serverTarball} B; min+gz client ≤ ${BUDGET.clientGz} B, react ≤ ${BUDGET.reactGz} B, server ≤ ${BUDGET.serverGz} B`, () => {
  const installed = (name: string, file: string) => path.join(appDir, 'node_modules', '@realtime-blueprint', name, 'dist', file);
  const sizes = {
    clientTarball: client.size,
    serverTarball: server.size,
    clientGz: gz(installed('client', 'index.js')),
    reactGz: gz(installed('client', 'react.js')),
    serverGz: gz(installed('server', 'index.js')),
  };
  process.stdout.write(`sdk packages: ${JSON.stringify(sizes)} (budgets ${JSON.stringify(BUDGET)})\n`);
  for (const [k, v] of Object.entries(sizes)) expect([k, v <= BUDGET[k as keyof typeof BUDGET]]).toEqual([k, true]);
});

describe('examples/chat-app on the packed packages', () => {
  let dev: ChildProcess | undefined;
  let backend: ChildProcess | undefined;
  afterAll(async () => {
    for (const p of [backend, dev]) {
      if (!p || p.exitCode !== null) continue;
      const exited = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGTERM');
      await exited;
    }
  });

  test('builds: tsc (strict, NodeNext, skipLibCheck off) against the packed declarations, the backend also without the DOM lib; the page bundled by esbuild through the exports maps', () => {
    const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    run(process.execPath, [tsc, '-p', path.join(appDir, 'tsconfig.node.json')], appDir);
    run(process.execPath, [tsc, '-p', appDir], appDir);
    expect(fs.existsSync(path.join(appDir, 'dist', 'backend.js'))).toBe(true);
    run(path.join(REPO_ROOT, 'node_modules', '.bin', 'esbuild'), ['src/web/main.tsx', '--bundle', '--format=esm', '--minify', '--outfile=dist/public/app.js'], appDir);
    const bundle = fs.readFileSync(path.join(appDir, 'dist', 'public', 'app.js'), 'utf8');
    expect(bundle).not.toMatch(/\bfrom\s*"@realtime-blueprint|\brequire\(/);
    expect(bundle).toContain('need a <RealtimeProvider client={client}>');
  }, 120_000);

  test('runs: the backend mints tickets and publishes through a stack that verifies its signatures; the packed client receives them', async () => {
    const outputsFile = path.join(tmp, 'outputs.json');
    const env = { ...cleanEnv(), ...KEYS, LOG_LEVEL: 'warn' };
    dev = spawn(path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), ['local/dev.ts', '--port', '0', '--sse-port', '0', '--ws-port', '0', '--outputs-file', outputsFile, '--verify-signatures'], { cwd: REPO_ROOT, stdio: 'ignore', env });
    await waitFor(() => fs.existsSync(outputsFile), 'npm run dev');
    const outputs = JSON.parse(fs.readFileSync(outputsFile, 'utf8'))['Realtime-local'];
    backend = spawn(process.execPath, ['dist/backend.js'], {
      cwd: appDir,
      env: { ...env, PORT: '0', PUBLISH_URL: outputs.PublishUrl, TICKET_URL: outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets') },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    backend.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => /listening (\S+)/.test(out), 'the backend');
    const base = /listening (\S+)/.exec(out)![1];

    // A Node "page" on the installed client package: tickets from the backend, a goal asked of the backend.
    fs.writeFileSync(
      path.join(appDir, 'page.mjs'),
      `import { createTypedClient, ticketFrom } from '@realtime-blueprint/client';
const base = process.argv[2];
const client = createTypedClient({ ticket: ticketFrom(base + '/api/ticket', { headers: { 'x-demo-user': 'alice' } }), transports: ['sse'], storage: null, events: null });
const got = [];
const done = new Promise((resolve) => {
  const on = (e) => { got.push([e.channel, e.type, e.data]); if (got.length === 2) resolve(); };
  client.subscribe('scores:final', { onEvent: on });
  client.subscribe('chat:demo', { onEvent: on });
});
await new Promise((resolve) => client.on('state', (s) => s === 'open' && resolve()));
const r = await fetch(base + '/api/goal', { method: 'POST', headers: { 'x-demo-user': 'alice' }, body: JSON.stringify({ team: 'away', minute: 17 }) });
const published = await r.json();
await done;
client.close();
console.log(JSON.stringify({ status: r.status, published, got: got.sort() }));
`,
    );
    const page = spawnSync(process.execPath, ['page.mjs', base], { cwd: appDir, encoding: 'utf8', timeout: 60_000 });
    expect(page.stderr).toBe('');
    expect(JSON.parse(page.stdout)).toEqual({
      status: 202,
      published: { id: expect.stringMatching(/^\d+$/), duplicate: false, idempotencyKey: expect.any(String) },
      got: [
        ['chat:demo', 'message', { from: 'backend', text: 'Goal for away!' }],
        ['scores:final', 'goal', { team: 'away', minute: 17 }],
      ],
    });
  }, 120_000);
});

async function waitFor(pred: () => boolean, what: string, timeoutMs = 40_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
