import Redis, { Cluster } from 'ioredis';
import { parseChannel } from '../../core/channels';
import { addSubscription, registerConnection, removeConnection, removeSubscription } from '../../core/connections';
import { claimCursor, publish, replay } from '../../core/events';
import { revokeUser } from '../../core/revocation';
import { BROKER_SCRIPTS } from '../../core/redis/broker';
import type { Script } from '../../core/redis/client';
import { Keys } from '../../core/redis/keys';
import * as registryScripts from '../../core/redis/scripts';
import { issueTicket, redeemTicket } from '../../core/tickets';
import { connectRedis, coreConfig, TEST_NAMESPACES, uid, useRedisCluster } from '../support/harness';

/**
 * Issue 23, item 1: every Lua script touches keys of one hash slot, so it runs on a Redis Cluster, and declares every
 * key it touches. The one exception is documented in DESIGN ("Redis Cluster: what runs single-slot today"): the
 * deployment-wide sequence, which a publish and a replay (and the connection registry's floors) read beside the
 * channels' keys until positions per channel replace it (issue 23, item 2).
 *
 * Part 1 runs every operation that uses a script against the one-node Redis, records each script call's keys and
 * asks the local cluster for their slots (CLUSTER KEYSLOT). Part 2 runs the single-slot operations on the cluster
 * itself, which refuses a script that declares keys of two slots (CROSSSLOT) or reaches an undeclared key of another
 * slot.
 */
const local = useRedisCluster();

const SCRIPTS = Object.entries({ ...registryScripts, ...BROKER_SCRIPTS }).filter((e): e is [string, Script] => typeof (e[1] as Script).sha === 'string');
/** Every script by SHA-1 (EVALSHA) and by source (EVAL, after NOSCRIPT). */
const ALL = new Map(SCRIPTS.map(([name, s]) => [s.sha, name]));
const SOURCES = new Map(SCRIPTS.map(([name, s]) => [s.source, name]));

interface Call {
  readonly script: string;
  readonly keys: string[];
}

