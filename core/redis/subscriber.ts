import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';
import type { BrokerSubscriber } from '../broker';
import { isCluster } from './client';
import type { Keys } from './keys';

/**
 * The {@link BrokerSubscriber} on Redis.
 *
 * One node (an ioredis `Redis` in subscriber mode): `SUBSCRIBE`/`UNSUBSCRIBE` of each channel's live pub/sub channel;
 * ioredis resubscribes every channel when the connection comes back, before `ready`.
 *
 * A Redis Cluster (an ioredis `Cluster` made with `shardedSubscribers: true`, see `createRedisCluster`): sharded
 * pub/sub, `SSUBSCRIBE`/`SUNSUBSCRIBE`, so a message stays on the shard that owns its channel's slot (plain `PUBLISH`
 * in a cluster is sent to every node, redis#12196). ioredis holds one subscriber connection per shard primary. Each
 * channel is known here as confirmed on a node (the slot's primary when Redis confirmed it) or not; a channel that was
 * confirmed and no longer is has **lapsed** (its live events may be missed) until it is confirmed again on the slot's
 * primary, when it is reported **restored** (a catch-up from then misses nothing). Only the channels of the shard
 * concerned lapse; the others' subscriptions are not touched. The traps ioredis's issues record, and what this class
 * does about them:
 * - without `shardedSubscribers`, `SSUBSCRIBE` goes to a random node and `smessage` never arrives (ioredis#1759):
 *   the factory sets it, and this class refuses a `Cluster` without it;
 * - one `SSUBSCRIBE` naming channels of several slots is refused (`CROSSSLOT`), and was how ioredis resubscribed
 *   after a reconnect until PR #2021: this class sends one channel per command;
 * - `SUNSUBSCRIBE` without channels cannot be routed (ioredis#2133): never sent, channels are always named;
 * - a shard subscriber whose node is lost ends (no retry of its own); ioredis refreshes the slots, makes a subscriber
 *   for the new primary and resubscribes (`subscribersReady`) without waiting for the confirmations: the lost node's
 *   channels lapse at once (`-node`) and are subscribed again here, restored only once Redis confirmed;
 * - a slot moved to another primary (online resharding): the old primary ends its subscribers' subscriptions of that
 *   slot's channels with an unsolicited `SUNSUBSCRIBE` (Redis 7), which ioredis does not expect: it reports it as a
 *   `nodeError` "Command queue state error ... Last reply: sunsubscribe,<channel>,<count>" and does not refresh its
 *   slot map (and does not refresh it on a timer by default). That channel lapses here, the slot map is refreshed, and
 *   the channel is subscribed again on the slot's new primary;
 * - an `SSUBSCRIBE` sent on a stale slot map gets `MOVED`, on which ioredis refreshes the slots but never settles the
 *   command (its promise stays pending): an attempt is sent again whenever the slot map names another primary for
 *   its slot than the one it was routed to, and the map is refreshed on a timer (`createRedisCluster`) so that a
 *   refresh that read a stale map is followed by another.
 * Known residue: ioredis matches an unsolicited `SUNSUBSCRIBE` against the oldest command awaiting a reply on that
 * connection, if any; a `SSUBSCRIBE` sent to the old primary in the same instant as the slot moved can be settled by
 * it before Redis confirmed its own (that channel is subscribed anyway, a moment later).
 */
export class RedisSubscriber implements BrokerSubscriber {
  private message?: (channel: string, envelope: string) => void;
  private state?: (state: 'lapsed' | 'restored', channels?: readonly string[]) => void;
  /** Cluster mode: the channels subscribed, each with where it is confirmed and its attempt in flight. */
  private readonly shards = new Map<string, ShardChannel>();
  /** Cluster mode: channels that were confirmed, lost their subscription and are not confirmed again yet. */
  private readonly lapsed = new Set<string>();
  /** Cluster mode: channels confirmed again since the last `restored` was told (told together, once per turn). */
  private restoring: string[] = [];
  private attempts = 0;
  private readonly sharded: boolean;

  constructor(
    private readonly conn: Redis | Cluster,
    private readonly keys: Keys,
  ) {
    this.sharded = isCluster(conn);
    if (isCluster(conn)) {
      if (!conn.options.shardedSubscribers) throw new Error('RedisSubscriber: the Cluster needs shardedSubscribers: true (ioredis#1759); make it with createRedisCluster');
      conn.on('smessage', (live: string, message: string) => this.deliver(live, message));
      conn.on('-node', (_redis: unknown, nodeKey?: string) => {
        // Only the sharded subscriber group names the node; the command pool's '-node' does not.
        if (typeof nodeKey === 'string') this.nodeLost(nodeKey);
      });
      conn.on('nodeError', (err: unknown, nodeKey?: string) => this.nodeError(err, nodeKey));
      conn.on('refresh', () => this.check());
      conn.on('subscribersReady', () => this.check());
    } else {
      let wasReady = conn.status === 'ready';
      conn.on('message', (live: string, message: string) => this.deliver(live, message));
      conn.on('ready', () => {
        // ioredis resubscribes every channel on reconnect before 'ready'.
        if (wasReady) this.state?.('restored');
        wasReady = true;
      });
      conn.on('close', () => this.state?.('lapsed'));
    }
  }

  get ready(): boolean {
    return this.conn.status === 'ready' && this.lapsed.size === 0;
  }

  onMessage(handler: (channel: string, envelope: string) => void): void {
    this.message = handler;
  }

