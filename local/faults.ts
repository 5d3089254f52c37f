/**
 * Deterministic faults for the local HTTP API, off unless a stack is given a `LocalFaults` (tests only): the next
 * requests to a path get the answers queued for it, in order, one each, instead of (or after) the handler's. They
 * play what API Gateway and the stack answer under load (`429 {"message":"Too Many Requests"}` from throttling,
 * `503` + `Retry-After` from the handlers), including the worst case for a publisher: the handler ran, its answer
 * was lost (`afterHandler`), and only a retry under the same idempotency key can tell.
 */
export interface LocalFault {
  readonly status: number;
  /** Response headers, e.g. `{ 'retry-after': '1' }`. Defaults to none. */
  readonly headers?: Readonly<Record<string, string>>;
  /** JSON body. Defaults to API Gateway's `{"message"}` for the status. */
  readonly body?: unknown;
  /** Run the handler first (its work is done) and answer this instead of its answer. Defaults to false. */
  readonly afterHandler?: boolean;
}

/** One request the HTTP API received on a faulted stack, with what it answered. */
export interface SeenRequest {
  readonly path: string;
  readonly body: string;
  readonly status: number;
  /** Whether a queued fault answered it. */
  readonly faulted: boolean;
}

const MESSAGES: Record<number, string> = { 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

export class LocalFaults {
  private readonly queues = new Map<string, LocalFault[]>();
  /** Every request to the HTTP API's routes, in order. */
  readonly seen: SeenRequest[] = [];

  /** Queues answers for the next requests to `path` (e.g. `/publish`). */
  inject(path: string, ...faults: LocalFault[]): void {
    this.queues.set(path, [...(this.queues.get(path) ?? []), ...faults]);
  }

  /** The fault for this request to `path`, if one is queued (taken off the queue). */
  take(path: string): LocalFault | undefined {
    return this.queues.get(path)?.shift();
  }

  /** Faults still queued for `path`. */
  pending(path: string): number {
    return this.queues.get(path)?.length ?? 0;
  }

  /** The body a fault answers with. */
  static bodyOf(f: LocalFault): string {
    return JSON.stringify(f.body ?? { message: MESSAGES[f.status] ?? 'Error' });
  }
}
