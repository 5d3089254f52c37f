import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { request } from 'node:http';
import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import pino from 'pino';
import { DEFAULT_NAMESPACES, type CoreConfig, type Namespaces } from '../../core/config';
import { createRedis, createRedisCluster, waitReady } from '../../core/redis/client';
import { Keys } from '../../core/redis/keys';
import { issueTicket, type TicketAudience } from '../../core/tickets';
import { RedisCluster, type RedisClusterOptions } from '../../local/redis';
import { serviceConfigFromEnv } from '../../service/config';
import { RealtimeServer, type RealtimeServerDeps } from '../../service/realtime-server';

export const redisUrl = (): string => {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: the jest global setup starts redis-server');
  return url;
};

/** A random suffix so tests sharing one Redis never see each other's channels. */
export const uid = (): string => randomBytes(6).toString('hex');

export const TEST_NAMESPACES: Namespaces = {
  ...DEFAULT_NAMESPACES,
  tiny: { subscribe: 'authenticated', publish: 'server', historySize: 3, historyTtlSeconds: 600 },
  nohist: { subscribe: 'authenticated', publish: 'server', historySize: 0, historyTtlSeconds: 600 },
};

export function coreConfig(overrides: Partial<CoreConfig> = {}): CoreConfig {
  return {
    redisUrl: redisUrl(),
    keyPrefix: 'rt:',
    namespaces: TEST_NAMESPACES,
    ticketTtlSeconds: 30,
    maxPayloadBytes: 32768,
    maxChannelsPerConnection: 16,
    // Suites share one Redis and user names: no per-user ticket rate unless a test sets one.
    userTicketsPerMinute: 0,
    userConnections: 0,
    ...overrides,
  };
}

/** True when the suite runs on a local Redis Cluster (`REDIS_CLUSTER=1`, test/support/global-setup.ts). */
export const onCluster = (): boolean => process.env.REDIS_MODE === 'cluster';

/**
 * A command connection to the test Redis: on a cluster (`REDIS_CLUSTER=1`) an ioredis `Cluster` for its nodes, typed as
 * the suites use it (commands route by key; a multi-key command across slots is refused with CROSSSLOT).
 */
export async function connectRedis(url = redisUrl()): Promise<Redis> {
  const r = onCluster() && url === redisUrl() ? (createRedisCluster({ url, name: 'test' }) as unknown as Redis) : createRedis({ url, name: 'test' });
  await waitReady(r);
  return r;
}

/**
 * A subscriber connection for a hub (`RedisSubscriber`): one node in subscriber mode, or on a cluster
 * (`REDIS_CLUSTER=1`) an ioredis `Cluster` with sharded subscribers, as the service makes them.
 */
export async function connectSubscriber(name = 'test-sub'): Promise<Redis> {
  const url = redisUrl();
  const r = onCluster() ? (createRedisCluster({ url, name, subscriber: true, failFast: false }) as unknown as Redis) : createRedis({ url, name, failFast: false });
  await waitReady(r);
  return r;
}

/**
 * The keys matching `pattern` on every primary (`KEYS` on a cluster client reaches one node only), sorted; for tests
 * that check what a step wrote.
 */
export async function allKeys(redis: Redis, pattern: string): Promise<string[]> {
  const cluster = redis as unknown as Cluster;
  const nodes: Redis[] = cluster.isCluster === true ? cluster.nodes('master') : [redis];
  return (await Promise.all(nodes.map((n) => n.keys(pattern)))).flat().sort();
}

/**
 * Subscriptions of a live channel Redis counts: `PUBSUB NUMSUB` on one node; on a cluster, where the service subscribes
 * with SSUBSCRIBE on the channel's shard, `PUBSUB SHARDNUMSUB` summed over the primaries.
 */
export async function subscribersOf(redis: Redis, live: string): Promise<number> {
  const cluster = redis as unknown as Cluster;
  if (cluster.isCluster !== true) return Number(((await redis.pubsub('NUMSUB', live)) as [string, number])[1]);
  const counts = await Promise.all(cluster.nodes('master').map(async (n) => Number(((await n.pubsub('SHARDNUMSUB', live)) as [string, number])[1])));
  return counts.reduce((a, b) => a + b, 0);
}

