/**
 * `npm run bench:ws [-- --sizes 1000,5000 --events 20 --concurrency 32]`
 *
 * Fan-out through the local API Gateway management API to N WebSocket connections: starts the
 * local stack (private redis-server, the local WebSocket gateway running the real handlers),
 * opens N connections with `ws` tickets from a worker thread (so clients and the gateway use both
 * cores), then publishes events one after another with core `publish()` and fans each out with
 * core `fanout()` through the real `ApiGatewayManagementApiClient`, as the publish Lambda does.
 *
 * Reports per size: connect rate, deliveries per second (all deliveries over the time from the
 * first publish to the last receipt), publish→receive latency p50/p99/max, and failures (posts that
 * failed, deliveries missing or duplicated). Loopback only; stops by itself (hard limit 10 minutes).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { coreConfigFromEnv } from '../core/config';
import { publish } from '../core/events';
import { createManagementClient, fanout } from '../core/fanout';
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

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const now = () => performance.timeOrigin + performance.now();

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1000,5000' },
      events: { type: 'string', default: '20' },
      concurrency: { type: 'string', default: '32' },
    },
  });
  const sizes = values.sizes.split(',').map(Number);
  const events = Number(values.events);
  const concurrency = Number(values.concurrency);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 10_000) || !(events >= 1) || !(concurrency >= 1)) {
    throw new Error('--sizes takes connection counts (1-10000, comma-separated); --events and --concurrency positive numbers');
  }
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  const stack = await startLocalStack({ logger: pino({ level: 'silent' }), redisUrl: undefined });
  const config = coreConfigFromEnv({ ...process.env, REDIS_URL: stack.redisUrl });
  const redis = createRedis({ url: stack.redisUrl, name: 'bench' });
  await waitReady(redis);
  const management = createManagementClient(stack.ws.managementEndpoint, { maxSockets: concurrency });
  const clients = new Clients();
  const rows: string[] = [];
  try {
    for (const size of sizes) {
      const channel = `chat:bench-${size}-${Date.now()}`;
      const tickets = await Promise.all(
        Array.from({ length: size }, (_, i) => issueTicket({ identity: { kind: 'user', sub: `u${i}` }, channels: [channel], transport: 'ws' }, { redis, config })),
      );
      const conn = await clients.connect(tickets.map((t) => `${stack.outputs.WebSocketUrl}?ticket=${t.ticket}`));
      const connected = size - conn.failed;
      const sent = new Map<string, number>();
      let failed = 0;
      let retries = 0;
      let fanoutMs = 0;
      const first = now();
      for (let e = 0; e < events; e++) {
        const t0 = now();
        const p = await publish({ channel, type: 'tick', data: { e, pad: 'x'.repeat(200) } }, { kind: 'server', principal: 'bench' }, { redis, config });
        sent.set(p.id, t0);
        const r = await fanout(channel, p.envelope!, { redis, config, management, options: { concurrency } });
        fanoutMs += now() - t0;
        failed += r.failed + r.gone;
        retries += r.retries;
      }
      const expected = connected * events;
      const deadline = Date.now() + 30_000;
      while ((await clients.count()).n < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
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
      };
      console.log(JSON.stringify(row));
      rows.push(
        `| ${row.connections} | ${row.events} | ${row.deliveries} | ${row.deliveriesPerSec} | ${row.meanFanoutMs} | ${row.p50Ms} | ${row.p99Ms} | ${row.maxMs} | ${row.failures} | ${row.connectPerSec} |`,
      );
      await clients.close();
      // Let the gateway run $disconnect for every connection before the next size.
      while (stack.ws.connectionCount > 0) await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await clients.terminate();
    management.destroy();
    redis.disconnect();
    await stack.close();
  }
  console.log('\n| connections | events | deliveries | deliveries/s | fan-out ms/event | p50 ms | p99 ms | max ms | failures | connects/s |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(r);
  console.log(`\nconcurrency ${concurrency} posts in flight; node ${process.version}; one process: gateway + handlers on the main thread, clients in a worker thread`);
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
