import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { parseWork, runWork } from '../../core/fanout-queue';
import { wrapHandler } from '../shared/handler';
import type { FanoutRuntime } from '../shared/fanout-runtime';

/**
 * The fan-out worker: the SQS FIFO queue's event source (`ReportBatchItemFailures` on). Each record
 * is one work item (`core/fanout-queue.ts`): an event for one shard of a channel's WebSocket
 * subscribers, or the rest of a `since` replay.
 *
 * Records of one message group (one shard) run one after another, in queue order; groups run in
 * parallel. When a record fails, it and every later record of its group are reported in
 * `batchItemFailures` (SQS FIFO must not deliver a group's later items before the failed one), so
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
      const groups = new Map<string, SQSRecord[]>();
      for (const r of event.Records ?? []) {
        const g = r.attributes?.MessageGroupId ?? r.messageId;
        const list = groups.get(g);
        if (list) list.push(r);
        else groups.set(g, [r]);
      }
      const failures: string[] = [];
      await Promise.all(
        [...groups.values()].map(async (records) => {
          for (let i = 0; i < records.length; i++) {
            const r = records[i];
            try {
              const stats = await runWork(parseWork(r.body), deps);
              runtime.logger.debug('work item done', { messageId: r.messageId, ...stats });
            } catch (err) {
              runtime.logger.warn('work item failed; it and the rest of its group are retried', {
                error: err as Error,
                messageId: r.messageId,
                group: r.attributes?.MessageGroupId,
                receiveCount: r.attributes?.ApproximateReceiveCount,
              });
              for (const later of records.slice(i)) failures.push(later.messageId);
              return;
            }
          }
        }),
      );
      return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
    },
  });
}
