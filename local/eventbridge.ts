import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen, shutdown } from '../service/net';

/**
 * A local stand-in of EventBridge's `PutEvents` (AWS JSON 1.1, `X-Amz-Target: AWSEvents.PutEvents`), for the local stack
 * and tests. It answers as the API reference says (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html):
 * `{FailedEntryCount, Entries}` with one result per request entry in order (`EventId`, or `ErrorCode`/`ErrorMessage`),
 * `ValidationException` for more than 10 entries or 256 KB of entries, `MalformedDetail` for a Detail that is not a
 * JSON object. It keeps what it accepted as EventBridge would deliver it to a rule (`id`, `source`, `detail-type`,
 * `time`, `detail`). It checks that a request is SigV4-signed for the `events` service (not the signature itself: the
 * tests compare our signer's with the SDK's).
 *
 * Faults are deterministic, for tests: {@link failCalls} makes the next N calls fail whole (nothing stored, or stored
 * and the answer lost: the sender cannot tell and sends again), {@link failEntries} makes the next N entries fail
 * with a per-entry error code.
 */

/** An event as a rule's target receives it. */
export interface DeliveredEvent {
  readonly version: '0';
  readonly id: string;
  readonly source: string;
  readonly 'detail-type': string;
  readonly time: string;
  readonly region: string;
  readonly resources: readonly string[];
  readonly detail: Record<string, unknown>;
  /** The bus it was put on. */
  readonly bus: string;
}

export type CallFault = 'reject' | 'throttle' | 'lose-answer';

export interface LocalEventBridgeOptions {
  readonly host?: string;
  readonly port?: number;
  readonly region?: string;
}

const MAX_ENTRIES = 10;
const MAX_BYTES = 256 * 1024;

