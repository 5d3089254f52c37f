import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { FanoutWorkError, parseWork, settleDeadLetter } from '../../core/fanout-queue';
import { wrapHandler } from '../shared/handler';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/**
 * The consumer of the fan-out dead-letter queue (its SQS event source, `ReportBatchItemFailures` on).
 * A work item lands there after `maxReceiveCount` failed receipts: the connections it was for never
 * got its event. Each record is settled by `settleDeadLetter` (core/fanout-queue.ts): those
 * connections are closed with `DeleteConnection` (this function may only DELETE on `@connections`),
 * and their clients reconnect and resume with `since`. A record whose connections could not all be
 * closed is reported and comes back; one that is not a work item cannot name anyone and is dropped
 * (logged as an error with its message id).
 */
export function createFanoutDeadLetterHandler(runtime: FanoutRuntime): (event: SQSEvent) => Promise<SQSBatchResponse> {
  const all = (event: SQSEvent): SQSBatchResponse => ({ batchItemFailures: (event.Records ?? []).map((r) => ({ itemIdentifier: r.messageId })) });
  return wrapHandler<SQSEvent, SQSBatchResponse>(runtime, {
    name: 'fan-out dead letters',
    failureNote: 'every record of the batch comes back',
    answer: (_e, event) => all(event),
    context: (event) => ({ records: event.Records?.length ?? 0 }),
    run: async (event) => {
      const management = runtime.postClient();
      if (!management) throw new Error('no management endpoint (WS_MANAGEMENT_ENDPOINT): cannot close connections');
      const deps = runtime.delivery(await runtime.clients(), management);
      const failures: string[] = [];
      await Promise.all(
        (event.Records ?? []).map(async (r) => {
          let work;
          try {
            work = parseWork(r.body);
          } catch (err) {
            runtime.logger.error('a dead-lettered message is not a work item; dropped', { error: err as Error, messageId: r.messageId });
            return;
          }
          try {
            const outcome = await settleDeadLetter(work, deps);
            runtime.logger.warn('dead-lettered work item settled: the connections that missed it were closed and resume with since', {
              messageId: r.messageId,
              kind: work.kind,
              channel: work.channel,
              shard: work.shard,
              ...outcome,
            });
          } catch (err) {
            runtime.logger.warn('dead-lettered work item not settled; it comes back', { error: err as Error, messageId: r.messageId, retryable: err instanceof FanoutWorkError });
            failures.push(r.messageId);
          }
        }),
      );
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    },
  });
}
