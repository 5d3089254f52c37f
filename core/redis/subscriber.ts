import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';
import type { BrokerSubscriber } from '../broker';
import type { Keys } from './keys';

/**
 * The {@link BrokerSubscriber} on Redis.
 *
 * One node (an ioredis `Redis` in subscriber mode): `SUBSCRIBE`/`UNSUBSCRIBE` of each channel's live pub/sub channel;
 * ioredis resubscribes every channel when the connection comes back, before `ready`.
 *
 * A Redis Cluster (an ioredis `Cluster` made with `shardedSubscribers: true`, see `createRedisCluster`): sharded
 * pub/sub, `SSUBSCRIBE`/`SUNSUBSCRIBE`, so a message stays on the shard that owns its channel's slot (plain `PUBLISH`
 * in a cluster is sent to every node, redis#12196). ioredis holds one subscriber connection per shard primary. The
 * traps its issues record, and what this class does about them:
 * - without `shardedSubscribers`, `SSUBSCRIBE` goes to a random node and `smessage` never arrives (ioredis#1759):
 *   the factory sets it, and this class refuses a `Cluster` without it;
 * - one `SSUBSCRIBE` naming channels of several slots is refused (`CROSSSLOT`), and was how ioredis resubscribed
 *   after a reconnect until PR #2021: this class sends one channel per command;
 * - `SUNSUBSCRIBE` without channels cannot be routed (ioredis#2133): never sent, channels are always named;
 * - a shard subscriber whose node is lost ends (no retry of its own); ioredis refreshes the slots, makes a subscriber
 *   for the new primary and resubscribes (`subscribersReady`) without waiting for the confirmations. This class
 *   reports the lost shard's channels `lapsed` at once (from the slot map as it was), subscribes each of them again
 *   itself after `subscribersReady` and reports them `restored` only once Redis confirmed: a catch-up started then
 *   misses nothing between its replay and live delivery.
 */
export class RedisSubscriber implements BrokerSubscriber {
  private message?: (channel: string, envelope: string) => void;
  private state?: (state: 'lapsed' | 'restored', channels?: readonly string[]) => void;
  /** Channels subscribed (cluster mode: to know which a lost shard carried). */
  private readonly channels = new Set<string>();
  /** Cluster mode: channels whose shard subscriber was lost and not yet confirmed again. */
  private readonly lapsed = new Set<string>();
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
        if (typeof nodeKey === 'string') this.shardLost(conn, nodeKey);
      });
      conn.on('subscribersReady', () => void this.restoreLapsed());
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
    for (const c of channels) this.channels.add(c);
    // One channel per SSUBSCRIBE: channels of different slots cannot share one.
    await Promise.all(channels.map((c) => (this.conn as Cluster).ssubscribe(this.keys.live(c))));
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    if (!this.sharded) {
      await (this.conn as Redis).unsubscribe(...channels.map((c) => this.keys.live(c)));
      return;
    }
    for (const c of channels) {
      this.channels.delete(c);
      this.lapsed.delete(c);
    }
    await Promise.all(channels.map((c) => (this.conn as Cluster).sunsubscribe(this.keys.live(c))));
  }

  private deliver(live: string, message: string): void {
    const channel = this.keys.channelOfLive(live);
    if (channel !== undefined) this.message?.(channel, message);
  }

  /** A shard's subscriber ended: its channels (by the slot map before ioredis refreshes it) lapse until restored. */
  private shardLost(cluster: Cluster, nodeKey: string): void {
    const lost: string[] = [];
    for (const c of this.channels) {
      if (this.lapsed.has(c)) continue;
      const owners = cluster.slots[calculateSlot(this.keys.live(c))];
      if (!owners || owners[0] === nodeKey) lost.push(c);
    }
    if (lost.length === 0) return;
    for (const c of lost) this.lapsed.add(c);
    this.state?.('lapsed', lost);
  }

  /** After ioredis resubscribed over the new topology: subscribe each lapsed channel again and wait for Redis. */
  private async restoreLapsed(): Promise<void> {
    const channels = [...this.lapsed];
    if (channels.length === 0) return;
    const cluster = this.conn as Cluster;
    const settled = await Promise.allSettled(channels.map((c) => cluster.ssubscribe(this.keys.live(c))));
    // Not confirmed (the new primary not reachable yet): they stay lapsed until the next subscribersReady.
    const back = channels.filter((c, i) => settled[i].status === 'fulfilled' && this.channels.has(c));
    for (const c of back) this.lapsed.delete(c);
    if (back.length) this.state?.('restored', back);
  }
}

function isCluster(conn: Redis | Cluster): conn is Cluster {
  return (conn as Cluster).isCluster === true;
}

