import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContainerCredentialsEndpoint, ElbEndpoint, TaskMetadataEndpoint } from '../support/aws-stand-ins';
import { eventually, get, RawStream, redisUrl, SESSION_SECRET, uid } from '../support/harness';

/**
 * A stand-in for the ECS task metadata endpoint v4: `GET /task` answers what the test sets.
 * `answer: 'garbage'` serves a malformed body (the service must log once and keep polling).
 */
class MetadataEmulator {
  desired = 'RUNNING';
  answer: 'json' | 'garbage' = 'json';
  polls = 0;
  private readonly server: Server = createServer((req, res) => {
    if (req.url !== '/v4/abc/task') {
      res.writeHead(404).end();
      return;
    }
    this.polls++;
    if (this.answer === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{not json');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Cluster: 'c', TaskARN: 'arn:aws:ecs:eu-west-1:1:task/c/abc', DesiredStatus: this.desired, KnownStatus: 'RUNNING', LaunchType: 'FARGATE' }));
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v4/abc`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const ready = (s: RawStream) => s.events().some((e) => e.event === 'ready');

describe('drain order on ECS: the task drains when its metadata says STOPPED, before any signal', () => {
  const cleanup: (() => unknown)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('metadata RUNNING -> STOPPED: streams get a jittered retry and close, /healthz says draining, new streams refused; SIGTERM then exits 0', async () => {
    const emulator = new MetadataEmulator();
    emulator.answer = 'garbage';
    const metadataUri = await emulator.start();
    cleanup.push(() => emulator.close());
    const proc = spawn(process.execPath, ['--import', 'tsx', 'service/main.ts'], {
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        REDIS_URL: redisUrl(),
        SESSION_SECRET,
        LOG_LEVEL: 'info',
        METRICS_INTERVAL_MS: '0',
        DRAIN_TIMEOUT_MS: '1000',
        STOP_POLL_MS: '50',
        ECS_CONTAINER_METADATA_URI_V4: metadataUri,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let signalled = false;
    cleanup.push(() => {
      proc.kill('SIGKILL');
      proc.stdout.destroy();
      proc.stderr.destroy();
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<{ code: number | null; signalled: boolean }>((resolve) => proc.on('exit', (code) => resolve({ code, signalled })));
    await eventually(() => /"port":\d+/.test(out), 20_000, 'service listening');
    const base = `http://127.0.0.1:${/"port":(\d+)/.exec(out)![1]}`;

    // A malformed endpoint: logged once, polled on, never fatal.
    await eventually(() => emulator.polls >= 4 && out.includes('ecs task metadata unreadable'), 10_000, 'polls of the malformed endpoint');
    expect(out.match(/ecs task metadata unreadable/g)).toHaveLength(1);
    emulator.answer = 'json';
    const seen = emulator.polls;
    await eventually(() => emulator.polls >= seen + 2, 10_000, 'polls while RUNNING');
    expect(proc.exitCode).toBeNull();

    const ch = `scores:${uid()}`;
    const streams = [0, 1, 2].map(() => new RawStream(`${base}/events?channels=${ch}`));
    for (const s of streams) cleanup.push(() => s.close());
    await Promise.all(streams.map((s) => s.until(ready)));
    expect(JSON.parse((await get(`${base}/healthz`)).body)).toMatchObject({ draining: false, connections: 3 });

    emulator.desired = 'STOPPED';
    await Promise.all(streams.map((s) => s.until((x) => x.ended, 15_000)));
    expect(signalled).toBe(false);
    expect(proc.exitCode).toBeNull();
    for (const s of streams) expect(s.text).toMatch(/retry: \d+\n\n: draining; reconnect\n\n$/);
    // Jittered: the retry hints are not all the same value (3 draws of 1500..4500 ms; equal only by a 1-in-millions chance).
    const hints = streams.map((s) => Number(/retry: (\d+)\n\n: draining/.exec(s.text)![1]));
    for (const h of hints) expect(h).toBeGreaterThanOrEqual(1500);
    expect(new Set(hints).size).toBeGreaterThan(1);

    // Each stream is released when its socket closes, which follows the peer's side of the close
    // (the client saw our end first): wait for that, it is not ordered before the client's view.
    await eventually(async () => JSON.parse((await get(`${base}/healthz`)).body).connections === 0, 10_000, 'the drained streams released');
    const health = await get(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ draining: true, connections: 0 });
    expect((await get(`${base}/healthz?deep=1`)).status).toBe(503);
    const late = new RawStream(`${base}/events?channels=${ch}`);
    cleanup.push(() => late.close());
    await late.until((x) => x.ended);
    expect(late.status).toBe(200);
    expect(late.text).toMatch(/^retry: \d+\n\n: unavailable/);
    expect((await get(`${base}/events?channels=${ch}`)).status).toBe(503);
    expect((await get(`${base}/poll?channels=${ch}`)).status).toBe(503);
    expect(proc.exitCode).toBeNull();

    signalled = true;
    proc.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signalled: true });
  }, 60_000);
});