export class LocalEventBridge {
  /** Every event accepted, in order (duplicates included: at least once). */
  readonly events: DeliveredEvent[] = [];
  /** Every request as received (method, path, headers, body), for signature checks. */
  readonly requests: { readonly method: string; readonly path: string; readonly headers: IncomingMessage['headers']; readonly body: string }[] = [];
  /** PutEvents calls received (entries per call and the answer's status), in order. */
  readonly calls: { readonly entries: number; readonly status: number; readonly failedEntries: number }[] = [];
  private callFaults: CallFault[] = [];
  private entryFaults: string[] = [];
  private listeners: (() => void)[] = [];
  readonly region: string;
  /** Told about each accepted event (`npm run dev` prints them). */
  onEvent?: (event: DeliveredEvent) => void;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    options: LocalEventBridgeOptions,
  ) {
    this.region = options.region ?? 'us-east-1';
  }

  static async start(options: LocalEventBridgeOptions = {}): Promise<LocalEventBridge> {
    const bound: { self?: LocalEventBridge } = {};
    const server = createServer((req, res) => void bound.self!.handle(req, res));
    const host = options.host ?? '127.0.0.1';
    await listen(server, options.port ?? 0, host);
    bound.self = new LocalEventBridge(server, `http://${host}:${(server.address() as AddressInfo).port}/`, options);
    return bound.self;
  }

  /** The next `n` calls fail whole: `reject` (500, nothing stored), `throttle` (400 ThrottlingException), `lose-answer` (stored, then 500). */
  failCalls(n: number, fault: CallFault = 'reject'): void {
    for (let i = 0; i < n; i++) this.callFaults.push(fault);
  }

  /** The next `n` entries fail with `code` in a 200 answer (`FailedEntryCount`). */
  failEntries(n: number, code = 'InternalFailure'): void {
    for (let i = 0; i < n; i++) this.entryFaults.push(code);
  }

  /** Events of a type (detail-type), in order. */
  ofType(type: string): DeliveredEvent[] {
    return this.events.filter((e) => e['detail-type'] === type);
  }

  /** Resolves when `pred` holds over the events (checked at each accepted call). */
  until(pred: (events: readonly DeliveredEvent[]) => boolean): Promise<void> {
    if (pred(this.events)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!pred(this.events)) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      this.listeners.push(check);
    });
  }

  close(): Promise<void> {
    return shutdown(this.server);
  }

  private answer(res: ServerResponse, status: number, body: unknown, entries: number, failedEntries = 0): void {
    this.calls.push({ entries, status, failedEntries });
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
    res.end(JSON.stringify(body));
  }

  private error(res: ServerResponse, status: number, type: string, message: string, entries = 0): void {
    this.answer(res, status, { __type: type, message }, entries);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: text });
    if (req.method !== 'POST' || req.headers['x-amz-target'] !== 'AWSEvents.PutEvents' || req.headers['content-type'] !== 'application/x-amz-json-1.1') {
      this.error(res, 400, 'UnknownOperationException', 'Only AWSEvents.PutEvents (AWS JSON 1.1) is served here.');
      return;
    }
    const auth = String(req.headers.authorization ?? '');
    if (!new RegExp(`^AWS4-HMAC-SHA256 Credential=[^/]+/\\d{8}/${this.region}/events/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$`).test(auth)) {
      this.error(res, 400, 'IncompleteSignatureException', `Sign the request with SigV4 for service events in ${this.region}.`);
      return;
    }
    let body: { Entries?: { Source?: string; DetailType?: string; Detail?: string; EventBusName?: string; Resources?: string[] }[] };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      this.error(res, 400, 'SerializationException', 'The body is not JSON.');
      return;
    }
    const entries = Array.isArray(body.Entries) ? body.Entries : [];
    if (entries.length < 1 || entries.length > MAX_ENTRIES) {
      this.error(res, 400, 'ValidationException', `1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and ${MAX_ENTRIES}`, entries.length);
      return;
    }
    const size = entries.reduce((n, e) => n + Buffer.byteLength(e.Source ?? '') + Buffer.byteLength(e.DetailType ?? '') + Buffer.byteLength(e.Detail ?? '') + (e.Resources ?? []).reduce((m, r) => m + Buffer.byteLength(r), 0), 0);
    if (size >= MAX_BYTES) {
      this.error(res, 400, 'ValidationException', 'Total size of the entries in the request is over the limit.', entries.length);
      return;
    }
    const fault = this.callFaults.shift();
    if (fault === 'reject') return this.error(res, 500, 'InternalException', 'Internal error (injected).', entries.length);
    if (fault === 'throttle') return this.error(res, 400, 'ThrottlingException', 'Rate exceeded (injected).', entries.length);
    const results: { EventId?: string; ErrorCode?: string; ErrorMessage?: string }[] = [];
    let failed = 0;
    for (const e of entries) {
      const code = this.entryFaults.shift();
      let detail: unknown;
      try {
        detail = JSON.parse(e.Detail ?? '');
      } catch {
        detail = undefined;
      }
      if (code) results.push({ ErrorCode: code, ErrorMessage: `${code} (injected)` });
      else if (!e.Source || !e.DetailType) results.push({ ErrorCode: 'InvalidArgument', ErrorMessage: 'Parameter Source and DetailType are required.' });
      else if (!detail || typeof detail !== 'object' || Array.isArray(detail)) results.push({ ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' });
      else {
        const id = randomUUID();
        results.push({ EventId: id });
        const event: DeliveredEvent = { version: '0', id, source: e.Source, 'detail-type': e.DetailType, time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), region: this.region, resources: e.Resources ?? [], detail: detail as Record<string, unknown>, bus: e.EventBusName ?? 'default' };
        this.events.push(event);
        this.onEvent?.(event);
        continue;
      }
      failed++;
    }
    if (fault === 'lose-answer') this.error(res, 500, 'InternalException', 'Internal error after the events were accepted (injected).', entries.length);
    else this.answer(res, 200, { FailedEntryCount: failed, Entries: results }, entries.length, failed);
    for (const l of [...this.listeners]) l();
  }
}
