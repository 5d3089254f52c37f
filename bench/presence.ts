/**
 * `npm run bench -- --presence [--presence-n 10000] [--presence-room 1000] [--presence-churn-s 10] [--runs 2] [--write-figures]`
 * (issue 24: "a 1,000-member room and count mode measured: connect and per-join cost at 10k connections").
 *
 * One task process (our service, started as bench/run.ts starts `ours`) with three namespaces: `plain` (presence off),
 * `room` (members) and `crowd` (count). Per run, one fresh task per namespace, alternating (plain, room, crowd), each
 * with N SSE streams whose tickets carry distinct subs: `--presence-room` of them in one big channel, the rest in
 * channels of 10. For each:
 *
 * - **connect**: server CPU per connect from the first connect until presence is quiet (every connection's join done,
 *   no presence frame for 3 s), the presence frames the streams received meanwhile (snapshots and their bytes, join
 *   events, count events) and Redis' script time (INFO commandstats `cmdstat_evalsha`, usec and calls) and CPU;
 * - **churn** (room and crowd): `--presence-room` users who are not connected join the big channel through
 *   `RedisPresence` from this process (holder `bench:churn`, one at a time, paced over `--presence-churn-s`), then leave
 *   (no grace): the task does nothing but fan the events out to the big channel's streams. Redis' script time and calls
 *   per join and per leave (REGISTER + JOIN, LEAVE; count mode also DUE and the task's COUNT), and the server's CPU per
 *   delivered presence event (members: each join and leave goes to every member of the room; count: at most one
 *   `presence.count` per 2 s per channel for the same churn);
 * - **snapshot** of the big channel (20 reads through `RedisPresence.snapshot`, as the task reads one for each stream
 *   that goes live): its bytes as sent (`presenceJson`), wall time and this process' CPU per read, Redis µs per read.
 *
 * Redis is flushed between tasks, so one task's leftovers (members in grace) cost the next nothing. The load
 * generator's CPU (% of one core per phase) and the load average are printed with the figures.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import { parseChannel } from '../core/channels';
import { coreConfigFromEnv, type CoreConfig } from '../core/config';
import { presenceJson } from '../core/presence';
import { RedisPresence } from '../core/redis/presence';
import { issueTicket } from '../core/tickets';

/** What the bench's load generator answers with `presence` counting on (bench/loadgen.js). */
export interface PresenceFrames {
  readonly join: number;
  readonly leave: number;
  readonly count: number;
  readonly snapshots: number;
  readonly snapshotBytes: number;
}

/** The parts of bench/run.ts this case drives (it runs `main()` on import, so they come in as arguments). */
export interface PresenceBenchDeps {
  readonly redis: Redis;
  readonly redisUrl: string;
  /** Starts `ours` with extra environment; resolves with its port and pid. */
  startOurs(env: Record<string, string>): Promise<{ port: number; pid: number; stop(): Promise<void> }>;
  /** A fresh load generator (bench/loadgen.js). */
  loadGen(): { readonly pid: number; ask(msg: object, reply: string, timeoutMs?: number): Promise<{ ok: number; failed: number; ms: number; firstErr?: string; presence?: PresenceFrames; open?: number }>; stop(): Promise<void> };
  /** CPU ticks (user + system) of a process so far, and ticks per second. */
  cpuTicks(pid: number): number;
  readonly clkTck: number;
}

export interface PresenceBenchOptions {
  readonly n: number;
  readonly room: number;
  readonly churnSeconds: number;
  readonly runs: number;
}

/** What is wrong with the options, in the words of the command line; undefined when nothing is. */
export function presenceOptionsError(o: PresenceBenchOptions): string | undefined {
  if (!(Number.isInteger(o.room) && o.room > 0)) return `--presence-room must be a whole number above 0, got ${o.room}`;
  if (!(Number.isInteger(o.n) && o.n > o.room && (o.n - o.room) % SMALL_ROOM === 0)) return `--presence-n must exceed --presence-room (${o.room}) by a multiple of ${SMALL_ROOM}, got ${o.n}`;
  if (!(o.churnSeconds > 0)) return `--presence-churn-s must be above 0, got ${o.churnSeconds}`;
  if (!(Number.isInteger(o.runs) && o.runs > 0)) return `--runs must be a whole number above 0, got ${o.runs}`;
  return undefined;
}

