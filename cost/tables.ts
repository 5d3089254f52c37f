import { estimate, idleCost, type DeliveryOption } from './model';
import { loadStage } from './stage';

const usd = (n: number) => `$${n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 0 : 2)}`;

/** The transports the README compares, in its column order. */
const COLUMNS: readonly DeliveryOption[] = ['sse', 'ws-tasks', 'ws-apigw', 'poll-tasks', 'appsync'];

/** README "What it costs": 1k/10k/100k connections at 0.1 and 1 msg/s of 1 KB, one broadcast channel, on a stage. */
export function readmeTable(stageName = 'prod'): string {
  const stage = loadStage(stageName);
  const rows = ['| connections × msg/s | SSE on tasks | WebSocket on tasks | WebSocket on API Gateway | long poll on tasks | AppSync Events | SSE tasks |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
  for (const connections of [1000, 10_000, 100_000]) {
    for (const rate of [0.1, 1]) {
      const e = estimate({ connections, rate, size: 1024, fanout: connections }, stage);
      const by = (t: DeliveryOption) => e.transports.find((x) => x.transport === t)!;
      rows.push(`| ${connections.toLocaleString('en-US')} × ${rate} | ${COLUMNS.map((t) => usd(by(t).total)).join(' | ')} | ${by('sse').tasks} |`);
    }
  }
  return rows.join('\n');
}

/** docs/DEPLOY.md "What it costs at idle": the fixed monthly bill of the dev and prod stages with no traffic. */
export function idleTable(): string {
  const dev = idleCost(loadStage('dev'));
  const prod = idleCost(loadStage('prod'));
  const rows = ['| piece | dev | prod (example) | basis (dev; prod) |', '| --- | ---: | ---: | --- |'];
  // Every piece of either stage (the canary, say, runs only in one), in the order the planner lists them; one row per
  // piece whatever its node type.
  const piece = (item: string) => item.replace(/ (valkey|redis) cache\..*/, ' (Valkey)');
  const names = [...new Set([...prod, ...dev].map((x) => piece(x.item)))];
  for (const name of names) {
    const d = dev.find((x) => piece(x.item) === name);
    const p = prod.find((x) => piece(x.item) === name);
    rows.push(`| ${name} | ${d ? usd(d.monthly) : '—'} | ${p ? usd(p.monthly) : '—'} | ${d?.basis ?? 'none'}; ${p?.basis ?? 'none'} |`);
  }
  const sum = (xs: typeof dev) => xs.reduce((a, x) => a + x.monthly, 0);
  rows.push(`| **total per month** | **${usd(sum(dev))}** | **${usd(sum(prod))}** | |`);
  return rows.join('\n');
}
