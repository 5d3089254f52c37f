import { Agent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { postText, signJsonPost, type CredentialProvider } from './signer';
import type { QueueMessage, WorkQueue } from '../fanout-queue';

/**
 * The fan-out queue on AWS: `SendMessageBatch` to an SQS FIFO queue over SQS's JSON protocol
 * (AWS JSON 1.0, `X-Amz-Target: AmazonSQS.SendMessageBatch`), SigV4-signed, on a keep-alive socket.
 * Only this one call is needed at runtime (the worker receives through Lambda's event source
 * mapping), so the blueprint does not ship `@aws-sdk/client-sqs` for it. Batches hold at most 10
 * entries and stay under 200 KB (SQS: 10 entries, 256 KB per batch); a refused request or entry
 * is retried twice with jittered backoff, then reported as failed.
 */

export interface SqsQueueOptions {
  /** Where the credentials come from (the Lambda role). Required. */
  readonly credentials: CredentialProvider;
  /** Region of the queue. Defaults to the one in the queue URL's host. */
  readonly region?: string;
  /** Attempts per batch when SQS throttles or fails. Defaults to 3. */
  readonly maxAttempts?: number;
  /** The signing clock. Defaults to the system clock. */
  readonly now?: () => Date;
}

interface BatchAnswer {
  readonly Successful?: { Id: string }[];
  readonly Failed?: { Id: string; SenderFault?: boolean; Code?: string; Message?: string }[];
}

const MAX_ENTRIES = 10;
const MAX_BATCH_BYTES = 200_000;

export { signJsonPost };

export class SqsFifoQueue implements WorkQueue {
  private readonly endpoint: URL;
  private readonly region: string;
  private readonly agent: Agent | HttpAgent;

  constructor(
    readonly queueUrl: string,
    private readonly options: SqsQueueOptions,
  ) {
    const url = new URL(queueUrl);
    this.endpoint = new URL(`${url.protocol}//${url.host}/`);
    this.region = options.region ?? /^sqs\.([a-z0-9-]+)\.amazonaws\.com$/.exec(url.hostname)?.[1] ?? process.env.AWS_REGION ?? 'us-east-1';
    this.agent = url.protocol === 'https:' ? new Agent({ keepAlive: true, maxSockets: 16 }) : new HttpAgent({ keepAlive: true, maxSockets: 16 });
  }

  async send(messages: readonly QueueMessage[]): Promise<{ readonly failed: readonly number[] }> {
    const failed: number[] = [];
    let batch: number[] = [];
    let bytes = 0;
    const flush = async () => {
      if (!batch.length) return;
      failed.push(...(await this.sendBatch(batch.map((i) => [i, messages[i]] as const))));
      batch = [];
      bytes = 0;
    };
    for (let i = 0; i < messages.length; i++) {
      const size = Buffer.byteLength(messages[i].body) + 200;
      if (batch.length === MAX_ENTRIES || (batch.length && bytes + size > MAX_BATCH_BYTES)) await flush();
      batch.push(i);
      bytes += size;
    }
    await flush();
    return { failed };
  }

  /** Sends one batch; resolves with the indexes still refused after the retries. */
  private async sendBatch(entries: readonly (readonly [number, QueueMessage])[]): Promise<number[]> {
    let pending = entries;
    const refused: number[] = [];
    const attempts = this.options.maxAttempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      let answer: BatchAnswer | undefined;
      try {
        answer = await this.call(pending);
      } catch {
        answer = undefined;
      }
      const retry = answer
        ? pending.filter(([i]) => answer!.Failed?.some((f) => f.Id === String(i) && !f.SenderFault))
        : pending;
      // The sender's faults (a bad entry) would fail again: reported at once, not retried.
      if (answer) refused.push(...pending.filter(([i]) => answer!.Failed?.some((f) => f.Id === String(i) && f.SenderFault)).map(([i]) => i));
      if (!retry.length || attempt >= attempts) return [...refused, ...retry.map(([i]) => i)].sort((x, y) => x - y);
      pending = retry;
      await new Promise((r) => setTimeout(r, Math.random() * 50 * 2 ** attempt));
    }
  }

  private async call(entries: readonly (readonly [number, QueueMessage])[]): Promise<BatchAnswer> {
    const body = JSON.stringify({
      QueueUrl: this.queueUrl,
      Entries: entries.map(([i, m]) => ({ Id: String(i), MessageBody: m.body, MessageGroupId: m.groupId, MessageDeduplicationId: m.deduplicationId })),
    });
    const creds = await this.options.credentials();
    const headers = signJsonPost(this.endpoint.host, 'AmazonSQS.SendMessageBatch', body, this.region, 'sqs', creds, this.options.now?.() ?? new Date());
    const res = await postText(this.endpoint, headers, body, { agent: this.agent, what: 'SendMessageBatch' });
    if (res.status < 200 || res.status > 299) throw new Error(`SendMessageBatch answered ${res.status}: ${res.text.slice(0, 200)}`);
    return JSON.parse(res.text) as BatchAnswer;
  }

  /** Closes the kept-alive sockets. */
  destroy(): void {
    this.agent.destroy();
  }
}
