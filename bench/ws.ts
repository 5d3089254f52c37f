/**
 * `npm run bench:ws [-- --sizes 1000,5000,10000 --shards 0,1,2,4 --events 20 --concurrency 32 --cpu-posts 5000]`
 *
 * Fan-out through the local API Gateway management API to N WebSocket connections: starts the
 * local stack (private redis-server, the local WebSocket gateway running the real handlers, the
 * local FIFO queue with 4 fan-out worker invocations), opens N connections with `ws` tickets from a
 * worker thread (so clients and the gateway use both cores), then for each shard count publishes
 * events with core `publish()` and hands each to core `dispatchFanout()`, as the publish Lambda does:
 * shards 0 is the inline fan-out (one loop, each event finished before the next publish), S ≥ 1 the
 * queue (S work items per event, consumed by S parallel worker invocations, events published
 * back to back). Posts go through the lean SigV4 poster (`core/management.ts`) one per runtime.
 *
 * First, a CPU probe: `--cpu-posts` PostToConnection calls against a do-nothing HTTP server in a
 * worker thread, through the AWS SDK client and through the lean poster; main-thread CPU per call
 * is the event loop's active time (`performance.eventLoopUtilization`) over the calls.
 *
 * Reports per size: connect rate, deliveries per second (all deliveries over the time from the
 * first publish to the last receipt), publish→receive latency p50/p99/max, and failures (posts that
 * failed, deliveries missing or duplicated). Loopback only; stops by itself (hard limit 10 minutes).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { coreConfigFromEnv } from '../core/config';
import { publish } from '../core/events';
import { createManagementPoster, type ManagementApi } from '../core/fanout';
import { createManagementClient } from '../core/management-sdk';
import { dispatchFanout } from '../core/fanout-queue';
import { createRedis, waitReady } from '../core/redis';
import { issueTicket } from '../core/tickets';
import { startLocalStack } from '../local/stack';

const HARD_LIMIT_MS = 10 * 60_000;

/** The client side, in a worker thread: plain JS so it needs no TypeScript loader. */
const CLIENT_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const WebSocket = require(workerData.wsPath);
const ID = /"id":"(\\d+)"/;
let sockets = [];
let received = new Map(); // event id -> receive times (epoch ms, sub-ms precision)
let duplicates = 0;
let other = 0;
const now = () => performance.timeOrigin + performance.now();
function open(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const seen = new Set();
    ws.on('message', (m) => {
      const t = now();
      const match = ID.exec(String(m));
      if (!match) { other++; return; }
      const id = match[1];
      if (seen.has(id)) { duplicates++; return; }
      seen.add(id);
      let list = received.get(id);
      if (!list) received.set(id, (list = []));
      list.push(t);
    });
    ws.once('open', () => { sockets.push(ws); resolve(true); });
    ws.once('error', () => resolve(false));
    ws.once('unexpected-response', () => resolve(false));
  });
}
parentPort.on('message', async (msg) => {
  if (msg.cmd === 'connect') {
    let failed = 0;
    const started = now();
    for (let i = 0; i < msg.urls.length; i += 100) {
      const ok = await Promise.all(msg.urls.slice(i, i + 100).map(open));
      failed += ok.filter((x) => !x).length;
    }
    parentPort.postMessage({ cmd: 'connected', failed, ms: now() - started });
  } else if (msg.cmd === 'count') {
    let n = 0;
    for (const l of received.values()) n += l.length;
    parentPort.postMessage({ cmd: 'count', n });
  } else if (msg.cmd === 'report') {
    parentPort.postMessage({ cmd: 'report', received: [...received.entries()], duplicates, other });
  } else if (msg.cmd === 'close') {
    for (const s of sockets) s.terminate();
    sockets = [];
    received = new Map();
    duplicates = 0;
    other = 0;
    parentPort.postMessage({ cmd: 'closed' });
  }
});
`;

class Clients {
  private readonly worker = new Worker(CLIENT_WORKER, { eval: true, workerData: { wsPath: require.resolve('ws') } });
  private next<T>(cmd: string, msg: object): Promise<T> {
    return new Promise((resolve) => {
      const on = (m: { cmd: string }) => {
        if (m.cmd !== cmd) return;
        this.worker.off('message', on);
        resolve(m as T);
      };
      this.worker.on('message', on);
      this.worker.postMessage(msg);
    });
  }
  connect(urls: string[]) {
    return this.next<{ failed: number; ms: number }>('connected', { cmd: 'connect', urls });
  }
  count() {
    return this.next<{ n: number }>('count', { cmd: 'count' });
  }
  report() {
    return this.next<{ received: [string, number[]][]; duplicates: number; other: number }>('report', { cmd: 'report' });
  }
  close() {
    return this.next('closed', { cmd: 'close' });
  }
  terminate() {
    return this.worker.terminate();
  }
}

/** A do-nothing management API in a child process: 200 to every POST, so this process's CPU is the client's. */
const STUB_SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'x-amzn-requestid': 'x' }); res.end(); }); });
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/** This process's CPU (user + system, every thread) per PostToConnection through `client`, in microseconds. */
async function cpuPerPost(client: ManagementApi, posts: number, concurrency: number): Promise<{ usPerPost: number; postsPerSec: number }> {
  const data = Buffer.from(JSON.stringify({ channel: 'chat:x', id: '1', type: 'tick', data: 'x'.repeat(200), ts: 1 }));
  const one = (i: number) => client.postToConnection(`conn${i}=`, data);
  // Warm up: sockets, credentials, JIT.
  await Promise.all(Array.from({ length: 200 }, (_, i) => one(i)));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < posts) await one(next++);
    }),
  );
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { usPerPost: Math.round((cpu.user + cpu.system) / posts), postsPerSec: Math.round(posts / (elapsed / 1000)) };
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const now = () => performance.timeOrigin + performance.now();

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1000,5000' },
      shards: { type: 'string', default: '0,1,2,4' },
      events: { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '32' },
      'cpu-posts': { type: 'string', default: '5000' },
    },
  });
  const sizes = values.sizes.split(',').map(Number);
  const shardCounts = values.shards.split(',').map(Number);
  if (shardCounts.some((n) => !Number.isInteger(n) || n < 0 || n > 4)) throw new Error('--shards takes shard counts 0-4 (0: inline), comma-separated');
  const cpuPosts = Number(values['cpu-posts']);
  const events = Number(values.events);
  const concurrency = Number(values.concurrency);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 10_000) || !(events >= 1) || !(concurrency >= 1)) {
    throw new Error('--sizes takes connection counts (1-10000, comma-separated); --events and --concurrency positive numbers');
  }
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  // CPU probe: the SDK client against the lean poster, same stub server, same concurrency.
  const stub = spawn(process.execPath, ['-e', STUB_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stubPort = await new Promise<number>((resolve) => stub.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  const stubEndpoint = `http://127.0.0.1:${stubPort}/prod`;
  const cpuRows: string[] = [];
  if (cpuPosts > 0) {
    const sdk = createManagementClient(stubEndpoint, { maxSockets: concurrency });
    const lean = createManagementPoster(stubEndpoint, { maxSockets: concurrency });
    for (const [name, client] of [['AWS SDK v3 client', sdk], ['lean SigV4 poster', lean]] as const) {
      const r = await cpuPerPost(client, cpuPosts, concurrency);
      console.log(JSON.stringify({ client: name, ...r }));
      cpuRows.push(`| ${name} | ${(r.usPerPost / 1000).toFixed(3)} | ${r.postsPerSec} |`);
    }
    sdk.destroy();
    lean.destroy();
  }
  stub.kill();

  const stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    redisUrl: undefined,
    lambda: { wsFanoutConcurrency: concurrency, wsFanoutShards: 4, wsFanoutInlineMax: 0 },
    fanoutQueue: { workers: 4, batchSize: 10 },
  });
  const config = coreConfigFromEnv({ ...process.env, REDIS_URL: stack.redisUrl });
  const redis = createRedis({ url: stack.redisUrl, name: 'bench' });
  await waitReady(redis);
  const rt = await stack.lambda.clients();
  const management = stack.lambda.postClient()!;
  const delivery = stack.lambda.delivery(rt, management);
  const clients = new Clients();
  const rows: string[] = [];
  try {
    for (const size of sizes) {
      for (const shards of shardCounts) {
        const channel = `chat:bench-${size}-${shards}-${Date.now()}`;
        const tickets = await Promise.all(
          Array.from({ length: size }, (_, i) => issueTicket({ identity: { kind: 'user', sub: `u${i}` }, channels: [channel], transport: 'ws' }, { redis, config })),
        );
        const conn = await clients.connect(tickets.map((t) => `${stack.outputs.WebSocketUrl}?ticket=${t.ticket}`));
        const connected = size - conn.failed;
        const sent = new Map<string, number>();
        let failed = 0;
        let retries = 0;
        let fanoutMs = 0;
        const deps = { ...delivery, dispatch: { shards: Math.max(1, shards), inlineMax: shards === 0 ? Number.MAX_SAFE_INTEGER : 0 } };
        const dlq0 = stack.queue!.deadLetters.length;
        const elu0 = performance.eventLoopUtilization();
        const first = now();
        for (let e = 0; e < events; e++) {
          const t0 = now();
          const p = await publish({ channel, type: 'tick', data: { e, pad: 'x'.repeat(200) } }, { kind: 'server', principal: 'bench' }, { redis, config });
          sent.set(p.id, t0);
          const r = await dispatchFanout(channel, p.envelope!, deps);
          fanoutMs += now() - t0;
          failed += (r.failed ?? 0) + (r.gone ?? 0);
          retries += r.retries ?? 0;
        }
        const expected = connected * events;
        const deadline = Date.now() + 60_000;
        while ((await clients.count()).n < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await stack.queue!.idle();
        const elu = performance.eventLoopUtilization(elu0);
        failed += stack.queue!.deadLetters.length - dlq0;
        const report = await clients.report();
        let last = first;
        const latencies: number[] = [];
        let got = 0;
        for (const [id, times] of report.received) {
          const t0 = sent.get(id);
          if (t0 === undefined) continue;
          got += times.length;
          for (const t of times) {
            latencies.push(t - t0);
            if (t > last) last = t;
          }
        }
        latencies.sort((a, b) => a - b);
        const seconds = (last - first) / 1000;
        const row = {
          connections: connected,
          shards: shards === 0 ? 'inline' : shards,
          connectPerSec: Math.round(connected / (conn.ms / 1000)),
          events,
          deliveries: got,
          deliveriesPerSec: Math.round(got / seconds),
          meanFanoutMs: Math.round(fanoutMs / events),
          p50Ms: +pct(latencies, 50).toFixed(1),
          p99Ms: +pct(latencies, 99).toFixed(1),
          maxMs: +pct(latencies, 100).toFixed(1),
          failures: failed + (expected - got) + report.duplicates + conn.failed,
          retries,
          // Main thread (gateway + publisher + workers) active time per delivery: the gateway's share included.
          mainCpuMsPerDelivery: +(elu.active / Math.max(1, got)).toFixed(3),
        };
        console.log(JSON.stringify(row));
        rows.push(
          `| ${row.connections} | ${row.shards} | ${row.events} | ${row.deliveries} | ${row.deliveriesPerSec} | ${row.meanFanoutMs} | ${row.p50Ms} | ${row.p99Ms} | ${row.maxMs} | ${row.mainCpuMsPerDelivery} | ${row.failures} |`,
        );
        await clients.close();
        // Let the gateway run $disconnect for every connection before the next run.
        while (stack.ws.connectionCount > 0) await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await clients.terminate();
    redis.disconnect();
    await stack.close();
  }
  if (cpuRows.length) {
    console.log(`\nCPU per PostToConnection (${cpuPosts} posts, ${concurrency} in flight, stub server in another process; process CPU, user + system):\n`);
    console.log('| client | CPU ms/post | posts/s |');
    console.log('| --- | ---: | ---: |');
    for (const r of cpuRows) console.log(r);
  }
  console.log('\n| connections | shards | events | deliveries | deliveries/s | publish ms/event | p50 ms | p99 ms | max ms | main-thread CPU ms/delivery | failures |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(r);
  console.log(`\nconcurrency ${concurrency} posts in flight per worker; node ${process.version}; one process: gateway, publisher and worker invocations on the main thread, clients in a worker thread`);
}

const hard = setTimeout(() => {
  console.error(`bench:ws stopped after ${HARD_LIMIT_MS / 60_000} minutes`);
  process.exit(1);
}, HARD_LIMIT_MS);
hard.unref();

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:ws failed: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  },
);
