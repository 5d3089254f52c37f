import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import Redis from 'ioredis';
import pino from 'pino';
import { isRedisUnavailable, toRealtimeError } from '../../core/errors';
import { publish } from '../../core/events';
import { Keys } from '../../core/redis/keys';
import { createRedis, waitReady } from '../../core/redis/client';
import { RedisServer } from '../../local/redis';
import { coreConfig, eventually, RawStream, TEST_NAMESPACES, uid } from '../support/harness';

/**
 * ElastiCache failover, replayed with two real redis-servers: the primary endpoint is a DNS name
 * that moves to the promoted replica, while TCP connections opened before stay on the old primary,
 * which is demoted to a replica and answers every write with `READONLY`.
 */

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

const SERVER = { kind: 'server', principal: 'test-backend' } as const;

/** The primary endpoint's DNS name: new connections go to `target`, existing ones stay where they are. */
class Endpoint {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(public target: number) {
    this.server = createServer((client) => {
      const upstream = new Socket();
      this.sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      upstream.connect(this.target, '127.0.0.1', () => {
        client.pipe(upstream);
        upstream.pipe(client);
      });
    });
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Resolves on the client's next `ready` (a reconnect); rejects after 10 s. */
function nextReady(client: Redis): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error('the client did not reconnect after READONLY'));
    }, 10_000);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** A plain admin connection straight to one node (not through the endpoint). */
const admin = (server: RedisServer) => new Redis(server.url, { lazyConnect: false, maxRetriesPerRequest: 1 });

async function replicating(replica: Redis): Promise<boolean> {
  return /master_link_status:up/.test(await replica.info('replication'));
}

