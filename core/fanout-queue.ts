import { LAMBDA_SETTINGS } from '../contract/settings';
import { parseChannel } from './channels';
import { countSubscribers, subscriberPages } from './connections';
import { RealtimeError } from './errors';
import { IDEMPOTENCY_TTL_SECONDS } from './broker';
import { envelopeSeq, replay } from './events';
import { closeMissed, fanout, listSubscribers, sendToConnection, type DeliveryDeps, type FanoutResult } from './fanout';
import { Keys, sha256 } from './redis/keys';
import { shardGroup, shardOf } from './shard';
import { frames } from './ws-protocol';

/**
 * Sharded WebSocket fan-out over a FIFO queue (SQS FIFO on AWS, `local/queue.ts` locally).
 *
 * A publish whose channel has at least `inlineMax` WebSocket subscribers enqueues one work item per
 * (event, shard), the shard as message group; fan-out workers (`lambda/handlers/fanout-worker.ts`)
 * post each item to its shard's subscribers. Smaller audiences are posted inline by the publisher,
 * as before, for latency. A `since` replay longer than a page is queued the same way, in the
 * connection's shard, so neither is bound to one request's timeout.
 *
 * Delivery is at least once, never silently dropped:
 * - an item is deleted from the queue only when every post of its shard succeeded or met a 410; a
 *   post that still fails after its retries records the connection in `Keys.fanoutRetry` and fails
 *   the item, whose redelivery posts to those connections only. A worker that crashes mid-item
 *   leaves no record, so the redelivery posts to the whole shard again: clients drop an envelope
 *   whose `id` they already have (ids grow per channel, so "id ≤ last id seen" is the test).
 * - an item that fails `maxReceiveCount` times moves to the dead-letter queue, whose consumer
 *   (`lambda/handlers/fanout-dead-letters.ts`, {@link settleDeadLetter}) closes the connections that
 *   missed it (`DeleteConnection`): their clients reconnect and resume with `since`. No connection
 *   stays open without an event it was due.
 * - an inline post that still fails after its retries has no queue to come back from: that
 *   connection is closed (`DeleteConnection`, `closeMissed`), and its client reconnects and resumes
 *   with `since` from the history, in order. One that cannot even be closed is logged.
 * - the event's fan-out is recorded as handed over (`Keys.fanoutMarker`) only per shard whose item
 *   the queue accepted; an idempotent retry of the publish (`duplicate`) enqueues what is missing.
 */

/** One unit of work for a fan-out worker. `shards` is the shard count the item was cut with. */
export type FanoutWork =
  | { readonly v: 1; readonly kind: 'fanout'; readonly channel: string; readonly envelope: string; readonly shard: number; readonly shards: number }
  | {
      readonly v: 1;
      readonly kind: 'replay';
      readonly connectionId: string;
      readonly channel: string;
      /** Post events with an id above this… */
      readonly after: number;
      /** …up to this one (the subscription's floor), then the `subscribed` frame. */
      readonly floor: number;
      readonly shard: number;
      readonly shards: number;
    };

/** A message for a FIFO queue. */
export interface QueueMessage {
  readonly body: string;
  readonly groupId: string;
  /** FIFO deduplication id: the same id within the queue's window is accepted once. */
  readonly deduplicationId: string;
}

/** Where work items go: SQS FIFO (`core/aws/sqs.ts`) or the local queue. */
export interface WorkQueue {
  /** Enqueues messages; resolves with the indexes of the messages the queue did not accept. */
  send(messages: readonly QueueMessage[]): Promise<{ readonly failed: readonly number[] }>;
}

/** The Redis commands the dispatcher and the worker need beyond the registry's. */
export interface QueueRedis {
  scard(key: string): Promise<number>;
  hgetall(key: string): Promise<Record<string, string>>;
  hset(key: string, ...fieldValues: string[]): Promise<number>;
  expire(key: string, seconds: number): Promise<number>;
  del(key: string): Promise<number>;
  xrange(key: string, start: string, end: string): Promise<[string, string[]][]>;
}

