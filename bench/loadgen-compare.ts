/**
 * `npx tsx bench/loadgen-compare.ts [N] [RATE] [SECONDS]` (defaults 1000 20 10): bench/loadgen.js and bench/loadgen.c
 * against the same server at the same moment, so that what they report can differ only by the load generators.
 *
 * One redis-server, one floor probe (bench/probe-server.js), N/2 streams from each load generator, opened at the same
 * time (so the probe's write loop interleaves them), RATE messages per second for SECONDS, each 256 bytes with the
 * `"n":<seq>,"t":<ms>` the bench's publisher embeds (t from process.hrtime(), CLOCK_MONOTONIC). Prints, for each:
 * delivered of expected, duplicates, unknown, p50/p90/p99/max latency and its own CPU per delivery.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRedis, waitReady } from '../core/redis/client';
import { freePort, RedisServer } from '../local/redis';
import { NativeLoadGen, nativeLoadGen } from './native-loadgen';

type Reply = { cmd: string } & Record<string, number | null | string>;
const [n, rate, seconds] = [Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 20), Number(process.argv[4] ?? 10)];
const ms = () => {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
};
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const children: ChildProcess[] = [];
const track = (p: ChildProcess) => (children.push(p), p);

/** loadgen.js over IPC, with the native one's `ask`. */
function jsLoadGen() {
  const proc = track(fork(join(__dirname, 'loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const waiting = new Map<string, (m: Reply) => void>();
  proc.on('message', (m: Reply) => waiting.get(m.cmd)?.(m));
  return { ask: (msg: object, reply: string) => new Promise<Reply>((res) => (waiting.set(reply, res), proc.send(msg))) };
}

async function main(): Promise<void> {
  const native = nativeLoadGen();
  if (!native.path) throw new Error(`no native load generator: ${native.why}`);
  const redisServer = await RedisServer.start();
  const redis = createRedis({ url: redisServer.url, name: 'compare', failFast: false });
  await waitReady(redis);
  const port = await freePort();
  const probe = track(spawn(process.execPath, [join(__dirname, 'probe-server.js')], { env: { PATH: process.env.PATH, PORT: String(port), REDIS_URL: redisServer.url, CHANNEL: 'compare' }, stdio: ['ignore', 'pipe', 'inherit'] }));
  await new Promise<void>((res) => createInterface({ input: probe.stdout! }).once('line', () => res()));
  const lgs = { js: jsLoadGen(), native: new NativeLoadGen<Reply>(native.path, track) };
  const half = Math.floor(n / 2);
  const paths = Array.from({ length: half }, () => '/events');
  const conn = await Promise.all(Object.values(lgs).map((lg) => lg.ask({ cmd: 'connect', host: '127.0.0.1', port, paths, concurrency: 200, needReady: false, proto: 'sse', timeoutMs: 60_000 }, 'connected')));
  const messages = rate * seconds;
  const armed = await Promise.all(Object.values(lgs).map((lg) => lg.ask({ cmd: 'arm', messages }, 'armed')));
  const expected = armed.map((a) => Number(a.open) * messages);
  const t0 = ms();
  for (let i = 0; i < messages; i++) {
    const wait = t0 + (i * 1000) / rate - ms();
    if (wait > 0) await sleep(wait);
    const t = Math.round(ms() * 1000) / 1000;
    await redis.publish('compare', JSON.stringify({ n: i, t, p: 'x'.repeat(256 - JSON.stringify({ n: i, t, p: '' }).length) }));
  }
  for (let last = -1, since = ms(); ms() - since < 5000; await sleep(100)) {
    const got = (await Promise.all(Object.values(lgs).map((lg) => lg.ask({ cmd: 'status' }, 'status')))).map((s) => Number(s.received));
    if (got.every((g, k) => g >= expected[k])) break;
    if (got[0] + got[1] !== last) [last, since] = [got[0] + got[1], ms()];
  }
  const reps = await Promise.all(Object.values(lgs).map((lg) => lg.ask({ cmd: 'report' }, 'report')));
  console.log(`${n} streams from two load generators (${conn.map((c) => c.ok).join(' + ')} open) on one probe, ${rate} msg/s for ${seconds} s:\n`);
  console.log('| load generator | delivered / expected | duplicates | unknown | p50 ms | p90 ms | p99 ms | max ms | own CPU µs / delivery |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  Object.keys(lgs).forEach((name, k) => {
    const r = reps[k];
    console.log(`| ${name} | ${r.received} / ${expected[k]} | ${r.duplicates} | ${r.unknown} | ${r.p50} | ${r.p90} | ${r.p99} | ${r.max} | ${((Number(r.cpuMs) * 1000) / Math.max(1, Number(r.received))).toFixed(2)} |`);
  });
  redis.disconnect();
  await redisServer.destroy();
}

main()
  .catch((err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of children) p.kill('SIGKILL');
  });
