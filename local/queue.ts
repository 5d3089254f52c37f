import { createHash, randomUUID } from 'node:crypto';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { QueueMessage, WorkQueue } from '../core/fanout-queue';

/**
 * An in-process stand-in for an SQS FIFO queue with a Lambda event source mapping, for the fan-out
 * worker (`lambda/handlers/fanout-worker.ts`), so the local stack runs the same worker code.
 *
 * What it models:
 * - FIFO per message group: a group's messages are handed out in send order, and while a group has
 *   messages in flight no other invocation receives that group (SQS FIFO's group lock).
 * - Batches of up to `batchSize` messages, all of one group (SQS returns a group's messages together);
 *   up to `workers` invocations run at once (the event source's concurrency), each on its own group.
 * - `batchItemFailures`: reported messages stay at the head of their group and come back; the others
 *   are deleted. A handler that throws, or an invocation "lost" by `loseNext` (a crashed worker: its
 *   posts happened, its answer never came), returns the whole batch.
 * - `maxReceiveCount`: a message received that many times and failed again moves to `deadLetters`
 *   (and to `deadLetterQueue` when given: the DLQ, with its own consumer), unblocking its group.
 * - Content deduplication by `MessageDeduplicationId` within `dedupWindowMs` (SQS: 5 minutes).
 * - Deterministic faults by count: `refuseNext` refuses the next n sends (SendMessageBatch entries
 *   failed), `loseNext` loses the next n invocations' answers.
 *
 * What it does not model: visibility timeouts (a failed message is visible again after
 * `redeliveryDelayMs`, not after the queue's visibility timeout; an invocation is never timed out),
 * the event source's batching window and its scaling ramp, message size limits (256 KB), the 20,000
 * in-flight limit, delivery delays, ordering across groups (none is promised), durability (messages
 * are in memory), and a receive that returns several groups at once.
 */

export interface LocalQueueOptions {
  /** Receipts after which a failing message moves to the dead-letter queue. Defaults to 5. */
  readonly maxReceiveCount?: number;
  /** Messages per invocation (the event source's BatchSize). Defaults to 10. */
  readonly batchSize?: number;
  /** Invocations at once (the event source's maximum concurrency). Defaults to 4. */
  readonly workers?: number;
  /** Milliseconds a deduplication id is remembered. Defaults to 300000 (SQS's 5 minutes). */
  readonly dedupWindowMs?: number;
  /** Milliseconds before a failed message is received again. Defaults to 10. */
  readonly redeliveryDelayMs?: number;
  /**
   * The dead-letter queue: a message that reached `maxReceiveCount` is sent there too (SQS's redrive
   * policy moves it, keeping its message group), where a consumer of its own may take it. Defaults to
   * none (dead letters are only listed in `deadLetters`).
   */
  readonly deadLetterQueue?: LocalFifoQueue;
}

interface Message {
  readonly messageId: string;
  readonly body: string;
  readonly groupId: string;
  readonly deduplicationId: string;
  readonly sentAt: number;
  readonly sequence: number;
  receiveCount: number;
  visibleAt: number;
}

export type QueueConsumer = (event: SQSEvent) => Promise<SQSBatchResponse | void>;

export class LocalFifoQueue implements WorkQueue {
  /** Messages that reached `maxReceiveCount`, oldest first. */
  readonly deadLetters: { readonly body: string; readonly groupId: string; readonly receiveCount: number }[] = [];
  /** Refuse the next n messages sent (deterministic fault). */
  refuseNext = 0;
  /** Lose the answers of the next n invocations (a worker crash after its work). */
  loseNext = 0;
  /** Counters since start. */
  readonly stats = { sent: 0, deduplicated: 0, refused: 0, received: 0, deleted: 0, invocations: 0, lost: 0 };

  private readonly groups = new Map<string, Message[]>();
  private readonly inFlight = new Set<string>();
  private readonly dedup = new Map<string, number>();
  private readonly o: Required<Omit<LocalQueueOptions, 'deadLetterQueue'>>;
  private readonly dlq?: LocalFifoQueue;
  private sequence = 0;
  private running = false;
  private loops: Promise<void>[] = [];
  private wakers: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(options: LocalQueueOptions = {}) {
    this.o = {
      maxReceiveCount: options.maxReceiveCount ?? 5,
      batchSize: options.batchSize ?? 10,
      workers: options.workers ?? 4,
      dedupWindowMs: options.dedupWindowMs ?? 300_000,
      redeliveryDelayMs: options.redeliveryDelayMs ?? 10,
    };
    this.dlq = options.deadLetterQueue;
    if (!Number.isInteger(this.o.maxReceiveCount) || this.o.maxReceiveCount < 1) throw new Error(`maxReceiveCount must be a whole number >= 1, got ${this.o.maxReceiveCount}.`);
    if (!Number.isInteger(this.o.batchSize) || this.o.batchSize < 1 || this.o.batchSize > 10) throw new Error(`batchSize must be 1-10 (SQS FIFO), got ${this.o.batchSize}.`);
    if (!Number.isInteger(this.o.workers) || this.o.workers < 1) throw new Error(`workers must be a whole number >= 1, got ${this.o.workers}.`);
  }

