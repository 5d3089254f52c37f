/**
 * What a connection holds on the heap: compares two V8 heap snapshots of one server (before the
 * connections and with N of them open; `npm run bench -- --cases idle --heap-snapshot` writes them)
 * and lists the growth by constructor, per connection, largest first.
 *
 *   npx tsx bench/heap-summary.ts BEFORE.heapsnapshot AFTER.heapsnapshot N [--top 25]
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Count and shallow size of the live objects of a snapshot, by constructor (or V8 type for non-objects). */
export function countByConstructor(file: string): Map<string, { count: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]];
    const name = type === 'object' || type === 'native' || type === 'closure' ? `${s.strings[s.nodes[i + iName]]}${type === 'closure' ? '()' : ''}` : `(${type})`;
    const e = out.get(name) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += s.nodes[i + iSize];
    out.set(name, e);
  }
  return out;
}

export function heapDiffMarkdown(before: string, after: string, connections: number, top = 25): string {
  const a = countByConstructor(before);
  const b = countByConstructor(after);
  const rows = [...b].map(([name, v]) => {
    const o = a.get(name) ?? { count: 0, bytes: 0 };
    return { name, count: (v.count - o.count) / connections, bytes: (v.bytes - o.bytes) / connections };
  });
  const total = rows.reduce((x, r) => x + r.bytes, 0);
  rows.sort((x, y) => y.bytes - x.bytes);
  const lines = [
    `Heap growth per connection (${connections.toLocaleString('en-US')} connections, after full GCs): ${total.toFixed(0)} bytes of JS heap and V8-visible native objects.`,
    '',
    '| bytes / connection | objects / connection | constructor (or type) |',
    '| ---: | ---: | --- |',
  ];
  for (const r of rows.slice(0, top)) lines.push(`| ${r.bytes.toFixed(0)} | ${r.count.toFixed(2)} | \`${r.name}\` |`);
  return lines.join('\n');
}

if (require.main === module) {
  const [before, after, n] = process.argv.slice(2);
  if (!before || !after || !n) {
    console.error('usage: tsx bench/heap-summary.ts BEFORE.heapsnapshot AFTER.heapsnapshot N [--top 25]');
    process.exit(64);
  }
  const i = process.argv.indexOf('--top');
  console.log(heapDiffMarkdown(before, after, Number(n), i > 0 ? Number(process.argv[i + 1]) : 25));
}
