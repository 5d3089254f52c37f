/**
 * `npm run bench [-- --quick] [--cases 1k,5k,10k,10k50,burst,idle] [--runs 3] [--servers probe,ours,ref,nchan,ours+WRITE_DELAY_MS=20,ours@COMMIT]
 *                [--service dist|head|worktree|PATH] [--soak] [--cpu-prof] [--out DIR]`
 *   --soak [--soak-minutes 10] [--soak-rate 5] [--soak-connections 10000]: hold the connections,
 *          publish at the rate, report server memory, latency and CPU every 30 s (ours by default).
 *   --env KEY=VALUE (repeatable): extra environment for every `ours` server.
 *   --node-arg=FLAG (repeatable): extra node flags for `ours` (e.g. --node-arg=--trace-gc); its stdout goes to DIR/ours-N.stdout.log.
 *   --time-limit-min N: override the hard time limit (default from the cases and runs).
 *   --gc: servers ours and ref run with --expose-gc and bench/gc-preload.js; memory is read after full
 *          GCs (SIGUSR2), before and with the connections open.
 *   --heap-snapshot (implies --gc): ours also writes a heap snapshot at both points (DIR/heap/RUN/), and
 *          results.md gets the heap growth per connection by constructor (bench/heap-summary.ts).
 *   --write-figures: write ours' medians (CPU per delivery, KB per idle connection, base memory, CPU per connect)
 *          into cost/figures.json, the capacity figures `npm run cost` sizes tasks by.
 *   --ws: the WebSocket fan-out comparison instead: servers ours (SSE), ours-ws (our `/live` on the
 *          same service), socketio (Socket.IO 4 + @socket.io/redis-adapter, bench/socketio-server.js)
 *          and ws-ref (bench/ws-ref-server.js, `ws` + ioredis), cases 1k,5k,10k; the WebSocket
 *          clients are raw sockets in bench/loadgen.c (`proto` ws; with --loadgen js in bench/loadgen.js) and
 *          bench/loadgen.js (`proto` socketio).
 *   --storm [--storm-n 10000] [--storm-window 5000-10000] [--storm-missed 50] [--storm-own-channels] [--storm-tickets during|before]
 *          [--servers probe,ref,ours@REV,ours] [--runs N] [--cpu-prof]:
 *          the reconnect storm (issue 27): N clients drop and come back within the window, each with its own ticket from
 *          the local ticket API (fetched on the way back, or with `before` just before the storm) and Last-Event-ID; server
 *          CPU, write/read system calls and Redis commands per connect. The peers probe and ref (no auth) take the same
 *          storm (their clients fetch the ticket too and do not present it) and ours is given as a ratio of their connect.
 *   --capacity [--capacity-n sse:20000,sse:50000,live:50000] [--per-loadgen 10000] [--capacity-hold-s 30]
 *          [--capacity-broadcast-s 30] [--write-figures]: connections per task (issue 27): one process holding N idle
 *          streams or /live sockets from several load generators and loopback source addresses; RSS and heap per
 *          connection, heartbeat CPU, then 1 msg/s; --write-figures writes the planner's per-connection figures.
 *   --presence [--presence-n 10000] [--presence-room 1000] [--presence-churn-s 10] [--runs 2] [--write-figures]: presence
 *          (issue 24, bench/presence.ts): one task per namespace (presence off, members, count), N streams with distinct
 *          subs, one channel of the room's size; CPU per connect, Redis script time per join and leave, CPU per presence
 *          event delivered, snapshot size and time; --write-figures writes the planner's presence figures.
 *   --perf-record: ours and the probe run with --perf-basic-prof (JS frames named in perf) and each fan-out run's publish
 *          window is recorded with `perf record -g -p PID` into DIR/perf/SERVER-RUN.data (read it with `perf report -i`).
 *   Every fan-out run also reports, per delivery: the server's user and system CPU, socket writes (/proc/PID/io `syscw`)
 *          and context switches (voluntary and not, /proc/PID/status), over the same window as its CPU per delivery.
 *   --alloc-prof: ours samples its allocations, garbage included (bench/alloc-preload.js), into DIR/alloc/PID.heapprofile;
 *          `npx tsx bench/profile.ts FILE --alloc` summarises it.
 *   --capacity-report: issue 27's headline in one command: 10k × 20 msg/s, servers probe and ours, medians of 3, our service
 *          bundled from this checkout (unless --service), then the p99 and CPU-per-delivery ratios to the probe against
 *          their targets (≤ 1.25×, ≤ 0.65×), the load generator's own CPU with a bottleneck flag, and the load average.
 *   --curve: the CPU–latency curve of the write window (issue 27): cases 1k,10k,20k,10k50 (20k: 20,000 × 20 msg/s)
 *          and servers probe, ours+MAX_WRITE_DELAY_MS=0, ours+LATENCY_BUDGET_MS=50, ours (100), ours+LATENCY_BUDGET_MS=200
 *          unless --cases/--servers say otherwise; ends with one table, a row per setting.
 *   Write windows of ours: `ours` (adaptive, the default), `ours+MAX_WRITE_DELAY_MS=0` (fixed 0: every
 *          write at the end of its event-loop turn), `ours+WRITE_DELAY_MS=50` (fixed 50 ms); the
 *          CPU-latency curve: --cases 1k,5k,10k,10k50 --servers ours+MAX_WRITE_DELAY_MS=0,ours+WRITE_DELAY_MS=50,ours
 *          (10k50: 10,000 connections × 50 msg/s, not in the default set).
 *   --sse-cluster [--bench-channels 12]: SSE CPU per delivery on a Redis Cluster against one node (issue 23): servers
 *          `ours` (one redis-server) and `ours+REDIS_MODE=cluster` (a local three-primary cluster, the service on its
 *          configuration path), case 1k unless --cases, medians of 3, alternating; the connections spread over
 *          --bench-channels channels, an equal number in each third of the slots (one per primary of the cluster), every
 *          channel published at the case's rate. Ends with the cluster's CPU per delivery and p99 as ratios to one node's.
 *          Any server named `…+REDIS_MODE=cluster` runs on that cluster.
 *   ours@COMMIT (in --servers): our service as of COMMIT (any git revision), bundled by the bench from
 *          `git archive COMMIT core service contract` in a temporary directory, run in the same
 *          alternation as `ours` (which is still chosen by --service): a same-run before/after
 *          comparison, e.g. `--service worktree --servers ours,ours@main`.
 *          `ours-ws@COMMIT` likewise for `/live` (with --ws).
 *
 * Load generator (--loadgen native|js|js,native) of the fan-out cases (SSE, and --ws but Socket.IO) and the soak:
 * - native (the default): bench/loadgen.c, compiled here at start (`cc -O2`, cached in the temp directory by the
 *          source's hash, then its --self-test) and driven over stdin/stdout lines by bench/native-loadgen.ts, which
 *          speaks loadgen.js's commands and answers; without a C compiler the bench says so and uses js.
 * - js:    bench/loadgen.js (plain Node, forked with an IPC channel), which also serves Socket.IO, the storm,
 *          --capacity and --presence.
 * - js,native: every server runs with each (columns `ours#js`, `ours#native`; a server may also be named so in
 *          --servers), to compare them in one run.
 *
 * SSE fan-out benchmark, our service against three peers in the same run:
 * - probe: bench/probe-server.js, the floor (issue 27): node:net, one Redis SUBSCRIBE, each event framed
 *          once and that Buffer written to each socket once; no HTTP library, no features. The
 *          results end with ours (and the others) as ratios to it, and the load generator's own CPU
 *          is in every table; runs where it used 90 % of a core or more are flagged.
 * - ours:  the SSE service bundle (dist/service/main.js by default), every feature on: a ticket per
 *          connection (issued with core issueTicket, redeemed by the service), history, cursors,
 *          heartbeats; events published with core publish() (what the publish Lambda calls).
 * - ref:   bench/ref-server.js, node:http + ioredis, no auth, no ids, no history; Redis PUBLISH.
 * - nchan: nginx + libnginx-mod-nchan (Debian), Redis-backed; HTTP POST to its publisher location.
 *          Installed with apt-get when missing.
 * The peers have no auth: for them the ticket step is skipped.
 *
 * Each run starts a fresh server process, and a fresh load generator in its own process; one private redis-server
 * serves the whole bench. Runs alternate servers (A B C A B C) and
 * the tables show medians. Everything binds 127.0.0.1 and stops by itself (hard time limit).
 */
import { spawn, spawnSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import type { Cluster, default as Redis } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { SERVICE_NODE_FLAGS } from '../contract/bundling';
import { coreConfigFromEnv } from '../core/config';
import { publish } from '../core/events';
import { createRedis, createRedisCluster, isCluster, waitReady } from '../core/redis/client';
import { Keys } from '../core/redis/keys';
import { issueTicket } from '../core/tickets';
import { freePort, RedisCluster, RedisServer } from '../local/redis';
import { heapDiffMarkdown } from './heap-summary';
import { presenceOptionsError, runPresence, writePresenceFigures, type PresenceFrames } from './presence';
import { NativeLoadGen, nativeLoadGen } from './native-loadgen';
import { profileMarkdown } from './profile';

const ROOT = resolve(__dirname, '..');
const PAYLOAD_BYTES = 256;
const SESSION_SECRET = 'bench-session-secret-0123456789abcdef';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

// ---------------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    cases: { type: 'string' },
    runs: { type: 'string' },
    servers: { type: 'string' },
    service: { type: 'string' },
    'capacity-report': { type: 'boolean', default: false },
    'alloc-prof': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'perf-record': { type: 'boolean', default: false },
    'soak-minutes': { type: 'string', default: '10' },
    'soak-rate': { type: 'string', default: '5' },
    'soak-connections': { type: 'string', default: '10000' },
    out: { type: 'string' },
    'write-figures': { type: 'boolean', default: false },
    env: { type: 'string', multiple: true },
    'node-arg': { type: 'string', multiple: true },
    'time-limit-min': { type: 'string' },
    ws: { type: 'boolean', default: false },
    gc: { type: 'boolean', default: false },
    'heap-snapshot': { type: 'boolean', default: false },
    curve: { type: 'boolean', default: false },
    storm: { type: 'boolean', default: false },
    'storm-n': { type: 'string', default: '10000' },
    'storm-missed': { type: 'string', default: '50' },
    'storm-window': { type: 'string', default: '5000-10000' },
    'storm-own-channels': { type: 'boolean', default: false },
    'storm-tickets': { type: 'string', default: 'during' },
    capacity: { type: 'boolean', default: false },
    'capacity-n': { type: 'string', default: 'sse:20000,sse:50000,live:50000' },
    'capacity-hold-s': { type: 'string', default: '30' },
    'capacity-broadcast-s': { type: 'string', default: '30' },
    'per-loadgen': { type: 'string', default: '10000' },
    'sse-cluster': { type: 'boolean', default: false },
    'bench-channels': { type: 'string' },
    presence: { type: 'boolean', default: false },
    'presence-n': { type: 'string', default: '10000' },
    'presence-room': { type: 'string', default: '1000' },
    'presence-churn-s': { type: 'string', default: '10' },
    loadgen: { type: 'string', default: 'native' },
  },
  strict: true,
});

interface Case {
  readonly name: string;
  readonly n: number;
  /** Messages per second for `seconds`; absent for burst and idle. */
  readonly rate?: number;
  readonly seconds?: number;
  readonly burst?: number;
  readonly idle?: boolean;
}
const CASES: Record<string, Case> = {
  '1k': { name: '1k', n: 1000, rate: 20, seconds: 10 },
  '5k': { name: '5k', n: 5000, rate: 20, seconds: 10 },
  /** The probe at about 0.96 of a core on this 2-core VM, the share it had in issue 27's 10k measurement (4.84 µs × 200k/s). */
  '8k': { name: '8k', n: 8000, rate: 20, seconds: 10 },
  '10k': { name: '10k', n: 10000, rate: 20, seconds: 10 },
  '10k50': { name: '10k50', n: 10000, rate: 50, seconds: 10 },
  '20k': { name: '20k', n: 20000, rate: 20, seconds: 10 },
  burst: { name: 'burst', n: 1000, burst: 200 },
  idle: { name: 'idle', n: 10000, idle: true },
};
const CASE_TITLES: Record<string, string> = {
  '1k': '1,000 connections × 20 msg/s for 10 s',
  '5k': '5,000 connections × 20 msg/s for 10 s',
  '8k': '8,000 connections × 20 msg/s for 10 s',
  '10k': '10,000 connections × 20 msg/s for 10 s',
  '10k50': '10,000 connections × 50 msg/s for 10 s',
  '20k': '20,000 connections × 20 msg/s for 10 s',
  burst: 'burst: 200 messages at once to 1,000 connections',
  idle: '10,000 idle connections (memory)',
};

type ServerKind = 'ours' | 'probe' | 'ref' | 'nchan' | 'ours-ws' | 'socketio' | 'ws-ref';
/**
 * A server as named on the command line: a kind, optionally with settings: environment variables
 * for `ours` (`ours+WRITE_DELAY_MS=20`), nginx directives for the server block of `nchan`
 * (`nchan+nchan_message_buffer_length=1000`).
 */
