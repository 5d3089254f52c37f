/**
 * `npm run bench:ws [-- --targets stub,gateway --sizes 1000,5000 --shards 0,1,2,4 --events 20 --concurrency 32 --cpu-posts 5000]`
 *
 * API Gateway WebSocket fan-out. For each size and shard count, publishes events with core
 * `publish()` and hands each to core `dispatchFanout()`, as the publish Lambda does: shards 0 is the
 * inline fan-out (the publisher posts on the main thread, each event finished before the next
 * publish), S ≥ 1 the queue (S work items per event on the local FIFO queue, events published back
 * to back). The queue's consumer is the fan-out worker as Lambda containers
 * (`bench/lambda-containers.ts`): worker threads that load the real bundle, one invocation each at a
 * time, so parallel invocations run on parallel CPUs as Lambda execution environments do.
 *
 * Targets:
 * - `stub`: the workers' side alone. Connections registered in Redis as `$connect` does (no
 *   sockets); S containers post to a raw-TCP sink in a child process that answers 200, counts posts
 *   and fails any id at or below a connection's last one (order, duplicates).
 * - `gateway`: end to end. The local stack's API Gateway stand-in (main thread) holds N `ws`
 *   connections opened with tickets from a worker thread; 4 containers consume the queue.
 *
 * First, a CPU probe: `--cpu-posts` PostToConnection calls against a do-nothing HTTP server in
 * another process, through the AWS SDK client and through the lean poster; process CPU per call.
 *
 * Reports per row: deliveries per second (all deliveries over the time from the first publish to
 * the last receipt), publish→receive latency p50/p99/max, worker CPU per post, main-thread CPU per
 * delivery and failures (posts failed, deliveries missing, duplicated or out of order, dead letters,
 * connections not opened). Loopback only; stops by itself (hard limit 10 minutes).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { coreConfigFromEnv } from '../core/config';
import { publish } from '../core/events';
import { createManagementPoster } from '../core/aws/management-client';
import type { ManagementApi } from '../core/fanout';
import { createManagementClient } from '../core/aws/management-sdk';
import { dispatchFanout, type DispatchDeps } from '../core/fanout-queue';
import { registerConnection } from '../core/connections';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { CORE_ENV, LAMBDA_ENV } from '../contract/settings';
import { lambdaConfigFromEnv } from '../lambda/shared/config';
import { FanoutRuntime } from '../lambda/shared/fanout-runtime';
import { LocalFifoQueue } from '../local/queue';
import { RedisServer } from '../local/redis';
import { LambdaContainers } from './lambda-containers';
import { createRedis, waitReady } from '../core/redis/client';
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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The sink of `--targets stub`: a do-nothing management API on a raw TCP server in a child process
 * (cheaper than node:http, so the machine's CPU goes to the workers). Every POST is answered 200 at
 * once; it counts posts, keeps each event's receive times, and checks per-connection order (an
 * event id at or below the connection's last one is a duplicate or out of order).
 */
const SINK_SERVER = `
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const OK = Buffer.from('HTTP/1.1 200 OK\\r\\nx-amzn-requestid: x\\r\\ncontent-length: 0\\r\\n\\r\\n');
const ID = /"id":"(\\d+)"/;
let posts = 0, outOfOrder = 0, duplicates = 0, bad = 0;
let last = new Map();
let received = new Map();
const now = () => performance.timeOrigin + performance.now();
const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf = null;
  sock.on('data', (d) => {
    buf = buf ? Buffer.concat([buf, d]) : d;
    let answers = 0;
    const t = now();
    for (;;) {
      const end = buf.indexOf('\\r\\n\\r\\n');
      if (end < 0) break;
      const head = buf.toString('latin1', 0, end);
      const m = /content-length: *(\\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + len) break;
      const path = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1));
      const conn = decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
      const idm = ID.exec(buf.toString('utf8', end + 4, end + 4 + len));
      buf = buf.subarray(end + 4 + len);
      answers++;
      posts++;
      if (!idm) { bad++; continue; }
      const id = Number(idm[1]);
      const prev = last.get(conn);
      if (prev !== undefined && id <= prev) { if (id === prev) duplicates++; else outOfOrder++; continue; }
      last.set(conn, id);
      let l = received.get(idm[1]);
      if (!l) received.set(idm[1], (l = []));
      l.push(t);
    }
    if (buf.length === 0) buf = null;
    if (answers === 1) sock.write(OK);
    else if (answers > 1) sock.write(Buffer.concat(Array(answers).fill(OK)));
  });
  sock.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => process.send({ cmd: 'port', port: server.address().port }));
process.on('message', (m) => {
  if (m.cmd === 'count') process.send({ cmd: 'count', n: posts });
  else if (m.cmd === 'report') process.send({ cmd: 'report', received: [...received.entries()], duplicates, outOfOrder, bad, posts, cpu: process.cpuUsage() });
  else if (m.cmd === 'reset') { posts = 0; outOfOrder = 0; duplicates = 0; bad = 0; last = new Map(); received = new Map(); process.send({ cmd: 'reset' }); }
});
`;