type Mode = 'plain' | 'room' | 'crowd';
const MODES: readonly Mode[] = ['plain', 'room', 'crowd'];
const MODE_TITLES: Record<Mode, string> = { plain: 'presence off', room: 'members', crowd: 'count' };
/** Channels other than the big one hold this many streams each. */
const SMALL_ROOM = 10;
const SNAPSHOT_READS = 20;
const QUIET_MS = 3000;

const NAMESPACES = JSON.stringify({
  plain: { subscribe: 'authenticated', publish: 'server', historySize: 1000 },
  room: { subscribe: 'authenticated', publish: 'server', historySize: 1000, presence: 'members' },
  crowd: { subscribe: 'authenticated', publish: 'server', historySize: 1000, presence: 'count' },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Script time and calls so far (EVALSHA and EVAL, INFO commandstats), and Redis' CPU seconds. */
async function redisScripts(redis: Redis): Promise<{ calls: number; usec: number; cpuS: number }> {
  const [stats, cpu] = await Promise.all([redis.info('commandstats'), redis.info('cpu')]);
  let calls = 0;
  let usec = 0;
  for (const m of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1]);
    usec += Number(m[2]);
  }
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  return { calls, usec, cpuS: get('used_cpu_sys') + get('used_cpu_user') };
}

export interface PresencePhase {
  readonly run: number;
  readonly mode: Mode;
  readonly phase: 'connect' | 'join' | 'leave';
  /** Connects (connect) or presence changes (join, leave). */
  readonly ops: number;
  readonly failed: number;
  readonly wallMs: number;
  readonly serverCpuMs: number;
  /** Presence frames the streams received over the phase. */
  readonly frames: PresenceFrames;
  readonly redisScriptCalls: number;
  readonly redisScriptUsec: number;
  readonly redisCpuMs: number;
  readonly loadgenCpuPct: number;
  readonly loadAvg: number;
  readonly firstErr?: string;
}

export interface SnapshotRead {
  readonly run: number;
  readonly mode: Mode;
  readonly members: number;
  readonly bytes: number;
  readonly wallMsMedian: number;
  readonly cpuUsPerRead: number;
  readonly redisUsPerRead: number;
}

function framesDelta(a: PresenceFrames | undefined, b: PresenceFrames | undefined): PresenceFrames {
  const z = { join: 0, leave: 0, count: 0, snapshots: 0, snapshotBytes: 0 };
  const x = a ?? z;
  const y = b ?? z;
  return { join: y.join - x.join, leave: y.leave - x.leave, count: y.count - x.count, snapshots: y.snapshots - x.snapshots, snapshotBytes: y.snapshotBytes - x.snapshotBytes };
}
const framesTotal = (f: PresenceFrames) => f.join + f.leave + f.count + f.snapshots;

