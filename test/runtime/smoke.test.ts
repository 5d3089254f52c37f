/**
 * `npm run smoke` against `npm run dev`'s outputs file: the real CLI (`tsx scripts/smoke.ts`) run on the file that
 * `tsx local/dev.ts --outputs-file --verify-signatures` writes, its exit codes and its one line per check; then the
 * ways it refuses to run. The stack verifies SigV4 on its IAM routes (against the static keys both processes get), as
 * API Gateway does, so a smoke tool that stopped signing fails here instead of passing on a stack that trusts anyone.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSmokeArgs, readOutputs, signedHeaders, SmokeUsageError, summarise } from '../../scripts/smoke';
import { eventually } from '../support/harness';

const ROOT = join(__dirname, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
/** The local stack's credentials (what `--verify-signatures` resolves from the environment) and the smoke tool's. */
const KEYS = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const REGION = 'eu-west-1';
const CHECKS = ['ticket', 'stream', 'ticket single use', 'ws subscribe', 'ws ping', 'ws publish', 'resume with Last-Event-ID', 'poll', 'publish api', 'gaps by prev', 'bad input: JSON errors'];

let dev: ChildProcess;
let dir: string;
let outputsFile: string;

/** Runs the smoke CLI; no AWS settings leak in from the machine (fake static keys where a test signs). */
function cleanEnv(): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^AWS_|^SMOKE_/.test(k)) clean[k] = v;
  return { ...clean, AWS_EC2_METADATA_DISABLED: 'true', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent' };
}
function smoke(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(TSX, ['scripts/smoke.ts', ...args], { cwd: ROOT, env: { ...cleanEnv(), ...env }, encoding: 'utf8', timeout: 90_000 });
  return { status: r.status, lines: r.stdout.trim().split('\n'), stderr: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'realtime-smoke-'));
  outputsFile = join(dir, 'outputs.json');
  dev = spawn(TSX, ['local/dev.ts', '--port', '0', '--sse-port', '0', '--ws-port', '0', '--outputs-file', outputsFile, '--verify-signatures', '--region', REGION], {
    cwd: ROOT,
    stdio: 'ignore',
    env: { ...cleanEnv(), ...KEYS, LOG_LEVEL: 'warn' },
  });
  await eventually(() => existsSync(outputsFile), 30_000, 'npm run dev writes the outputs file');
}, 40_000);

afterAll(async () => {
  if (dev.exitCode === null) {
    const exited = new Promise((resolve) => dev.once('exit', resolve));
    dev.kill('SIGTERM');
    await exited;
  }
});