export interface DispatchSettings {
  /** Shards (message groups, parallel workers) of the stage (`WS_FANOUT_SHARDS`). */
  readonly shards: number;
  /**
   * Channels with fewer WebSocket subscribers than this are posted inline by the publisher, more
   * through the queue. Defaults to `WS_FANOUT_INLINE_MAX`'s (200): below it the inline fan-out ends within about one
   * management-API round trip per `concurrency` posts (200 / 32 ≈ 7 round trips, tens of ms on AWS),
   * faster than a queue hop (an SQS send plus the event source's poll, typically 20-100 ms).
   */
  readonly inlineMax: number;
  /** `since` replays longer than this many events are finished by a worker (`WS_REPLAY_INLINE_MAX`). */
  readonly replayInlineMax: number;
}

/** The rows' defaults (`LAMBDA_SETTINGS` in contract/settings.ts: `WS_FANOUT_SHARDS`, `WS_FANOUT_INLINE_MAX`, `WS_REPLAY_INLINE_MAX`). */
export const DEFAULT_DISPATCH: DispatchSettings = {
  shards: LAMBDA_SETTINGS.wsFanoutShards.default,
  inlineMax: LAMBDA_SETTINGS.wsFanoutInlineMax.default,
  replayInlineMax: LAMBDA_SETTINGS.wsReplayInlineMax.default,
};

export interface DispatchDeps extends DeliveryDeps {
  readonly redis: DeliveryDeps['redis'] & QueueRedis;
  /** Without a queue everything is posted inline. */
  readonly queue?: WorkQueue;
  readonly dispatch?: Partial<DispatchSettings>;
}

/** Seconds an inline fan-out in progress keeps idempotent retries from posting again (beyond any Lambda timeout of the publish path). */
const INLINE_CLAIM_SECONDS = 60;

/** Counts of one dispatch, logged with the publish. */
export type DispatchResult = Partial<FanoutResult> & {
  readonly subscribers?: number;
  readonly queued?: number;
  readonly inline?: number;
  /** Inline: connections closed because their post failed after every retry (they resume with `since`). */
  readonly closed?: number;
};

function settings(deps: DispatchDeps): DispatchSettings {
  return { ...DEFAULT_DISPATCH, ...deps.dispatch };
}

export interface DispatchOptions {
  /** Record what was handed over (`Keys.fanoutMarker`): the publish had an idempotency key. Defaults to false. */
  readonly track?: boolean;
  /** Shards already enqueued by an earlier attempt. Defaults to none. */
  readonly skipShards?: ReadonlySet<number>;
}

/**
 * Hands a published envelope to the WebSocket delivery: inline for small audiences (or without a
 * queue), else one work item per shard. Rejects with `unavailable` when the queue refused an item
 * (the items it accepted are recorded, so an idempotent retry enqueues only the rest).
 */