describe('Redis primary failover (old primary demoted, endpoint moved)', () => {
  let a: RedisServer;
  let b: RedisServer;
  let adminA: Redis;
  let adminB: Redis;
  let endpoint: Endpoint;
  const clients: Redis[] = [];

  beforeEach(async () => {
    [a, b] = await Promise.all([RedisServer.start(), RedisServer.start()]);
    adminA = admin(a);
    adminB = admin(b);
    // Replicas sync at once (the default waits 5 s for more replicas before a diskless sync).
    await Promise.all([adminA.config('SET', 'repl-diskless-sync-delay', '0'), adminB.config('SET', 'repl-diskless-sync-delay', '0')]);
    // B starts as A's replica, so it has the data when it is promoted.
    await adminB.replicaof('127.0.0.1', a.port);
    await eventually(() => replicating(adminB), 10_000, 'B replicating A');
    endpoint = new Endpoint(a.port);
    await endpoint.start();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    adminA.disconnect();
    adminB.disconnect();
    await endpoint.close();
    await Promise.all([a.destroy(), b.destroy()]);
  });

  /** A client of the code under test, connected through the endpoint (so to A). */
  async function connect(failFast?: boolean): Promise<Redis> {
    const c = createRedis({ url: endpoint.url, name: `failover-${uid()}`, failFast });
    clients.push(c);
    await waitReady(c);
    return c;
  }

  /** What AWS does, in its order: promote B, move the DNS name to B, demote A to B's replica. */
  async function failover(): Promise<void> {
    // Everything written to A so far has reached B (the replication stream is ordered: a later write acknowledged by WAIT covers the earlier ones).
    await adminA.set(`fence:${uid()}`, '1');
    expect(await adminA.wait(1, 10_000)).toBe(1);
    await adminB.replicaof('NO', 'ONE');
    endpoint.target = b.port;
    await adminA.replicaof('127.0.0.1', b.port);
    expect(await adminA.role()).toEqual(expect.arrayContaining(['slave']));
  }

  /**
   * The first write after the failover goes over the connection still on A: it must fail with
   * READONLY mapped to `unavailable` (503 + Retry-After, not 500). The client then reconnects by
   * itself (through the endpoint, so to B; nothing restarted) and the same write succeeds.
   * Without the fix it is a 500 and the client never reconnects: every write fails with READONLY.
   */
  async function firstFailsThenSucceeds<T>(client: Redis, write: () => Promise<T>): Promise<T> {
    const readyAgain = nextReady(client);
    const err = await write().then(
      () => new Error('the first write after the failover succeeded on the demoted primary'),
      (e: unknown) => e as Error,
    );
    expect({ message: err.message, code: toRealtimeError(err).code }).toEqual({ message: expect.stringMatching(/^READONLY/), code: 'unavailable' });
    await readyAgain;
    return write();
  }

  test('a plain SET after the failover: fails once with READONLY as `unavailable`, then succeeds against the new primary', async () => {
    const client = await connect();
    const key = `k:${uid()}`;
    await client.set(key, 'before');
    await failover();
    // The client's TCP connection is still on A, now a replica.
    await expect(adminA.set('x', '1')).rejects.toThrow(/READONLY/);
    await firstFailsThenSucceeds(client, () => client.set(key, 'after'));
    expect(await adminB.get(key)).toBe('after');
    // And it stays on B.
    await client.set(key, 'again');
    expect(await adminB.get(key)).toBe('again');
  });

  test('core publish() after the failover: fails once with READONLY as `unavailable`, then publishes on the new primary with a later id', async () => {
    const client = await connect();
    const config = coreConfig({ redisUrl: endpoint.url });
    const deps = { redis: client, config };
    const ch = `scores:${uid()}`;
    const before = await publish({ channel: ch, type: 'update', data: 'before' }, SERVER, deps);
    await failover();
    const after = await firstFailsThenSucceeds(client, () => publish({ channel: ch, type: 'update', data: 'after' }, SERVER, deps));
    expect(BigInt(after.id) > BigInt(before.id)).toBe(true);
    // The history on B holds both, in order (B had A's data when it was promoted).
    const entries = await adminB.xrange(new Keys(config.keyPrefix).history(ch), '-', '+');
    expect(entries.map(([, fields]) => (JSON.parse(fields[1]) as { data: unknown }).data)).toEqual(['before', 'after']);
  });

  test('the local stack on the endpoint (SSE service + publish Lambda): POST /publish answers 503 + Retry-After once, then 202; a stream opened before the failover gets both events', async () => {
    const { startLocalStack } = await import('../../local/stack');
    const stack = await startLocalStack({ redisUrl: endpoint.url, logger: pino({ level: 'silent' }), env: { NAMESPACES_JSON: JSON.stringify(TEST_NAMESPACES), LOG_LEVEL: 'silent' } });
    const channel = `scores:${uid()}`;
    const stream = new RawStream(`${stack.outputs.SseUrl}?channels=${channel}`);
    try {
      await stream.until((x) => x.events().some((e) => e.event === 'ready'));
      const post = (data: string) =>
        fetch(stack.outputs.PublishUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, type: 'update', data }) });
      const before = await post('before');
      expect(before.status).toBe(202);
      const { redis } = await stack.lambda.clients();
      await failover();

      const readyAgain = nextReady(redis);
      const refused = await post('after');
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unavailable');
      await readyAgain;
      const after = await post('after');
      expect(after.status).toBe(202);
      const id = ((await after.json()) as { id: string }).id;
      // The stream's subscriber connection stayed on A; A, now B's replica, relays B's PUBLISH to it.
      await stream.until((x) => x.events().some((e) => e.id === id));
      expect(stream.events().filter((e) => e.event === 'update').map((e) => (JSON.parse(e.data) as { data: unknown }).data)).toEqual(['before', 'after']);
    } finally {
      stream.close();
      await stack.close();
    }
  });

  test('a client with an offline queue (failFast: false): the write that met READONLY is resent after the reconnect and succeeds', async () => {
    const client = await connect(false);
    const key = `k:${uid()}`;
    await failover();
    await expect(client.set(key, 'resent')).resolves.toBe('OK');
    expect(await adminB.get(key)).toBe('resent');
  });
});

test('READONLY maps to `unavailable` (503 + Retry-After), not 500', () => {
  const err = new Error("READONLY You can't write against a read only replica.");
  expect(isRedisUnavailable(err)).toBe(true);
  expect(toRealtimeError(err).status).toBe(503);
});