type ServerName = string;
const ALL_SERVERS: ServerKind[] = ['ours', 'probe', 'ref', 'nchan', 'ours-ws', 'socketio', 'ws-ref'];
const SSE_SERVERS = 'probe,ours,ref,nchan';
const WS_SERVERS = 'ours,ours-ws,socketio,ws-ref';
/** A server name without its load generator suffix (`ours#js`, `probe#native`: --loadgen js,native runs each server with each). */
const bare = (s: ServerName) => s.split('#')[0];
const kindOf = (s: ServerName) => bare(s).split('+')[0].split('@')[0] as ServerKind;
/** The git revision of `ours@REV[+…]`; undefined for plain `ours` (built as --service says). */
const revOf = (s: ServerName): string | undefined => /^ours(?:-ws)?@([^+]+)/.exec(bare(s))?.[1];
const envOf = (s: ServerName) => Object.fromEntries(bare(s).split('+').slice(1).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

const quick = args.quick;
const soak = args.soak;
/** --curve: the CPU–latency curve of the write window (issue 27): these cases and settings unless given. */
const CURVE_CASES = '1k,10k,20k,10k50';
const CURVE_SERVERS = 'probe,ours+MAX_WRITE_DELAY_MS=0,ours+LATENCY_BUDGET_MS=50,ours,ours+LATENCY_BUDGET_MS=200';
/** --capacity-report: issue 27's headline, 10k × 20 msg/s, probe and ours, medians of 3, then the ratios against their targets. */
const report = args['capacity-report'];
const sseCluster = args['sse-cluster'];
/** Channels `ours` spreads its connections over (each published at the case's rate). */
const benchChannels = Number(args['bench-channels'] ?? (sseCluster ? 12 : 1));
/** A server that runs on the local Redis Cluster (`ours+REDIS_MODE=cluster`). */
const onCluster = (s: string) => envOf(s).REDIS_MODE === 'cluster';
const caseNames = (args.cases ?? (sseCluster ? '1k' : report ? '10k' : args.curve ? CURVE_CASES : quick ? '1k' : args.ws ? '1k,5k,10k' : '1k,5k,10k,burst,idle')).split(',').map((s) => s.trim()).filter(Boolean);
for (const c of caseNames) if (!CASES[c]) fail(`unknown case "${c}"; known: ${Object.keys(CASES).join(', ')}`);
const runs = Number(args.runs ?? (quick ? 1 : 3));
/** --loadgen: native (bench/loadgen.c, the default for SSE) or js (bench/loadgen.js); `js,native` runs every server with each (`ours#js`, `ours#native`). */
const loadgens = args.loadgen.split(',').map((s) => s.trim());
for (const l of loadgens) if (l !== 'js' && l !== 'native') fail(`--loadgen ${args.loadgen}: js, native or js,native`);
const servers = (args.servers ?? (sseCluster ? 'ours,ours+REDIS_MODE=cluster' : report ? 'probe,ours' : soak || args.storm || args.capacity || args.presence ? 'ours' : args.curve ? CURVE_SERVERS : args.ws ? WS_SERVERS : SSE_SERVERS))
  .split(',')
  .map((s) => s.trim())
  .flatMap((s) => (loadgens.length > 1 && !s.includes('#') ? loadgens.map((l) => `${s}#${l}`) : [s])) as ServerName[];
for (const s of servers) if (s.includes('#') && !['js', 'native'].includes(s.split('#')[1])) fail(`server "${s}": the load generator after # is js or native`);
for (const s of servers) if (!ALL_SERVERS.includes(kindOf(s)) || ((kindOf(s) === 'ref' || kindOf(s) === 'probe') && s.includes('+')) || (kindOf(s) !== 'ours' && kindOf(s) !== 'ours-ws' && s.split('+')[0].includes('@'))) fail(`unknown server "${s}"; known: ${ALL_SERVERS.join(', ')}`);
/** --presence (bench/presence.ts): its sizes, checked before anything starts. */
const presenceOptions = { n: Number(args['presence-n']), room: Number(args['presence-room']), churnSeconds: Number(args['presence-churn-s']), runs: Number(args.runs ?? 2) };
if (args.presence && presenceOptionsError(presenceOptions)) fail(presenceOptionsError(presenceOptions)!);
const heapSnapshots = args['heap-snapshot'];
const fullGc = args.gc || heapSnapshots;
/** Node flags for a server whose memory is read after full GCs (--gc). */
const gcArgv = (): string[] => (fullGc ? ['--expose-gc', '--require', join(__dirname, 'gc-preload.js')] : []);
/** --perf-record: V8 writes /tmp/perf-PID.map, so perf names JS frames. */
const perfArgv = (): string[] => (args['perf-record'] ? ['--perf-basic-prof'] : []);
const extraEnv = Object.fromEntries((args.env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

const outDir = args.out ? resolve(args.out) : mkdtempSync(join(tmpdir(), 'sse-bench-'));
mkdirSync(outDir, { recursive: true });

function fail(msg: string): never {
  console.error(`bench: ${msg}`);
  process.exit(64);
}

// ---------------------------------------------------------------------------------------------
// Child processes: everything started here is killed on exit, whatever happens.

const children = new Set<ChildProcess>();
function track(p: ChildProcess): ChildProcess {
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}
function killAll(): void {
  for (const p of children) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hrMs = () => {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
};

// ---------------------------------------------------------------------------------------------
// /proc readings

function procCpuTicks(pid: number): number {
  const c = procCpuSplit(pid);
  return c.user + c.sys;
}
function procMemKB(pid: number, field: 'VmRSS' | 'Pss'): number {
  try {
    const file = field === 'Pss' ? `/proc/${pid}/smaps_rollup` : `/proc/${pid}/status`;
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
/** A process's user and system CPU so far, in clock ticks. */
function procCpuSplit(pid: number): { user: number; sys: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(rest[11]), sys: Number(rest[12]) };
  } catch {
    return { user: 0, sys: 0 };
  }
}
/** The context switches of a process's main thread so far (/proc/PID/status: the event loop's thread). */
function procCtxSwitches(pid: number): { vol: number; invol: number } {
  return procCounters(`/proc/${pid}/status`, { vol: 'voluntary_ctxt_switches', invol: 'nonvoluntary_ctxt_switches' });
}
/** The same readings summed over a server's processes. */
function serverCounters(server: Server) {
  const out = { user: 0, sys: 0, w: 0, wchar: 0, vol: 0, invol: 0 };
  for (const pid of server.pids()) {
    const c = procCpuSplit(pid);
    const x = procCtxSwitches(pid);
    const io = procSyscalls(pid);
    out.user += c.user;
    out.sys += c.sys;
    out.w += io.w;
    out.wchar += io.wchar;
    out.vol += x.vol;
    out.invol += x.invol;
  }
  return out;
}
/** --perf-record: `perf record -g` on the server's (first) process until the returned function is called. */
function perfRecord(server: Server, name: string, id: number): () => Promise<void> {
  const pid = server.pids()[0];
  if (!args['perf-record'] || !pid) return async () => undefined;
  const dir = join(outDir, 'perf');
  mkdirSync(dir, { recursive: true });
  const proc = spawn('perf', ['record', '-g', '-q', '-p', String(pid), '-o', join(dir, `${name.replace(/[^\w@.+=-]/g, '_')}-${id}.data`)], { stdio: 'ignore' });
  return () =>
    new Promise<void>((done) => {
      if (proc.exitCode !== null) return done();
      proc.once('exit', () => done());
      proc.kill('SIGINT');
    });
}
/**
 * Read and write system calls a process made so far (/proc/PID/io `syscr`, `syscw`): a count machine load does not move;
 * and the bytes it wrote by them (`wchar`).
 */
function procSyscalls(pid: number): { r: number; w: number; wchar: number } {
  return procCounters(`/proc/${pid}/io`, { r: 'syscr', w: 'syscw', wchar: 'wchar' });
}
/** The numeric `name: value` lines of a /proc file, by key (0 when missing or the process is gone). */
function procCounters<K extends string>(file: string, names: Record<K, string>): Record<K, number> {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    /* exited */
  }
  const out = {} as Record<K, number>;
  for (const k of Object.keys(names) as K[]) out[k] = Number(new RegExp(`^${names[k]}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return out;
}
/** Commands the bench's redis-server executed so far (INFO commandstats, all commands). */
async function redisCalls(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) n += Number(m[1]);
  return n;
}
function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid) out.push(Number(d));
    } catch {
      /* exited */
    }
  }
  return out;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  // A cluster: every primary's.
  if (isCluster(redis as unknown)) {
    const nodes = (redis as unknown as Cluster).nodes('master');
    return (await Promise.all(nodes.map((n) => redisCpuSeconds(n)))).reduce((a, b) => a + b, 0);
  }
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_sys') + get('used_cpu_user');
}

function httpGetStatus(port: number, path: string): Promise<number> {
  return new Promise((resolveP) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false }, (res) => {
      res.resume();
      resolveP(res.statusCode ?? 0);
    });
    req.on('error', () => resolveP(0));
    req.setTimeout(2000, () => req.destroy());
    req.end();
  });
}
async function waitHealthy(port: number, path: string, timeoutMs: number, proc?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode} before it was healthy`);
    if ((await httpGetStatus(port, path)) === 200) return;
    await sleep(100);
  }
  throw new Error(`server on ${port} not healthy within ${timeoutMs} ms`);
}

async function stopProcess(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM', graceMs = 8000): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((res) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
    }, graceMs);
    p.once('exit', () => {
      clearTimeout(t);
      res();
    });
    p.kill(signal);
  });
}

// ---------------------------------------------------------------------------------------------
// Payloads: 256 bytes of JSON, `{"n":<seq>,"t":<send time, monotonic ms>,"p":"xxx…"}`.

function payload(n: number): { data: { n: number; t: number; p: string }; json: string } {
  const t = Math.round(hrMs() * 1000) / 1000;
  const bare = JSON.stringify({ n, t, p: '' });
  const data = { n, t, p: 'x'.repeat(Math.max(0, PAYLOAD_BYTES - bare.length)) };
  return { data, json: JSON.stringify(data) };
}

// ---------------------------------------------------------------------------------------------
// Servers under test

interface RunCtx {
  readonly id: number;
  readonly redisUrl: string;
  readonly redis: Redis;
  readonly cpuProfDir?: string;
}

interface Server {
  readonly name: ServerName;
  readonly needReady: boolean;
  /** Memory is summed PSS over a process tree (nginx) rather than one process's RSS. */
  readonly multiProcess: boolean;
  /** What the load generator speaks: SSE (default), our WebSocket protocol / a bare WebSocket, or Engine.IO. */
  readonly proto?: 'sse' | 'ws' | 'socketio';
  start(ctx: RunCtx): Promise<void>;
  pids(): number[];
  /** Request paths for n connections (tickets issued here); resolves with the time spent issuing. */
  paths(n: number): Promise<{ paths: string[]; ticketMs?: number }>;
  publish(n: number): Promise<unknown>;
  stop(): Promise<void>;
}

const ourCore = coreConfigFromEnv({ REDIS_URL: 'redis://127.0.0.1:1', TICKET_TTL_SECONDS: '300' });

/**
 * `n` channels for run `id`, as many in each third of the hash slots as the others (so on a local three-primary cluster,
 * which `redis-cli --cluster create` splits 0-5460, 5461-10922, 10923-16383, each primary owns an equal share), in turn.
 */
function benchChannelNames(id: number, n: number): string[] {
  if (n === 1) return [`chat:bench-${id}`];
  const keys = new Keys(ourCore.keyPrefix);
  const thirds: string[][] = [[], [], []];
  for (let i = 0; thirds.some((t) => t.length < Math.ceil(n / 3)); i++) {
    const name = `chat:bench-${id}-${i}`;
    const slot = calculateSlot(keys.history(name));
    const third = thirds[slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2];
    if (third.length < Math.ceil(n / 3)) third.push(name);
  }
  return Array.from({ length: n }, (_, k) => thirds[k % 3][Math.floor(k / 3)]);
}