export async function runPresence(deps: PresenceBenchDeps, o: PresenceBenchOptions): Promise<{ phases: PresencePhase[]; snapshots: SnapshotRead[]; md: string; figures: Record<string, { value: number; what: string }> }> {
  const bad = presenceOptionsError(o);
  if (bad) throw new Error(bad);
  const config: CoreConfig = { ...coreConfigFromEnv({ REDIS_URL: deps.redisUrl, TICKET_TTL_SECONDS: '300', NAMESPACES_JSON: NAMESPACES }), redisUrl: deps.redisUrl };
  const phases: PresencePhase[] = [];
  const snapshots: SnapshotRead[] = [];
  let id = 0;
  for (let run = 1; run <= o.runs; run++) {
    for (const mode of MODES) {
      id++;
      await deps.redis.flushall();
      const big = parseChannel(`${mode}:big-${id}`, config.namespaces);
      const channelOf = (i: number) => (i < o.room ? big.channel : `${mode}:r${id}-${Math.floor((i - o.room) / SMALL_ROOM)}`);
      const paths: string[] = [];
      for (let i = 0; i < o.n; i += 500) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(500, o.n - i) }, (_, k) => issueTicket({ identity: { kind: 'user', sub: `u${id}-${i + k}` }, channels: [channelOf(i + k)], transport: 'sse' }, { redis: deps.redis, config })),
        );
        batch.forEach((t, k) => paths.push(`/events?channels=${channelOf(i + k)}&ticket=${t.ticket}`));
      }
      const server = await deps.startOurs({ NAMESPACES_JSON: NAMESPACES });
      const lg = deps.loadGen();
      try {
        await sleep(1000);
        // One phase: `work` runs, then the phase lasts until no presence frame arrived for QUIET_MS (and `quiet` holds).
        const measure = async (phase: PresencePhase['phase'], work: () => Promise<{ ops: number; failed: number; firstErr?: string }>, quiet: () => Promise<boolean> = async () => true): Promise<PresencePhase> => {
          const f0 = (await lg.ask({ cmd: 'status' }, 'status')).presence;
          const [cpu0, lg0, r0] = [deps.cpuTicks(server.pid), deps.cpuTicks(lg.pid), await redisScripts(deps.redis)];
          const t0 = nowMs();
          const done = await work();
          let last = -1;
          let lastChange = nowMs();
          let f1 = f0;
          for (;;) {
            f1 = (await lg.ask({ cmd: 'status' }, 'status')).presence;
            const total = f1 ? framesTotal(f1) : 0;
            if (total !== last) [last, lastChange] = [total, nowMs()];
            if (nowMs() - lastChange >= QUIET_MS && (await quiet())) break;
            if (nowMs() - t0 > 180_000) break;
            await sleep(200);
          }
          // The quiet tail is not the phase's: end it at the last frame (its idle CPU, heartbeats, is kept: small).
          const wallMs = lastChange - t0;
          const after = await redisScripts(deps.redis);
          const p: PresencePhase = {
            run,
            mode,
            phase,
            ops: done.ops,
            failed: done.failed,
            firstErr: done.firstErr,
            wallMs: Math.round(wallMs),
            serverCpuMs: Math.round(((deps.cpuTicks(server.pid) - cpu0) * 1000) / deps.clkTck),
            frames: framesDelta(f0, f1),
            redisScriptCalls: after.calls - r0.calls,
            redisScriptUsec: after.usec - r0.usec,
            redisCpuMs: Math.round((after.cpuS - r0.cpuS) * 1000),
            loadgenCpuPct: Math.round(((((deps.cpuTicks(lg.pid) - lg0) * 1000) / deps.clkTck) / Math.max(1, nowMs() - t0)) * 100),
            loadAvg: +loadavg()[0].toFixed(1),
          };
          phases.push(p);
          console.log(`presence: ${JSON.stringify(p)}`);
          return p;
        };

        // Connect: every stream, then until every presence join ran (the members hashes hold every sub).
        const rooms = [big.channel, ...Array.from({ length: (o.n - o.room) / SMALL_ROOM }, (_, k) => `${mode}:r${id}-${k}`)];
        const members = async () => {
          const pipe = deps.redis.pipeline();
          for (const c of rooms) pipe.hlen(`${config.keyPrefix}pc:{${c}}`);
          return ((await pipe.exec()) ?? []).reduce((a, [, v]) => a + Number(v), 0);
        };
        await measure(
          'connect',
          async () => {
            const c = await lg.ask({ cmd: 'connect', host: '127.0.0.1', port: server.port, paths, concurrency: 200, needReady: true, proto: 'sse', timeoutMs: 60_000, presence: true }, 'connected', 300_000);
            return { ops: c.ok, failed: c.failed, firstErr: c.firstErr };
          },
          async () => mode === 'plain' || (await members()) >= o.n,
        );
        if (mode === 'plain') continue;

        // Snapshot of the big channel (the task reads one for each stream that goes live there).
        const store = new RedisPresence(deps.redis, config);
        {
          const r0 = await redisScripts(deps.redis);
          const cpu0 = process.cpuUsage();
          const walls: number[] = [];
          let bytes = 0;
          let count = 0;
          for (let i = 0; i < SNAPSHOT_READS; i++) {
            const t = nowMs();
            const snap = await store.snapshot(big);
            bytes = Buffer.byteLength(presenceJson(big, snap));
            walls.push(nowMs() - t);
            count = snap.count ?? snap.members.length;
          }
          const cpu = process.cpuUsage(cpu0);
          const after = await redisScripts(deps.redis);
          walls.sort((a, b) => a - b);
          const s: SnapshotRead = {
            run,
            mode,
            members: count,
            bytes,
            wallMsMedian: +walls[Math.floor(walls.length / 2)].toFixed(2),
            cpuUsPerRead: Math.round((cpu.user + cpu.system) / SNAPSHOT_READS),
            redisUsPerRead: Math.round((after.usec - r0.usec) / SNAPSHOT_READS),
          };
          snapshots.push(s);
          console.log(`presence: ${JSON.stringify(s)}`);
        }

        // Churn: `room` users who are not connected join the big channel, paced, then leave (no grace).
        const holder = 'bench:churn';
        await store.lease(holder, Date.now() + 3_600_000);
        const paced = async (each: (j: number) => Promise<void>) => {
          const t0 = nowMs();
          const gap = (o.churnSeconds * 1000) / o.room;
          let failed = 0;
          let firstErr: string | undefined;
          for (let j = 0; j < o.room; j++) {
            const wait = t0 + j * gap - nowMs();
            if (wait > 0) await sleep(wait);
            await each(j).catch((err: Error) => {
              failed++;
              firstErr ??= err.message;
            });
          }
          return { ops: o.room - failed, failed, firstErr };
        };
        const conn = (j: number) => ({ holder, connection: `${holder}/${j}` });
        await measure('join', () => paced((j) => store.join(big, { ...conn(j), sub: `churn-${j}` }, Date.now())));
        await measure('leave', () => paced((j) => store.leave(big, conn(j), Date.now(), 0)));
      } finally {
        await lg.stop();
        await server.stop();
      }
    }
  }
  return { phases, snapshots, ...presenceReport(phases, snapshots, o) };
}