export async function dispatchFanout(channel: string, envelope: string, deps: DispatchDeps, options: DispatchOptions = {}): Promise<DispatchResult> {
  const s = settings(deps);
  const keys = new Keys(deps.config.keyPrefix);
  const seq = envelopeSeq(envelope);
  const marker = keys.fanoutMarker(channel, seq);
  const subscribers = await countSubscribers(channel, deps);
  if (!deps.queue || subscribers < s.inlineMax) {
    // The subscribers are listed before the claim: Redis gone while listing them (a restart) fails
    // this attempt without a claim, so the publisher's retry (`unavailable`) posts the event; a claim
    // left by an attempt that could not list them would make that retry a no-op: a silent loss.
    const listed = await listSubscribers(channel, deps);
    // A retry arriving while this runs must not post again; one arriving after a cut-off run (the
    // Lambda timed out) finds the claim expired and does.
    if (options.track) await deps.redis.set(`${marker}:claim`, '1', 'EX', INLINE_CLAIM_SECONDS);
    const failedIds: string[] = [];
    const r = await fanout(channel, envelope, deps, { failedIds, listed });
    // No queue redelivers an inline post: a connection that missed the event is closed, and its client resumes in order.
    const closed = failedIds.length ? await closeMissed(failedIds, seq, deps) : 0;
    if (options.track) {
      await deps.redis.hset(marker, 'inline', '1');
      await deps.redis.expire(marker, IDEMPOTENCY_TTL_SECONDS);
    }
    return { ...r, subscribers, inline: 1, ...(failedIds.length ? { closed } : {}) };
  }
  const shards: number[] = [];
  for (let k = 0; k < s.shards; k++) if (!options.skipShards?.has(k)) shards.push(k);
  const messages: QueueMessage[] = shards.map((shard) => ({
    body: JSON.stringify({ v: 1, kind: 'fanout', channel, envelope, shard, shards: s.shards } satisfies FanoutWork),
    groupId: shardGroup(shard),
    deduplicationId: fanoutDeduplicationId(channel, seq, shard),
  }));
  const { failed } = messages.length ? await deps.queue.send(messages) : { failed: [] as number[] };
  const refused = new Set(failed);
  const accepted = shards.filter((_, i) => !refused.has(i));
  if (options.track && accepted.length) {
    await deps.redis.hset(marker, ...accepted.flatMap((k) => [`s${k}`, '1']), 'n', String(s.shards));
    await deps.redis.expire(marker, IDEMPOTENCY_TTL_SECONDS);
  }
  if (refused.size) {
    throw new RealtimeError('unavailable', `The fan-out queue refused ${refused.size} of ${messages.length} work items of event ${seq}; retry the publish with the same idempotencyKey to enqueue them.`);
  }
  return { subscribers, queued: accepted.length };
}

/** The management API of a delivery that never posts: every call is a bug (see {@link queuedDelivery}). */
const NO_MANAGEMENT: DeliveryDeps['management'] = {
  postToConnection: () => Promise.reject(new RealtimeError('internal', 'this delivery only enqueues; the fan-out worker posts to API Gateway connections')),
  deleteConnection: () => Promise.reject(new RealtimeError('internal', 'this delivery does not close API Gateway connections')),
};

/** What {@link queuedDelivery} needs. */
export interface QueuedDeliveryDeps {
  readonly redis: DispatchDeps['redis'];
  readonly config: DispatchDeps['config'];
  /** The fan-out queue (SQS FIFO on AWS, the local queue in the local stack). */
  readonly queue: WorkQueue;
  /** Shards of the queue's items: the worker's `WS_FANOUT_SHARDS`. */
  readonly shards: number;
}

/**
 * A WebSocket delivery that only enqueues, whatever the audience (one work item per shard, the items a large publish
 * enqueues; the fan-out worker posts them, in the channel's order per shard): for who has no management API (the
 * tasks in mode `both`, service/api-gateway-fanout.ts) or must not wait for posts (`$connect`, whose client waits for
 * it: its presence events). A channel without API Gateway subscribers (one SCARD) enqueues nothing. `resumeFanout`
 * completes a fan-out on an idempotent retry when the queue refused items the first time.
 */
export function queuedDelivery(deps: QueuedDeliveryDeps): { readonly fanout: (channel: string, envelope: string, options?: { readonly track?: boolean }) => Promise<DispatchResult>; readonly resumeFanout: (channel: string, id: string) => Promise<DispatchResult> } {
  // inlineMax 0: never inline.
  const delivery: DispatchDeps = { redis: deps.redis, config: deps.config, management: NO_MANAGEMENT, queue: deps.queue, dispatch: { shards: deps.shards, inlineMax: 0 } };
  return {
    fanout: async (channel, envelope, options) => {
      if ((await countSubscribers(channel, deps)) === 0) return { subscribers: 0 };
      return dispatchFanout(channel, envelope, delivery, { track: options?.track });
    },
    resumeFanout: (channel, id) => resumeFanout(channel, id, delivery),
  };
}

/**
 * The FIFO deduplication id of an event's work item for one shard: the channel (hashed: SQS takes at most 128
 * characters) with the id, since ids are issued per channel and two channels may issue the same one.
 */