class Ours implements Server {
  readonly needReady = true;
  readonly multiProcess = false;
  /** `ours-ws`: WebSockets at `/live` with `ws` tickets; otherwise SSE streams. */
  readonly proto: 'sse' | 'ws';
  private proc?: ChildProcess;
  private port = 0;
  /** The channels of the run; connection i subscribes to channels[i % length], every channel gets every message. */
  private channels: string[] = [];
  private ctx!: RunCtx;
  /** publish() and issueTicket() of the server's own revision (`ours@REV`), else this checkout's. */
  private readonly drive: { publish: typeof publish; issueTicket: typeof issueTicket; core: typeof ourCore };
  constructor(
    private readonly bundle: string,
    readonly name: ServerName = 'ours',
    driver?: string,
  ) {
    this.proto = kindOf(name) === 'ours-ws' ? 'ws' : 'sse';
    if (driver) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const d = require(driver) as { publish: typeof publish; issueTicket: typeof issueTicket; coreConfigFromEnv: (env: NodeJS.ProcessEnv) => typeof ourCore };
      this.drive = { publish: d.publish, issueTicket: d.issueTicket, core: d.coreConfigFromEnv({ REDIS_URL: 'redis://127.0.0.1:1', TICKET_TTL_SECONDS: '300' }) };
    } else this.drive = { publish, issueTicket, core: ourCore };
  }

  async start(ctx: RunCtx): Promise<void> {
    this.ctx = ctx;
    this.port = await freePort();
    this.channels = benchChannelNames(ctx.id, benchChannels);
    // --capacity reads the heap after full GCs too (gc-preload writes process.memoryUsage() to BENCH_MEM_FILE).
    const gc = fullGc || args.capacity ? ['--expose-gc', '--require', join(__dirname, 'gc-preload.js')] : [];
    // --alloc-prof: who allocates, garbage included (bench/alloc-preload.js), written to DIR/alloc when the server exits.
    const alloc = args['alloc-prof'] ? ['--require', join(__dirname, 'alloc-preload.js')] : [];
    if (args['alloc-prof']) mkdirSync(join(outDir, 'alloc'), { recursive: true });
    // The node flags the image's CMD runs the service with, on the command line as there (`ours+NODE_FLAGS=a b` replaces
    // them for one server, V8 flags that NODE_OPTIONS refuses included; `ours+NODE_OPTIONS=…` still replaces them too).
    const own = envOf(this.name);
    const nodeFlags = own.NODE_FLAGS !== undefined ? own.NODE_FLAGS.split(' ').filter(Boolean) : own.NODE_OPTIONS !== undefined ? [] : SERVICE_NODE_FLAGS;
    const execArgv = [...nodeFlags, ...(ctx.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.cpuProfDir}`] : []), ...gc, ...alloc, ...perfArgv(), ...(args['node-arg'] ?? [])];
    // With extra node flags (e.g. --trace-gc) keep the server's stdout, one file per run.
    const stdout = args['node-arg']?.length ? openSync(join(outDir, `ours-${ctx.id}.stdout.log`), 'w') : 'ignore';
    const env = {
      PATH: process.env.PATH,
      PORT: String(this.port),
      HOST: '127.0.0.1',
      REDIS_URL: ctx.redisUrl,
      SESSION_SECRET,
      COOKIE_SECURE: 'false',
      LOG_LEVEL: 'silent',
      TICKET_TTL_SECONDS: '300',
      ...(heapSnapshots && this.proto === 'sse' ? { BENCH_HEAP_DIR: heapDir(ctx.id) } : {}),
      ...(args.capacity ? { BENCH_MEM_FILE: join(outDir, `mem-${ctx.id}.json`) } : {}),
      ...(args['alloc-prof'] ? { BENCH_ALLOC_DIR: join(outDir, 'alloc') } : {}),
      ...extraEnv,
      ...envOf(this.name),
    };
    this.proc = track(spawn(process.execPath, [...execArgv, this.bundle], { env, stdio: ['ignore', stdout, 'inherit'] }));
    await waitHealthy(this.port, '/healthz', 20_000, this.proc);
  }
  pids(): number[] {
    return this.proc?.pid ? [this.proc.pid] : [];
  }
  /** `channelOf(i)`: client i's channel (the storm's `--storm-own-channels`); defaults to the run's channels in turn. */
  async paths(n: number, channelOf = (i: number) => this.channels[i % this.channels.length]) {
    const config = { ...this.drive.core, redisUrl: this.ctx.redisUrl };
    const started = hrMs();
    const out: string[] = [];
    for (let i = 0; i < n; i += 500) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(500, n - i) }, (_, k) =>
          this.drive.issueTicket({ identity: { kind: 'user', sub: `u${i + k}` }, channels: [channelOf(i + k)], transport: this.proto }, { redis: this.ctx.redis, config }),
        ),
      );
      batch.forEach((t, k) => out.push(this.proto === 'ws' ? `/live?ticket=${t.ticket}` : `/events?channels=${channelOf(i + k)}&ticket=${t.ticket}`));
    }
    return { paths: out, ticketMs: hrMs() - started };
  }
  /** Publishes event `n` to `channel` (the storm's own channels), or to each of the run's channels. */
  publish(n: number, channel?: string) {
    const config = { ...this.drive.core, redisUrl: this.ctx.redisUrl };
    const { data } = payload(n);
    const one = (c: string) => this.drive.publish({ channel: c, type: 'bench', data }, { kind: 'server', principal: 'bench' }, { redis: this.ctx.redis, config });
    if (channel) return one(channel);
    // One channel (every case but --sse-cluster): its publish's result, which the storm reads the id from.
    return this.channels.length === 1 ? one(this.channels[0]) : Promise.all(this.channels.map(one));
  }
  async stop(): Promise<void> {
    await stopProcess(this.proc, 'SIGTERM', 15_000);
  }
  get portNo() {
    return this.port;
  }
}

/**
 * bench/ref-server.js (`ref`), or bench/probe-server.js (`probe`, the floor: pre-framed events
 * written to each socket directly, no HTTP library). Both take their events from one Redis SUBSCRIBE.
 */
class Ref implements Server {
  constructor(readonly name: 'ref' | 'probe' = 'ref') {}
  readonly needReady = false;
  readonly multiProcess = false;
  private proc?: ChildProcess;
  private channel = '';
  private ctx!: RunCtx;

  async start(ctx: RunCtx): Promise<void> {
    this.ctx = ctx;
    const port = await freePort();
    this.channel = `${this.name}bench-${ctx.id}`;
    this.port = port;
    const env = { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', REDIS_URL: ctx.redisUrl, CHANNEL: this.channel };
    this.proc = track(spawn(process.execPath, [...gcArgv(), ...perfArgv(), join(__dirname, `${this.name}-server.js`)], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }));
    await waitHealthy(port, '/healthz', 20_000, this.proc);
  }
  port = 0;
  get portNo() {
    return this.port;
  }
  pids(): number[] {
    return this.proc?.pid ? [this.proc.pid] : [];
  }
  async paths(n: number) {
    return { paths: Array.from({ length: n }, () => '/events') };
  }
  publish(n: number) {
    return this.ctx.redis.publish(this.channel, payload(n).json);
  }
  async stop(): Promise<void> {
    await stopProcess(this.proc);
  }
}

/** bench/ws-ref-server.js: `ws` + ioredis, one Redis channel, `ws.send` to every socket. */
class WsRef implements Server {
  readonly name = 'ws-ref' as const;
  readonly needReady = false;
  readonly multiProcess = false;
  readonly proto = 'ws' as const;
  private proc?: ChildProcess;
  private channel = '';
  private ctx!: RunCtx;
  port = 0;

  async start(ctx: RunCtx): Promise<void> {
    this.ctx = ctx;
    this.port = await freePort();
    this.channel = `wsrefbench-${ctx.id}`;
    const env = { PATH: process.env.PATH, PORT: String(this.port), HOST: '127.0.0.1', REDIS_URL: ctx.redisUrl, CHANNEL: this.channel };
    this.proc = track(spawn(process.execPath, [join(__dirname, 'ws-ref-server.js')], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }));
    await waitHealthy(this.port, '/healthz', 20_000, this.proc);
  }
  pids(): number[] {
    return this.proc?.pid ? [this.proc.pid] : [];
  }
  async paths(n: number) {
    return { paths: Array.from({ length: n }, () => '/') };
  }
  publish(n: number) {
    return this.ctx.redis.publish(this.channel, payload(n).json);
  }
  async stop(): Promise<void> {
    await stopProcess(this.proc);
  }
}

/**
 * bench/socketio-server.js: Socket.IO 4 + @socket.io/redis-adapter. Events are emitted from a second
 * Socket.IO server in this process on the same adapter (another "node" without clients), so each
 * crosses Redis as between nodes.
 */
class SocketIo implements Server {
  readonly name = 'socketio' as const;
  readonly needReady = true;
  readonly multiProcess = false;
  readonly proto = 'socketio' as const;
  private proc?: ChildProcess;
  private channel = '';
  private emitter?: { to(room: string): { emit(ev: string, data: unknown): boolean } };
  private clients: Redis[] = [];
  port = 0;

  async start(ctx: RunCtx): Promise<void> {
    this.port = await freePort();
    this.channel = `siobench-${ctx.id}`;
    const env = { PATH: process.env.PATH, PORT: String(this.port), HOST: '127.0.0.1', REDIS_URL: ctx.redisUrl, CHANNEL: this.channel };
    this.proc = track(spawn(process.execPath, [join(__dirname, 'socketio-server.js')], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }));
    await waitHealthy(this.port, '/healthz', 20_000, this.proc);
    const { Server: IoServer } = await import('socket.io');
    const { createAdapter } = await import('@socket.io/redis-adapter');
    const pub = createRedis({ url: ctx.redisUrl, name: 'sio-pub', failFast: false });
    const sub = createRedis({ url: ctx.redisUrl, name: 'sio-sub', failFast: false });
    this.clients = [pub, sub];
    await Promise.all([waitReady(pub), waitReady(sub)]);
    this.emitter = new IoServer({ adapter: createAdapter(pub, sub) });
    await sleep(500);
  }
  pids(): number[] {
    return this.proc?.pid ? [this.proc.pid] : [];
  }
  async paths(n: number) {
    return { paths: Array.from({ length: n }, () => '/socket.io/?EIO=4&transport=websocket') };
  }
  async publish(n: number) {
    this.emitter!.to(this.channel).emit('m', payload(n).data);
  }
  async stop(): Promise<void> {
    // The emitter has no engine (no HTTP server) to close: its adapter goes with its Redis clients.
    for (const c of this.clients) c.disconnect();
    await stopProcess(this.proc);
  }
}

class Nchan implements Server {
  readonly needReady = false;
  readonly multiProcess = true;
  private proc?: ChildProcess;
  private dir = '';
  private channel = '';
  port = 0;
  private agent = new Agent({ keepAlive: true, maxSockets: 16 });
  constructor(readonly name: ServerName = 'nchan') {}

  static ensureInstalled(): string | undefined {
    const ok = () => spawnSync('nginx', ['-v'], { stdio: 'ignore' }).status === 0 && existsSync('/usr/lib/nginx/modules/ngx_nchan_module.so');
    if (ok()) return undefined;
    console.log('bench: installing nginx and libnginx-mod-nchan with apt-get…');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx', 'libnginx-mod-nchan'], { stdio: 'inherit', env, timeout: 300_000 });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'inherit', env, timeout: 300_000 });
      r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx', 'libnginx-mod-nchan'], { stdio: 'inherit', env, timeout: 300_000 });
    }
    return ok() ? undefined : 'nginx + libnginx-mod-nchan could not be installed';
  }

  async start(ctx: RunCtx): Promise<void> {
    this.port = await freePort();
    this.channel = `nchanbench-${ctx.id}`;
    this.dir = mkdtempSync(join(tmpdir(), 'nchan-bench-'));
    const conf = `
daemon off;
master_process on;
user root;
worker_processes auto;
worker_rlimit_nofile 262144;
pid ${this.dir}/nginx.pid;
error_log ${this.dir}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
events { worker_connections 65536; use epoll; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${this.dir}/body;
  proxy_temp_path ${this.dir}/proxy;
  fastcgi_temp_path ${this.dir}/fastcgi;
  uwsgi_temp_path ${this.dir}/uwsgi;
  scgi_temp_path ${this.dir}/scgi;
  keepalive_timeout 65s;
  upstream redis_bench { nchan_redis_server "${ctx.redisUrl}"; }
  server {
    listen 127.0.0.1:${this.port} backlog=4096;
${Object.entries(envOf(this.name)).map(([k, v]) => `    ${k} ${v};\n`).join('')}    location ~ ^/sub/([A-Za-z0-9_-]+)$ {
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_redis_pass redis_bench;
    }
    location ~ ^/pub/([A-Za-z0-9_-]+)$ {
      nchan_publisher;
      nchan_channel_id $1;
      nchan_redis_pass redis_bench;
    }
    location = /healthz { return 200 "ok"; }
  }
}
`;
    writeFileSync(join(this.dir, 'nginx.conf'), conf);
    this.proc = track(spawn('nginx', ['-p', this.dir, '-c', join(this.dir, 'nginx.conf'), '-e', join(this.dir, 'error.log')], { stdio: ['ignore', 'ignore', 'inherit'] }));
    await waitHealthy(this.port, '/healthz', 20_000, this.proc);
  }
  pids(): number[] {
    const master = this.proc?.pid;
    return master ? [master, ...childPids(master)] : [];
  }
  async paths(n: number) {
    return { paths: Array.from({ length: n }, () => `/sub/${this.channel}`) };
  }
  publish(n: number) {
    const body = payload(n).json;
    return new Promise<void>((res, rej) => {
      const req = request(
        { host: '127.0.0.1', port: this.port, path: `/pub/${this.channel}`, method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (r) => {
          r.resume();
          r.on('end', () => (r.statusCode && r.statusCode < 300 ? res() : rej(new Error(`nchan publish ${r.statusCode}`))));
        },
      );
      req.on('error', rej);
      req.end(body);
    });
  }
  async stop(): Promise<void> {
    await stopProcess(this.proc, 'SIGTERM');
    this.agent.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Load generator process

/** What bench/loadgen.js (over IPC) and bench/loadgen.c (as JSON lines) answer (each reply carries a subset). */
interface LoadGenReply {
  cmd: string;
  message?: string;
  ok: number;
  failed: number;
  ms: number;
  firstErr?: string;
  open: number;
  received: number;
  duplicates: number;
  firstRecvMs: number;
  lastRecvMs: number;
  closedUnexpectedly: number;
  interval: { n: number; p50: number | null; p99: number | null; max: number };
  p50: number | null;
  p99: number | null;
  max: number;
  cpuMs: number;
  /** With `presence: true` at connect (bench/presence.ts): presence frames received so far. */
  presence?: PresenceFrames;
}

class LoadGen {
  readonly proc: ChildProcess;
  private waiting = new Map<string, (m: LoadGenReply) => void>();
  constructor() {
    this.proc = track(fork(join(__dirname, 'loadgen.js'), [], { execArgv: ['--max-old-space-size=4096'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    this.proc.on('message', (raw) => {
      const m = raw as LoadGenReply;
      if (m.cmd === 'error') console.error(`loadgen: ${m.message}`);
      const w = this.waiting.get(m.cmd);
      if (w) {
        this.waiting.delete(m.cmd);
        w(m);
      }
    });
  }
  ask(msg: object, reply: string, timeoutMs = 120_000): Promise<LoadGenReply> {
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`loadgen did not answer ${reply} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(reply, (m) => {
        clearTimeout(t);
        res(m);
      });
      this.proc.send(msg);
    });
  }
  get pid(): number {
    return this.proc.pid!;
  }
  async stop(): Promise<void> {
    await this.ask({ cmd: 'close' }, 'closed', 30_000).catch(() => undefined);
    await stopProcess(this.proc, 'SIGTERM', 3000);
  }
}

/** The compiled native load generator (bench/native-loadgen.ts), set in main() when a run may use it. */
let nativeBin: string | undefined;
/**
 * The load generator for server `name` speaking `proto`: native (bench/loadgen.c) for SSE and plain WebSockets unless
 * `name#js` or `--loadgen js` says otherwise or no C compiler was found (main() said so); loadgen.js for Socket.IO.
 */
function loadGenFor(name: ServerName, proto: string): LoadGen | NativeLoadGen<LoadGenReply> {
  const want = name.includes('#') ? name.split('#')[1] : loadgens[0];
  return want === 'native' && (proto === 'sse' || proto === 'ws') && nativeBin ? new NativeLoadGen<LoadGenReply>(nativeBin, track) : new LoadGen();
}

// ---------------------------------------------------------------------------------------------
// One run

interface RunResult {
  server: ServerName;
  case: string;
  run: number;
  connections: number;
  connected: number;
  connectFailed: number;
  connectError?: string;
  ticketMs?: number;
  connectMs: number;
  memBaseKB: number;
  /** With --heap-snapshot: the heap growth per connection by constructor (markdown). */
  heapSummary?: string;
  /** Server CPU while the connections opened, per connection (ticket redemption, cookie, catch-up check). */
  connectCpuUsPerConnection?: number;
  memConnectedKB: number;
  memPerConnKB: number;
  messages?: number;
  expected?: number;
  delivered?: number;
  duplicates?: number;
  deliveredPct?: number;
  p50?: number | null;
  p99?: number | null;
  max?: number;
  deliveriesPerSec?: number;
  serverCpuUsPerDelivery?: number;
  serverCpuPct?: number;
  redisCpuMs?: number;
  loadgenCpuPct?: number;
  loadgenCpuMs?: number;
  /** Which load generator ran: `native` (bench/loadgen.c) or `js` (bench/loadgen.js). */
  loadgen?: 'native' | 'js';
  loadgenCpuUsPerDelivery?: number;
  /** The server's user and system CPU per delivery over the window (µs); together serverCpuUsPerDelivery. */
  serverUserUsPerDelivery?: number;
  serverSysUsPerDelivery?: number;
  /** Socket writes (/proc/PID/io `syscw`) per delivery, and the CPU per write (µs). */
  writesPerDelivery?: number;
  cpuUsPerWrite?: number;
  /**
   * Per socket write: the system CPU (µs) and the bytes written (/proc/PID/io `wchar`). On loopback a write's system time
   * includes the receiving socket's work (queueing, waking the reader), so it grows with the bytes a write carries.
   */
  sysUsPerWrite?: number;
  bytesPerWrite?: number;
  /** The main thread's context switches per 1000 deliveries: voluntary (the loop slept in epoll) and not (preempted). */
  voluntaryPerKDelivery?: number;
  nonvoluntaryPerKDelivery?: number;
  windowMs?: number;
  closedDuringRun?: number;
  publishErrors?: number;
  error?: string;
}

let runCounter = 0;

function memKB(server: Server): number {
  return server.pids().reduce((a, pid) => a + procMemKB(pid, server.multiProcess ? 'Pss' : 'VmRSS'), 0);
}
/** Where ours writes the heap snapshots of run `id` (--heap-snapshot). */
function heapDir(id: number): string {
  const d = join(outDir, 'heap', String(id));
  mkdirSync(d, { recursive: true });
  return d;
}

/** With --gc: full GCs in the server (and, with --heap-snapshot, its snapshot `n` written) before memory is read. */
async function collect(server: Server, ctx: RunCtx, n: number): Promise<string | undefined> {
  if (!fullGc || (kindOf(server.name) !== 'ours' && kindOf(server.name) !== 'ref' && kindOf(server.name) !== 'probe')) return undefined;
  for (const pid of server.pids()) process.kill(pid, 'SIGUSR2');
  const file = heapSnapshots && kindOf(server.name) === 'ours' ? join(heapDir(ctx.id), `${server.pids()[0]}-${n}.heapsnapshot`) : undefined;
  if (!file) {
    await sleep(1500);
    return undefined;
  }
  // The snapshot is written synchronously: done once the server answers again.
  const deadline = hrMs() + 120_000;
  while (!existsSync(file) && hrMs() < deadline) await sleep(200);
  await waitHealthy((server as unknown as { portNo: number }).portNo, '/healthz', 120_000);
  await sleep(500);
  return file;
}

