/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time per function, top first.
 *
 *   npx tsx bench/profile.ts PROFILE.cpuprofile [--top 25] [--inclusive [SUBSTRING]]
 *   npx tsx bench/profile.ts PROFILE.heapprofile --alloc [--top 25]   (bench --alloc-prof: bytes allocated per function)
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

/**
 * Total time per function, its callees included (each function counted once per sample however often it
 * recurs on the stack): what a cut of that function and everything under it could save.
 */
export function inclusiveProfile(file: string, top = 25, match = ''): { totalMs: number; rows: { fn: string; where: string; totalMs: number; busyPct: number }[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const keyOf = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'}@${n.callFrame.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
  const incl = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const leaf = byId.get(p.samples[i]);
    if (!leaf || leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id)!);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const rows = [...incl]
    .filter(([k]) => k.includes(match) && !k.startsWith('(root)') && !k.startsWith('(program)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, us]) => ({ fn: k.slice(0, k.indexOf('@')), where: k.slice(k.indexOf('@') + 1), totalMs: +(us / 1000).toFixed(1), busyPct: +((us * 100) / busy).toFixed(1) }));
  return { totalMs: +(total / 1000).toFixed(1), rows };
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children?: HeapNode[];
}

/**
 * A sampling heap profile (`.heapprofile`, bench/alloc-preload.js): bytes allocated per function, by itself and
 * with its callees (each function once per sample however often it recurs on the stack).
 */
export function allocationProfile(file: string, top = 25): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  const keyOf = (n: HeapNode) => `${n.callFrame.functionName || '(anonymous)'}@${n.callFrame.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: HeapNode, stack: Set<string>) => {
    const k = keyOf(n);
    const inner = new Set(stack).add(k);
    self.set(k, (self.get(k) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const s of inner) incl.set(s, (incl.get(s) ?? 0) + n.selfSize);
    for (const c of n.children ?? []) walk(c, inner);
  };
  walk(p.head, new Set());
  const table = (m: Map<string, number>) =>
    [...m]
      .filter(([k]) => !k.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `| ${(v / 1e6).toFixed(2)} | ${((v * 100) / total).toFixed(1)} | \`${k.slice(0, k.indexOf('@'))}\` | ${k.slice(k.indexOf('@') + 1)} |`)
      .join('\n');
  const head = '| MB | % | function | where |\n| ---: | ---: | --- | --- |\n';
  return `Sampled ${(total / 1e6).toFixed(1)} MB allocated.\n\nBy itself:\n\n${head}${table(self)}\n\nWith its callees:\n\n${head}${table(incl)}`;
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
  const top = i > 0 ? Number(process.argv[i + 1]) : 25;
  const j = process.argv.indexOf('--inclusive');
  if (process.argv.includes('--alloc')) console.log(allocationProfile(file, top));
  else if (j > 0) {
    // --inclusive [SUBSTRING]: total time per function with its callees, optionally only names/paths containing SUBSTRING.
    const match = process.argv[j + 1] && !process.argv[j + 1].startsWith('--') ? process.argv[j + 1] : '';
    const r = inclusiveProfile(file, top, match);
    console.log(`Sampled ${r.totalMs} ms.\n\n| total ms | % of busy | function | where |\n| ---: | ---: | --- | --- |`);
    for (const x of r.rows) console.log(`| ${x.totalMs} | ${x.busyPct} | \`${x.fn}\` | ${x.where} |`);
  } else console.log(profileMarkdown(file, top));
}