  /** Messages waiting or in flight. */
  get depth(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.length;
    return n;
  }

  async send(messages: readonly QueueMessage[]): Promise<{ readonly failed: readonly number[] }> {
    const failed: number[] = [];
    const now = Date.now();
    for (const [k, t] of this.dedup) if (now - t > this.o.dedupWindowMs) this.dedup.delete(k);
    messages.forEach((m, i) => {
      if (this.refuseNext > 0) {
        this.refuseNext--;
        this.stats.refused++;
        failed.push(i);
        return;
      }
      // Accepted but not enqueued again: what SQS does with a deduplication id it has seen.
      if (this.dedup.has(m.deduplicationId)) {
        this.stats.deduplicated++;
        return;
      }
      this.dedup.set(m.deduplicationId, now);
      const msg: Message = { messageId: randomUUID(), body: m.body, groupId: m.groupId, deduplicationId: m.deduplicationId, sentAt: now, sequence: ++this.sequence, receiveCount: 0, visibleAt: 0 };
      const g = this.groups.get(m.groupId);
      if (g) g.push(msg);
      else this.groups.set(m.groupId, [msg]);
      this.stats.sent++;
    });
    this.wake();
    return { failed };
  }

  /** Starts `workers` consumers invoking `handler` (the worker Lambda). */
  start(handler: QueueConsumer): void {
    if (this.running) throw new Error('the local queue is already consuming');
    this.running = true;
    this.loops = Array.from({ length: this.o.workers }, () => this.loop(handler));
  }

  /** Stops the consumers after their current invocation. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await Promise.all(this.loops);
    this.loops = [];
  }

  /** Resolves once no message is waiting or in flight (dead letters aside). */
  async idle(): Promise<void> {
    while (this.depth > 0 || this.inFlight.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }

  private notifyIdle(): void {
    if (this.depth === 0 && this.inFlight.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** The next batch: the head of the first group not in flight whose head is visible. */
  private take(): Message[] | undefined {
    const now = Date.now();
    for (const [groupId, list] of this.groups) {
      if (this.inFlight.has(groupId) || list.length === 0 || list[0].visibleAt > now) continue;
      this.inFlight.add(groupId);
      // Round robin: a group served goes to the back of the order.
      this.groups.delete(groupId);
      this.groups.set(groupId, list);
      return list.slice(0, this.o.batchSize);
    }
    return undefined;
  }

  private async loop(handler: QueueConsumer): Promise<void> {
    while (this.running) {
      const batch = this.take();
      if (!batch) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(5, this.o.redeliveryDelayMs));
          this.wakers.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
        continue;
      }
      await this.invoke(handler, batch);
    }
  }

  private async invoke(handler: QueueConsumer, batch: Message[]): Promise<void> {
    const groupId = batch[0].groupId;
    const now = Date.now();
    for (const m of batch) m.receiveCount++;
    this.stats.received += batch.length;
    this.stats.invocations++;
    const records: SQSRecord[] = batch.map((m) => ({
      messageId: m.messageId,
      receiptHandle: `${m.messageId}:${m.receiveCount}`,
      body: m.body,
      attributes: {
        ApproximateReceiveCount: String(m.receiveCount),
        SentTimestamp: String(m.sentAt),
        SenderId: 'LOCAL',
        ApproximateFirstReceiveTimestamp: String(now),
        MessageGroupId: m.groupId,
        MessageDeduplicationId: m.deduplicationId,
        SequenceNumber: String(m.sequence).padStart(20, '0'),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5').update(m.body).digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:local:000000000000:fanout.fifo',
      awsRegion: 'local',
    }));
    let failedIds: Set<string>;
    try {
      const answer = await handler({ Records: records });
      failedIds = new Set((answer?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch {
      failedIds = new Set(batch.map((m) => m.messageId));
    }
    if (this.loseNext > 0) {
      this.loseNext--;
      this.stats.lost++;
      failedIds = new Set(batch.map((m) => m.messageId));
    }
    const list = this.groups.get(groupId) ?? [];
    const keep: Message[] = [];
    for (const m of batch) {
      if (!failedIds.has(m.messageId)) {
        this.stats.deleted++;
        continue;
      }
      if (m.receiveCount >= this.o.maxReceiveCount) {
        this.deadLetters.push({ body: m.body, groupId: m.groupId, receiveCount: m.receiveCount });
        void this.dlq?.send([{ body: m.body, groupId: m.groupId, deduplicationId: m.messageId }]);
        continue;
      }
      m.visibleAt = Date.now() + this.o.redeliveryDelayMs;
      keep.push(m);
    }
    const rest = list.filter((m) => !batch.includes(m));
    if (keep.length || rest.length) this.groups.set(groupId, [...keep, ...rest]);
    else this.groups.delete(groupId);
    this.inFlight.delete(groupId);
    this.wake();
    this.notifyIdle();
  }
}
