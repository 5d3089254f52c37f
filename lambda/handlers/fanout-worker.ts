import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { parseWork, runFifoBatch, runWork } from '../../core/fanout-queue';
import { wrapHandler } from '../shared/handler';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/**
 * The fan-out worker: the SQS FIFO queue's event source (`ReportBatchItemFailures` on). Each record
 * is one work item (`core/fanout-queue.ts`): an event for one shard of a channel's WebSocket
 * subscribers, or the rest of a `since` replay.
 *
 * The batch runs by `runFifoBatch` (core/fanout-queue.ts): records of one message group (one shard) one after
 * another, groups in parallel; a failed record and the rest of its group are reported in `batchItemFailures`, so
 * they come back in order; records of other groups are done. A batch that cannot start (Redis
 * unreachable, no management endpoint) reports every record. After `maxReceiveCount` receipts an
 * item moves to the dead-letter queue, which is alarmed.
 */
export function createFanoutWorker(runtime: FanoutRuntime): (event: SQSEvent) => Promise<SQSBatchResponse> {
  const all = (event: SQSEvent): SQSBatchResponse => ({ batchItemFailures: (event.Records ?? []).map((r) => ({ itemIdentifier: r.messageId })) });
  return wrapHandler<SQSEvent, SQSBatchResponse>(runtime, {
    name: 'fan-out worker',
    failureNote: 'every record of the batch is retried',
    answer: (_e, event) => all(event),
    context: (event) => ({ records: event.Records?.length ?? 0 }),
    run: async (event) => {
      const management = runtime.postClient();
      if (!management) throw new Error('no management endpoint (WS_MANAGEMENT_ENDPOINT): cannot post');
      const deps = runtime.delivery(await runtime.clients(), management);
      const records = (event.Records ?? []).map((r) => ({ id: r.messageId, group: r.attributes?.MessageGroupId, record: r }));
      const failures = await runFifoBatch(
        records,
        async ({ record: r }) => {
          const stats = await runWork(parseWork(r.body), deps);
          runtime.logger.debug('work item done', { messageId: r.messageId, ...stats });
        },
        ({ record: r }, err) =>
          runtime.logger.warn('work item failed; it and the rest of its group are retried', {
            error: err as Error,
            messageId: r.messageId,
            group: r.attributes?.MessageGroupId,
            receiveCount: r.attributes?.ApproximateReceiveCount,
          }),
      );
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    },
  });
}
