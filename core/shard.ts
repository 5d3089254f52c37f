/**
 * Shards of a deployment's WebSocket connections: a connection belongs to shard
 * `shardOf(connectionId, count)` for its whole life (a hash of its id, so any process computes the
 * same answer without a lookup). A fan-out work item covers one (event, shard) pair, and the shard
 * is the FIFO queue's message group, so the items of one shard run one after another, in publish
 * order: every connection receives a channel's events in order while the shards run in parallel.
 *
 * Changing the count of a stage reassigns connections; items already queued under the old count
 * carry that count and are still delivered by it (see `FanoutWork.shards`).
 */
import { LAMBDA_SETTINGS } from '../contract/settings';

/** Shards a stage may have (`WS_FANOUT_SHARDS`' range): the FIFO queue's message groups bound the parallel workers. */
export const MAX_SHARDS = LAMBDA_SETTINGS.wsFanoutShards.max;

/** FNV-1a (32 bit) of the id, modulo `count`: stable, cheap, and even over API Gateway's random ids. */
export function shardOf(connectionId: string, count: number): number {
  if (count <= 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < connectionId.length; i++) {
    h ^= connectionId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % count;
}

/** The message group of a shard on the fan-out queue. */
export function shardGroup(shard: number): string {
  return `shard-${shard}`;
}
