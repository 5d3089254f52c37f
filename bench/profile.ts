/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time per function, top first.
 *
 *   npx tsx bench/profile.ts PROFILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTimeRow {
  fn: string;
  where: string;
  selfMs: number;
  pct: number;
  /** Share of the time the thread was not idle. */
  busyPct: number;
}

export function summariseProfile(file: string, top = 25): { totalMs: number; busyMs: number; rows: SelfTimeRow[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt);
  }
  const agg = new Map<string, SelfTimeRow>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const fn = n.callFrame.functionName || '(anonymous)';
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const short = url ? `${url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : '';
    const key = `${fn}@${short}`;
    const row = agg.get(key) ?? { fn, where: short, selfMs: 0, pct: 0, busyPct: 0 };
    row.selfMs += us / 1000;
    agg.set(key, row);
  }
  const idleMs = [...agg.values()].filter((r) => r.fn === '(idle)').reduce((a, r) => a + r.selfMs, 0);
  const busyMs = total / 1000 - idleMs;
  const rows = [...agg.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const r of rows) {
    r.pct = +((r.selfMs * 1000 * 100) / total).toFixed(1);
    r.busyPct = r.fn === '(idle)' ? 0 : +((r.selfMs * 100) / busyMs).toFixed(1);
    r.selfMs = +r.selfMs.toFixed(1);
  }
  return { totalMs: +(total / 1000).toFixed(1), busyMs: +busyMs.toFixed(1), rows };
}

export function profileMarkdown(file: string, top = 25): string {
  const { totalMs, busyMs, rows } = summariseProfile(file, top);
  const lines = [`Sampled ${totalMs} ms in total, ${busyMs} ms of it not idle.`, '', '| self ms | % of all | % of busy | function | where |', '| ---: | ---: | ---: | --- | --- |'];
  for (const r of rows) lines.push(`| ${r.selfMs} | ${r.pct} | ${r.fn === '(idle)' ? '–' : r.busyPct} | \`${r.fn}\` | ${r.where} |`);
  return lines.join('\n');
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: tsx bench/profile.ts PROFILE.cpuprofile [--top N]');
    process.exit(64);
  }
  const i = process.argv.indexOf('--top');
  console.log(profileMarkdown(file, i > 0 ? Number(process.argv[i + 1]) : 25));
}