describe('drain order on ECS: the target\'s own health (draining) is a second signal, whichever comes first', () => {
  const TARGET_GROUP = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/Realt-SseTa-1A2B3C/0123456789abcdef';
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  /** The service as ECS runs it: the metadata endpoint, the task role's credentials endpoint, the target group, an ELB endpoint. */
  async function ecsTask() {
    const metadata = new TaskMetadataEndpoint();
    const creds = new ContainerCredentialsEndpoint();
    const elb = new ElbEndpoint(TARGET_GROUP, 'eu-west-1', creds);
    for (const s of [metadata, creds, elb]) {
      await s.start();
      cleanup.push(() => s.close());
    }
    const proc = spawn(process.execPath, ['--import', 'tsx', 'service/main.ts'], {
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        REDIS_URL: redisUrl(),
        SESSION_SECRET,
        LOG_LEVEL: 'info',
        METRICS_INTERVAL_MS: '0',
        DRAIN_TIMEOUT_MS: '1000',
        STOP_POLL_MS: '50',
        ECS_CONTAINER_METADATA_URI_V4: metadata.uri(),
        TARGET_GROUP_ARN: TARGET_GROUP,
        // What Fargate gives a task with a task role (the full-URI form, as the relative one is rooted at 169.254.170.2).
        AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`,
        AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token,
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.base,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.push(() => {
      proc.kill('SIGKILL');
      proc.stdout.destroy();
      proc.stderr.destroy();
    });
    const log = { text: '' };
    proc.stdout.on('data', (c: Buffer) => (log.text += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (log.text += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    await eventually(() => /"port":\d+/.test(log.text), 20_000, 'service listening');
    const port = Number(/"port":(\d+)/.exec(log.text)![1]);
    return { metadata, creds, elb, proc, log, exited, port, base: `http://127.0.0.1:${port}` };
  }

  test.each(['target-health', 'metadata'] as const)('%s first: the streams drain before any signal; the target is the task IP on the container port; every ELB call signed with the task role', async (first) => {
    const t = await ecsTask();
    const target = `${t.metadata.ip}:${t.port}`;
    t.elb.states.set(target, { state: 'healthy' });
    await eventually(() => t.elb.answered >= 3, 10_000, 'DescribeTargetHealth polls answered (signed with the task role)');
    const ch = `scores:${uid()}`;
    const streams = [0, 1].map(() => new RawStream(`${t.base}/events?channels=${ch}`));
    for (const s of streams) cleanup.push(() => s.close());
    await Promise.all(streams.map((s) => s.until(ready)));

    if (first === 'target-health') t.elb.states.set(target, { state: 'draining', reason: 'Target.DeregistrationInProgress' });
    else t.metadata.desired = 'STOPPED';
    await Promise.all(streams.map((s) => s.until((x) => x.ended, 15_000)));
    for (const s of streams) expect(s.text).toMatch(/retry: \d+\n\n: draining; reconnect\n\n$/);
    expect(t.proc.exitCode).toBeNull();
    expect(t.log.text).toContain(`"signal":"${first}"`);
    // Not a single call refused: the stand-in checks each signature against the credentials it issued.
    expect(t.log.text).not.toContain('target health unreadable');
    const calls = t.elb.requests.map((r) => Object.fromEntries(new URLSearchParams(r.body)));
    expect(new Set(calls.map((c) => `${c['Targets.member.1.Id']}:${c['Targets.member.1.Port']}`))).toEqual(new Set([target]));
    expect(t.creds.issued.length).toBe(1);
    expect(JSON.parse((await get(`${t.base}/healthz`)).body)).toMatchObject({ draining: true });

    t.proc.kill('SIGTERM');
    expect(await t.exited).toBe(0);
  }, 60_000);
});