export function fanoutDeduplicationId(channel: string, seq: number, shard: number): string {
  return `f-${sha256(channel).slice(0, 32)}-${seq}-${shard}`;
}

/** The envelope of event `id` from the channel's history; null when trimmed or expired. */
export async function envelopeById(channel: string, id: string, deps: Pick<DispatchDeps, 'redis' | 'config'>): Promise<string | null> {
  const keys = new Keys(deps.config.keyPrefix);
  const entries = await deps.redis.xrange(keys.history(channel), `${id}-0`, `${id}-0`);
  const fields = entries[0]?.[1];
  if (!fields) return null;
  const i = fields.indexOf('e');
  return i >= 0 ? (fields[i + 1] ?? null) : null;
}

/**
 * Completes the fan-out of an event published earlier with the same idempotency key (the retry was
 * answered `duplicate`): enqueues the shards the first attempt did not, or posts inline again when
 * it never finished. Nothing when it was completely handed over. An event no longer in the history
 * cannot be fanned out again (logged); its subscribers resume with `since` and get `reset`.
 */
export async function resumeFanout(channel: string, id: string, deps: DispatchDeps): Promise<DispatchResult> {
  const keys = new Keys(deps.config.keyPrefix);
  const marker = await deps.redis.hgetall(keys.fanoutMarker(channel, id));
  if (marker.inline || (await deps.redis.get(`${keys.fanoutMarker(channel, id)}:claim`)) !== null) return { queued: 0 };
  const count = Number(marker.n ?? 0);
  const done = new Set(Object.keys(marker).filter((f) => /^s\d+$/.test(f)).map((f) => Number(f.slice(1))));
  if (count > 0 && done.size >= count) return { queued: 0 };
  const envelope = await envelopeById(channel, id, deps);
  if (!envelope) {
    deps.logger?.warn('cannot complete an earlier fan-out: the event left the history', { channel, id });
    return { queued: 0 };
  }
  // A stage whose shard count changed meanwhile: the recorded shards are of the old count; start over.
  const skipShards = count === settings(deps).shards ? done : undefined;
  return dispatchFanout(channel, envelope, deps, { track: true, skipShards });
}

/** A work item failed in a way a redelivery may fix (posts that failed after retries, Redis down). */
export class FanoutWorkError extends Error {
  override readonly name = 'FanoutWorkError';
}

/** Parses a queue message body; throws for anything that is not a work item (it will reach the DLQ). */
export function parseWork(body: string): FanoutWork {
  let w: Partial<FanoutWork> & { v?: unknown };
  try {
    w = JSON.parse(body) as typeof w;
  } catch {
    throw new FanoutWorkError('work item is not JSON');
  }
  const int = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= 0;
  if (w?.v !== 1 || !int(w.shard) || !int(w.shards) || typeof w.channel !== 'string') throw new FanoutWorkError('not a fan-out work item (v1)');
  if (w.kind === 'fanout' && typeof w.envelope === 'string') return w as FanoutWork;
  if (w.kind === 'replay' && typeof w.connectionId === 'string' && int(w.after) && int(w.floor)) return w as FanoutWork;
  throw new FanoutWorkError(`unknown work item kind ${JSON.stringify(w.kind)}`);
}

/** How long the ids of connections a work item failed to post to are kept for its redelivery. */
const RETRY_TTL_SECONDS = 3600;

/**
 * Runs one work item: posts an event to the item's shard of the channel (only to the connections
 * that failed, on a redelivery after failures), or posts a queued replay. Throws a
 * {@link FanoutWorkError} (the item is retried) when a post failed after its retries.
 */
