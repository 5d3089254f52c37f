import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';
import { lambdaBuildOptions } from '../scripts/build';

/**
 * Lambda "containers" for the benchmarks: each is a worker thread that loads the real esbuild bundle
 * of a Lambda entry (`lambda/<entry>.ts`, built with the shipped settings) with its own environment,
 * and serves one invocation at a time, as a Lambda execution environment does. N containers run N
 * invocations in parallel on separate threads (separate CPUs when the machine has them), where
 * in-process handlers would share the caller's one thread.
 *
 * `invoke(event)` waits for a free container, so the caller's concurrency (the local queue's
 * `workers`, the event source's maximum concurrency) decides how many run at once.
 */

const CONTAINER = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const mod = require(workerData.bundle);
let elu = performance.eventLoopUtilization();
parentPort.on('message', async (m) => {
  if (m.cmd === 'invoke') {
    try {
      const result = await mod.handler(m.event, { awsRequestId: 'bench-' + m.id, functionName: workerData.entry, getRemainingTimeInMillis: () => 60000 });
      parentPort.postMessage({ cmd: 'result', id: m.id, result });
    } catch (err) {
      parentPort.postMessage({ cmd: 'result', id: m.id, error: String(err && err.stack || err) });
    }
  } else if (m.cmd === 'mark') {
    elu = performance.eventLoopUtilization();
    parentPort.postMessage({ cmd: 'marked' });
  } else if (m.cmd === 'cpu') {
    // Active (not idle) time of this container's event loop since the last mark, in ms.
    parentPort.postMessage({ cmd: 'cpu', activeMs: performance.eventLoopUtilization(elu).active });
  }
});
parentPort.postMessage({ cmd: 'ready' });
`;

const built = new Map<string, Promise<string>>();
let buildDir: string | undefined;

/** The bundle of `lambda/<entry>.ts`, built on first use with the shipped settings into a directory removed at exit. */
function bundleOf(entry: string): Promise<string> {
  let p = built.get(entry);
  if (!p) {
    if (!buildDir) {
      const dir = mkdtempSync(join(tmpdir(), 'rt-containers-'));
      buildDir = dir;
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
    const outfile = join(buildDir, `${entry}.js`);
    // The shipped target is the Lambda runtime's Node; build for the Node running the bench.
    p = build({ ...lambdaBuildOptions(`${entry}.ts`), outfile, sourcemap: false, target: `node${process.versions.node.split('.')[0]}`, logLevel: 'error' }).then(() => outfile);
    built.set(entry, p);
  }
  return p;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

class Container {
  readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private replies: ((m: { cmd: string; activeMs?: number }) => void)[] = [];
  private nextId = 0;
  readonly ready: Promise<void>;

  constructor(bundle: string, entry: string, env: Record<string, string>) {
    this.worker = new Worker(CONTAINER, { eval: true, workerData: { bundle, entry }, env: { ...process.env, ...env } });
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('error', reject);
      this.worker.on('message', (m: { cmd: string; id?: number; result?: unknown; error?: string; activeMs?: number }) => {
        if (m.cmd === 'ready') return resolve();
        if (m.cmd === 'result') {
          const p = this.pending.get(m.id!);
          this.pending.delete(m.id!);
          if (m.error !== undefined) p?.reject(new Error(m.error));
          else p?.resolve(m.result);
          return;
        }
        this.replies.shift()?.(m);
      });
    });
  }

  invoke(event: unknown): Promise<unknown> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ cmd: 'invoke', id, event });
    });
  }

  ask(cmd: 'mark' | 'cpu'): Promise<{ activeMs?: number }> {
    return new Promise((resolve) => {
      this.replies.push(resolve);
      this.worker.postMessage({ cmd });
    });
  }
}

export class LambdaContainers<E, R> {
  private readonly free: Container[];
  private waiters: ((c: Container) => void)[] = [];

  private constructor(private readonly all: Container[]) {
    this.free = [...all];
  }

  /** Starts `count` containers of `lambda/<entry>.ts` (built once per process) with `env` over this process's environment. */
  static async start<E, R>(entry: string, count: number, env: Record<string, string>): Promise<LambdaContainers<E, R>> {
    const bundle = await bundleOf(entry);
    const all = Array.from({ length: count }, () => new Container(bundle, entry, env));
    await Promise.all(all.map((c) => c.ready));
    return new LambdaContainers<E, R>(all);
  }

  get size(): number {
    return this.all.length;
  }

  /** Runs `event` in the next free container. */
  readonly invoke = async (event: E): Promise<R> => {
    const c = this.free.pop() ?? (await new Promise<Container>((resolve) => this.waiters.push(resolve)));
    try {
      return (await c.invoke(event)) as R;
    } finally {
      const w = this.waiters.shift();
      if (w) w(c);
      else this.free.push(c);
    }
  };

  /** Starts counting every container's CPU (event-loop active time) from now. */
  async mark(): Promise<void> {
    await Promise.all(this.all.map((c) => c.ask('mark')));
  }

  /** Every container's active milliseconds since the last mark. */
  async activeMs(): Promise<number[]> {
    return Promise.all(this.all.map(async (c) => (await c.ask('cpu')).activeMs ?? 0));
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((c) => c.worker.terminate()));
  }
}
