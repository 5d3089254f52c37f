import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { LAMBDA_BUNDLE_BUDGETS } from './bundle-budgets';
import { lambdaBuildOptions } from './build';

/**
 * `npm run bundles`: builds every Lambda bundle with the real build options (`scripts/build.ts`) into a temporary
 * directory and prints, per bundle, its minified and gzipped size against its budget (`scripts/bundle-budgets.ts`),
 * the module init time (median of fresh `node -e "require(bundle)"` runs minus the median of bare `node -e 0` runs)
 * and the largest inputs from esbuild's metafile. `-- --runs N` sets the runs (default 5), `-- --top N` the inputs
 * listed (default 6, 0 for none), `-- --markdown` prints a table row per bundle for docs/BENCHMARKS.md.
 */

export interface BundleFigures {
  readonly name: string;
  readonly bytes: number;
  readonly gzipBytes: number;
  readonly budget: number;
  readonly metafile: Metafile;
  readonly file: string;
}

/** The Lambda entries (`lambda/*.ts`), by bundle name. */
export function lambdaEntries(): string[] {
  return readdirSync('lambda')
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.replace(/\.ts$/, ''))
    .sort();
}

/** Builds every Lambda bundle into `outDir` with the real options and returns their sizes. */
export async function buildLambdaBundles(outDir: string): Promise<BundleFigures[]> {
  return Promise.all(
    lambdaEntries().map(async (name) => {
      const file = join(outDir, name, 'index.js');
      const result = await build({ ...lambdaBuildOptions(`${name}.ts`), outfile: file, metafile: true, logLevel: 'error' });
      const code = readFileSync(file);
      return { name, bytes: code.length, gzipBytes: gzipSync(code).length, budget: LAMBDA_BUNDLE_BUDGETS[name] ?? 0, metafile: result.metafile, file };
    }),
  );
}

/** Bytes of output per input, largest first, folded by package (`node_modules/<pkg>`) or source folder. */
export function largestInputs(metafile: Metafile, top: number): [string, number][] {
  const byGroup = new Map<string, number>();
  for (const out of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(out.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const group = m ? m[1] : input.split('/').slice(0, 2).join('/');
      byGroup.set(group, (byGroup.get(group) ?? 0) + bytesInOutput);
    }
  }
  return [...byGroup.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function timeNode(args: string[]): number {
  const started = process.hrtime.bigint();
  // A dummy Redis URL: nothing connects at module load; the config parse and the module graph are what is timed.
  const r = spawnSync(process.execPath, args, { env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1' }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${r.stderr}`);
  return ms;
}

/** Median wall time of `runs` fresh `node -e "require(file)"` minus that of `node -e 0`, interleaved. */
export function initMs(file: string, runs: number): { initMs: number; bareMs: number } {
  const bare: number[] = [];
  const loaded: number[] = [];
  for (let i = 0; i < runs; i++) {
    bare.push(timeNode(['-e', '0']));
    loaded.push(timeNode(['-e', `require(${JSON.stringify(resolve(file))})`]));
  }
  return { initMs: median(loaded) - median(bare), bareMs: median(bare) };
}

const kb = (n: number) => `${(n / 1000).toFixed(1)} KB`;

async function main(args: string[]): Promise<void> {
  const flag = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const runs = flag('--runs', 5);
  const top = flag('--top', 6);
  const markdown = args.includes('--markdown');
  const dir = mkdtempSync(join(tmpdir(), 'lambda-bundles-'));
  try {
    const bundles = await buildLambdaBundles(dir);
    let over = 0;
    for (const b of bundles) {
      const t = initMs(b.file, runs);
      const ok = b.bytes <= b.budget;
      if (!ok) over++;
      if (markdown) {
        console.log(`| ${b.name} | ${kb(b.bytes)} | ${kb(b.gzipBytes)} | ${t.initMs.toFixed(0)} ms | ${kb(b.budget)} ${ok ? '✓' : '✗'} |`);
      } else {
        console.log(`${b.name.padEnd(14)} ${kb(b.bytes).padStart(10)} (gzip ${kb(b.gzipBytes).padStart(9)})  budget ${kb(b.budget).padStart(9)} ${ok ? 'ok  ' : 'OVER'}  init ${t.initMs.toFixed(0).padStart(4)} ms (bare node ${t.bareMs.toFixed(0)} ms, median of ${runs})`);
        for (const [input, bytes] of largestInputs(b.metafile, top)) console.log(`    ${kb(bytes).padStart(10)}  ${input}`);
      }
    }
    if (over > 0) {
      console.error(`${over} bundle(s) over budget (scripts/bundle-budgets.ts)`);
      process.exitCode = 1;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
