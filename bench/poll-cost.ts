/**
 * `npm run bench:poll-cost [-- --polls 3000 --runs 3 --write]`: server CPU per long-poll request.
 *
 * The SSE service runs as its own process (an esbuild bundle of service/main.ts, as in the container)
 * against a private redis-server. One client polls it over a keep-alive connection with the reconnect
 * cookie (the steady state of a long-polling browser: no ticket per request) and a cursor one event
 * behind, so each answer carries one event at once. The CPU the server process used (utime + stime
 * from /proc) divided by the polls is the figure; medians of the runs. With --write it goes into
 * cost/figures.json as `pollRequestCpuUs`, which `npm run cost` uses for the long-poll transport.
 * Loopback only; stops by itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { coreConfigFromEnv } from '../core/config';
import { publish } from '../core/events';
import { createRedis, waitReady } from '../core/redis/client';
import { issueTicket } from '../core/tickets';
import { freePort, RedisServer } from '../local/redis';

const ROOT = resolve(__dirname, '..');
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const { values: args } = parseArgs({ options: { polls: { type: 'string', default: '3000' }, runs: { type: 'string', default: '3' }, write: { type: 'boolean', default: false } } });
const POLLS = Number(args.polls);
const RUNS = Number(args.runs);

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

function get(agent: Agent, url: string, cookie?: string): Promise<{ status: number; body: string; setCookie?: string[] }> {
  return new Promise((res, rej) => {
    const req = request(url, { agent, headers: cookie ? { cookie } : {} }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (body += c));
      r.on('end', () => res({ status: r.statusCode ?? 0, body, setCookie: r.headers['set-cookie'] }));
    });
    req.on('error', rej);
    req.end();
  });
}

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    process.stderr.write('poll-cost: time limit reached\n');
    process.exit(1);
  }, 10 * 60_000);
  deadline.unref();
  const dir = mkdtempSync(join(tmpdir(), 'rt-poll-cost-'));
  const redisServer = await RedisServer.start();
  const bundle = join(dir, 'main.js');
  await build({ entryPoints: [join(ROOT, 'service/main.ts')], bundle: true, platform: 'node', target: 'node20', outfile: bundle, minify: true, logLevel: 'error' });
  const port = await freePort();
  const env = {
    ...process.env,
    REDIS_URL: redisServer.url,
    PORT: String(port),
    HOST: '127.0.0.1',
    SESSION_SECRET: 'poll-cost-session-secret-0123456789abcdef',
    COOKIE_SECURE: 'false',
    LOG_LEVEL: 'warn',
    METRICS_INTERVAL_MS: '0',
  };
  const proc = spawn(process.execPath, [bundle], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const redis = createRedis({ url: redisServer.url, name: 'poll-cost' });
  try {
    await waitReady(redis);
    const base = `http://127.0.0.1:${port}`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; ; i++) {
      const ok = await get(agent, `${base}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (i > 200) throw new Error('the service did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    const config = coreConfigFromEnv({ REDIS_URL: redisServer.url });
    const channel = 'chat:poll-cost';
    const ids: number[] = [];
    for (let i = 0; i < 50; i++) ids.push(Number((await publish({ channel, type: 'tick', data: { i, pad: 'x'.repeat(200) } }, { kind: 'server', principal: 'bench' }, { redis, config })).id));
    const { ticket } = await issueTicket({ identity: { kind: 'user', sub: 'poller' }, channels: [channel] }, { redis, config });
    const first = await get(agent, `${base}/poll?channels=${channel}&cursor=${ids[0] - 1}&ticket=${ticket}`);
    if (first.status !== 200 || !first.setCookie) throw new Error(`first poll answered ${first.status}`);
    const cookie = first.setCookie.map((c) => c.split(';')[0]).join('; ');
    const poll = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const cursor = ids[ids.length - 1] - 1;
        const r = await get(agent, `${base}/poll?channels=${channel}&cursor=${cursor}`, cookie);
        if (r.status !== 200) throw new Error(`poll answered ${r.status}: ${r.body.slice(0, 200)}`);
      }
    };
    await poll(500);
    const perRun: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const before = cpuMs(proc.pid!);
      await poll(POLLS);
      perRun.push(((cpuMs(proc.pid!) - before) * 1000) / POLLS);
    }
    const median = [...perRun].sort((a, b) => a - b)[Math.floor(perRun.length / 2)];
    const line = `server CPU per long-poll request: ${median.toFixed(1)} µs (median of ${RUNS} runs of ${POLLS}; runs: ${perRun.map((v) => v.toFixed(1)).join(', ')})`;
    process.stdout.write(`${line}\n`);
    if (args.write) {
      const file = join(ROOT, 'cost/figures.json');
      const figures = JSON.parse(readFileSync(file, 'utf8'));
      figures.measured.pollRequestCpuUs = { value: Number(median.toFixed(1)), from: `npm run bench:poll-cost -- --polls ${POLLS} --runs ${RUNS} on ${new Date().toISOString().slice(0, 10)}: ${line}` };
      writeFileSync(file, `${JSON.stringify(figures, null, 2)}\n`);
    }
    agent.destroy();
  } finally {
    redis.disconnect();
    proc.kill('SIGKILL');
    await redisServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`poll-cost failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
