import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on loopback, chosen by the OS. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  /** Port to listen on. Defaults to a free port. */
  readonly port?: number;
  /** Keep an append-only file so data survives a restart of this server. Defaults to false. */
  readonly appendOnly?: boolean;
  /** Directory for data files. Defaults to a new temporary directory. */
  readonly dir?: string;
  /** Extra `redis-server` arguments (e.g. `['--cluster-enabled', 'yes']`). Defaults to none. */
  readonly extraArgs?: readonly string[];
}

/** A private `redis-server` process on loopback (for `npm run dev` and tests). */
export class RedisServer {
  private proc?: ChildProcess;
  readonly dir: string;
  private readonly ownsDir: boolean;

  private constructor(
    readonly port: number,
    private readonly options: RedisServerOptions,
  ) {
    this.ownsDir = !options.dir;
    this.dir = options.dir ?? mkdtempSync(join(tmpdir(), 'rt-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** True when a `redis-server` binary is on PATH. */
  static available(): boolean {
    return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    if (!RedisServer.available()) {
      throw new Error('redis-server is not installed: install it (Debian: apt-get install redis-server) or set REDIS_URL to a running Redis.');
    }
    const server = new RedisServer(options.port ?? (await freePort()), options);
    await server.restart();
    return server;
  }

  /** (Re)starts the process on the same port and waits until it accepts connections. */
  async restart(): Promise<void> {
    if (this.running) return;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'];
    args.push('--appendonly', this.options.appendOnly ? 'yes' : 'no', ...(this.options.extraArgs ?? []));
    this.proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForPort(this.port, 10_000);
  }

  /** Stops the process (SIGTERM, or SIGKILL for a crash) and waits for it to exit; data without appendOnly is lost. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Stops the process and removes its data directory. */
  async destroy(): Promise<void> {
    await this.stop();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1');
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RedisClusterOptions {
  /** Primaries (each owns an equal share of the 16384 slots); 1 or 2 are joined without `redis-cli`. Defaults to 3. */
  readonly primaries?: number;
  /** Replicas per primary. Defaults to 1. */
  readonly replicasPerPrimary?: number;
  /**
   * `cluster-node-timeout` in milliseconds: how long a primary may be unreachable before its replica is promoted.
   * Defaults to 2000 (Redis's own default is 15000; a test waits for a failover).
   */
  readonly nodeTimeoutMs?: number;
}

/** One node of a {@link RedisCluster}, as `CLUSTER NODES` describes it. */
export interface ClusterNodeInfo {
  readonly id: string;
  readonly port: number;
  readonly role: 'primary' | 'replica';
  /** The primary's node id, for a replica. */
  readonly primaryId?: string;
  /** Slot ranges a primary serves, e.g. `[[0, 5460]]`. */
  readonly slots: [number, number][];
}

/**
 * A private Redis Cluster on loopback: `primaries × (1 + replicasPerPrimary)` `redis-server` processes with
 * `cluster-enabled yes`, joined by `redis-cli --cluster create` (Debian package `redis-tools`). For the tests and the
 * benchmark of cluster mode; `destroy()` stops every process and removes their directories.
 */
export class RedisCluster {
  private constructor(
    readonly servers: RedisServer[],
    /** Primaries serving slots, and replicas per primary, when healthy. */
    readonly shape: { readonly primaries: number; readonly replicasPerPrimary: number },
  ) {}

  /** `redis-cli` is on PATH (it creates the cluster). */
  static available(): boolean {
    return RedisServer.available() && spawnSync('redis-cli', ['--version'], { stdio: 'ignore' }).status === 0;
  }

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    if (!RedisCluster.available()) {
      throw new Error('redis-server and redis-cli are needed for a local Redis Cluster: install them (Debian: apt-get install redis-server redis-tools).');
    }
    const primaries = options.primaries ?? 3;
    const replicas = options.replicasPerPrimary ?? 1;
    const count = primaries * (1 + replicas);
    const ports: number[] = [];
    while (ports.length < count) {
      const p = await freePort();
      // The cluster bus listens on port + 10000: both must be free and distinct.
      if (p + 10000 < 65536 && !ports.includes(p) && !ports.includes(p + 10000) && !ports.some((q) => q + 10000 === p)) ports.push(p);
    }
    // A lone primary never learns its own address from a peer: announce it, or CLUSTER SLOTS names it ''.
    const extraArgs = ['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 2000)];
    const servers: RedisServer[] = [];
    const cluster = new RedisCluster(servers, { primaries, replicasPerPrimary: replicas });
    try {
      for (const port of ports) servers.push(await RedisServer.start({ port, extraArgs }));
      if (primaries >= 3) {
        const args = ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'];
        const made = spawnSync('redis-cli', args, { encoding: 'utf8', timeout: 60_000 });
        if (made.status !== 0) throw new Error(`redis-cli --cluster create failed: ${made.stderr || made.stdout}`);
      } else {
        await cluster.joinByHand(ports.slice(0, primaries), ports.slice(primaries));
      }
      await cluster.waitHealthy(30_000);
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  /**
   * `redis-cli --cluster create` refuses fewer than three primaries: one or two are joined here with the cluster
   * commands themselves. Each primary takes an equal range of the 16384 slots (`CLUSTER ADDSLOTSRANGE`), every node
   * meets the first, and the replicas, `replicasPerPrimary` per primary in order, follow theirs (`CLUSTER REPLICATE`)
   * once they know it.
   */
  private async joinByHand(primaries: number[], replicas: number[]): Promise<void> {
    const per = Math.ceil(16384 / primaries.length);
    primaries.forEach((port, i) => this.cli(port, 'CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1))));
    const [first, ...others] = [...primaries, ...replicas];
    for (const port of others) this.cli(port, 'CLUSTER', 'MEET', '127.0.0.1', String(first));
    if (replicas.length === 0) return;
    const ids = primaries.map((port) => this.cli(port, 'CLUSTER', 'MYID').trim());
    const each = replicas.length / primaries.length;
    for (const [k, port] of replicas.entries()) {
      const id = ids[Math.floor(k / each)];
      const deadline = Date.now() + 30_000;
      // A node can follow a primary only once the handshake told it of that primary.
      while (!this.cli(port, 'CLUSTER', 'NODES').includes(id)) {
        if (Date.now() > deadline) throw new Error(`node ${port} did not learn of primary ${id}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      this.cli(port, 'CLUSTER', 'REPLICATE', id);
    }
  }

  /** Seed nodes for a cluster client (every node; a client needs only one). */
  get nodes(): { host: string; port: number }[] {
    return this.servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
  }

  /** Runs `redis-cli -p port args...` and returns its output. */
  cli(port: number, ...args: string[]): string {
    const r = spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} on ${port} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  /** `CLUSTER NODES` as seen by a running node (failed nodes excluded). */
  topology(): ClusterNodeInfo[] {
    const from = this.servers.find((s) => s.running);
    if (!from) throw new Error('no node of the cluster is running');
    const out: ClusterNodeInfo[] = [];
    for (const line of this.cli(from.port, 'CLUSTER', 'NODES').trim().split('\n')) {
      const f = line.split(' ');
      const flags = f[2].split(',');
      if (flags.includes('fail') || flags.includes('fail?') || flags.includes('noaddr')) continue;
      const port = Number(f[1].split(':')[1].split('@')[0]);
      const slots = f.slice(8).filter((x) => /^\d+(-\d+)?$/.test(x)).map((x) => {
        const [a, b] = x.split('-').map(Number);
        return [a, b ?? a] as [number, number];
      });
      out.push({ id: f[0], port, role: flags.includes('master') ? 'primary' : 'replica', primaryId: f[3] === '-' ? undefined : f[3], slots });
    }
    return out;
  }

  /** The server listening on `port`. */
  server(port: number): RedisServer {
    const s = this.servers.find((x) => x.port === port);
    if (!s) throw new Error(`no node on port ${port}`);
    return s;
  }

  /** The primary serving `slot`. */
  primaryOf(slot: number): ClusterNodeInfo {
    const n = this.topology().find((x) => x.role === 'primary' && x.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!n) throw new Error(`no primary serves slot ${slot}`);
    return n;
  }

  /**
   * Resolves when every running node reports `cluster_state:ok` and the same view: the expected number of primaries
   * serving all 16384 slots, each with its replicas (`replicas` replicas per primary: after a primary was killed, fewer).
   */
  async waitHealthy(timeoutMs = 30_000, replicas = this.shape.replicasPerPrimary): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const running = this.servers.filter((s) => s.running);
        // A node killed a moment ago is still listed without a fail flag until the others agree it failed.
        const ports = new Set(running.map((s) => s.port));
        const states = running.map((s) => /cluster_state:(\w+)/.exec(this.cli(s.port, 'CLUSTER', 'INFO'))?.[1]);
        const views = running.map((s) => {
          const live = this.cli(s.port, 'CLUSTER', 'NODES')
            .trim()
            .split('\n')
            .map((l) => l.split(' '))
            .filter((f) => !/fail|noaddr|handshake/.test(f[2]) && ports.has(Number(f[1].split(':')[1].split('@')[0])));
          const serving = live.filter((f) => f[2].includes('master') && f.length > 8);
          const shards = serving.map((p) => `${p[0]}:${live.filter((f) => f[3] === p[0]).length}`);
          const slots = serving.reduce((k, f) => k + f.slice(8).reduce((m, r) => m + (/^\d+-\d+$/.test(r) ? Number(r.split('-')[1]) - Number(r.split('-')[0]) + 1 : /^\d+$/.test(r) ? 1 : 0), 0), 0);
          return { key: shards.sort().join(','), shards, slots };
        });
        last = `states ${states.join(',')}; views ${views.map((v) => `${v.slots} slots [${v.key}]`).join(' | ')}`;
        const v = views[0];
        const agreed = views.every((x) => x.key === v.key);
        const shaped = v.shards.length === this.shape.primaries && v.shards.every((x) => Number(x.split(':')[1]) >= replicas);
        // A replica that never finished its first sync is not promoted when its primary fails (its data is too old).
        const synced = running.every((s) => {
          const info = this.cli(s.port, 'INFO', 'replication');
          return !/role:slave/.test(info) || /master_link_status:up/.test(info);
        });
        if (!synced) last += '; a replica is not in sync';
        if (states.every((s) => s === 'ok') && agreed && shaped && synced && v.slots === 16384) return;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline) throw new Error(`the Redis Cluster did not become healthy within ${timeoutMs} ms (${last})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Crashes the primary on `port` (SIGKILL) and resolves once its replica was promoted and the cluster is healthy
   * again without it (after `cluster-node-timeout`). Returns the promoted node's port. `server(port).restart()` brings
   * the old primary back, as a replica of the new one.
   */
  async killPrimary(port: number, timeoutMs = 30_000): Promise<number> {
    const before = this.topology();
    const dead = before.find((n) => n.port === port && n.role === 'primary');
    if (!dead) throw new Error(`node ${port} is not a primary`);
    const replicas = before.filter((n) => n.primaryId === dead.id).map((n) => n.port);
    await this.server(port).stop('SIGKILL');
    await this.waitHealthy(timeoutMs, 0);
    const promoted = this.topology().find((n) => replicas.includes(n.port) && n.role === 'primary');
    if (!promoted) throw new Error(`no replica of ${port} was promoted`);
    return promoted.port;
  }

  /** Stops every node and removes their data directories. */
  async destroy(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.destroy()));
  }
}
