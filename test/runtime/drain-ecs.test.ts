import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { containerCredentials, refreshingCredentials } from '../../core/aws/signer';
import { TargetHealthClient } from '../../core/aws/elb';
import { watchTaskStop, type StopSignal } from '../../service/ecs';
import { ContainerCredentialsEndpoint, ElbEndpoint, TaskMetadataEndpoint } from '../support/aws-stand-ins';
import { eventually, get, RawStream, spawnTask, uid } from '../support/harness';

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
    const { proc, base, output } = await spawnTask({ METRICS_INTERVAL_MS: '0', DRAIN_TIMEOUT_MS: '1000', STOP_POLL_MS: '50', ECS_CONTAINER_METADATA_URI_V4: metadataUri }, cleanup);
    let signalled = false;
    const exited = new Promise<{ code: number | null; signalled: boolean }>((resolve) => proc.on('exit', (code) => resolve({ code, signalled })));

    // A malformed endpoint: logged once, polled on, never fatal.
    await eventually(() => emulator.polls >= 4 && output().includes('ecs task metadata unreadable'), 10_000, 'polls of the malformed endpoint');
    expect(output().match(/ecs task metadata unreadable/g)).toHaveLength(1);
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
    const { proc, base, output } = await spawnTask(
      {
        METRICS_INTERVAL_MS: '0',
        DRAIN_TIMEOUT_MS: '1000',
        STOP_POLL_MS: '50',
        TARGET_HEALTH_POLL_MS: '50',
        ECS_CONTAINER_METADATA_URI_V4: metadata.uri(),
        TARGET_GROUP_ARN: TARGET_GROUP,
        // What Fargate gives a task with a task role (the full-URI form, as the relative one is rooted at 169.254.170.2).
        AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`,
        AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token,
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: elb.base,
      },
      cleanup,
    );
    const log = {
      get text() {
        return output();
      },
    };
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    return { metadata, creds, elb, proc, log, exited, port: Number(new URL(base).port), base };
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

/**
 * A virtual clock and timer queue for {@link watchTaskStop}'s `scheduler`: nothing waits in real time; a timer fires
 * only when the test moves the clock to it, after the rounds already started have finished (their I/O is real).
 */
class VirtualScheduler {
  now = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  readonly setTimeout = (fn: () => void, ms: number): number => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  readonly clearTimeout = (id: unknown): void => {
    this.timers.delete(id as number);
  };
}

/** Waits for `pred`, checking every millisecond (a round is local HTTP: ~1 ms), failing after `timeoutMs`. */
async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('the target health poll: at TARGET_HEALTH_POLL_MS, jittered, backing off on throttling (virtual clock, local ELB stand-in)', () => {
  const TARGET_GROUP = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/Realt-SseTa-1A2B3C/0123456789abcdef';
  const META_MS = 2000;
  const TH_MS = 10_000;
  const PORT = 8080;
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]);

  /** The watch as the task runs it (metadata, credentials and ELB stand-ins, the real client), on a virtual clock. */
  async function watch(random: () => number) {
    const metadata = new TaskMetadataEndpoint();
    const creds = new ContainerCredentialsEndpoint();
    const elb = new ElbEndpoint(TARGET_GROUP, 'eu-west-1', creds);
    for (const s of [metadata, creds, elb]) {
      await s.start();
      cleanup.push(() => s.close());
    }
    elb.states.set(`${metadata.ip}:${PORT}`, { state: 'healthy' });
    const credentials = refreshingCredentials(containerCredentials({ env: { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`, AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token } }));
    const client = new TargetHealthClient({ targetGroupArn: TARGET_GROUP, credentials, endpoint: elb.base });
    const logs: string[] = [];
    const clock = new VirtualScheduler();
    const fired: { signal: StopSignal; at: number }[] = [];
    cleanup.push(
      watchTaskStop({
        metadataUri: metadata.uri(),
        intervalMs: META_MS,
        log: pino({ level: 'info' }, { write: (line: string) => void logs.push(line) }),
        targetHealth: { port: PORT, intervalMs: TH_MS, describe: (id, p) => client.describe(id, p) },
        scheduler: clock,
        random,
        onStopping: (signal) => fired.push({ signal, at: clock.now }),
      }),
    );
    /** The virtual time of each DescribeTargetHealth the stand-in received. */
    const elbAt: number[] = [];
    // Both loops idle (one timer each) or the watch over: no round in flight.
    const idle = () => fired.length > 0 || clock.timers.size === 2;
    /** Runs the clock to `end`: fires each due timer in order, once the rounds before it have finished. */
    const runUntil = async (end: number) => {
      for (;;) {
        await until(idle, 'both polls scheduled on the injected scheduler');
        const next = [...clock.timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
        if (!next || next[1].at > end) break;
        const seen = elb.requests.length;
        clock.timers.delete(next[0]);
        clock.now = next[1].at;
        next[1].fn();
        await until(idle, 'the round finished');
        for (let i = seen; i < elb.requests.length; i++) elbAt.push(clock.now);
      }
      clock.now = end;
    };
    return { metadata, elb, clock, fired, logs, elbAt, runUntil };
  }

  test.each([0, 0.5, 0.999])('random %f: first poll jittered inside one interval; a Throttling answer spaces the next polls out (never closer than the interval); the metadata still starts the drain meanwhile', async (r) => {
    const { metadata, elb, clock, fired, logs, elbAt, runUntil } = await watch(() => r);

    // Healthy: the first poll once the metadata gave the IP, jittered within one interval; then one per interval.
    await runUntil(60_000);
    expect(elbAt.length).toBeGreaterThanOrEqual(5);
    // Tasks started together spread their first calls over the interval (no earlier than the metadata's IP).
    expect(elbAt[0]).toBe(Math.max(META_MS, Math.floor(r * TH_MS)));
    expect(gaps(elbAt)).toEqual(Array(elbAt.length - 1).fill(TH_MS));
    expect(metadata.polls).toBeGreaterThanOrEqual(60_000 / META_MS - 1);

    // Throttled for 10 virtual minutes: the polls back off, each gap at least the interval and the gaps growing.
    elb.throttle = 'Throttling';
    const from = elbAt.length;
    await runUntil(660_000);
    const throttled = elbAt.slice(from);
    expect(elb.throttled).toBe(throttled.length);
    const tg = gaps(throttled);
    for (const g of tg) expect(g).toBeGreaterThanOrEqual(TH_MS);
    for (let i = 1; i < tg.length; i++) expect(tg[i]).toBeGreaterThanOrEqual(tg[i - 1]);
    expect(tg.at(-1)!).toBeGreaterThanOrEqual(4 * TH_MS);
    // At the interval it would have been 60 requests; backing off, far fewer.
    expect(throttled.length).toBeLessThanOrEqual(15);
    // One warning for the whole streak, not one per refused call.
    expect(logs.filter((l) => l.includes('target health unreadable'))).toHaveLength(1);
    expect(fired).toEqual([]);

    // Still throttled, the metadata turns STOPPED: the drain starts within one metadata interval.
    const stoppedAt = clock.now;
    metadata.desired = 'STOPPED';
    await runUntil(stoppedAt + META_MS);
    expect(fired).toEqual([{ signal: 'metadata', at: expect.any(Number) }]);
    expect(fired[0].at - stoppedAt).toBeLessThanOrEqual(META_MS);
    // Both loops are over: nothing left on the clock.
    expect(clock.timers.size).toBe(0);
  }, 60_000);

  test('ThrottlingException backs off too, and the interval comes back once an answer gets through', async () => {
    const { metadata, elb, clock, fired, elbAt, runUntil } = await watch(() => 0);
    elb.throttle = 'ThrottlingException';
    await runUntil(200_000);
    expect(elb.throttled).toBe(elbAt.length);
    expect(Math.max(...gaps(elbAt))).toBeGreaterThanOrEqual(4 * TH_MS);
    elb.throttle = undefined;
    const from = elbAt.length;
    await runUntil(600_000);
    const after = elbAt.slice(from);
    // The first answered call ends the streak: from then on one call per interval again.
    expect(after.length).toBeGreaterThanOrEqual(20);
    expect(gaps(after.slice(1))).toEqual(Array(after.length - 2).fill(TH_MS));
    // A draining target now starts the drain within one interval.
    elb.states.set(`${metadata.ip}:${PORT}`, { state: 'draining', reason: 'Target.DeregistrationInProgress' });
    const drainingAt = clock.now;
    await runUntil(drainingAt + TH_MS);
    expect(fired.map((f) => f.signal)).toEqual(['target-health']);
    expect(fired[0].at - drainingAt).toBeLessThanOrEqual(TH_MS);
  }, 60_000);
});
