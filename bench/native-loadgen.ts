/**
 * The native load generator (bench/loadgen.c) for bench/run.ts: compiled at run time, checked, and driven over
 * stdin/stdout lines with the same commands and answers as bench/loadgen.js over IPC (`connect`, `arm`, `status`,
 * `report`, `close`), so run.ts reads both the same way. It speaks SSE and plain WebSockets (`proto` ws: our `/live`,
 * the `ws` reference), not Socket.IO.
 *
 * - `nativeLoadGen()`: `cc -O2` (or $CC; gcc when `cc` is missing) into the temp directory, cached by the source's
 *   hash, then `loadgen --self-test` (the parsers at every split of a fixed chunked SSE stream, the same stream plain,
 *   and the same messages as WebSocket frames: counts, loss, duplicates, unknown sequence numbers). Answers the
 *   binary's path, or why there is none: no C compiler, or a build or self-test failure (then the bench says so and
 *   uses loadgen.js).
 * - `NativeLoadGen`: one process per run. Before its first command, its CLOCK_MONOTONIC (a `time` question) must lie
 *   between this process's process.hrtime() before the question and after the answer, a window of a pipe round trip
 *   (the best of three): the latencies compare its clock with the publisher's `t` (bench/run.ts `payload()`,
 *   process.hrtime() in ms), so a different clock (or an offset above that window) stops the bench.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const SOURCE = join(__dirname, 'loadgen.c');

const hrMs = () => {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
};

/** The first C compiler that answers `--version`: $CC, cc, gcc. */
function compiler(): string | undefined {
  for (const cc of [process.env.CC, 'cc', 'gcc'].filter((x): x is string => !!x)) {
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0) return cc;
  }
  return undefined;
}

/** The compiled, self-tested native load generator: `{ path }`, or `{ why }` it cannot be used here. */
export function nativeLoadGen(): { path: string; why?: undefined } | { path?: undefined; why: string } {
  const cc = compiler();
  if (!cc) return { why: 'no C compiler ($CC, cc or gcc) on PATH' };
  const src = readFileSync(SOURCE);
  const dir = join(tmpdir(), 'realtime-bench-loadgen');
  mkdirSync(dir, { recursive: true });
  const bin = join(dir, `loadgen-${createHash('sha256').update(src).digest('hex').slice(0, 16)}`);
  if (!existsSync(bin)) {
    const tmp = `${bin}.${process.pid}`;
    const r = spawnSync(cc, ['-O2', '-o', tmp, SOURCE, '-lm'], { encoding: 'utf8' });
    if (r.status !== 0) return { why: `${cc} -O2 bench/loadgen.c failed: ${(r.stderr || r.error?.message || '').trim().slice(0, 500)}` };
    renameSync(tmp, bin);
  }
  const t = spawnSync(bin, ['--self-test'], { encoding: 'utf8', timeout: 30_000 });
  if (t.status !== 0) return { why: `its self-test failed: ${`${t.stdout}${t.stderr}`.trim().slice(0, 1000)}` };
  return { path: bin };
}

/** What `connect` may carry for the native load generator (SSE or a WebSocket; no presence counting, resume or source addresses). */
interface ConnectMsg {
  cmd: 'connect';
  host: string;
  port: number;
  paths: string[];
  concurrency: number;
  needReady: boolean;
  timeoutMs: number;
  proto?: string;
  presence?: boolean;
  lastEventId?: string;
  localAddresses?: string[];
}

/** The native load generator process, with loadgen.js's `ask` interface (R: the answers' type in run.ts). */
export class NativeLoadGen<R extends { cmd: string }> {
  readonly proc: ChildProcess;
  private waiting = new Map<string, (m: R) => void>();
  private readonly hello: Promise<void>;
  constructor(bin: string, track: (p: ChildProcess) => ChildProcess) {
    this.proc = track(spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] }));
    let helloed: (err?: Error) => void = () => undefined;
    const hello = new Promise<void>((res, rej) => {
      helloed = (err) => (err ? rej(err) : res());
    });
    this.hello = hello.then(() => this.checkClock());
    this.hello.catch(() => undefined);
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as R & { monoMs?: number; message?: string };
      if (m.cmd === 'hello') {
        helloed();
        return;
      }
      if (m.cmd === 'error') console.error(`loadgen (native): ${m.message}`);
      const w = this.waiting.get(m.cmd);
      if (w) {
        this.waiting.delete(m.cmd);
        w(m);
      }
    });
    this.proc.once('exit', (code, sig) => helloed(new Error(`native loadgen exited (${code ?? sig}) before it answered`)));
  }
  /** Its CLOCK_MONOTONIC against process.hrtime(): the tightest of three round trips must contain its reading. */
  private async checkClock(): Promise<void> {
    let best: { before: number; mono: number; after: number } | undefined;
    for (let i = 0; i < 3; i++) {
      const before = hrMs();
      const m = (await this.send('time\n', 'time', 10_000)) as unknown as { monoMs: number };
      const after = hrMs();
      if (!best || after - before < best.after - best.before) best = { before, mono: m.monoMs, after };
    }
    const { before, mono, after } = best!;
    // 0.001 ms: the three decimals of each side's rounding.
    if (!(mono >= before - 0.001 && mono <= after + 0.001)) throw new Error(`native loadgen: its clock read ${mono.toFixed(3)} ms between process.hrtime() ${before.toFixed(3)} and ${after.toFixed(3)} ms: not the same clock, latencies would be wrong`);
  }
  private send(text: string, reply: string, timeoutMs: number): Promise<R> {
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`native loadgen did not answer ${reply} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(reply, (m) => {
        clearTimeout(t);
        res(m);
      });
      this.proc.stdin!.write(text);
    });
  }
  /** The command as loadgen.js takes it over IPC; written as the native protocol's line(s). */
  private line(msg: { cmd: string } & Record<string, unknown>): string {
    switch (msg.cmd) {
      case 'connect': {
        const c = msg as unknown as ConnectMsg;
        const proto = c.proto ?? 'sse';
        if ((proto !== 'sse' && proto !== 'ws') || c.presence || c.lastEventId || c.localAddresses?.length) throw new Error('native loadgen: SSE or ws only, without presence counting, Last-Event-ID or source addresses (use --loadgen js)');
        if (c.paths.some((p) => /\s/.test(p))) throw new Error('native loadgen: a request path with white space');
        return `connect ${c.port} ${c.concurrency} ${c.needReady ? 1 : 0} ${c.timeoutMs} ${c.paths.length} ${c.host} ${proto}\n${c.paths.map((p) => `${p}\n`).join('')}`;
      }
      case 'arm':
        return `arm ${Number(msg.messages)}\n`;
      case 'status':
        return `status ${msg.resetInterval ? 1 : 0}\n`;
      case 'report':
      case 'close':
      case 'exit':
        return `${msg.cmd}\n`;
      default:
        throw new Error(`native loadgen: no command ${msg.cmd}`);
    }
  }
  async ask(msg: { cmd: string } & Record<string, unknown>, reply: string, timeoutMs = 120_000): Promise<R> {
    await this.hello;
    return this.send(this.line(msg), reply, timeoutMs);
  }
  get pid(): number {
    return this.proc.pid!;
  }
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await this.ask({ cmd: 'close' }, 'closed', 30_000).catch(() => undefined);
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((res) => this.proc.once('exit', () => res()));
    this.proc.stdin!.end('exit\n');
    const kill = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(kill);
  }
}