class Sink {
  private constructor(
    private readonly proc: ChildProcess,
    readonly endpoint: string,
  ) {}
  static async start(): Promise<Sink> {
    const proc = spawn(process.execPath, ['-e', SINK_SERVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise<number>((resolve) => proc.once('message', (m: { port: number }) => resolve(m.port)));
    return new Sink(proc, `http://127.0.0.1:${port}/prod`);
  }
  private ask<T>(cmd: string): Promise<T> {
    return new Promise((resolve) => {
      const on = (m: { cmd: string }) => {
        if (m.cmd !== cmd) return;
        this.proc.off('message', on);
        resolve(m as T);
      };
      this.proc.on('message', on);
      this.proc.send({ cmd });
    });
  }
  count() {
    return this.ask<{ n: number }>('count');
  }
  report() {
    return this.ask<{ received: [string, number[]][]; duplicates: number; outOfOrder: number; bad: number; posts: number; cpu: NodeJS.CpuUsage }>('report');
  }
  reset() {
    return this.ask('reset');
  }
  kill() {
    this.proc.kill();
  }
}

interface Row {
  target: 'stub' | 'gateway';
  connections: number;
  shards: number | 'inline';
  events: number;
  deliveries: number;
  deliveriesPerSec: number;
  publishMsPerEvent: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU (event-loop active time) of the worker containers per post; inline: the publisher's main thread per post. */
  workerCpuMsPerPost: number;
  /** Main thread (publisher, queue; with the gateway target also the gateway) per delivery. */
  mainCpuMsPerDelivery: number;
  failures: number;
}

/** Latency and throughput from per-event receive times. */
function summarise(received: [string, number[]][], sent: Map<string, number>, first: number) {
  let last = first;
  const latencies: number[] = [];
  let got = 0;
  for (const [id, times] of received) {
    const t0 = sent.get(id);
    if (t0 === undefined) continue;
    got += times.length;
    for (const t of times) {
      latencies.push(t - t0);
      if (t > last) last = t;
    }
  }
  latencies.sort((a, b) => a - b);
  return { got, seconds: (last - first) / 1000, latencies };
}

/** One result row from what a run measured. */
function toRow(
  target: Row['target'],
  m: { connections: number; shards: number; events: number; publishMs: number; workerMs: number; posts: number; mainActiveMs: number; failures: number },
  s: ReturnType<typeof summarise>,
): Row {
  return {
    target,
    connections: m.connections,
    shards: m.shards === 0 ? 'inline' : m.shards,
    events: m.events,
    deliveries: s.got,
    deliveriesPerSec: Math.round(s.got / s.seconds),
    publishMsPerEvent: Math.round(m.publishMs / m.events),
    p50Ms: +pct(s.latencies, 50).toFixed(1),
    p99Ms: +pct(s.latencies, 99).toFixed(1),
    maxMs: +pct(s.latencies, 100).toFixed(1),
    workerCpuMsPerPost: +(m.workerMs / Math.max(1, m.posts)).toFixed(3),
    mainCpuMsPerDelivery: +(m.mainActiveMs / Math.max(1, s.got)).toFixed(3),
    failures: m.failures,
  };
}

interface Ctx {
  readonly redis: ReturnType<typeof createRedis>;
  readonly config: ReturnType<typeof coreConfigFromEnv>;
  readonly events: number;
  readonly concurrency: number;
}

/** The fan-out worker containers' environment, as the stack sets it on the Lambda (loopback endpoints: local credentials). */
function workerEnv(redisUrl: string, managementEndpoint: string, concurrency: number): Record<string, string> {
  return {
    [CORE_ENV.redisUrl]: redisUrl,
    [LAMBDA_ENV.wsManagementEndpoint]: managementEndpoint,
    [LAMBDA_ENV.wsFanoutConcurrency]: String(concurrency),
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    AWS_LAMBDA_FUNCTION_NAME: 'bench-fanout-worker',
  };
}

/** Publishes `events` events to `channel` and hands each to dispatchFanout, as the publish Lambda does. */
async function publishAll(channel: string, shards: number, delivery: DispatchDeps, ctx: Ctx) {
  const sent = new Map<string, number>();
  let failed = 0;
  let publishMs = 0;
  const deps: DispatchDeps = { ...delivery, dispatch: { ...delivery.dispatch!, shards: Math.max(1, shards), inlineMax: shards === 0 ? Number.MAX_SAFE_INTEGER : 0 } };
  for (let e = 0; e < ctx.events; e++) {
    const t0 = now();
    const p = await publish({ channel, type: 'tick', data: { e, pad: 'x'.repeat(200) } }, { kind: 'server', principal: 'bench' }, { redis: ctx.redis, config: ctx.config });
    sent.set(p.id, t0);
    const r = await dispatchFanout(channel, p.envelope!, deps);
    publishMs += now() - t0;
    failed += (r.failed ?? 0) + (r.gone ?? 0);
  }
  return { sent, failed, publishMs };
}

/**
 * `--targets stub`: the workers' side alone. Connections are registered in Redis as `$connect` does
 * (no sockets); S fan-out worker containers (worker threads running the real bundle) post to the
 * sink. Deliveries are posts the sink accepted.
 */
async function runStub(sizes: number[], shardCounts: number[], ctx: Ctx, redisUrl: string): Promise<Row[]> {
  const rows: Row[] = [];
  const sink = await Sink.start();
  const env = workerEnv(redisUrl, sink.endpoint, ctx.concurrency);
  try {
    for (const size of sizes) {
      const channel = `chat:stub-${size}-${Date.now()}`;
      for (let i = 0; i < size; i += 500) {
        await Promise.all(
          Array.from({ length: Math.min(500, size - i) }, (_, k) =>
            registerConnection(`stub${i + k}Qx${(i + k).toString(36)}=`, { sub: `u${i + k}`, grant: [channel], channels: [channel] }, { redis: ctx.redis, config: ctx.config }),
          ),
        );
      }
      for (const shards of shardCounts) {
        const queue = new LocalFifoQueue({ workers: Math.max(1, shards), batchSize: 10 });
        const containers = shards > 0 ? await LambdaContainers.start<SQSEvent, SQSBatchResponse>('fanout-worker', shards, env) : undefined;
        const runtime = new FanoutRuntime(lambdaConfigFromEnv({ ...process.env, ...env }), { queue });
        try {
          const rt = await runtime.clients();
          const delivery = runtime.delivery(rt, runtime.postClient()!);
          if (containers) {
            // Cold starts before the clock: one empty invocation per container (Redis connection, bundle JIT).
            await Promise.all(Array.from({ length: containers.size }, () => containers.invoke({ Records: [] })));
            queue.start(containers.invoke);
            await containers.mark();
          }
          await sink.reset();
          const elu0 = performance.eventLoopUtilization();
          const first = now();
          const { sent, failed, publishMs } = await publishAll(channel, shards, delivery, ctx);
          const expected = size * ctx.events;
          const deadline = Date.now() + 120_000;
          while ((await sink.count()).n < expected && Date.now() < deadline) await sleep(20);
          await queue.idle();
          const elu = performance.eventLoopUtilization(elu0);
          const workerMs = containers ? (await containers.activeMs()).reduce((a, b) => a + b, 0) : elu.active;
          const report = await sink.report();
          const summary = summarise(report.received, sent, first);
          const failures = failed + (expected - summary.got) + report.duplicates + report.outOfOrder + report.bad + queue.deadLetters.length;
          rows.push(toRow('stub', { connections: size, shards, events: ctx.events, publishMs, workerMs, posts: report.posts, mainActiveMs: elu.active, failures }, summary));
          console.log(JSON.stringify(rows[rows.length - 1]));
        } finally {
          await queue.stop();
          await containers?.close();
          await runtime.close();
        }
      }
    }
  } finally {
    sink.kill();
  }
  return rows;
}

/**
 * `--targets gateway`: end to end. The local stack's API Gateway stand-in (main thread) holds N real
 * WebSocket connections (clients in a worker thread); fan-out workers run in 4 containers (worker
 * threads), of which S at a time have work (one per shard's message group).
 */
async function runGateway(sizes: number[], shardCounts: number[], events: number, concurrency: number): Promise<Row[]> {
  const rows: Row[] = [];
  const holder: { containers?: LambdaContainers<SQSEvent, SQSBatchResponse> } = {};
  const stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    redisUrl: undefined,
    lambda: { wsFanoutConcurrency: concurrency, wsFanoutShards: 4, wsFanoutInlineMax: 0 },
    fanoutQueue: { workers: 4, batchSize: 10 },
    fanoutConsumer: (event) => holder.containers!.invoke(event),
  });
  holder.containers = await LambdaContainers.start<SQSEvent, SQSBatchResponse>('fanout-worker', 4, workerEnv(stack.redisUrl, stack.ws.managementEndpoint, concurrency));
  const containers = holder.containers;
  await Promise.all(Array.from({ length: 4 }, () => containers.invoke({ Records: [] })));
  const redis = createRedis({ url: stack.redisUrl, name: 'bench' });
  await waitReady(redis);
  const ctx: Ctx = { redis, config: coreConfigFromEnv({ ...process.env, [CORE_ENV.redisUrl]: stack.redisUrl }), events, concurrency };
  const rt = await stack.lambda.clients();
  const delivery = stack.lambda.delivery(rt, stack.lambda.postClient()!);
  const clients = new Clients();
  try {
    for (const size of sizes) {
      for (const shards of shardCounts) {
        const channel = `chat:bench-${size}-${shards}-${Date.now()}`;
        const tickets = await Promise.all(
          Array.from({ length: size }, (_, i) => issueTicket({ identity: { kind: 'user', sub: `u${i}` }, channels: [channel], transport: 'ws' }, { redis, config: ctx.config })),
        );
        const conn = await clients.connect(tickets.map((t) => `${stack.outputs.WebSocketUrl}?ticket=${t.ticket}`));
        const connected = size - conn.failed;
        const dlq0 = stack.queue!.deadLetters.length;
        await containers.mark();
        const elu0 = performance.eventLoopUtilization();
        const first = now();
        const { sent, failed, publishMs } = await publishAll(channel, shards, delivery, ctx);
        const expected = connected * ctx.events;
        const deadline = Date.now() + 120_000;
        while ((await clients.count()).n < expected && Date.now() < deadline) await sleep(50);
        await stack.queue!.idle();
        const elu = performance.eventLoopUtilization(elu0);
        const workerMs = shards > 0 ? (await containers.activeMs()).reduce((a, b) => a + b, 0) : elu.active;
        const report = await clients.report();
        const summary = summarise(report.received, sent, first);
        const failures = failed + (expected - summary.got) + report.duplicates + conn.failed + (stack.queue!.deadLetters.length - dlq0);
        rows.push(toRow('gateway', { connections: connected, shards, events: ctx.events, publishMs, workerMs, posts: summary.got, mainActiveMs: elu.active, failures }, summary));
        console.log(JSON.stringify(rows[rows.length - 1]));
        await clients.close();
        // Let the gateway run $disconnect for every connection before the next run.
        while (stack.ws.connectionCount > 0) await sleep(50);
      }
    }
  } finally {
    await clients.terminate();
    redis.disconnect();
    await stack.close();
    await containers.close();
  }
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      targets: { type: 'string', default: 'stub,gateway' },
      sizes: { type: 'string', default: '1000,5000' },
      shards: { type: 'string', default: '0,1,2,4' },
      events: { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '32' },
      'cpu-posts': { type: 'string', default: '5000' },
    },
  });
  const targets = values.targets.split(',');
  if (targets.some((t) => t !== 'stub' && t !== 'gateway')) throw new Error('--targets takes stub and/or gateway, comma-separated');
  const sizes = values.sizes.split(',').map(Number);
  const shardCounts = values.shards.split(',').map(Number);
  if (shardCounts.some((n) => !Number.isInteger(n) || n < 0 || n > 8)) throw new Error('--shards takes shard counts 0-8 (0: inline), comma-separated');
  const cpuPosts = Number(values['cpu-posts']);
  const events = Number(values.events);
  const concurrency = Number(values.concurrency);
  const maxSize = targets.includes('gateway') ? 10_000 : 50_000;
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > maxSize) || !(events >= 1) || !(concurrency >= 1)) {
    throw new Error(`--sizes takes connection counts (1-${maxSize}, comma-separated; 50000 with --targets stub only); --events and --concurrency positive numbers`);
  }
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  const cpuRows: string[] = [];
  if (cpuPosts > 0) {
    // CPU probe: the SDK client against the lean poster, same stub server, same concurrency.
    const stub = spawn(process.execPath, ['-e', STUB_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const stubPort = await new Promise<number>((resolve) => stub.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
    const stubEndpoint = `http://127.0.0.1:${stubPort}/prod`;
    const sdk = createManagementClient(stubEndpoint, { maxSockets: concurrency });
    const lean = createManagementPoster(stubEndpoint, { maxSockets: concurrency });
    for (const [name, client] of [['AWS SDK v3 client', sdk], ['lean SigV4 poster', lean]] as const) {
      const r = await cpuPerPost(client, cpuPosts, concurrency);
      console.log(JSON.stringify({ client: name, ...r }));
      cpuRows.push(`| ${name} | ${(r.usPerPost / 1000).toFixed(3)} | ${r.postsPerSec} |`);
    }
    sdk.destroy();
    lean.destroy();
    stub.kill();
  }

  const rows: Row[] = [];
  const load0 = loadavg()[0];
  if (targets.includes('stub')) {
    const server = await RedisServer.start();
    const config = coreConfigFromEnv({ ...process.env, [CORE_ENV.redisUrl]: server.url });
    const redis = createRedis({ url: server.url, name: 'bench' });
    try {
      await waitReady(redis);
      rows.push(...(await runStub(sizes, shardCounts, { redis, config, events, concurrency }, server.url)));
    } finally {
      redis.disconnect();
      await server.destroy();
    }
  }
  if (targets.includes('gateway')) {
    rows.push(...(await runGateway(sizes, shardCounts, events, concurrency)));
  }
  if (cpuRows.length) {
    console.log(`\nCPU per PostToConnection (${cpuPosts} posts, ${concurrency} in flight, stub server in another process; process CPU, user + system):\n`);
    console.log('| client | CPU ms/post | posts/s |');
    console.log('| --- | ---: | ---: |');
    for (const r of cpuRows) console.log(r);
  }
  console.log('\n| target | connections | shards | events | deliveries | deliveries/s | publish ms/event | p50 ms | p99 ms | max ms | worker CPU ms/post | main-thread CPU ms/delivery | failures |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(
      `| ${r.target} | ${r.connections} | ${r.shards} | ${r.events} | ${r.deliveries} | ${r.deliveriesPerSec} | ${r.publishMsPerEvent} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.workerCpuMsPerPost} | ${r.mainCpuMsPerDelivery} | ${r.failures} |`,
    );
  }
  console.log(
    `\n${concurrency} posts in flight per worker; node ${process.version}; ${cpus().length} CPUs; load average ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end. ` +
      'Workers: fan-out worker containers (worker threads running the real bundle), one per shard for the stub target, 4 for the gateway target; inline: the publisher posts on the main thread. ' +
      'Gateway target: the API Gateway stand-in on the main thread, clients in a worker thread.',
  );
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