function cpuTicks(server: Server): number {
  return server.pids().reduce((a, pid) => a + procCpuTicks(pid), 0);
}

async function runOne(server: Server, c: Case, run: number, redisUrl: string, redis: Redis, cpuProfDir?: string, name: ServerName = server.name): Promise<RunResult> {
  const ctx: RunCtx = { id: ++runCounter, redisUrl, redis, cpuProfDir };
  const res: RunResult = { server: name, case: c.name, run, connections: c.n, connected: 0, connectFailed: 0, connectMs: 0, memBaseKB: 0, memConnectedKB: 0, memPerConnKB: 0 };
  let lg: LoadGen | NativeLoadGen<LoadGenReply> | undefined;
  try {
    await server.start(ctx);
    lg = loadGenFor(name, server.proto ?? 'sse');
    res.loadgen = lg instanceof NativeLoadGen ? 'native' : 'js';
    await sleep(1000);
    const heapBefore = await collect(server, ctx, 1);
    res.memBaseKB = memKB(server);
    const { paths, ticketMs } = await server.paths(c.n);
    res.ticketMs = ticketMs;
    const port = (server as unknown as { port?: number; portNo?: number }).portNo ?? (server as unknown as { port: number }).port;
    const connectCpu0 = cpuTicks(server);
    const conn = await lg.ask({ cmd: 'connect', host: '127.0.0.1', port, paths, concurrency: 200, needReady: server.needReady, proto: server.proto ?? 'sse', timeoutMs: 60_000 }, 'connected', 300_000);
    const connectCpu1 = cpuTicks(server);
    res.connected = conn.ok;
    res.connectFailed = conn.failed;
    res.connectError = conn.firstErr;
    res.connectMs = Math.round(conn.ms);
    if (conn.ok) res.connectCpuUsPerConnection = +((((connectCpu1 - connectCpu0) * 1e6) / CLK_TCK) / conn.ok).toFixed(1);
    await sleep(c.idle ? 3000 : 1000);
    const heapAfter = await collect(server, ctx, 2);
    res.memConnectedKB = memKB(server);
    res.memPerConnKB = conn.ok ? +((res.memConnectedKB - res.memBaseKB) / conn.ok).toFixed(2) : 0;
    if (heapBefore && heapAfter && conn.ok) res.heapSummary = heapDiffMarkdown(heapBefore, heapAfter, conn.ok, 20);
    if (c.idle) return res;

    const messages = c.burst ?? c.rate! * c.seconds!;
    res.messages = messages;
    const armed = await lg.ask({ cmd: 'arm', messages }, 'armed');
    res.expected = armed.open * messages;
    await sleep(200);
    const stopPerf = perfRecord(server, name, ctx.id);
    const cpu0 = cpuTicks(server);
    const k0 = serverCounters(server);
    const redis0 = await redisCpuSeconds(redis);
    const lgCpu0 = procCpuTicks(lg.pid);
    const t0 = hrMs();
    let publishErrors = 0;
    const pending: Promise<unknown>[] = [];
    const fire = (i: number) =>
      pending.push(
        server.publish(i).catch(() => {
          publishErrors++;
        }),
      );
    if (c.burst) {
      for (let i = 0; i < messages; i++) fire(i);
    } else {
      const interval = 1000 / c.rate!;
      for (let i = 0; i < messages; i++) {
        const due = t0 + i * interval;
        const wait = due - hrMs();
        if (wait > 0) await sleep(wait);
        fire(i);
      }
    }
    await Promise.all(pending);
    const lastPublish = hrMs();
    // Drain: until everything arrived, no progress for 5 s, or 60 s after the last publish.
    let last = -1;
    let lastProgress = hrMs();
    for (;;) {
      const st = await lg.ask({ cmd: 'status' }, 'status');
      if (st.received >= res.expected) break;
      if (st.received !== last) {
        last = st.received;
        lastProgress = hrMs();
      }
      if (hrMs() - lastProgress > 5000 || hrMs() - lastPublish > 60_000) break;
      await sleep(100);
    }
    const cpu1 = cpuTicks(server);
    const k1 = serverCounters(server);
    await stopPerf();
    const redis1 = await redisCpuSeconds(redis);
    const lgCpu1 = procCpuTicks(lg.pid);
    const rep = await lg.ask({ cmd: 'report' }, 'report');
    const per = (d: number, scale = 1) => (rep.received ? +((d * scale) / rep.received).toFixed(3) : undefined);
    const windowMs = (rep.lastRecvMs || hrMs()) - t0;
    const cpuUs = ((cpu1 - cpu0) * 1e6) / CLK_TCK;
    Object.assign(res, {
      delivered: rep.received,
      duplicates: rep.duplicates,
      deliveredPct: res.expected ? +((100 * rep.received) / res.expected).toFixed(3) : 0,
      p50: rep.p50,
      p99: rep.p99,
      max: rep.max,
      windowMs: Math.round(windowMs),
      deliveriesPerSec: Math.round(rep.received / (windowMs / 1000)),
      serverCpuUsPerDelivery: rep.received ? +(cpuUs / rep.received).toFixed(2) : undefined,
      serverCpuPct: Math.round((cpuUs / 1000 / windowMs) * 100),
      serverUserUsPerDelivery: per(((k1.user - k0.user) * 1e6) / CLK_TCK),
      serverSysUsPerDelivery: per(((k1.sys - k0.sys) * 1e6) / CLK_TCK),
      writesPerDelivery: per(k1.w - k0.w),
      cpuUsPerWrite: k1.w > k0.w ? +(cpuUs / (k1.w - k0.w)).toFixed(2) : undefined,
      sysUsPerWrite: k1.w > k0.w ? +(((k1.sys - k0.sys) * 1e6) / CLK_TCK / (k1.w - k0.w)).toFixed(2) : undefined,
      bytesPerWrite: k1.w > k0.w ? Math.round((k1.wchar - k0.wchar) / (k1.w - k0.w)) : undefined,
      voluntaryPerKDelivery: per(k1.vol - k0.vol, 1000),
      nonvoluntaryPerKDelivery: per(k1.invol - k0.invol, 1000),
      redisCpuMs: Math.round((redis1 - redis0) * 1000),
      loadgenCpuMs: Math.round(((lgCpu1 - lgCpu0) * 1000) / CLK_TCK),
      loadgenCpuPct: Math.round(((((lgCpu1 - lgCpu0) * 1000) / CLK_TCK) / windowMs) * 100),
      loadgenCpuUsPerDelivery: rep.received ? +((((lgCpu1 - lgCpu0) * 1e6) / CLK_TCK) / rep.received).toFixed(2) : undefined,
      closedDuringRun: rep.closedUnexpectedly,
      publishErrors,
    });
    return res;
  } catch (err) {
    res.error = err instanceof Error ? err.message : String(err);
    return res;
  } finally {
    await lg?.stop();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Soak: hold N connections at a low rate, memory every 30 s

async function runSoak(server: Server, redisUrl: string, redis: Redis) {
  const n = Number(args['soak-connections']);
  const rate = Number(args['soak-rate']);
  const minutes = Number(args['soak-minutes']);
  const messages = Math.round(rate * minutes * 60);
  const ctx: RunCtx = { id: ++runCounter, redisUrl, redis };
  const rows: Record<string, number | string | null>[] = [];
  const lg = loadGenFor(server.name, server.proto ?? 'sse');
  try {
    await server.start(ctx);
    await sleep(1000);
    const base = memKB(server);
    const { paths } = await server.paths(n);
    const port = (server as unknown as { portNo?: number; port: number }).portNo ?? (server as unknown as { port: number }).port;
    const conn = await lg.ask({ cmd: 'connect', host: '127.0.0.1', port, paths, concurrency: 200, needReady: server.needReady, proto: server.proto ?? 'sse', timeoutMs: 60_000 }, 'connected', 300_000);
    console.log(`soak ${server.name}: ${conn.ok}/${n} connected in ${Math.round(conn.ms)} ms; ${messages} messages at ${rate}/s`);
    const armed = await lg.ask({ cmd: 'arm', messages }, 'armed');
    const t0 = hrMs();
    let cpuPrev = cpuTicks(server);
    let nextReport = t0 + 30_000;
    const interval = 1000 / rate;
    const pending: Promise<unknown>[] = [];
    let publishErrors = 0;
    let prevReceived = 0;
    const sample = async () => {
      const st = await lg.ask({ cmd: 'status', resetInterval: true }, 'status');
      const cpu = cpuTicks(server);
      const row = {
        t_s: Math.round((hrMs() - t0) / 1000),
        memMB: +(memKB(server) / 1024).toFixed(1),
        perConnKB: +((memKB(server) - base) / Math.max(1, st.open)).toFixed(2),
        open: st.open,
        delivered: st.received - prevReceived,
        p99: st.interval.p99,
        max: st.interval.max,
        cpuPct: Math.round((((cpu - cpuPrev) * 1000) / CLK_TCK / 30_000) * 100),
      };
      prevReceived = st.received;
      cpuPrev = cpu;
      rows.push(row);
      console.log(`soak ${JSON.stringify(row)}`);
    };
    for (let i = 0; i < messages; i++) {
      const due = t0 + i * interval;
      while (hrMs() >= nextReport) {
        await sample();
        nextReport += 30_000;
      }
      const wait = due - hrMs();
      if (wait > 0) await sleep(wait);
      const p = server.publish(i).catch(() => {
        publishErrors++;
      });
      pending.push(p);
      if (pending.length > 1000) pending.splice(0, pending.length - 100);
    }
    await Promise.all(pending);
    await sleep(2000);
    await sample();
    const rep = await lg.ask({ cmd: 'report' }, 'report');
    return {
      server: server.name,
      connections: n,
      connected: conn.ok,
      rate,
      minutes,
      baseMB: +(base / 1024).toFixed(1),
      expected: armed.open * messages,
      delivered: rep.received,
      duplicates: rep.duplicates,
      closedDuringRun: rep.closedUnexpectedly,
      p50: rep.p50,
      p99: rep.p99,
      max: rep.max,
      publishErrors,
      rows,
    };
  } finally {
    await lg.stop();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The reconnect storm (issue 27): a task's clients come back at once, each with its own ticket

interface StormPhase {
  server: ServerName;
  run: number;
  phase: string;
  missed: number;
  connected: number;
  failed: number;
  ticketFailed: number;
  firstErr?: string;
  /** From the drop to the last client ready, ms. */
  lastReadyMs: number;
  ticketMsMean: number;
  /** Server CPU from the first reconnect to the last client caught up, per client, µs. */
  serverCpuUsPerConnect: number;
  serverCpuPct: number;
  /** The load generator's CPU and this process's (the ticket API runs here), % of one core over the arrivals (the window's start to the last client ready). */
  loadgenCpuPct: number;
  ticketApiCpuPct: number;
  /** The server's write and read system calls per client (sockets to clients and to Redis): independent of machine load. */
  serverWritesPerConnect: number;
  serverReadsPerConnect: number;
  /** Redis commands per client over the phase (the ticket API's included: issuing a ticket is two). */
  redisCallsPerConnect: number;
  caughtUp?: number;
  expected?: number;
  /** Server CPU over the drop before it (the clients' resets and 2 s after), per stream dropped, µs. */
  dropCpuUsPerStream: number;
  /** The phase's measured span on the monotonic clock, ms (the clock of `--cpu-prof`'s sample times, to read the profile of the phase alone). */
  monoMs: [number, number];
}

/**
 * `--storm`: each server of --servers (ours by default; `ours@REV` for a same-run before/after) holds N
 * streams, they all drop (RST), and come back within the storm window (uniform jitter, seeded), each
 * POSTing its own ticket request to the local stack's ticket API (local/stack.ts, the Lambda handler
 * that runs on AWS, in this process: its CPU is not the server's) and resuming with `Last-Event-ID`.
 * Twice per server: once with nothing missed (the connect cost alone), once with `--storm-missed`
 * events published while they were away (connect + catch-up). --runs times, servers alternating.
 */
async function runStorm(make: (s: ServerName) => Server, redisUrl: string, redis: Redis, cpuProfDir?: string) {
  const n = Number(args['storm-n']);
  // Each client on a channel of its own: no two share what the hub knows of a channel, so each resume replays.
  const own = args['storm-own-channels'] === true;
  const missed = own ? 0 : Number(args['storm-missed']);
  const stormRuns = Number(args.runs ?? 1);
  // `during`: each client POSTs for its ticket when it comes back (the case as issue 27 states it); `before`: each fetched
  // its own ticket just before the storm, so the arrivals are the connects alone and the ticket API's CPU (a Lambda on AWS,
  // this process here) is not taken from the two cores while the server is measured.
  const ticketsWhen = args['storm-tickets'];
  if (ticketsWhen !== 'during' && ticketsWhen !== 'before') fail('--storm-tickets during|before');
  const [minDelayMs, maxDelayMs] = args['storm-window']!.split('-').map(Number);
  if (!(n > 0) || !(missed >= 0) || !(minDelayMs >= 0) || !(maxDelayMs >= minDelayMs)) fail('--storm-n N --storm-missed K --storm-window MIN-MAX (ms)');
  if (servers.some((s) => kindOf(s) !== 'ours' && kindOf(s) !== 'probe' && kindOf(s) !== 'ref')) fail('--storm: servers are ours, ours+ENV=…, ours@REV (SSE with tickets), and the peers probe and ref');
  const { startLocalStack } = await import('../local/stack');
  const stack = await startLocalStack({ redisUrl, env: { LOG_LEVEL: 'silent' } });
  const phases: StormPhase[] = [];
  const selfTicks = () => procCpuTicks(process.pid);
  try {
    for (let run = 1; run <= stormRuns; run++) {
      for (const name of servers) {
        const server = make(name) as Ours | Ref;
        // The peers (no auth, no ids, no history): the none-missed phase only, the ticket fetched and not used.
        const peer = server instanceof Ref;
        const ctx: RunCtx = { id: ++runCounter, redisUrl, redis, cpuProfDir: peer ? undefined : cpuProfDir };
        const lg = new LoadGen();
        try {
          await server.start(ctx);
          const channel = `chat:bench-${ctx.id}`;
          const channels = own ? Array.from({ length: n }, (_, i) => `${channel}-${i}`) : undefined;
          const { paths } = server instanceof Ours ? await server.paths(n, channels && ((i) => channels[i])) : await server.paths(n);
          const port = server.portNo;
          const conn = await lg.ask({ cmd: 'connect', host: '127.0.0.1', port, paths, concurrency: 200, needReady: server.needReady, proto: 'sse', timeoutMs: 60_000 }, 'connected', 300_000);
          console.log(`storm: ${name} run ${run}: ${conn.ok}/${n} connected first (${Math.round(conn.ms)} ms)`);
          for (const k of own || peer ? [0] : [0, missed]) {
            // The last event they saw, then the drop, then k events while they are away.
            const seen = await server.publish(-1);
            const lastEventId = peer ? '0' : (seen as { id: string }).id;
            let lastEventIds: string[] | undefined;
            if (channels) {
              lastEventIds = [];
              for (let i = 0; i < n; i += 500) {
                const ids = await Promise.all(channels.slice(i, i + 500).map(async (c) => ((await server.publish(-1, c)) as { id: string }).id));
                lastEventIds.push(...ids);
              }
            }
            // The drop itself (each stream reset by its client: the server reads the RST, or writes into it) costs too.
            const drop0 = cpuTicks(server);
            await lg.ask({ cmd: 'close' }, 'closed', 30_000);
            await sleep(2000);
            const dropUs = ((cpuTicks(server) - drop0) * 1e6) / CLK_TCK;
            for (let i = 0; i < k; i++) await server.publish(i);
            if (ticketsWhen === 'before') {
              const held = (await lg.ask({ cmd: 'stormTickets', n, ticketUrl: stack.outputs.TicketUrl, channel, channels }, 'stormTicketsHeld', 300_000)) as unknown as { ok: number; ms: number; firstErr?: string };
              console.log(`storm: ${name} run ${run}: ${held.ok}/${n} tickets fetched before the storm (${Math.round(held.ms)} ms)${held.firstErr ? `; first error: ${held.firstErr}` : ''}`);
            }
            const [cpu0, lg0, me0, io0, rc0] = [cpuTicks(server), procCpuTicks(lg.pid), selfTicks(), procSyscalls(server.pids()[0]), await redisCalls(redis)];
            const t0 = hrMs();
            const st = (await lg.ask(
              { cmd: 'storm', n, messages: k, host: '127.0.0.1', port, ticketUrl: stack.outputs.TicketUrl, channel, channels, lastEventId, lastEventIds, minDelayMs, maxDelayMs, seed: 27, needReady: server.needReady, plainPath: peer ? '/events' : undefined, heldTickets: ticketsWhen === 'before', proto: 'sse', timeoutMs: 60_000 },
              'stormed',
              300_000,
            )) as unknown as { ok: number; failed: number; ticketFailed: number; firstErr?: string; lastReadyMs: number; ticketMsMean: number };
            let caughtUp: number | undefined;
            if (k > 0) {
              let last = -1;
              let lastProgress = hrMs();
              for (;;) {
                const s = await lg.ask({ cmd: 'status' }, 'status');
                caughtUp = s.received;
                if (s.received >= st.ok * k) break;
                if (s.received !== last) [last, lastProgress] = [s.received, hrMs()];
                if (hrMs() - lastProgress > 5000) break;
                await sleep(100);
              }
            }
            const cpuUs = ((cpuTicks(server) - cpu0) * 1e6) / CLK_TCK;
            const io1 = procSyscalls(server.pids()[0]);
            const rc1 = await redisCalls(redis);
            const wallMs = hrMs() - t0;
            const per = (x: number) => +(x / Math.max(1, st.ok)).toFixed(2);
            // The load side's CPU as a share of the arrivals' span (from the window's start to the last client ready): it
            // works then, and a share of the whole phase (its first MIN ms idle) hid a saturated ticket API.
            const arrivalsMs = Math.max(1, st.lastReadyMs - minDelayMs);
            const pct = (ticks: number) => Math.round((((ticks * 1000) / CLK_TCK) / arrivalsMs) * 100);
            const p: StormPhase = {
              server: name,
              run,
              phase: k ? `resume, ${k} missed` : 'resume, none missed',
              missed: k,
              connected: st.ok,
              failed: st.failed,
              ticketFailed: st.ticketFailed,
              firstErr: st.firstErr,
              lastReadyMs: Math.round(st.lastReadyMs),
              ticketMsMean: +st.ticketMsMean.toFixed(1),
              serverCpuUsPerConnect: +(cpuUs / Math.max(1, st.ok)).toFixed(1),
              serverCpuPct: Math.round((cpuUs / 1000 / wallMs) * 100),
              loadgenCpuPct: pct(procCpuTicks(lg.pid) - lg0),
              ticketApiCpuPct: pct(selfTicks() - me0),
              serverWritesPerConnect: per(io1.w - io0.w),
              serverReadsPerConnect: per(io1.r - io0.r),
              redisCallsPerConnect: per(rc1 - rc0 - 1),
              caughtUp,
              expected: k ? st.ok * k : undefined,
              dropCpuUsPerStream: +(dropUs / n).toFixed(1),
              monoMs: [Math.round(t0), Math.round(t0 + wallMs)],
            };
            phases.push(p);
            console.log(`storm: ${JSON.stringify(p)}`);
            if (p.loadgenCpuPct >= LOADGEN_SATURATED_PCT || p.ticketApiCpuPct >= LOADGEN_SATURATED_PCT) {
              console.error(`bench: warning: ${name} run ${run} ${p.phase}: the load generator (${p.loadgenCpuPct} %) or the ticket API (${p.ticketApiCpuPct} %) used most of a core: the storm arrived slower than its window`);
            }
          }
        } finally {
          await lg.stop();
          await server.stop();
        }
      }
    }
  } finally {
    await stack.close();
  }
  const perConnect = (s: ServerName, k: number) => median(phases.filter((p) => p.server === s && p.missed === k).map((p) => p.serverCpuUsPerConnect));
  const catchUp = (s: ServerName) => {
    const a = perConnect(s, 0);
    const b = perConnect(s, missed);
    return a !== undefined && b !== undefined && missed ? +((b - a) / missed).toFixed(2) : undefined;
  };
  let md = `\n#### Reconnect storm: ${n.toLocaleString('en-US')} clients back within ${minDelayMs / 1000}–${maxDelayMs / 1000} s, own ticket each (${ticketsWhen === 'before' ? 'fetched just before the storm' : 'fetched on the way back'}), \`Last-Event-ID\`${own ? ', each on a channel of its own' : ', one channel'}\n\n`;
  md += '| server | run | phase | connected | failed (of which ticket) | last ready after, ms | ticket round trip mean, ms | server CPU µs / connect | server writes / reads per connect | Redis commands per connect | server CPU % of a core | load generator / ticket API CPU, % of a core over the arrivals | caught up / expected |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n';
  for (const p of phases) {
    const flag = p.loadgenCpuPct >= LOADGEN_SATURATED_PCT || p.ticketApiCpuPct >= LOADGEN_SATURATED_PCT ? ' (bottleneck)' : '';
    md += `| ${p.server} | ${p.run} | ${p.phase} | ${p.connected} | ${p.failed} (${p.ticketFailed}) | ${p.lastReadyMs} | ${p.ticketMsMean} | ${p.serverCpuUsPerConnect} | ${p.serverWritesPerConnect} / ${p.serverReadsPerConnect} | ${p.redisCallsPerConnect} | ${p.serverCpuPct} | ${p.loadgenCpuPct} / ${p.ticketApiCpuPct}${flag} | ${p.expected ? `${p.caughtUp} / ${p.expected}` : '–'} |\n`;
  }
  md += `\nMedians over ${stormRuns} run(s): server CPU µs per connect with nothing missed (target ≤ 200), its write system calls and Redis commands per connect, and the catch-up cost (the difference of the two phases over ${missed} missed events, per event per client):\n\n| server | µs / connect | writes / connect | Redis commands / connect | µs / missed event / client |\n| --- | ---: | ---: | ---: | ---: |\n`;
  for (const s of servers) {
    const c = catchUp(s);
    const med = (get: (p: StormPhase) => number) => median(phases.filter((p) => p.server === s && p.missed === 0).map(get)) ?? '–';
    md += `| ${s} | ${perConnect(s, 0) ?? '–'} | ${med((p) => p.serverWritesPerConnect)} | ${med((p) => p.redisCallsPerConnect)} | ${c ?? '–'}${c !== undefined && c < 0 ? ' (negative: below this machine\'s noise)' : ''} |\n`;
  }
  // The peers' connect in the same storm: what a TCP connection and an SSE head cost here with no auth and no session.
  const floors = servers.filter((s) => kindOf(s) === 'probe' || kindOf(s) === 'ref');
  if (floors.length) {
    md += `\nOurs as a ratio of each peer's connect in the same storm (medians, nothing missed; the peers' clients fetch a ticket too, so they arrive as ours do, and the peers ignore it):\n\n| server | ${floors.map((f) => `÷ ${f}`).join(' | ')} |\n| --- | ${floors.map(() => '---:').join(' | ')} |\n`;
    for (const s of servers.filter((x) => kindOf(x) === 'ours')) {
      md += `| ${s} | ${floors.map((f) => { const [a, b] = [perConnect(s, 0), perConnect(f, 0)]; return a !== undefined && b ? `${(a / b).toFixed(2)}× (${a} ÷ ${b} µs)` : '–'; }).join(' | ')} |\n`;
    }
  }
  const late = phases.filter((p) => p.lastReadyMs > maxDelayMs * 1.5);
  if (late.length) {
    md += `\nStretched: in ${late.length} of ${phases.length} phases the last client was ready more than 1.5× the window after the drop (${late.map((p) => `${(p.lastReadyMs / 1000).toFixed(1)} s`).join(', ')}): the clients came back slower than the storm asks (ticket round trips queued on a busy machine), so the server saw a milder storm; rerun on a quiet machine.\n`;
  }
  if (phases.some((p) => p.firstErr)) md += `\nFirst errors: ${phases.filter((p) => p.firstErr).map((p) => `${p.server} run ${p.run} ${p.phase}: ${p.firstErr}`).join('; ')}\n`;
  return { n, missed, minDelayMs, maxDelayMs, phases, md };
}

// ---------------------------------------------------------------------------------------------
// Connections per task (issue 27): one task process holding N idle streams or /live sockets

interface CapacityRow {
  target: string;
  connections: number;
  connected: number;
  failed: number;
  firstErr?: string;
  loadgens: number;
  baseMB: number;
  heldMB: number;
  kbPerConnection: number;
  /** RSS growth per connection after full GCs (both readings after `gc()` twice). */
  kbPerConnectionGc?: number;
  /** V8 heap used, growth per connection, after full GCs. */
  heapKbPerConnection?: number;
  /** Off-heap (`external`, Buffers included), growth per connection, after full GCs. */
  externalKbPerConnection?: number;
  heapBaseMB?: number;
  heapHeldMB?: number;
  /** RSS at the end of the broadcast, MB. */
  broadcastMB?: number;
  /** 1-minute load average at the start of the row and at its end (the machine is shared). */
  loadAvg?: [number, number];
  /** Server CPU while holding them idle (heartbeats only), % of one core. */
  idleCpuPct: number;
  /** The same, per connection per heartbeat interval... as µs per connection per second. */
  idleCpuUsPerConnSec: number;
  broadcastCpuPct?: number;
  delivered?: number;
  expected?: number;
  p99?: number | null;
  loadgenCpuPctMax: number;
}

/** File descriptors a process needs besides its connections (Redis, the listener, node's own). */
const FD_MARGIN = 200;
/** This process's RLIMIT_NOFILE (soft), which the servers and load generators inherit. */
function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? Number(m[1]) : Infinity;
}

/**
 * Full GCs in `ours` (gc-preload, SIGUSR2) and its `process.memoryUsage()` afterwards: the `n`th
 * reading, waited for; undefined when it does not come (a server without the preload).
 */
async function gcMemory(server: Server, ctx: RunCtx, n: number): Promise<NodeJS.MemoryUsage | undefined> {
  const file = join(outDir, `mem-${ctx.id}.json`);
  for (const pid of server.pids()) process.kill(pid, 'SIGUSR2');
  const deadline = hrMs() + 30_000;
  while (hrMs() < deadline) {
    try {
      const m = JSON.parse(readFileSync(file, 'utf8')) as NodeJS.MemoryUsage & { n: number };
      if (m.n >= n) return m;
    } catch {
      /* not written yet */
    }
    await sleep(200);
  }
  return undefined;
}

/**
 * `--capacity`: for each `sse:N` / `live:N` in --capacity-n, a fresh `ours` (MAX_CONNECTIONS raised to
 * N), N streams (tickets issued as in the fan-out cases) opened by ceil(N / --per-loadgen) load
 * generator processes, each from its own loopback source addresses (127.0.0.2…, ~28k ephemeral ports
 * each), so one port range does not cap the count. Held idle with heartbeats on (HEARTBEAT_MS as the
 * service defaults) for --capacity-hold-s: memory per connection and the heartbeats' CPU; then a
 * 1 msg/s broadcast for --capacity-broadcast-s: CPU, delivery and p99.
 */
async function runCapacity(bundlePath: string, redisUrl: string, redis: Redis): Promise<{ rows: CapacityRow[]; md: string }> {
  const specs = args['capacity-n']!.split(',').map((s) => {
    const [kind, num] = s.trim().split(':');
    const n = Number(num);
    if ((kind !== 'sse' && kind !== 'live') || !(n > 0)) fail(`--capacity-n: "${s}" is not sse:N or live:N`);
    return { kind, n };
  });
  const perLg = Number(args['per-loadgen']);
  // Every socket is a file descriptor in the server and in a load generator: a process cannot hold more than its
  // RLIMIT_NOFILE, which main() tried to raise (raising the hard limit needs CAP_SYS_RESOURCE).
  const nofile = openFilesLimit();
  if (perLg + FD_MARGIN > nofile) fail(`--per-loadgen ${perLg}: a load generator may open ${nofile} files here (ulimit -n); use at most ${nofile - FD_MARGIN}`);
  const holdMs = Number(args['capacity-hold-s']) * 1000;
  const broadcastS = Number(args['capacity-broadcast-s']);
  const rows: CapacityRow[] = [];
  for (const { kind, n } of specs) {
    const name = `${kind === 'live' ? 'ours-ws' : 'ours'}+MAX_CONNECTIONS=${n + 1000}`;
    const server = new Ours(bundlePath, name);
    const ctx: RunCtx = { id: ++runCounter, redisUrl, redis };
    const k = Math.max(1, Math.ceil(n / perLg));
    const lgs = Array.from({ length: k }, () => new LoadGen());
    const row: CapacityRow = { target: `${kind === 'live' ? '/live' : 'SSE'} ${n.toLocaleString('en-US')}`, connections: n, connected: 0, failed: 0, loadgens: k, baseMB: 0, heldMB: 0, kbPerConnection: 0, idleCpuPct: 0, idleCpuUsPerConnSec: 0, loadgenCpuPctMax: 0 };
    try {
      if (n + FD_MARGIN > nofile) throw new Error(`one process may open ${nofile} files here (RLIMIT_NOFILE; raising it needs CAP_SYS_RESOURCE, which this machine does not give): ${n.toLocaleString('en-US')} connections do not fit in one task process`);
      row.loadAvg = [loadavg()[0], 0];
      await server.start(ctx);
      await sleep(1000);
      const gc0 = await gcMemory(server, ctx, 1);
      const base = memKB(server);
      const { paths } = await server.paths(n);
      const port = server.portNo;
      const results = await Promise.all(
        lgs.map((lg, i) => {
          const slice = paths.slice(Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k));
          // Two source addresses per load generator: 127.0.0.(2+2i) and (3+2i).
          const localAddresses = [`127.0.0.${2 + 2 * i}`, `127.0.0.${3 + 2 * i}`];
          return lg.ask({ cmd: 'connect', host: '127.0.0.1', port, paths: slice, concurrency: 200, needReady: true, proto: server.proto, timeoutMs: 60_000, localAddresses }, 'connected', 600_000);
        }),
      );
      row.connected = results.reduce((a, r) => a + r.ok, 0);
      row.failed = results.reduce((a, r) => a + r.failed, 0);
      row.firstErr = results.find((r) => r.firstErr)?.firstErr;
      await sleep(3000);
      const held = memKB(server);
      row.baseMB = +(base / 1024).toFixed(1);
      row.heldMB = +(held / 1024).toFixed(1);
      row.kbPerConnection = row.connected ? +((held - base) / row.connected).toFixed(2) : 0;
      const gc1 = await gcMemory(server, ctx, 2);
      if (gc0 && gc1 && row.connected) {
        row.kbPerConnectionGc = +((memKB(server) - base) / row.connected).toFixed(2);
        row.heapKbPerConnection = +((gc1.heapUsed - gc0.heapUsed) / 1024 / row.connected).toFixed(2);
        row.externalKbPerConnection = +((gc1.external - gc0.external) / 1024 / row.connected).toFixed(2);
        row.heapBaseMB = +(gc0.heapUsed / 1048576).toFixed(1);
        row.heapHeldMB = +(gc1.heapUsed / 1048576).toFixed(1);
      }
      const lgTicks = () => lgs.map((lg) => procCpuTicks(lg.pid));
      // Idle with heartbeats: the server's CPU over the hold.
      let c0 = cpuTicks(server);
      let l0 = lgTicks();
      let t0 = hrMs();
      await sleep(holdMs);
      let us = ((cpuTicks(server) - c0) * 1e6) / CLK_TCK;
      let ms = hrMs() - t0;
      row.idleCpuPct = +((us / 1000 / ms) * 100).toFixed(1);
      row.idleCpuUsPerConnSec = row.connected ? +(us / (ms / 1000) / row.connected).toFixed(3) : 0;
      const lgPct = (before: number[], wall: number) => Math.max(...lgTicks().map((t, i) => (((t - before[i]) * 1000) / CLK_TCK / wall) * 100));
      row.loadgenCpuPctMax = Math.round(lgPct(l0, ms));
      // Then 1 msg/s to all of them.
      if (broadcastS > 0) {
        const armed = await Promise.all(lgs.map((lg) => lg.ask({ cmd: 'arm', messages: broadcastS }, 'armed')));
        row.expected = armed.reduce((a, r) => a + r.open, 0) * broadcastS;
        c0 = cpuTicks(server);
        l0 = lgTicks();
        t0 = hrMs();
        for (let i = 0; i < broadcastS; i++) {
          const wait = t0 + i * 1000 - hrMs();
          if (wait > 0) await sleep(wait);
          await server.publish(i);
        }
        await sleep(2000);
        us = ((cpuTicks(server) - c0) * 1e6) / CLK_TCK;
        ms = hrMs() - t0;
        row.broadcastCpuPct = +((us / 1000 / ms) * 100).toFixed(1);
        row.broadcastMB = +(memKB(server) / 1024).toFixed(1);
        row.loadgenCpuPctMax = Math.max(row.loadgenCpuPctMax, Math.round(lgPct(l0, ms)));
        const reps = await Promise.all(lgs.map((lg) => lg.ask({ cmd: 'report' }, 'report')));
        row.delivered = reps.reduce((a, r) => a + r.received, 0);
        // The worst load generator's p99 (each keeps its own histogram).
        row.p99 = Math.max(...reps.map((r) => r.p99 ?? 0));
      }
    } catch (err) {
      row.firstErr = err instanceof Error ? err.message : String(err);
    } finally {
      if (row.loadAvg) row.loadAvg[1] = loadavg()[0];
      await Promise.all(lgs.map((lg) => lg.stop()));
      await server.stop();
    }
    rows.push(row);
    console.log(`capacity: ${JSON.stringify(row)}`);
  }
  let md = `\n#### Connections per task: one \`ours\` process, heartbeats on (service default), idle ${holdMs / 1000} s then 1 msg/s for ${broadcastS} s\n\n`;
  md += '| held | connected (failed) | load generators | RSS before → held → after broadcast, MB | RSS KB / connection (after full GC) | heap KB / connection (external) | idle CPU, % of a core | idle CPU µs / connection / s | 1 msg/s CPU, % of a core | delivered / expected | p99 ms (worst load generator) | load generator CPU max, % | load average start / end |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n';
  for (const r of rows) {
    md += `| ${r.target} | ${r.connected} (${r.failed}) | ${r.loadgens} | ${r.baseMB} → ${r.heldMB} → ${r.broadcastMB ?? '–'} | ${r.kbPerConnection} (${r.kbPerConnectionGc ?? '–'}) | ${r.heapKbPerConnection ?? '–'} (${r.externalKbPerConnection ?? '–'}) | ${r.idleCpuPct} | ${r.idleCpuUsPerConnSec} | ${r.broadcastCpuPct ?? '–'} | ${r.delivered ?? '–'} / ${r.expected ?? '–'} | ${r.p99 ?? '–'} | ${r.loadgenCpuPctMax}${r.loadgenCpuPctMax >= LOADGEN_SATURATED_PCT ? ' (bottleneck)' : ''} | ${r.loadAvg?.map((x) => x.toFixed(1)).join(' / ') ?? '–'} |\n`;
  }
  const errs = rows.filter((r) => r.firstErr);
  if (errs.length) md += `\nFirst errors: ${errs.map((r) => `${r.target}: ${r.firstErr}`).join('; ')}\n`;
  return { rows, md };
}

// ---------------------------------------------------------------------------------------------
// Our bundle, machine facts

async function ourBundle(): Promise<{ path: string; source: string; serviceCommit?: string }> {
  // --capacity-report and --sse-cluster measure the checkout they run in; otherwise the built bundle unless told.
  const how = args.service ?? (args['capacity-report'] || sseCluster ? 'worktree' : 'dist');
  // A linked .map next to the bundle, as the image ships it: a server run with --enable-source-maps reads it as there.
  const common = { bundle: true, platform: 'node' as const, target: 'node22', format: 'cjs' as const, minify: false, sourcemap: true, sourcesContent: false, logLevel: 'warning' as const };
  if (how === 'dist') {
    const p = join(ROOT, 'dist/service/main.js');
    if (!existsSync(p)) fail('dist/service/main.js is missing: run `npm run build` (or pass --service head|worktree)');
    return { path: p, source: 'dist/service/main.js (npm run build)' };
  }
  if (how === 'worktree') {
    const out = join(outDir, 'ours-worktree.js');
    await build({ ...common, entryPoints: [join(ROOT, 'service/main.ts')], outfile: out });
    return { path: out, source: 'service/ from the working tree, bundled by the bench' };
  }
  if (how === 'head') {
    const src = join(outDir, 'head-src');
    mkdirSync(src, { recursive: true });
    const commit = sh(`git -C '${ROOT}' rev-parse HEAD`);
    const serviceCommit = sh(`git -C '${ROOT}' log -1 --format=%h ${commit} -- service`);
    const archive = spawnSync('bash', ['-c', `git -C '${ROOT}' archive ${commit} core service contract | tar -x -C '${src}'`], { stdio: 'inherit' });
    if (archive.status !== 0) fail('git archive HEAD failed');
    if (!existsSync(join(src, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
    const out = join(outDir, 'ours-head.js');
    await build({ ...common, entryPoints: [join(src, 'service/main.ts')], outfile: out });
    return { path: out, source: `service/ at ${serviceCommit} (HEAD ${commit.slice(0, 7)}, git archive), bundled by the bench`, serviceCommit };
  }
  if (!existsSync(how)) fail(`--service ${how}: no such file`);
  return { path: resolve(how), source: how };
}

/**
 * Our service as of git revision `rev` (for `ours@REV`): core/, service/ and contract/ (where the
 * revision has it) extracted with `git archive` into a temporary directory beside the output, with
 * this checkout's node_modules, and bundled like `--service head`.
 */
async function revisionBundle(rev: string): Promise<{ path: string; driver: string; source: string; serviceCommit: string }> {
  const commit = sh(`git -C '${ROOT}' rev-parse --verify --quiet '${rev}^{commit}'`);
  if (!/^[0-9a-f]{40}$/.test(commit)) fail(`ours@${rev}: not a commit of this repository`);
  const short = commit.slice(0, 7);
  const src = join(outDir, `rev-${short}-src`);
  mkdirSync(src, { recursive: true });
  const top = sh(`git -C '${ROOT}' ls-tree --name-only ${commit}`).split('\n');
  const dirs = ['core', 'service', 'contract'].filter((d) => top.includes(d));
  const archive = spawnSync('bash', ['-c', `git -C '${ROOT}' archive ${commit} ${dirs.join(' ')} | tar -x -C '${src}'`], { stdio: 'inherit' });
  if (archive.status !== 0) fail(`git archive ${rev} failed`);
  if (!existsSync(join(src, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const out = join(outDir, `ours-${short}.js`);
  await build({ bundle: true, platform: 'node', target: 'node22', format: 'cjs', minify: false, sourcemap: true, sourcesContent: false, logLevel: 'warning', entryPoints: [join(src, 'service/main.ts')], outfile: out });
  // The bench's publisher and ticket issuer from the same revision: key names and scripts change between revisions,
  // so a revision's server must be fed by that revision's publish() and issueTicket().
  const driverEntry = join(src, 'bench-driver.ts');
  writeFileSync(driverEntry, "export { publish } from './core/events';\nexport { issueTicket } from './core/tickets';\nexport { coreConfigFromEnv } from './core/config';\n");
  const driver = join(outDir, `ours-${short}-driver.js`);
  await build({ bundle: true, platform: 'node', target: 'node22', format: 'cjs', minify: false, sourcemap: false, logLevel: 'warning', entryPoints: [driverEntry], outfile: driver });
  const serviceCommit = sh(`git -C '${ROOT}' log -1 --format=%h ${commit} -- service`);
  return { path: out, driver, source: `service/ at ${serviceCommit} (${rev} = ${short}, git archive; publish and tickets from the same revision), bundled by the bench`, serviceCommit };
}

function sh(cmd: string): string {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

async function machineFacts(redis: Redis) {
  const info = await redis.info('server');
  return {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    nginx: sh('nginx -v 2>&1').replace('nginx version: ', '') || 'not installed',
    nchan: sh("dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null") || 'not installed',
    memGB: +(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1048576).toFixed(1),
    portRange: readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().replace(/\s+/, '-'),
    head: sh(`git -C '${ROOT}' rev-parse --short HEAD`),
    serviceCommit: sh(`git -C '${ROOT}' log -1 --format=%h -- service`),
    serviceDirty: sh(`git -C '${ROOT}' status --porcelain -- service core`).length > 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Reporting

function median(xs: number[]): number | undefined {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : +((v[m - 1] + v[m]) / 2).toFixed(3);
}

type Metric = { label: string; get: (r: RunResult) => number | undefined; fmt?: (v: number) => string };
const fmtInt = (v: number) => Math.round(v).toLocaleString('en-US');
const fmt1 = (v: number) => (Math.round(v * 10) / 10).toString();
const fmt2 = (v: number) => (Math.round(v * 100) / 100).toString();
const LOAD_METRICS: Metric[] = [
  { label: 'ticket issue for all N, ms', get: (r) => r.ticketMs, fmt: fmtInt },
  { label: 'connect all N, ms', get: (r) => r.connectMs, fmt: fmtInt },
  { label: 'delivered / expected, %', get: (r) => r.deliveredPct, fmt: (v) => v.toFixed(2) },
  { label: 'lost (median count)', get: (r) => (r.expected !== undefined && r.delivered !== undefined ? r.expected - r.delivered : undefined), fmt: fmtInt },
  { label: 'duplicates', get: (r) => r.duplicates, fmt: fmtInt },
  { label: 'latency p50, ms', get: (r) => r.p50 ?? undefined, fmt: fmt1 },
  { label: 'latency p99, ms', get: (r) => r.p99 ?? undefined, fmt: fmt1 },
  { label: 'latency max, ms', get: (r) => r.max, fmt: fmt1 },
  { label: 'deliveries/s', get: (r) => r.deliveriesPerSec, fmt: fmtInt },
  { label: 'server CPU µs / delivery', get: (r) => r.serverCpuUsPerDelivery, fmt: fmt2 },
  { label: '… of it user µs', get: (r) => r.serverUserUsPerDelivery, fmt: fmt2 },
  { label: '… system µs', get: (r) => r.serverSysUsPerDelivery, fmt: fmt2 },
  { label: 'socket writes / delivery', get: (r) => r.writesPerDelivery, fmt: (v) => v.toFixed(3) },
  { label: 'server CPU µs / socket write', get: (r) => r.cpuUsPerWrite, fmt: fmt2 },
  { label: '… system µs', get: (r) => r.sysUsPerWrite, fmt: fmt2 },
  { label: 'bytes / socket write', get: (r) => r.bytesPerWrite, fmt: fmtInt },
  { label: 'loop ctx switches / 1k deliveries: voluntary', get: (r) => r.voluntaryPerKDelivery, fmt: fmt1 },
  { label: '… preempted', get: (r) => r.nonvoluntaryPerKDelivery, fmt: fmt1 },
  { label: 'server CPU, % of one core', get: (r) => r.serverCpuPct, fmt: fmtInt },
  { label: 'Redis CPU in window, ms', get: (r) => r.redisCpuMs, fmt: fmtInt },
  { label: 'load generator CPU, % of one core', get: (r) => r.loadgenCpuPct, fmt: fmtInt },
  { label: 'load generator CPU µs / delivery', get: (r) => r.loadgenCpuUsPerDelivery, fmt: fmt2 },
  { label: 'memory Δ / connection, KB', get: (r) => r.memPerConnKB, fmt: fmt1 },
  { label: 'connections closed by server mid-run', get: (r) => r.closedDuringRun, fmt: fmtInt },
];
const IDLE_METRICS: Metric[] = [
  { label: 'ticket issue for all N, ms', get: (r) => r.ticketMs, fmt: fmtInt },
  { label: 'connect all N, ms', get: (r) => r.connectMs, fmt: fmtInt },
  { label: 'connected', get: (r) => r.connected, fmt: fmtInt },
  { label: 'memory before, MB', get: (r) => r.memBaseKB / 1024, fmt: fmt1 },
  { label: 'memory with N idle, MB', get: (r) => r.memConnectedKB / 1024, fmt: fmt1 },
  { label: 'memory Δ / idle connection, KB', get: (r) => r.memPerConnKB, fmt: fmt2 },
  { label: 'server CPU µs / connect', get: (r) => r.connectCpuUsPerConnection, fmt: fmt1 },
];

function caseTable(c: string, results: RunResult[]): string {
  const cols = servers.filter((s) => results.some((r) => r.server === s && r.case === c));
  const metrics = CASES[c].idle ? IDLE_METRICS : LOAD_METRICS;
  const lines = [`| ${CASE_TITLES[c]} | ${cols.join(' | ')} |`, `| --- | ${cols.map(() => '---:').join(' | ')} |`];
  for (const m of metrics) {
    const cells = cols.map((s) => {
      const v = median(results.filter((r) => r.server === s && r.case === c && !r.error).map(m.get) as number[]);
      return v === undefined ? '–' : (m.fmt ?? String)(v);
    });
    lines.push(`| ${m.label} | ${cells.join(' | ')} |`);
  }
  const n = cols.map((s) => results.filter((r) => r.server === s && r.case === c && !r.error).length);
  lines.push(`| runs (median of) | ${n.join(' | ')} |`);
  const errs = results.filter((r) => r.case === c && r.error);
  let out = lines.join('\n');
  const saturated = results.filter((r) => r.case === c && (r.loadgenCpuPct ?? 0) >= LOADGEN_SATURATED_PCT);
  if (saturated.length) out += `\n\nThe load generator used ${LOADGEN_SATURATED_PCT} % or more of a core in ${saturated.map((r) => `${r.server} run ${r.run}`).join(', ')}: there, latencies include its own queueing.`;
  if (errs.length) out += `\n\nFailed runs: ${errs.map((e) => `${e.server} run ${e.run}: ${e.error}`).join('; ')}`;
  return out;
}

/** --sse-cluster: the issue's criterion for SSE on a cluster (issue 23: CPU per delivery within 10 % of one node's). */
const CLUSTER_CPU_TARGET_PCT = 10;

/**
 * Each server on the cluster against the same server on one node (`ours+REDIS_MODE=cluster` against `ours`), per loaded
 * case: medians of CPU per delivery and p99, and their ratio, with the load average.
 */
function clusterTable(results: RunResult[], loadStart: number): string {
  const med = (s: ServerName, c: string, get: (r: RunResult) => number | undefined | null) =>
    median(results.filter((r) => r.server === s && r.case === c && !r.error).map((r) => get(r) ?? undefined) as number[]);
  const rows = [
    `SSE on the Redis Cluster (three primaries) against one node, ${benchChannels} channel${benchChannels > 1 ? 's' : ''} spread over the slots; medians; load average ${loadStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at the end:`,
    '',
    '| case | one node | cluster | CPU µs / delivery: one node / cluster (Δ; target: at most +10 %) | p99 ms: one node / cluster | delivered %: one node / cluster | Redis CPU in window, ms |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const c of caseNames.filter((x) => !CASES[x].idle)) {
    for (const s of servers.filter(onCluster)) {
      const one = s.replace(/\+REDIS_MODE=cluster/, '');
      const [a, b] = [med(one, c, (r) => r.serverCpuUsPerDelivery), med(s, c, (r) => r.serverCpuUsPerDelivery)];
      if (a === undefined || b === undefined) continue;
      const d = ((b - a) / a) * 100;
      rows.push(
        `| ${CASE_TITLES[c]} | ${one} | ${s} | ${fmt2(a)} / ${fmt2(b)} (${d >= 0 ? '+' : ''}${d.toFixed(0)} %${d <= CLUSTER_CPU_TARGET_PCT ? ' ✅' : ' ❌'}) | ${fmt1(med(one, c, (r) => r.p99) ?? NaN)} / ${fmt1(med(s, c, (r) => r.p99) ?? NaN)} | ${fmt2(med(one, c, (r) => r.deliveredPct) ?? NaN)} / ${fmt2(med(s, c, (r) => r.deliveredPct) ?? NaN)} | ${fmtInt(med(one, c, (r) => r.redisCpuMs) ?? NaN)} / ${fmtInt(med(s, c, (r) => r.redisCpuMs) ?? NaN)} |`,
      );
    }
  }
  return rows.join('\n');
}

/** Load generator CPU (% of one core) from which its own queueing shows in the latencies: flagged in the output. */
const LOADGEN_SATURATED_PCT = 90;

/** Deliveries per second case `c` offers: its connections times its rate. */
const offeredRate = (c: string): number => CASES[c].n * (CASES[c].rate ?? 0);
/**
 * A server that delivered under 90 % of case `c`'s offered rate fell behind: its latencies are the age of a backlog
 * that grew through the run (flagged SATURATED in the curve and the headline).
 */
const fellBehind = (rate: number, c: string): boolean => rate < 0.9 * offeredRate(c);

const TARGETS = { deliveredPct: 100, p99: 250, cpuUs: 3, idleKB: 8 };

function summaryTable(results: RunResult[]): string {
  const cols = servers;
  const med = (s: ServerName, c: string, get: (r: RunResult) => number | undefined | null) =>
    median(results.filter((r) => r.server === s && r.case === c && !r.error).map((r) => get(r) ?? undefined) as number[]);
  const mark = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? ' ✅' : ' ❌');
  const rows: string[] = [`| | target | ${cols.join(' | ')} |`, `| --- | ---: | ${cols.map(() => '---:').join(' | ')} |`];
  const big = caseNames.includes('10k') ? '10k' : caseNames.find((c) => !CASES[c].idle && !CASES[c].burst) ?? '1k';
  const row = (label: string, target: string, get: (s: ServerName) => number | undefined, fmt: (v: number) => string, ok?: (v: number) => boolean) =>
    rows.push(`| ${label} | ${target} | ${cols.map((s) => {
      const v = get(s);
      return v === undefined ? '–' : `${fmt(v)}${ok ? mark(ok(v)) : ''}`;
    }).join(' | ')} |`);
  row(`${big}: delivered %`, '100', (s) => med(s, big, (r) => r.deliveredPct), (v) => v.toFixed(2), (v) => v >= TARGETS.deliveredPct);
  row(`${big}: p99 ms`, '≤ 250', (s) => med(s, big, (r) => r.p99), fmt1, (v) => v <= TARGETS.p99);
  row(`${big}: server CPU µs / delivery`, '≤ 3', (s) => med(s, big, (r) => r.serverCpuUsPerDelivery), fmt2, (v) => v <= TARGETS.cpuUs);
  row(`${big}: deliveries/s`, `${offeredRate(big).toLocaleString('en-US')} offered`, (s) => med(s, big, (r) => r.deliveriesPerSec), fmtInt);
  if (caseNames.includes('idle')) row('idle: KB / connection', '≤ 8', (s) => med(s, 'idle', (r) => r.memPerConnKB), fmt1, (v) => v <= TARGETS.idleKB);
  if (caseNames.includes('burst')) row('burst 200 → 1k: p99 ms', '', (s) => med(s, 'burst', (r) => r.p99), fmt1);
  row(`${big}: load generator CPU, % of one core`, `< ${LOADGEN_SATURATED_PCT}`, (s) => med(s, big, (r) => r.loadgenCpuPct), fmtInt, (v) => v < LOADGEN_SATURATED_PCT);
  rows.push(`| auth per connection | | ${cols.map((s) => (kindOf(s) === 'ours' || kindOf(s) === 'ours-ws' ? 'ticket, redeemed' : 'none (skipped)')).join(' | ')} |`);
  return rows.join('\n');
}

/**
 * --curve: one row per server (write-window setting), one column per loaded case, each cell the median
 * CPU per delivery, p50 and p99: where each setting sits on the CPU–latency curve at each load.
 */
function curveTable(results: RunResult[]): string {
  const loaded = caseNames.filter((c) => !CASES[c].idle && !CASES[c].burst);
  const med = (s: ServerName, c: string, get: (r: RunResult) => number | undefined | null) =>
    median(results.filter((r) => r.server === s && r.case === c && !r.error).map((r) => get(r) ?? undefined) as number[]);
  const rows = [`| setting | ${loaded.map((c) => CASE_TITLES[c].replace(/ for 10 s$/, '')).join(' | ')} |`, `| --- | ${loaded.map(() => '---:').join(' | ')} |`];
  for (const s of servers) {
    const cells = loaded.map((c) => {
      const cpu = med(s, c, (r) => r.serverCpuUsPerDelivery);
      if (cpu === undefined) return '–';
      const lg = results.some((r) => r.server === s && r.case === c && (r.loadgenCpuPct ?? 0) >= LOADGEN_SATURATED_PCT);
      const rate = med(s, c, (r) => r.deliveriesPerSec);
      const behind = rate !== undefined && fellBehind(rate, c) ? ` (SATURATED: ${Math.round((100 * rate) / offeredRate(c))} % of the offered rate delivered)` : '';
      return `${fmt2(cpu)} / ${fmt1(med(s, c, (r) => r.p50) ?? NaN)} / ${fmt1(med(s, c, (r) => r.p99) ?? NaN)}${lg ? ' (load generator bound)' : ''}${behind}`;
    });
    rows.push(`| ${s} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

/** Issue 27's targets, as ratios to the floor probe in the same run (hold on any machine). */
const PROBE_TARGETS = { p99: 1.25, cpuUs: 0.65 };

/**
 * Each loaded case, each server: its median p99 and CPU per delivery over the probe's, and whether the
 * load generator was the bottleneck in any of the runs compared (then the ratio says little).
 */
/**
 * --capacity-report's verdict: ours against the probe at the first loaded case (10k), p99 and CPU per delivery as
 * ratios of medians against issue 27's targets, the load generator's own CPU with a bottleneck flag, and the load
 * average (a busy machine moves the ratios too: run it alone).
 */
function headline(results: RunResult[], loadStart: number): string {
  const c = caseNames.find((x) => !CASES[x].idle && !CASES[x].burst) ?? '10k';
  const of = (s: ServerName) => results.filter((r) => r.server === s && r.case === c && !r.error);
  const med = (s: ServerName, get: (r: RunResult) => number | undefined | null) => median(of(s).map((r) => get(r) ?? undefined) as number[]);
  const lines = [`Issue 27 headline: ${CASE_TITLES[c]}, medians of ${runs} (${of('ours').length} ours, ${of('probe').length} probe runs without errors)`, ''];
  const offered = offeredRate(c);
  const saturated = ['probe', 'ours'].filter((s) => fellBehind(med(s, (r) => r.deliveriesPerSec) ?? offered, c));
  const ratio = (label: string, unit: string, target: number, get: (r: RunResult) => number | undefined | null) => {
    const [o, p] = [med('ours', get), med('probe', get)];
    if (o === undefined || !p) return lines.push(`- ${label}: not measured (ours ${o ?? '–'}, probe ${p ?? '–'})`);
    const x = o / p;
    const verdict = saturated.length ? `not valid (${saturated.join(' and ')} SATURATED, below)` : x <= target ? 'MET' : 'NOT MET';
    return lines.push(`- ${label}: ours ${o} ${unit} / probe ${p} ${unit} = ${x.toFixed(2)}× (target ≤ ${target}×): ${verdict}`);
  };
  ratio('p99 latency', 'ms', PROBE_TARGETS.p99, (r) => r.p99);
  ratio('server CPU per delivery', 'µs', PROBE_TARGETS.cpuUs, (r) => r.serverCpuUsPerDelivery);
  const lg = results.filter((r) => r.case === c && !r.error).map((r) => r.loadgenCpuPct ?? 0);
  const lgMax = lg.length ? Math.max(...lg) : 0;
  lines.push(`- load generator CPU: at most ${lgMax} % of one core over the runs${lgMax >= LOADGEN_SATURATED_PCT ? ' — BOTTLENECK: the load generator, not the servers, set the latencies; the ratios are not valid' : ' (not the bottleneck)'}`);
  for (const s of saturated) lines.push(`- ${s} delivered ${fmtInt(med(s, (r) => r.deliveriesPerSec)!)} of ${fmtInt(offered)} offered per second: SATURATED (one thread, or the machine, could not keep up; its p99 is the age of a backlog that grew through the run, and a ratio against it is not valid)`);
  lines.push(`- load average: ${loadStart.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end on ${cpus().length} cores${loadStart > 1 ? ' — other work was running: the ratios need a quiet machine' : ''}`);
  return lines.join('\n');
}

function probeRatioTable(results: RunResult[]): string {
  const cols = servers.filter((s) => kindOf(s) !== 'probe');
  const med = (s: ServerName, c: string, get: (r: RunResult) => number | undefined | null) =>
    median(results.filter((r) => r.server === s && r.case === c && !r.error).map((r) => get(r) ?? undefined) as number[]);
  /** The probe run with the same load generator as `s` (`probe#js` for `ours#js`), else `probe`. */
  const probeOf = (s: ServerName) => (s.includes('#') && servers.includes(`probe#${s.split('#')[1]}`) ? `probe#${s.split('#')[1]}` : 'probe');
  const rows = [`| case | ratio | target | ${cols.join(' | ')} |`, `| --- | --- | ---: | ${cols.map(() => '---:').join(' | ')} |`];
  for (const c of caseNames.filter((x) => !CASES[x].idle)) {
    const lgBound = (s: ServerName) => results.some((r) => r.case === c && (r.server === s || r.server === probeOf(s)) && (r.loadgenCpuPct ?? 0) >= LOADGEN_SATURATED_PCT);
    const ratio = (label: string, target: number, get: (r: RunResult) => number | undefined | null) => {
      const cells = cols.map((s) => {
        const v = med(s, c, get);
        const base = med(probeOf(s), c, get);
        if (v === undefined || !base) return '–';
        const x = v / base;
        return `${x.toFixed(2)}×${x <= target ? ' ✅' : ' ❌'}${lgBound(s) ? ' (load generator bound)' : ''}`;
      });
      rows.push(`| ${c} | ${label} | ≤ ${target}× | ${cells.join(' | ')} |`);
    };
    ratio('p99 / probe p99', PROBE_TARGETS.p99, (r) => r.p99);
    ratio('CPU per delivery / probe', PROBE_TARGETS.cpuUs, (r) => r.serverCpuUsPerDelivery);
  }
  return rows.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const limitMin = Number(args['time-limit-min'] ?? (soak ? Number(args['soak-minutes']) + 10 : quick ? 6 : 10 + runs * servers.length * caseNames.length * 1.5));
  const hard = setTimeout(() => {
    console.error(`bench: hard time limit of ${limitMin} min reached; stopping everything`);
    killAll();
    process.exit(2);
  }, limitMin * 60_000);
  hard.unref();

  const loadStart = loadavg()[0];
  // File descriptors: children inherit the limit (10k sockets per side, plus nginx workers). Without
  // CAP_SYS_RESOURCE only the soft limit can rise, up to the hard one.
  if (spawnSync('prlimit', ['--pid', String(process.pid), '--nofile=262144:262144']).status !== 0) {
    const hard = /^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (hard) spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`]);
    console.error(`bench: could not raise the open-files limit to 262144; it is ${openFilesLimit()} (ulimit -n)`);
  }

  if (servers.some((s) => kindOf(s) === 'nchan')) {
    const why = Nchan.ensureInstalled();
    if (why) {
      console.error(`bench: ${why}; nchan is skipped`);
      servers.splice(servers.indexOf('nchan'), 1);
    }
  }
  const isOurs = (s: ServerName) => kindOf(s) === 'ours' || kindOf(s) === 'ours-ws';
  const bundle = servers.some((s) => isOurs(s) && !revOf(s)) ? await ourBundle() : undefined;
  const revBundles = new Map<string, { path: string; driver: string; source: string; serviceCommit: string }>();
  for (const s of servers) {
    const rev = revOf(s);
    if (rev && !revBundles.has(rev)) revBundles.set(rev, await revisionBundle(rev));
  }

  const redisServer = await RedisServer.start();
  children.add((redisServer as unknown as { proc: ChildProcess }).proc);
  const redis = createRedis({ url: redisServer.url, name: 'bench', failFast: false });
  await waitReady(redis);
  // Servers named `…+REDIS_MODE=cluster` run on a local three-primary Redis Cluster (no replicas), fed through a Cluster client.
  const cluster = servers.some(onCluster) ? await RedisCluster.start({ primaries: 3, replicasPerPrimary: 0 }) : undefined;
  for (const s of cluster?.servers ?? []) children.add((s as unknown as { proc: ChildProcess }).proc);
  const clusterUrl = cluster && `redis://127.0.0.1:${cluster.nodes[0].port}`;
  const clusterRedis = clusterUrl ? (createRedisCluster({ url: clusterUrl, name: 'bench', failFast: false }) as unknown as Redis) : undefined;
  if (clusterRedis) await waitReady(clusterRedis);
  /** The Redis a server runs on: its URL and the bench's client for it. */
  const redisOf = (s: ServerName): [string, Redis] => (onCluster(s) ? [clusterUrl!, clusterRedis!] : [redisServer.url, redis]);
  const facts = await machineFacts(redis);
  // The native load generator for the fan-out cases and the soak (SSE and WebSockets; Socket.IO, the storm, --capacity and --presence use loadgen.js).
  let loadgenNote = 'bench/loadgen.js';
  if (!args.capacity && !args.presence && !args.storm && loadgens.includes('native') && servers.some((s) => kindOf(s) !== 'socketio')) {
    const n = nativeLoadGen();
    nativeBin = n.path;
    if (n.path) loadgenNote = `${loadgens.length > 1 ? 'each server with bench/loadgen.js (#js) and ' : ''}native (bench/loadgen.c, self-test passed)${servers.some((s) => kindOf(s) === 'socketio') ? ', bench/loadgen.js for Socket.IO' : ''}`;
    else {
      loadgenNote = `bench/loadgen.js: the native one could not be used (${n.why})`;
      console.error(`bench: the native load generator (bench/loadgen.c) cannot be used: ${n.why}. Using bench/loadgen.js (plain Node) instead, which needs about one core at 10k × 20 msg/s: runs where it is the bottleneck are flagged.`);
    }
  }
  console.log(`bench: load generator: ${loadgenNote}`);
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim();
  console.log(`bench: ${JSON.stringify(facts)}`);
  console.log(`bench: ours = ${bundle?.source ?? '(not run)'}; output in ${outDir}`);
  for (const [rev, b] of revBundles) console.log(`bench: ours@${rev} = ${b.source}`);

  const ourPath = (s: ServerName) => (revOf(s) ? revBundles.get(revOf(s)!)!.path : bundle!.path);
  const make = (s: ServerName): Server => {
    switch (kindOf(s)) {
      case 'ours':
      case 'ours-ws':
        return new Ours(ourPath(s), s, revOf(s) ? revBundles.get(revOf(s)!)!.driver : undefined);
      case 'ref':
      case 'probe':
        return new Ref(kindOf(s) as 'ref' | 'probe');
      case 'ws-ref':
        return new WsRef();
      case 'socketio':
        return new SocketIo();
      default:
        return new Nchan(s);
    }
  };

  try {
    if (args.capacity) {
      const out = await runCapacity(bundle!.path, redisServer.url, redis);
      const md = `Command: \`${command}\`  \nMachine: ${facts.nproc} × ${facts.cpu}, ${facts.memGB} GiB, Node ${facts.node}, ports ${facts.portRange}. Ours: ${bundle!.source}.\n${out.md}`;
      writeFileSync(join(outDir, 'capacity.json'), JSON.stringify({ facts, command, bundle, rows: out.rows }, null, 2));
      writeFileSync(join(outDir, 'capacity.md'), md);
      console.log(md);
      if (args['write-figures']) writeCapacityFigures(out.rows, command, facts);
      return;
    }
    if (args.presence) {
      const out = await runPresence(
        {
          redis,
          redisUrl: redisServer.url,
          startOurs: async (env) => {
            const server = new Ours(bundle!.path, `ours${Object.entries(env).map(([k, v]) => `+${k}=${v}`).join('')}`);
            await server.start({ id: ++runCounter, redisUrl: redisServer.url, redis });
            return { port: server.portNo, pid: server.pids()[0], stop: () => server.stop() };
          },
          loadGen: () => new LoadGen(),
          cpuTicks: procCpuTicks,
          clkTck: CLK_TCK,
        },
        presenceOptions,
      );
      const load = `${loadStart.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end`;
      const md = `Command: \`${command}\`  \nMachine: ${facts.nproc} × ${facts.cpu}, Node ${facts.node}, Redis ${facts.redis}, load average ${load} (2 cores). Ours: ${bundle!.source}.\n${out.md}`;
      writeFileSync(join(outDir, 'presence.json'), JSON.stringify({ facts, command, bundle, phases: out.phases, snapshots: out.snapshots, figures: out.figures }, null, 2));
      writeFileSync(join(outDir, 'presence.md'), md);
      console.log(md);
      if (args['write-figures']) writePresenceFigures(ROOT, out.figures, command, facts.head, load);
      return;
    }
    if (args.storm) {
      const cpuProfDir = args['cpu-prof'] ? join(outDir, 'cpuprofile') : undefined;
      const out = await runStorm(make, redisServer.url, redis, cpuProfDir);
      let md = `Command: \`${command}\`  \nMachine: ${facts.nproc} × ${facts.cpu}, Node ${facts.node}, load average ${loadavg().map((x) => x.toFixed(1)).join(' / ')} at the end. Ours: ${bundle?.source ?? '-'}.\n`;
      for (const [rev, b] of revBundles) md += `ours@${rev}: ${b.source}.\n`;
      md += out.md;
      if (cpuProfDir && existsSync(cpuProfDir)) {
        for (const f of readdirSync(cpuProfDir).filter((x) => x.endsWith('.cpuprofile'))) md += `\nProfile ${f} (one server process's whole life: start, first connect, both storms):\n\n${profileMarkdown(join(cpuProfDir, f), 25)}\n`;
      }
      writeFileSync(join(outDir, 'storm.json'), JSON.stringify({ facts, command, bundle, ...out, md: undefined }, null, 2));
      writeFileSync(join(outDir, 'storm.md'), md);
      console.log(md);
      return;
    }
    if (soak) {
      const out = [];
      for (const s of servers) out.push(await runSoak(make(s), redisServer.url, redis));
      writeFileSync(join(outDir, 'soak.json'), JSON.stringify({ facts, command, bundle, out }, null, 2));
      let md = '';
      for (const o of out) {
        md += `\n#### Soak: ${o.server}, ${o.connections.toLocaleString('en-US')} connections, ${o.rate} msg/s for ${o.minutes} min\n\n`;
        md += `Delivered ${o.delivered} of ${o.expected} (${o.duplicates} duplicates, ${o.closedDuringRun} closed by the server); p50 ${o.p50} ms, p99 ${o.p99} ms, max ${o.max} ms; memory before connecting ${o.baseMB} MB.\n\n`;
        md += '| t (s) | memory MB | KB / connection | open | delivered in interval | p99 ms | max ms | server CPU % |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n';
        for (const r of o.rows) md += `| ${r.t_s} | ${r.memMB} | ${r.perConnKB} | ${r.open} | ${r.delivered} | ${r.p99} | ${r.max} | ${r.cpuPct} |\n`;
      }
      writeFileSync(join(outDir, 'soak.md'), md);
      console.log(md);
      return;
    }

    const results: RunResult[] = [];
    const cpuProfDir = args['cpu-prof'] ? join(outDir, 'cpuprofile') : undefined;
    for (const cn of caseNames) {
      for (let r = 1; r <= runs; r++) {
        for (const s of servers) {
          const res = await runOne(make(s), CASES[cn], r, ...redisOf(s), kindOf(s) === 'ours' ? cpuProfDir : undefined, s);
          results.push(res);
          console.log(`bench: ${JSON.stringify(res)}`);
          if ((res.loadgenCpuPct ?? 0) >= LOADGEN_SATURATED_PCT) console.error(`bench: warning: the load generator used ${res.loadgenCpuPct} % of a core in ${s} ${cn} run ${r}: latencies include its own queueing`);
          writeFileSync(join(outDir, 'results.json'), JSON.stringify({ facts, command, bundle, revBundles: Object.fromEntries(revBundles), results }, null, 2));
        }
      }
    }
    let md = `Command: \`${command}\`  \nMachine: ${facts.nproc} × ${facts.cpu}, ${facts.memGB} GiB, Linux ${facts.kernel}, Node ${facts.node}, Redis ${facts.redis}, nginx ${facts.nginx}, Nchan ${facts.nchan}.  \n`;
    md += bundle?.serviceCommit
      ? `Ours: ${bundle.source}.\n`
      : `Ours: ${bundle?.source ?? '-'}, working tree at service/ ${facts.serviceCommit}${facts.serviceDirty ? ' plus uncommitted changes in service/ or core/' : ''}, HEAD ${facts.head}.\n`;
    for (const [rev, b] of revBundles) md += `ours@${rev}: ${b.source}.\n`;
    md += `Load generator: ${loadgenNote}.\n`;
    for (const cn of caseNames) md += `\n${caseTable(cn, results)}\n`;
    md += `\nSummary (medians; targets from issue 5):\n\n${summaryTable(results)}\n`;
    if (args.curve) md += `\nCPU–latency curve (medians; each cell: server CPU µs per delivery / p50 ms / p99 ms):\n\n${curveTable(results)}\n`;
    if (servers.some((s) => kindOf(s) === 'probe')) md += `\nRatios to the probe (medians of each server ÷ medians of \`probe\` in the same run; targets from issue 27):\n\n${probeRatioTable(results)}\n`;
    if (report) md += `\n${headline(results, loadStart)}\n`;
    if (servers.some(onCluster)) md += `\n${clusterTable(results, loadStart)}\n`;
    for (const r of results) if (r.heapSummary) md += `\nHeap, ${r.server} run ${r.run}:\n\n${r.heapSummary}\n`;
    if (cpuProfDir && existsSync(cpuProfDir)) {
      for (const f of readdirSync(cpuProfDir).filter((x) => x.endsWith('.cpuprofile'))) {
        md += `\nProfile ${f}:\n\n${profileMarkdown(join(cpuProfDir, f), 20)}\n`;
      }
    }
    writeFileSync(join(outDir, 'results.md'), md);
    console.log(`\n${md}`);
    if (args['write-figures']) writeFigures(results, command, facts);
  } finally {
    redis.disconnect();
    clusterRedis?.disconnect();
    await redisServer.destroy();
    await cluster?.destroy();
    clearTimeout(hard);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    killAll();
    process.exit(1);
  },
);

/**
 * `--capacity --write-figures`: from the largest SSE and `/live` rows that connected everything, the RSS per held
 * connection (heartbeats on, no forced GC), the process's base RSS and the heartbeats' CPU per connection per second,
 * into cost/figures.json: what the planner sizes tasks by (cost/model.ts `planTasks`).
 */
function writeCapacityFigures(rows: CapacityRow[], command: string, facts: { nproc: number; cpu: string; memGB: number; head: string }): void {
  const file = join(ROOT, 'cost/figures.json');
  const figures = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number | null; from: string }> };
  const largest = (kind: string) => rows.filter((r) => r.target.startsWith(kind) && r.connected === r.connections && r.connected > 0).sort((a, b) => b.connected - a.connected)[0];
  const from = (r: CapacityRow, what: string) => `${command} at ${facts.head} on ${new Date().toISOString().slice(0, 10)}: ${what}, ${r.target} held by one process (load average ${r.loadAvg?.map((x) => x.toFixed(1)).join('-') ?? '?'})`;
  const sseRow = largest('SSE');
  const liveRow = largest('/live');
  if (sseRow) {
    figures.measured.sseIdleKbPerConnection = { value: sseRow.kbPerConnection, from: from(sseRow, 'RSS growth per held stream, heartbeats on') };
    figures.measured.processBaseMb = { value: sseRow.baseMB, from: from(sseRow, 'RSS before the connections') };
    figures.measured.sseHeldCpuUsPerConnectionSecond = { value: sseRow.idleCpuUsPerConnSec, from: from(sseRow, 'server CPU per held stream per second, heartbeats only') };
  }
  if (liveRow) {
    figures.measured.liveIdleKbPerConnection = { value: liveRow.kbPerConnection, from: from(liveRow, 'RSS growth per held /live socket, heartbeats on') };
    figures.measured.liveHeldCpuUsPerConnectionSecond = { value: liveRow.idleCpuUsPerConnSec, from: from(liveRow, 'server CPU per held /live socket per second, heartbeat frames and pings only') };
  }
  writeFileSync(file, `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`bench: wrote ${file}`);
}

/**
 * `--write-figures`: the medians of `ours` that the cost planner sizes tasks by (CPU per delivery at the
 * largest loaded case, KB per idle connection and the process's base memory from the idle case, CPU per
 * connect), written into cost/figures.json with the command and machine they come from.
 */
function writeFigures(results: RunResult[], command: string, facts: { nproc: number; cpu: string; memGB: number; head: string }): void {
  const ours = results.filter((r) => r.server === 'ours' && !r.error);
  const loaded = ['10k', '8k', '5k', '1k'].find((c) => caseNames.includes(c) && ours.some((r) => r.case === c));
  const file = join(ROOT, 'cost/figures.json');
  const figures = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number | null; from: string }>; machine: string };
  const from = (what: string) => `${command} at ${facts.head} on ${new Date().toISOString().slice(0, 10)}: ${what}`;
  const set = (key: string, value: number | undefined, what: string) => {
    if (value !== undefined && Number.isFinite(value)) figures.measured[key] = { value: +value.toFixed(2), from: from(what) };
  };
  if (loaded) {
    set('sseDeliveryCpuUs', median(ours.filter((r) => r.case === loaded).map((r) => r.serverCpuUsPerDelivery as number)), `median server CPU per delivery, case ${loaded}`);
  }
  const idle = ours.filter((r) => r.case === 'idle');
  if (idle.length) {
    set('sseIdleKbPerConnection', median(idle.map((r) => r.memPerConnKB)), 'median RSS growth per idle connection, case idle');
    set('processBaseMb', median(idle.map((r) => r.memBaseKB / 1024)), 'median RSS before connections, case idle');
    const connects = idle.filter((r) => r.connectCpuUsPerConnection !== undefined).map((r) => r.connectCpuUsPerConnection as number);
    if (connects.length) set('sseConnectCpuUs', median(connects), 'median server CPU per connect (ticket redemption, cookie, catch-up check), case idle');
  }
  figures.machine = `${facts.nproc} × ${facts.cpu}, ${facts.memGB} GiB, loopback (the server's CPU includes kernel work of the receiving side); Fargate ARM64 vCPUs are taken as equal to these cores, an assumption.`;
  writeFileSync(file, `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`bench: wrote ${file}`);
}