describe('against `npm run dev --outputs-file`', () => {
  test('--local-user --sign-publish: every check passes, one PASS line each in order, the summary, exit code 0', () => {
    const r = smoke(['--outputs-file', outputsFile, '--local-user', 'smoke-user', '--sign-publish', '--region', REGION], KEYS);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.lines.slice(0, -1).map((l) => /^(PASS|FAIL|SKIP) {2}(.+?) {2,}/.exec(l)?.slice(1, 3))).toEqual(CHECKS.map((c) => ['PASS', c]));
    expect(r.lines.at(-1)).toBe(`smoke: ${CHECKS.length} passed, 0 failed, 0 skipped`);
  }, 90_000);

  test('--iam-user with --ticket-url on the IAM route: tickets and publishes are SigV4-signed (static keys), every check passes', () => {
    const outputs = JSON.parse(readFileSync(outputsFile, 'utf8'))['Realtime-local'];
    const r = smoke(['--outputs-file', outputsFile, '--iam-user', 'smoke-backend-user', '--ticket-url', outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets'), '--region', REGION], KEYS);
    expect(r.lines.at(-1)).toBe(`smoke: ${CHECKS.length} passed, 0 failed, 0 skipped`);
    expect(r.status).toBe(0);
  }, 90_000);

  test('the stack checks what the smoke tool signs: an unsigned publish, or keys it does not know, FAIL with 403', () => {
    const unsigned = smoke(['--outputs-file', outputsFile, '--local-user', 'smoke-user']);
    expect(unsigned.lines.find((l) => l.startsWith('FAIL  publish api'))).toMatch(/expected 202 \{"id"\}, got HTTP 403 \{"message":"Forbidden"\}/);
    expect(unsigned.status).toBe(1);
    const outputs = JSON.parse(readFileSync(outputsFile, 'utf8'))['Realtime-local'];
    const wrongKeys = smoke(['--outputs-file', outputsFile, '--iam-user', 'smoke-backend-user', '--ticket-url', outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets'), '--region', REGION], { ...KEYS, AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    expect(wrongKeys.lines[0]).toMatch(/^FAIL {2}ticket .*expected 201, got HTTP 403 \{"message":"The request signature we calculated does not match/);
    expect(wrongKeys.status).toBe(1);
  }, 90_000);

  test('a broken endpoint: its check FAILs with what was seen, the others still run, exit code 1', () => {
    const outputs = JSON.parse(readFileSync(outputsFile, 'utf8'));
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, JSON.stringify({ 'Realtime-local': { ...outputs['Realtime-local'], PollUrl: outputs['Realtime-local'].PollUrl.replace(/\/poll$/, '/nowhere') } }));
    const r = smoke(['--outputs-file', broken, '--local-user', 'smoke-user', '--sign-publish', '--region', REGION], KEYS);
    expect(r.status).toBe(1);
    expect(r.lines.find((l) => l.startsWith('FAIL  poll'))).toMatch(/expected 200 \{"events"\}, got HTTP 404/);
    expect(r.lines.filter((l) => l.startsWith('PASS'))).toHaveLength(CHECKS.length - 2); // poll, and the bad-input poll probe
    expect(r.lines.at(-1)).toBe(`smoke: ${CHECKS.length - 2} passed, 2 failed, 0 skipped`);
  }, 90_000);

  test('no way to get a ticket: exit code 2 and a line that says what to pass', () => {
    const r = smoke(['--outputs-file', outputsFile]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('smoke: no way to get a ticket: set SMOKE_JWT, or pass --iam-user SUB (AWS credentials of a trusted principal), or --local-user SUB (local stack)');
  }, 30_000);
});

describe('refusals before any request', () => {
  const deployed = {
    'Realtime-prod': {
      TicketUrl: 'https://abc123.execute-api.eu-west-1.amazonaws.com/tickets',
      SseUrl: 'https://events.example.com/events',
      PollUrl: 'https://events.example.com/poll',
      WebSocketUrl: 'wss://def456.execute-api.eu-west-1.amazonaws.com/live',
      PublishUrl: 'https://ghi789.execute-api.eu-west-1.amazonaws.com/publish',
      RedisEndpoint: 'master.xyz.cache.amazonaws.com:6379',
    },
  };
  const file = (content: unknown) => {
    const f = join(mkdtempSync(join(tmpdir(), 'realtime-smoke-')), 'outputs.json');
    writeFileSync(f, JSON.stringify(content));
    return f;
  };

  test('--local-user against a deployed stack: refused (the header is trusted only by the local stack)', async () => {
    const options = parseSmokeArgs(['--outputs-file', file(deployed), '--local-user', 'alice'], {});
    const { runSmoke } = await import('../../scripts/smoke');
    await expect(runSmoke(options as Exclude<typeof options, 'help'>)).rejects.toThrow(/--local-user only works against the local stack/);
  });

  test('SMOKE_JWT wins over --iam-user; outputs of a construct inside another stack are found by prefix and hash suffix', () => {
    const prefixed = Object.fromEntries(Object.entries(deployed['Realtime-prod']).map(([k, v]) => [`Realtime${k}1A2B3C4D`, v]));
    const options = parseSmokeArgs(['--outputs-file', file({ Other: { Bucket: 'x' }, MyApp: prefixed }), '--iam-user', 'u'], { SMOKE_JWT: 'eyJ.x.y' });
    expect(options).toMatchObject({ auth: { kind: 'jwt', token: 'eyJ.x.y' }, endpoints: { TicketUrl: deployed['Realtime-prod'].TicketUrl } });
  });

  test.each([
    ['two stacks with realtime outputs and no --stack', { A: deployed['Realtime-prod'], B: deployed['Realtime-prod'] }, [], /has 2 stacks with realtime outputs \(A, B\); pass --stack NAME/],
    ['an unknown --stack', deployed, ['--stack', 'Nope'], /stack "Nope" has no realtime outputs .* \(stacks with them: Realtime-prod\)/],
    ['an output missing', { S: { TicketUrl: 'https://x/tickets' } }, [], /expected one output named SseUrl, found 0/],
  ])('%s: SmokeUsageError', (_what, content, extra, message) => {
    expect(() => parseSmokeArgs(['--outputs-file', file(content), '--local-user', 'a', ...extra], {})).toThrow(message);
    expect(() => parseSmokeArgs(['--outputs-file', file(content), '--local-user', 'a', ...extra], {})).toThrow(SmokeUsageError);
  });

  test('a missing outputs file or a bad --channel: SmokeUsageError naming it', () => {
    expect(() => readOutputs('/nonexistent/outputs.json')).toThrow(/cannot read outputs file \/nonexistent\/outputs\.json/);
    expect(() => parseSmokeArgs(['--outputs-file', file(deployed), '--local-user', 'a', '--channel', 'Bad Name'], {})).toThrow(/--channel "Bad Name" is not a channel name/);
  });

  test('SigV4: execute-api, the region from the host, the environment\'s credentials, the body hashed', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY, region: process.env.AWS_REGION, defaultRegion: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
    try {
      const h = await signedHeaders('POST', new URL(deployed['Realtime-prod'].PublishUrl), '{"channel":"chat:x"}');
      expect(h.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$/);
      expect(h['x-amz-content-sha256']).toMatch(/^[0-9a-f]{64}$/);
      await expect(signedHeaders('POST', new URL('https://api.example.com/tickets'), '{}')).rejects.toThrow(/cannot tell the region of api\.example\.com/);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      if (saved.region !== undefined) process.env.AWS_REGION = saved.region;
      if (saved.defaultRegion !== undefined) process.env.AWS_DEFAULT_REGION = saved.defaultRegion;
    }
  });

  test('summary: exit code 1 when any check failed, 0 with skips only', () => {
    expect(summarise([{ check: 'a', status: 'PASS', detail: '', ms: 1 }, { check: 'b', status: 'SKIP', detail: '', ms: 0 }])).toEqual({ line: 'smoke: 1 passed, 0 failed, 1 skipped', exitCode: 0 });
    expect(summarise([{ check: 'a', status: 'FAIL', detail: '', ms: 1 }])).toEqual({ line: 'smoke: 0 passed, 1 failed, 0 skipped', exitCode: 1 });
  });
});
