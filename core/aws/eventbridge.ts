import { Agent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { postText, signJsonPost, type CredentialProvider, serviceEndpoint } from './signer';
import { EVENT_SOURCE, type BackendEvent, type EventBus, type PutOutcome } from '../backend-events';

/**
 * The event bus on AWS: EventBridge `PutEvents` over AWS JSON 1.1 (`X-Amz-Target: AWSEvents.PutEvents`), SigV4-signed
 * by `core/aws/signer.ts`, on a keep-alive socket; the SDK client is not shipped for one call.
 *
 * - At most 10 entries per call ([PutEvents](https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html))
 *   and under 256 KB of entries per call, sized as [Calculating PutEvents event entry
 *   size](https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html) says (Source, DetailType,
 *   Detail and Resources in UTF-8 bytes, Time 14 bytes).
 * - A call answers 200 even when entries failed: `FailedEntryCount` and, per entry in request order, `ErrorCode` /
 *   `ErrorMessage` ([Sending events with PutEvents](https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevents.html)).
 *   Only those entries are sent again, and only when retryable (`InternalFailure`, `ThrottlingException`); the
 *   others (`MalformedDetail`, `InvalidArgument`, `AccessDeniedException`…) are reported at once.
 * - A refused call (throttled, 5xx, the network) is sent again whole; after `maxAttempts` what is left is reported
 *   `retryable`, and the relay keeps it in the outbox for its next round.
 */

export interface EventBridgeOptions {
  /** The bus's ARN (EVENT_BUS_NAME: the stack sets the ARN, whose region is the signing region) or name. Required. */
  readonly eventBusName: string;
  /** Where the credentials come from (the task role). Required. */
  readonly credentials: CredentialProvider;
  /** Region. Defaults to the bus ARN's, else AWS_REGION, else us-east-1. */
  readonly region?: string;
  /** The endpoint. Defaults to AWS_ENDPOINT_URL_EVENTBRIDGE, else AWS_ENDPOINT_URL, else `https://events.{region}.amazonaws.com`. */
  readonly endpoint?: string;
  /** Where the defaults above are read. Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Attempts per batch. Defaults to 3. */
  readonly maxAttempts?: number;
  /** The signing clock. Defaults to the system clock. */
  readonly now?: () => Date;
  /** Base of the jittered backoff between attempts, in milliseconds. Defaults to 50. */
  readonly backoffMs?: number;
}

/** Entries per `PutEvents` call (the API's maximum). */
export const PUT_EVENTS_MAX_ENTRIES = 10;
/** Entry bytes per `PutEvents` call: under the documented 256 KB total. */
export const PUT_EVENTS_MAX_BYTES = 256 * 1024 - 1;

const RETRYABLE = new Set(['InternalFailure', 'ThrottlingException', 'InternalException', 'ServiceUnavailable']);

interface Entry {
  readonly Source: string;
  readonly DetailType: string;
  readonly Detail: string;
  readonly EventBusName: string;
}

interface PutEventsAnswer {
  readonly FailedEntryCount?: number;
  readonly Entries?: { EventId?: string; ErrorCode?: string; ErrorMessage?: string }[];
}

/** An entry's size as EventBridge counts it (no Time, no Resources here). */
export function entrySize(e: Pick<Entry, 'Source' | 'DetailType' | 'Detail'>): number {
  return Buffer.byteLength(e.Source) + Buffer.byteLength(e.DetailType) + Buffer.byteLength(e.Detail);
}

/** The endpoint the SDK would call (`AWS_ENDPOINT_URL_EVENTBRIDGE`, `AWS_ENDPOINT_URL`, else the regional one). */
export function eventBridgeEndpoint(region: string, env: NodeJS.ProcessEnv = process.env): URL {
  return serviceEndpoint('events', 'AWS_ENDPOINT_URL_EVENTBRIDGE', region, env);
}

export class EventBridgeBus implements EventBus {
  private readonly endpoint: URL;
  private readonly region: string;
  private readonly agent: Agent | HttpAgent;

  constructor(private readonly options: EventBridgeOptions) {
    const env = options.env ?? process.env;
    this.region = options.region ?? /^arn:aws[a-z-]*:events:([a-z0-9-]+):/.exec(options.eventBusName)?.[1] ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.endpoint = options.endpoint ? new URL(options.endpoint) : eventBridgeEndpoint(this.region, env);
    this.agent = this.endpoint.protocol === 'https:' ? new Agent({ keepAlive: true, maxSockets: 4 }) : new HttpAgent({ keepAlive: true, maxSockets: 4 });
  }

  async put(events: readonly BackendEvent[]): Promise<PutOutcome> {
    const failed: PutOutcome['failed'][number][] = [];
    let batch: number[] = [];
    let bytes = 0;
    const entries = events.map((e): Entry => ({ Source: EVENT_SOURCE, DetailType: e.type, Detail: e.detail, EventBusName: this.options.eventBusName }));
    const flush = async () => {
      if (batch.length) failed.push(...(await this.putBatch(batch, entries)));
      batch = [];
      bytes = 0;
    };
    for (let i = 0; i < entries.length; i++) {
      const size = entrySize(entries[i]);
      if (size > PUT_EVENTS_MAX_BYTES) {
        failed.push({ index: i, retryable: false, code: 'EntryTooLarge' });
        continue;
      }
      if (batch.length === PUT_EVENTS_MAX_ENTRIES || bytes + size > PUT_EVENTS_MAX_BYTES) await flush();
      batch.push(i);
      bytes += size;
    }
    await flush();
    return { failed: failed.sort((a, b) => a.index - b.index) };
  }

  /** One batch with its retries; resolves with what is still refused. */
  private async putBatch(indexes: readonly number[], entries: readonly Entry[]): Promise<PutOutcome['failed'][number][]> {
    let pending = indexes;
    const refused: PutOutcome['failed'][number][] = [];
    const attempts = this.options.maxAttempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      let answer: PutEventsAnswer | undefined;
      let code = 'RequestFailed';
      try {
        answer = await this.call(pending.map((i) => entries[i]));
      } catch (err) {
        code = (err as Error).name || code;
      }
      let retry: number[] = [];
      const codes = new Map<number, string>();
      if (!answer) retry = [...pending];
      else if ((answer.FailedEntryCount ?? 0) > 0) {
        pending.forEach((index, k) => {
          const c = answer!.Entries?.[k]?.ErrorCode;
          if (!c) return;
          codes.set(index, c);
          if (RETRYABLE.has(c)) retry.push(index);
          else refused.push({ index, retryable: false, code: c });
        });
      }
      if (!retry.length) return refused;
      if (attempt >= attempts) return [...refused, ...retry.map((index) => ({ index, retryable: true, code: codes.get(index) ?? code }))];
      pending = retry;
      await new Promise((r) => setTimeout(r, Math.random() * (this.options.backoffMs ?? 50) * 2 ** attempt));
    }
  }

  private async call(entries: readonly Entry[]): Promise<PutEventsAnswer> {
    const body = JSON.stringify({ Entries: entries });
    const creds = await this.options.credentials();
    const headers = signJsonPost(this.endpoint.host, 'AWSEvents.PutEvents', body, this.region, 'events', creds, this.options.now?.() ?? new Date(), 'application/x-amz-json-1.1');
    const res = await postText(this.endpoint, headers, body, { agent: this.agent, what: 'PutEvents' });
    if (res.status < 200 || res.status > 299) {
      throw Object.assign(new Error(`PutEvents answered ${res.status}: ${res.text.slice(0, 200)}`), { name: res.status === 400 && /Throttl/.test(res.text) ? 'ThrottlingException' : `Http${res.status}` });
    }
    return JSON.parse(res.text) as PutEventsAnswer;
  }

  /** Closes the kept-alive sockets. */
  destroy(): void {
    this.agent.destroy();
  }
}