  onState(handler: (state: 'lapsed' | 'restored', channels?: readonly string[]) => void): void {
    this.state = handler;
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (!this.sharded) {
      await (this.conn as Redis).subscribe(...channels.map((c) => this.keys.live(c)));
      return;
    }
    const waits: Promise<void>[] = [];
    for (const c of channels) {
      let s = this.shards.get(c);
      if (!s) {
        s = new ShardChannel(calculateSlot(this.keys.live(c)));
        this.shards.set(c, s);
        this.send(c, s);
      }
      waits.push(s.confirmed);
    }
    await Promise.all(waits);
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    if (!this.sharded) {
      await (this.conn as Redis).unsubscribe(...channels.map((c) => this.keys.live(c)));
      return;
    }
    for (const c of channels) {
      this.shards.get(c)?.settle(new Error('unsubscribed'));
      this.shards.delete(c);
      this.lapsed.delete(c);
    }
    // One channel per SUNSUBSCRIBE, as for SSUBSCRIBE.
    await Promise.all(channels.map((c) => (this.conn as Cluster).sunsubscribe(this.keys.live(c))));
  }

  private deliver(live: string, message: string): void {
    const channel = this.keys.channelOfLive(live);
    if (channel !== undefined) this.message?.(channel, message);
  }

  /** The primary that owns `slot` in the client's slot map now. */
  private ownerOf(slot: number): string | undefined {
    return (this.conn as Cluster).slots[slot]?.[0];
  }

  /**
   * Sends one `SSUBSCRIBE` of `c`, routed by the slot map to its slot's primary. Confirmed: `c` is live on that node
   * (restored, if it had lapsed). A failed or superseded attempt is left: the next topology event sends another.
   */
  private send(c: string, s: ShardChannel): void {
    const id = ++this.attempts;
    const node = this.ownerOf(s.slot);
    s.attempt = { id, node };
    (this.conn as Cluster).ssubscribe(this.keys.live(c)).then(
      () => {
        if (this.shards.get(c) !== s || s.attempt?.id !== id) return;
        s.attempt = undefined;
        s.node = node;
        s.settle();
        if (this.lapsed.delete(c)) this.restored(c);
      },
      (err: unknown) => {
        if (this.shards.get(c) !== s || s.attempt?.id !== id) return;
        s.attempt = undefined;
        // The first attempt's failure is the caller's (the hub answers 503); the channel is still tried again.
        s.settle(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  /** Tells `restored` once per turn for every channel confirmed again in it. */
  private restored(c: string): void {
    this.restoring.push(c);
    if (this.restoring.length > 1) return;
    queueMicrotask(() => {
      const back = this.restoring.filter((x) => this.shards.has(x) && !this.lapsed.has(x));
      this.restoring = [];
      if (back.length) this.state?.('restored', back);
    });
  }

  /** `channels` lost their subscription: they lapse (told once, together) and are no longer confirmed anywhere. */
  private lapse(channels: readonly string[]): void {
    const fresh = channels.filter((c) => !this.lapsed.has(c));
    for (const c of channels) {
      const s = this.shards.get(c);
      if (s) s.node = undefined;
      this.lapsed.add(c);
    }
    if (fresh.length) this.state?.('lapsed', fresh);
  }

  /** A shard subscriber's connection ended: the channels confirmed on that node lapse; attempts sent there are void. */
  private nodeLost(nodeKey: string): void {
    const lost: string[] = [];
    for (const [c, s] of this.shards) {
      if (s.node === nodeKey) lost.push(c);
      if (s.attempt?.node === nodeKey) s.attempt = undefined;
    }
    this.lapse(lost);
  }

  /** ioredis's report of an unsolicited `SUNSUBSCRIBE`: the node no longer serves that channel's slot (it moved). */
  private nodeError(err: unknown, nodeKey?: string): void {
    const m = err instanceof Error ? /Last reply: sunsubscribe,(.+),\d+$/.exec(err.message) : null;
    const c = m ? this.keys.channelOfLive(m[1]) : undefined;
    const s = c === undefined ? undefined : this.shards.get(c);
    if (!s || !c || (s.node !== undefined && nodeKey !== undefined && s.node !== nodeKey)) return;
    this.lapse([c]);
    (this.conn as Cluster).refreshSlotsCache();
  }

  /**
   * After a slot map refresh or a resubscription by ioredis: a channel confirmed on a node that no longer owns its slot
   * lapses; every channel not confirmed is sent again unless an attempt is in flight to its slot's primary.
   */
  private check(): void {
    const moved: string[] = [];
    for (const [c, s] of this.shards) if (s.node !== undefined && s.node !== this.ownerOf(s.slot)) moved.push(c);
    this.lapse(moved);
    for (const [c, s] of this.shards) {
      if (s.node === undefined && (s.attempt === undefined || s.attempt.node !== this.ownerOf(s.slot))) this.send(c, s);
    }
  }
}

/** A subscribed channel on a cluster: where it is confirmed, the attempt in flight, and its first confirmation. */
class ShardChannel {
  /** The node the channel is confirmed on, undefined while not confirmed. */
  node?: string;
  attempt?: { readonly id: number; readonly node: string | undefined };
  readonly confirmed: Promise<void>;
  private done?: (err?: Error) => void;

  constructor(readonly slot: number) {
    this.confirmed = new Promise<void>((resolve, reject) => {
      this.done = (err) => (err ? reject(err) : resolve());
    });
    // A caller that stopped waiting (unsubscribed) leaves no unhandled rejection.
    this.confirmed.catch(() => undefined);
  }

  /** Settles the first confirmation (later calls do nothing). */
  settle(err?: Error): void {
    this.done?.(err);
    this.done = undefined;
  }
}