/** Deletes `keys` one by one (a multi-key DEL across slots is refused on a cluster). */
export async function delKeys(redis: Redis, keys: readonly string[]): Promise<void> {
  await Promise.all(keys.map((k) => redis.del(k)));
}

export const SESSION_SECRET = 'test-session-secret-0123456789abcdef';

/** Starts a real SSE service on a free port against the test Redis (`deps`: parts to hand it, e.g. its write window). */
export async function startService(env: Record<string, string> = {}, deps: Omit<RealtimeServerDeps, 'logger'> = {}): Promise<{ service: RealtimeServer; base: string }> {
  const config = serviceConfigFromEnv({
    REDIS_URL: redisUrl(),
    SESSION_SECRET,
    NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES),
    COOKIE_SECURE: 'false',
    ALLOWED_ORIGINS: 'http://allowed.example',
    LOG_LEVEL: 'silent',
    ...(onCluster() && (env.REDIS_URL ?? redisUrl()) === redisUrl() ? { REDIS_MODE: 'cluster' } : {}),
    ...env,
  });
  // On a cluster (REDIS_CLUSTER=1) the global setup set REDIS_MODE=cluster: the service makes its own Cluster clients
  // from its configuration, as a task does on AWS.
  const service = new RealtimeServer(config, { ...deps, logger: pino({ level: 'silent' }) });
  const port = await service.listen(0, '127.0.0.1');
  return { service, base: `http://127.0.0.1:${port}` };
}

export async function ticketFor(redis: Redis, sub: string, channels: string[], transport: TicketAudience = 'sse', config = coreConfig()): Promise<string> {
  return (await issueTicket({ identity: { kind: 'user', sub }, channels, transport }, { redis, config })).ticket;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A plain HTTP GET that reads the whole body (for error answers and long polls). */
export function get(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * An SSE stream read raw over HTTP: collects text and lets a test wait for a pattern.
 * Used where the exact bytes matter (framing, heartbeats, retry hints).
 */
export class RawStream {
  text = '';
  status = 0;
  headers: Record<string, string | string[] | undefined> = {};
  ended = false;
  private waiters: (() => void)[] = [];
  private readonly req;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      this.status = res.statusCode ?? 0;
      this.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        this.text += c;
        this.notify();
      });
      res.on('end', () => {
        this.ended = true;
        this.notify();
      });
      this.notify();
    });
    this.req.on('error', () => {
      this.ended = true;
      this.notify();
    });
    this.req.end();
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `pred` holds; rejects after `timeoutMs` with what was received. */
  async until(pred: (s: RawStream) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      if (Date.now() > deadline) throw new Error(`timed out; status ${this.status}, received:\n${this.text.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * Parsed events (blocks with a data line), in order. `cursor` is the block's `id:` line (the connection's cursor,
   * what an EventSource resends as `Last-Event-ID`); `id` is the event's own id, from its envelope (none for `ready`
   * and `reset`).
   */
  events(): { id?: string; cursor?: string; event?: string; data: string }[] {
    const out: { id?: string; cursor?: string; event?: string; data: string }[] = [];
    for (const block of this.text.split('\n\n')) {
      const ev: { id?: string; cursor?: string; event?: string; data?: string } = {};
      for (const line of block.split('\n')) {
        const i = line.indexOf(': ');
        if (line.startsWith(':') || i < 0) continue;
        const k = line.slice(0, i);
        const v = line.slice(i + 2);
        if (k === 'id') ev.cursor = v;
        else if (k === 'event') ev.event = v;
        else if (k === 'data') ev.data = ev.data === undefined ? v : `${ev.data}\n${v}`;
      }
      if (ev.data === undefined) continue;
      const id = /^\{"channel":"[^"]*","id":"(\d+)"/.exec(ev.data)?.[1];
      if (id !== undefined) ev.id = id;
      out.push(ev as { id?: string; cursor?: string; event?: string; data: string });
    }
    return out;
  }

  /** The last `id:` line received: what a native EventSource would send back as `Last-Event-ID`. */
  lastCursor(): string | undefined {
    return this.events().filter((e) => e.cursor !== undefined).at(-1)?.cursor;
  }

  close(): void {
    this.req.destroy();
  }
}

/**
 * `n` channels of `namespace` (at most 3) whose keys hash to slots of `n` different primaries of a three-primary Redis
 * Cluster as `redis-cli --cluster create` splits the slots (0-5460, 5461-10922, 10923-16383), sorted as a connection
 * orders them: a multi-channel stream whose positions live on different shards.
 */
export function channelsOnShards(namespace: string, n = 3): string[] {
  const keys = new Keys('');
  const out = new Map<number, string>();
  while (out.size < n) {
    const ch = `${namespace}:${uid()}`;
    const shard = Math.min(2, Math.floor(calculateSlot(keys.history(ch)) / 5461));
    if (shard < n && !out.has(shard)) out.set(shard, ch);
  }
  return [...out.values()].sort();
}

/** A task in a child process (`service/main.ts`, as the container runs it): one that can really be killed. */
export interface SpawnedTask {
  readonly proc: ChildProcessByStdio<null, Readable, Readable>;
  /** `http://127.0.0.1:{port}`. */
  readonly base: string;
  /** Everything it wrote to stdout and stderr so far (its JSON log lines). */
  output(): string;
}

/**
 * Starts `service/main.ts` on a free port against the test Redis with `env` over the usual test settings, and resolves
 * once it listens; `cleanup` gets its SIGKILL.
 */
export async function spawnTask(env: Record<string, string>, cleanup: (() => unknown)[]): Promise<SpawnedTask> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'service/main.ts'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', REDIS_URL: redisUrl(), SESSION_SECRET, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.push(() => {
    proc.kill('SIGKILL');
    proc.stdout.destroy();
    proc.stderr.destroy();
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  await eventually(() => /"port":\d+/.test(out), 30_000, 'the task listening');
  return { proc, base: `http://127.0.0.1:${/"port":(\d+)/.exec(out)![1]}`, output: () => out };
}