/** A real connection whose script calls are recorded (name and KEYS), everything else passed through. */
function recording(redis: Redis): { redis: Redis; calls: Call[] } {
  const calls: Call[] = [];
  const proxy = new Proxy(redis, {
    get(target, prop, receiver) {
      if (prop === 'evalsha' || prop === 'eval') {
        return (first: string, numKeys: number, ...rest: (string | number)[]) => {
          const name = prop === 'eval' ? SOURCES.get(first) : ALL.get(first);
          calls.push({ script: name ?? `unknown script ${String(first).slice(0, 40)}`, keys: rest.slice(0, numKeys).map(String) });
          return (target[prop] as (...a: unknown[]) => unknown).call(target, first, numKeys, ...rest);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { redis: proxy, calls };
}

/** Every operation that runs a script, once, on channels `a` and `b` for user `sub`. */
async function everyOperation(redis: Redis, sub: string, a: string, b: string): Promise<void> {
  const config = coreConfig({ userTicketsPerMinute: 100, userConnections: 10, userPublishPerMinute: 100, userNewChannelsPerHour: 100, userRetainedBytes: 1_000_000 });
  const deps = { redis, config };
  const user = { kind: 'user', sub } as const;
  await publish({ channel: a, type: 't', data: 1, idempotencyKey: `k-${uid()}` }, { kind: 'server', principal: 'test' }, deps);
  await publish({ channel: b, type: 't', data: 2 }, user, deps, { channels: [b], byBackend: false });
  await replay([parseChannel(a, TEST_NAMESPACES), parseChannel(b, TEST_NAMESPACES)], 1, deps);
  await claimCursor(1, deps);
  const { ticket } = await issueTicket({ identity: user, channels: [a], transport: 'sse' }, deps);
  await redeemTicket(ticket, 'sse', deps);
  const conn = `c-${uid()}`;
  await registerConnection(conn, { sub, grant: [a, b], channels: [a] }, deps);
  await addSubscription(conn, b, deps);
  await removeSubscription(conn, a, deps);
  await removeConnection(conn, deps);
  await revokeUser(sub, deps);
}

/**
 * Scripts that read the deployment-wide sequence (`{seq}`) beside per-channel keys: multi-slot until item 2. Each key
 * group named here must still be single-slot on its own: a channel's keys together, the sequence's keys together.
 */
const SEQUENCE_BOUND = new Set(['PUBLISH', 'REPLAY', 'REGISTER', 'SUBSCRIBE']);
/**
 * The WebSocket connection registry's record and the channels' subscriber sets change together (the floors the fan-out
 * filters by): a connection is registered once per connection, a channel's set is shared by every connection on it.
 * These become one script per slot with the per-channel floors of item 2.
 */
const REGISTRY_BOUND = new Set(['UNSUBSCRIBE', 'REMOVE']);

describe('key slots of every script', () => {
  let redis: Redis;
  let admin: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
    admin = new Redis(local.cluster.nodes[0].port, '127.0.0.1');
  });
  afterAll(() => {
    redis.disconnect();
    admin.disconnect();
  });
  const slot = async (key: string) => Number(await admin.cluster('KEYSLOT', key));

  test('each script keeps its keys in one slot (the sequence-bound and registry scripts: one slot per key group)', async () => {
    const rec = recording(redis);
    await everyOperation(rec.redis, `u-${uid()}`, `chat:${uid()}`, `chat:${uid()}`);
    const seen = new Set(rec.calls.map((c) => c.script));
    expect([...seen].filter((s) => s.startsWith('unknown'))).toEqual([]);
    const keys = new Keys('rt:');
    const sequence = new Set([keys.seq, keys.seqBase, keys.seqLost]);
    const spans: string[] = [];
    for (const call of rec.calls) {
      const slots = new Set(await Promise.all(call.keys.map(slot)));
      if (slots.size <= 1) continue;
      if (REGISTRY_BOUND.has(call.script)) continue;
      if (SEQUENCE_BOUND.has(call.script)) {
        // Without the sequence's keys, what remains is one slot per channel (its keys together).
        const seqSlots = new Set(await Promise.all(call.keys.filter((k) => sequence.has(k)).map(slot)));
        const rest = call.keys.filter((k) => !sequence.has(k));
        const byChannel = new Map<string, Set<number>>();
        for (const k of rest) {
          const tag = /\{([^}]*)\}/.exec(k)?.[1] ?? k;
          byChannel.set(tag, (byChannel.get(tag) ?? new Set()).add(await slot(k)));
        }
        const split = [...byChannel].filter(([, s]) => s.size > 1).map(([t]) => t);
        // A publish: besides the sequence, only its channel's keys (the idempotency key included).
        if (seqSlots.size <= 1 && split.length === 0 && (call.script !== 'PUBLISH' || byChannel.size === 1)) continue;
        spans.push(`${call.script}: sequence keys in ${seqSlots.size} slots; groups split over slots: ${split.join(', ') || 'none'}; groups ${[...byChannel.keys()].join(', ')}`);
        continue;
      }
      spans.push(`${call.script}: ${call.keys.join(' ')} in ${slots.size} slots`);
    }
    expect(spans).toEqual([]);
    // Every script was exercised, so a new one cannot slip past this test.
    expect([...ALL.values()].filter((n) => !seen.has(n))).toEqual([]);
  });
});

describe('on the cluster', () => {
  let cluster: Cluster;
  beforeAll(() => {
    cluster = new Cluster(local.cluster.nodes.slice(0, 1), { redisOptions: { maxRetriesPerRequest: 1 } });
  });
  afterAll(() => cluster.disconnect());

  test('tickets, their rate limit, redemption with the revocation epoch, revocation and cursor claims run on a cluster', async () => {
    const config = coreConfig({ userTicketsPerMinute: 100 });
    const deps = { redis: cluster as unknown as Redis, config };
    // Several users and tickets: their keys land on different shards, so an undeclared or cross-slot key would be refused.
    for (let i = 0; i < 6; i++) {
      const sub = `u-${uid()}`;
      const { ticket } = await issueTicket({ identity: { kind: 'user', sub }, channels: [`chat:${uid()}`], transport: 'sse' }, deps);
      const grant = await redeemTicket(ticket, 'sse', deps);
      expect(grant.sub).toBe(sub);
      await revokeUser(sub, deps);
      await expect(issueTicket({ identity: { kind: 'user', sub }, channels: [`chat:${uid()}`], transport: 'sse' }, deps).then((t) => redeemTicket(t.ticket, 'sse', deps))).resolves.toMatchObject({ sub });
    }
    await expect(claimCursor(1, deps)).resolves.toBe(true);
  });

  test('a publish by a user checks and counts the user limits on the user slot (the sequence keeps the publish itself off the cluster for now)', async () => {
    const config = coreConfig({ userPublishPerMinute: 100, userNewChannelsPerHour: 100, userRetainedBytes: 1_000_000 });
    const deps = { redis: cluster as unknown as Redis, config };
    const ch = `chat:${uid()}`;
    const sub = `u-${uid()}`;
    // The documented exception: the sequence's slot beside the channel's. When positions per channel land, this
    // publish succeeds and this expectation is replaced by a delivery check.
    await expect(publish({ channel: ch, type: 't', data: 1 }, { kind: 'user', sub }, deps, { channels: [ch], byBackend: false })).rejects.toThrow(/CROSSSLOT/);
    // USER_RESERVE ran on the cluster (its three keys in the user's slot) and counted the event before PUBLISH was
    // refused (a failed publish leaves its reservation counted: the safe side of a limit).
    const keys = new Keys('rt:');
    expect(await cluster.get(keys.userPublishes(sub))).toBe('1');
    expect(Number(await cluster.get(keys.userRetained('chat', sub)))).toBeGreaterThan(0);
  });
});