export async function runWork(work: FanoutWork, deps: DispatchDeps): Promise<DispatchResult> {
  const keys = new Keys(deps.config.keyPrefix);
  if (work.kind === 'replay') return runReplay(work, deps, keys);
  const seq = envelopeSeq(work.envelope);
  const retryKey = keys.fanoutRetry(work.channel, seq, work.shard);
  const previous = await deps.redis.get(retryKey);
  const only = previous ? new Set(JSON.parse(previous) as string[]) : undefined;
  const failedIds: string[] = [];
  const r = await fanout(work.channel, work.envelope, { ...deps, options: { ...deps.options, shard: { index: work.shard, count: work.shards } } }, { only, failedIds });
  if (failedIds.length) {
    await deps.redis.set(retryKey, JSON.stringify(failedIds), 'EX', RETRY_TTL_SECONDS);
    throw new FanoutWorkError(`${failedIds.length} posts of event ${seq} (shard ${work.shard}) failed after retries`);
  }
  if (previous) await deps.redis.del(retryKey);
  return r;
}

const REPLAY_PAGE = 100;

async function runReplay(work: Extract<FanoutWork, { kind: 'replay' }>, deps: DispatchDeps, keys: Keys): Promise<DispatchResult> {
  const progressKey = keys.replayProgress(work.connectionId, work.channel, work.floor);
  const ch = parseChannel(work.channel, deps.config.namespaces);
  let after = Math.max(work.after, Number((await deps.redis.get(progressKey)) ?? 0));
  let delivered = 0;
  for (;;) {
    const page = await replay([ch], [after], deps, REPLAY_PAGE);
    // The history was trimmed past `after` since the replay began (or since the last page): the client must be
    // told, as on the first page, or it would take what follows for a complete catch-up.
    if (page.resets.includes(work.channel)) {
      const outcome = await sendToConnection(work.connectionId, frames.reset(work.channel), deps);
      if (outcome === 'gone') return { delivered, gone: 1 };
      if (outcome === 'failed') {
        await deps.redis.set(progressKey, String(after), 'EX', RETRY_TTL_SECONDS);
        throw new FanoutWorkError(`reset frame to ${work.connectionId} failed`);
      }
    }
    for (const envelope of page.events) {
      const seq = envelopeSeq(envelope);
      if (seq <= after) continue;
      if (seq > work.floor) break;
      const outcome = await sendToConnection(work.connectionId, envelope, deps);
      if (outcome === 'gone') return { delivered, gone: 1 };
      if (outcome === 'failed') {
        await deps.redis.set(progressKey, String(after), 'EX', RETRY_TTL_SECONDS);
        throw new FanoutWorkError(`replay to ${work.connectionId} failed after event ${after}`);
      }
      after = seq;
      delivered++;
    }
    if (!page.more || page.positions[0] >= work.floor) break;
    after = Math.max(after, page.positions[0]);
  }
  const outcome = await sendToConnection(work.connectionId, frames.subscribed(work.channel, work.floor), deps);
  if (outcome === 'failed') {
    await deps.redis.set(progressKey, String(work.floor), 'EX', RETRY_TTL_SECONDS);
    throw new FanoutWorkError(`subscribed frame to ${work.connectionId} failed`);
  }
  await deps.redis.del(progressKey);
  return { delivered };
}

/** Queues the rest of a `since` replay (after `after`, up to `floor`) in the connection's shard. */
export async function deferReplay(connectionId: string, channel: string, after: number, floor: number, deps: DispatchDeps): Promise<void> {
  const s = settings(deps);
  if (!deps.queue) throw new RealtimeError('internal', 'deferReplay without a queue');
  const shard = shardOf(connectionId, s.shards);
  const work: FanoutWork = { v: 1, kind: 'replay', connectionId, channel, after, floor, shard, shards: s.shards };
  const { failed } = await deps.queue.send([{ body: JSON.stringify(work), groupId: shardGroup(shard), deduplicationId: `r-${sha256(`${connectionId}\n${channel}\n${floor}\n${after}`)}` }]);
  if (failed.length) throw new RealtimeError('unavailable', 'The replay could not be queued; subscribe again with the same `since`.');
}

/** What settling one dead-lettered work item did. */
export interface DeadLetterOutcome {
  /** Connections that missed the item's event(s). */
  readonly missed: number;
  /** Of those, the ones closed (or already gone). */
  readonly closed: number;
}

