/**
 * `npm run bench:hooks`: the publish latency a publish hook adds (issue 25). One local stack; a WebSocket client on
 * `/live` (and one on the API Gateway stand-in) publishes `--n` events one after the other to a namespace without a
 * hook and to one whose publish hook accepts (a local function behind the Invoke API stand-in, reached by the same
 * signed `Invoke` as on AWS), and the time from `publish()` to its `published` answer is reported (p50, p90, p99).
 * What it measures is the hook's round trip as the runtime pays it: signing, one local HTTP request, the hook's JSON
 * in and out. On AWS, Lambda's own invoke overhead (a warm `RequestResponse` call is typically a few ms inside a
 * region) and the function's duration come on top.
 *
 *   npm run bench:hooks -- --n 1000
 */
import pino from 'pino';
import { DEFAULT_NAMESPACES } from '../core/config';
import { startLocalStack } from '../local/stack';
import { createClient, ticketFrom, type Client, type TicketAnswer } from '../client/src/index';
import { WebSocket as NodeWebSocket } from 'ws';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};

const NAMESPACES = {
  ...DEFAULT_NAMESPACES,
  plain: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100 },
  hooked: { subscribe: 'authenticated', publish: 'authenticated', historySize: 100, hooks: { publish: { function: 'accept' } } },
};

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function run(client: Client, ns: string, n: number): Promise<number[]> {
  const ch = `${ns}:bench`;
  const out: number[] = [];
  // Warm-up: sockets, scripts, JIT.
  for (let i = 0; i < 50; i++) await client.publish(ch, 'msg', { i });
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.publish(ch, 'msg', { i, text: 'hello there' });
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const n = arg('n', 1000);
  const stack = await startLocalStack({
    logger: pino({ level: 'silent' }),
    env: { NAMESPACES_JSON: JSON.stringify(NAMESPACES), LOG_LEVEL: 'silent', USER_PUBLISH_PER_MINUTE: '0', POWERTOOLS_LOG_LEVEL: 'SILENT' },
    functions: { accept: () => ({ result: 'accept' }) },
  });
  const rows: string[] = [];
  try {
    for (const [name, live] of [
      ['/live', true],
      ['API Gateway', false],
    ] as const) {
      const tickets = ticketFrom(stack.outputs.TicketUrl, { headers: { 'x-local-user': 'bench' } });
      const rewrite = async (req: Parameters<typeof tickets>[0]): Promise<TicketAnswer> => {
        const t = await tickets(req);
        return live ? { ...t, wsUrl: `${stack.outputs.LiveUrl}?ticket=${t.ticket}` } : t;
      };
      const client = createClient({ ticket: rewrite, transports: ['ws'], WebSocket: NodeWebSocket, storage: null, events: null });
      client.subscribe('plain:bench', { onEvent: () => undefined });
      await new Promise<void>((resolve) => client.on('state', (s) => s === 'open' && resolve()));
      for (const ns of ['plain', 'hooked']) {
        const d = await run(client, ns, n);
        rows.push(`${name.padEnd(12)} ${ns.padEnd(7)} n=${n}  p50 ${pct(d, 50).toFixed(2)} ms  p90 ${pct(d, 90).toFixed(2)} ms  p99 ${pct(d, 99).toFixed(2)} ms`);
      }
      client.close();
    }
  } finally {
    await stack.close();
  }
  console.log('publish → published, sequential, one client (hooked: a publish hook that accepts, via the Invoke stand-in)');
  for (const r of rows) console.log(r);
}

void main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