const median = (xs: number[]): number | undefined => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const r1 = (x: number | undefined) => (x === undefined ? '–' : (Math.round(x * 10) / 10).toLocaleString('en-US'));
const r2 = (x: number | undefined) => (x === undefined ? '–' : (Math.round(x * 100) / 100).toString());

/** Presence deliveries (events and snapshots) of a phase. */
const deliveries = (p: PresencePhase) => p.frames.join + p.frames.leave + p.frames.count;

const CPU_PER_JOIN = "server CPU µs per join, members (its event delivered to every member) / count (the counts, and the held streams' heartbeats over the phase)";

/** The tables and the planner's figures from a run's phases and snapshot reads (also from a saved presence.json). */
export function presenceReport(phases: PresencePhase[], snapshots: SnapshotRead[], o: PresenceBenchOptions): { md: string; figures: Record<string, { value: number; what: string }> } {
  const of = (mode: Mode, phase: PresencePhase['phase']) => phases.filter((p) => p.mode === mode && p.phase === phase);
  const med = (mode: Mode, phase: PresencePhase['phase'], get: (p: PresencePhase) => number) => median(of(mode, phase).map(get));
  // Server CPU per presence event delivered, from the churn phases (the task only fans out there).
  const perDelivery = (mode: Mode) => median([...of(mode, 'join'), ...of(mode, 'leave')].filter((p) => deliveries(p) > 0).map((p) => (p.serverCpuMs * 1000) / deliveries(p)));
  const connectUs = (p: PresencePhase) => (p.serverCpuMs * 1000) / Math.max(1, p.ops);
  const plainUs = med('plain', 'connect', connectUs);

  let md = `\n#### Presence: ${o.n.toLocaleString('en-US')} SSE streams (distinct subs), ${o.room.toLocaleString('en-US')} in one channel, the rest in channels of ${SMALL_ROOM}; churn ${o.room.toLocaleString('en-US')} joins then ${o.room.toLocaleString('en-US')} leaves over ${o.churnSeconds} s each\n\n`;
  md += '| run | namespace | phase | ops (failed) | wall ms | server CPU ms | µs / op | presence frames received: snapshots (KB) / join / leave / count | Redis script calls / op | Redis script µs / op | Redis µs / script call (usec_per_call) | Redis CPU µs / op | load generator CPU % | load average |\n| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n';
  for (const p of phases) {
    const per = (x: number) => r1(x / Math.max(1, p.ops));
    md += `| ${p.run} | ${p.mode} (${MODE_TITLES[p.mode]}) | ${p.phase} | ${p.ops} (${p.failed}) | ${p.wallMs} | ${p.serverCpuMs} | ${per(p.serverCpuMs * 1000)} | ${p.frames.snapshots} (${Math.round(p.frames.snapshotBytes / 1024)}) / ${p.frames.join} / ${p.frames.leave} / ${p.frames.count} | ${r2(p.redisScriptCalls / Math.max(1, p.ops))} | ${per(p.redisScriptUsec)} | ${r1(p.redisScriptUsec / Math.max(1, p.redisScriptCalls))} | ${per(p.redisCpuMs * 1000)} | ${p.loadgenCpuPct} | ${p.loadAvg} |\n`;
  }
  md += '\nSnapshots of the big channel, read as the task reads one for each stream that goes live there:\n\n| run | namespace | members | bytes sent | wall ms (median of 20) | reader CPU µs / read | Redis script µs / read |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n';
  for (const s of snapshots) md += `| ${s.run} | ${s.mode} | ${s.members} | ${s.bytes.toLocaleString('en-US')} | ${s.wallMsMedian} | ${s.cpuUsPerRead} | ${s.redisUsPerRead} |\n`;

  const roomDelivery = perDelivery('room');
  const summary: [string, number | undefined][] = [
    ['server CPU µs per connect, presence off', plainUs],
    ['server CPU µs per connect, members (with the fan-out of the joins it caused)', med('room', 'connect', connectUs)],
    ['server CPU µs per connect, members, less its share of that fan-out', med('room', 'connect', (p) => (p.serverCpuMs * 1000 - deliveries(p) * (roomDelivery ?? 0)) / Math.max(1, p.ops))],
    ['server CPU µs per connect, count', med('crowd', 'connect', connectUs)],
    ['server CPU µs per presence event delivered, members', roomDelivery],
    ['Redis script µs per join, members (REGISTER + JOIN)', med('room', 'join', (p) => p.redisScriptUsec / p.ops)],
    ['Redis script µs per leave, members (LEAVE)', med('room', 'leave', (p) => p.redisScriptUsec / p.ops)],
    ['Redis script µs per join, count (REGISTER + JOIN + DUE, the task\'s COUNT)', med('crowd', 'join', (p) => p.redisScriptUsec / p.ops)],
    ['Redis script µs per leave, count', med('crowd', 'leave', (p) => p.redisScriptUsec / p.ops)],
    ['Redis script calls per join, members / count', undefined],
    [`join events delivered for ${o.room} joins, members`, med('room', 'join', (p) => p.frames.join)],
    [`count events delivered for ${o.room} joins, count (to ${o.room} streams)`, med('crowd', 'join', (p) => p.frames.count)],
    [CPU_PER_JOIN, undefined],
    ['snapshot of the big channel, bytes (members)', median(snapshots.filter((s) => s.mode === 'room').map((s) => s.bytes))],
    ['snapshot of the big channel, Redis script µs (members / count: both read every member)', median(snapshots.filter((s) => s.mode === 'room').map((s) => s.redisUsPerRead))],
  ];
  // Rows whose value is two figures, members / count.
  const pair = (get: (p: PresencePhase) => number) => `${r1(med('room', 'join', get))} / ${r1(med('crowd', 'join', get))}`;
  const pairs: Record<string, string> = {
    'Redis script calls per join, members / count': pair((p) => p.redisScriptCalls / p.ops),
    [CPU_PER_JOIN]: pair((p) => (p.serverCpuMs * 1000) / p.ops),
  };
  md += `\nMedians over ${o.runs} run(s):\n\n| what | value |\n| --- | ---: |\n`;
  for (const [what, v] of summary) md += `| ${what} | ${pairs[what] ?? r1(v)} |\n`;
  const crowdJoin = of('crowd', 'join');
  if (crowdJoin.length) {
    const perStream = median(crowdJoin.map((p) => p.frames.count / o.room));
    md += `\nCount mode coalesces: ${r1(perStream)} \`presence.count\` per stream for ${o.room} joins over ${o.churnSeconds} s (at most one per 2 s per channel: ≤ ${Math.ceil(o.churnSeconds / 2) + 1}); members mode delivered ${r1(med('room', 'join', (p) => p.frames.join / o.room))} join events per stream for the same joins.\n`;
  }
  const busy = phases.filter((p) => p.loadgenCpuPct >= 90);
  if (busy.length) md += `\nThe load generator used 90 % of a core or more in ${busy.length} phase(s): it may have been the bottleneck there.\n`;

  const figures: Record<string, { value: number; what: string }> = {};
  const put = (k: string, v: number | undefined, what: string) => {
    if (v !== undefined && Number.isFinite(v)) figures[k] = { value: +v.toFixed(2), what };
  };
  put('presenceJoinRedisUs', med('room', 'join', (p) => p.redisScriptUsec / p.ops), 'Redis script µs per join, members mode (REGISTER + JOIN with its event)');
  put('presenceLeaveRedisUs', med('room', 'leave', (p) => p.redisScriptUsec / p.ops), 'Redis script µs per leave, members mode (LEAVE with its event)');
  put('presenceCountChangeRedisUs', median([...of('crowd', 'join'), ...of('crowd', 'leave')].map((p) => p.redisScriptUsec / p.ops)), 'Redis script µs per join or leave, count mode (REGISTER + JOIN or LEAVE, DUE, the task\'s COUNT)');
  put('presenceEventCpuUs', roomDelivery, 'server CPU per presence event delivered to a stream, members mode churn');
  const snapRoom = snapshots.filter((s) => s.mode === 'room' && s.members > 0);
  put('presenceSnapshotRedisUsPerMember', median(snapRoom.map((s) => s.redisUsPerRead / s.members)), `Redis script µs per member of a snapshot (SNAPSHOT of a ${o.room}-member channel)`);
  put('presenceSnapshotCpuUsPerMember', median(snapRoom.map((s) => s.cpuUsPerRead / s.members)), `reader CPU µs per member of a snapshot (RedisPresence.snapshot + presenceJson of a ${o.room}-member channel, as the task does)`);
  const snapCount = snapshots.filter((s) => s.mode === 'crowd' && s.members > 0);
  put('presenceCountSnapshotRedisUs', median(snapCount.map((s) => s.redisUsPerRead)), `Redis script µs per count-mode snapshot (one HLEN; a ${o.room}-member channel)`);
  put('presenceCountSnapshotCpuUs', median(snapCount.map((s) => s.cpuUsPerRead)), `reader CPU µs per count-mode snapshot (RedisPresence.snapshot + presenceJson; a ${o.room}-member channel)`);
  put('presenceSnapshotBytesPerMember', median(snapRoom.map((s) => s.bytes / s.members)), 'bytes of a snapshot per member (subs of 8-9 characters, no info)');
  return { md, figures };
}

/** `--presence --write-figures`: the planner's presence figures (cost/model.ts) into cost/figures.json. */
export function writePresenceFigures(root: string, figures: Record<string, { value: number; what: string }>, command: string, head: string, load: string): void {
  const file = join(root, 'cost/figures.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as { measured: Record<string, { value: number | null; from: string }> };
  const day = new Date().toISOString().slice(0, 10);
  for (const [k, f] of Object.entries(figures)) json.measured[k] = { value: f.value, from: `${command} at ${head} on ${day} (load average ${load}): ${f.what}` };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`bench: wrote ${file}`);
}