/** Polls `pred` until it holds (for state that changes without an event to wait on). */
export async function eventually(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A fetch that keeps cookies like a browser does (per origin, HttpOnly included), for the
 * `eventsource` client so its native reconnects carry the reconnect cookie.
 */
export function cookieFetch(): { fetch: typeof fetch; jar: Map<string, string> } {
  const jar = new Map<string, string>();
  const f: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(input, { ...init, headers });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return res;
  };
  return { fetch: f, jar };
}

/**
 * The fixture most runtime suites share: one Redis connection for the file (handed to `onReady`), and
 * a list of clean-ups (servers, streams, sockets) run after each test, last registered first.
 */
export function useRedis(onReady: (redis: Redis) => void): (() => unknown)[] {
  const cleanup: (() => unknown)[] = [];
  let redis: Redis | undefined;
  beforeAll(async () => {
    redis = await connectRedis();
    onReady(redis);
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  afterAll(() => redis?.disconnect());
  return cleanup;
}

/**
 * A local Redis Cluster (three primaries, one replica each) for the file, started in `beforeAll` and stopped in
 * `afterAll`: only the suites that call this pay for it. Needs `redis-server` and `redis-cli` (Debian `redis-tools`).
 */
export function useRedisCluster(options: RedisClusterOptions = {}): { readonly cluster: RedisCluster } {
  const holder: { cluster?: RedisCluster } = {};
  beforeAll(async () => {
    holder.cluster = await RedisCluster.start(options);
  }, 90_000);
  afterAll(async () => {
    await holder.cluster?.destroy();
  }, 30_000);
  return {
    get cluster(): RedisCluster {
      if (!holder.cluster) throw new Error('the Redis Cluster is not started yet (use it inside a test or beforeAll)');
      return holder.cluster;
    },
  };
}