/**
 * Settles a work item the queue gave up on (it reached the dead-letter queue after `maxReceiveCount`
 * receipts): every connection that missed what it carried is closed with `DeleteConnection`, so its
 * client reconnects and resumes with `since` from the history, in order (or gets `reset` when the
 * history no longer reaches back). Nothing is posted: the poster is what failed.
 *
 * - `fanout`: the connections its failed receipts recorded (`Keys.fanoutRetry`); when none were
 *   recorded (a worker crashed or timed out mid-item), every subscriber of the channel in the item's
 *   shard whose floor is below the event (the fan-out skips the others).
 * - `replay`: the connection the replay was for.
 *
 * Throws a {@link FanoutWorkError} when a connection could not be closed (the DLQ consumer's event
 * source redelivers; closing again is harmless: a gone connection answers 410).
 */
export async function settleDeadLetter(work: FanoutWork, deps: DispatchDeps): Promise<DeadLetterOutcome> {
  const keys = new Keys(deps.config.keyPrefix);
  if (work.kind === 'replay') {
    const closed = await closeMissed([work.connectionId], work.after, deps);
    if (closed < 1) throw new FanoutWorkError(`could not close ${work.connectionId}, whose replay was dead-lettered`);
    await deps.redis.del(keys.replayProgress(work.connectionId, work.channel, work.floor));
    return { missed: 1, closed };
  }
  const seq = envelopeSeq(work.envelope);
  const retryKey = keys.fanoutRetry(work.channel, seq, work.shard);
  const recorded = await deps.redis.get(retryKey);
  const ids = new Set<string>();
  if (recorded) for (const id of JSON.parse(recorded) as string[]) ids.add(id);
  else {
    for await (const page of subscriberPages(work.channel, deps)) {
      for (const s of page) if (s.floor < seq && shardOf(s.connectionId, work.shards) === work.shard) ids.add(s.connectionId);
    }
  }
  const closed = await closeMissed([...ids], seq, deps);
  if (closed < ids.size) throw new FanoutWorkError(`${ids.size - closed} of ${ids.size} connections that missed event ${seq} (shard ${work.shard}) could not be closed`);
  await deps.redis.del(retryKey);
  return { missed: ids.size, closed };
}

/** One item of a batch the queue delivered: its id (SQS `messageId`) and message group (absent: its own group). */
export interface ReceivedItem {
  readonly id: string;
  readonly group?: string;
}

/**
 * Runs a batch from the FIFO queue the way its order requires, and returns the ids to report as failed (SQS
 * `batchItemFailures`). Items of one message group (one shard) run one after another, in queue order; groups run in
 * parallel, so one slow shard does not hold the others. When an item fails, it and every later item of its group are
 * reported without being run (a group's later items must not be delivered before the failed one; SQS FIFO redelivers
 * them in order), and the other groups go on: what they finished is deleted. `onFailure` hears each item that threw.
 *
 * Powertools' `SqsFifoPartialProcessor` (with `skipGroupOnError`) applies the same per-group rule, but walks the batch
 * as one sequence, each record after the last whatever its group: a batch of ten items over ten shards would post one
 * shard after another. Hence this function.
 */
export async function runFifoBatch<T extends ReceivedItem>(items: readonly T[], run: (item: T) => Promise<void>, onFailure?: (item: T, error: unknown) => void): Promise<string[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const g = item.group ?? `\0${item.id}`;
    const list = groups.get(g);
    if (list) list.push(item);
    else groups.set(g, [item]);
  }
  const failed = await Promise.all(
    [...groups.values()].map(async (group) => {
      for (let i = 0; i < group.length; i++) {
        try {
          await run(group[i]);
        } catch (err) {
          onFailure?.(group[i], err);
          return group.slice(i).map((item) => item.id);
        }
      }
      return [];
    }),
  );
  const ids = new Set(failed.flat());
  // Reported in batch order.
  return items.filter((item) => ids.has(item.id)).map((item) => item.id);
}
