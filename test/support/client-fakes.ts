import type { ClientOptions, TicketAnswer, Timers, WebSocketLike } from '../../client/src/index';

/**
 * Deterministic stand-ins for the client's unit tests: a clock whose timers run only when the test
 * advances it (and whose wall clock can jump without running them, like a throttled background tab
 * or a sleeping laptop), a WebSocket the test drives frame by frame, and an event source for
 * `visibilitychange` / `online`. They replace the platform, never our server code.
 */
export class FakeClock implements Timers {
  t = 1_000_000;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void; ms: number }>();
  /** Every delay handed to set(), in order. */
  readonly delays: number[] = [];

  now = (): number => this.t;
  set = (fn: () => void, ms: number): number => {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + ms, fn, ms });
    this.delays.push(ms);
    return id;
  };
  clear = (h: unknown): void => void this.pending.delete(h as number);

  /** Moves the clock by `ms`, running the timers that fall due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.pending.entries()].filter(([, p]) => p.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.pending.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }

  /** Moves the wall clock without running any timer (timers of a background tab or a suspended machine). */
  jump(ms: number): void {
    this.t += ms;
  }

  /** Delays of the timers pending now. */
  pendingDelays(): number[] {
    return [...this.pending.values()].map((p) => p.ms);
  }
}

/** Lets promise chains and I/O callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

export class FakeWebSocket implements WebSocketLike {
  static all: FakeWebSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {
    FakeWebSocket.all.push(this);
  }
  static get last(): FakeWebSocket {
    return FakeWebSocket.all[FakeWebSocket.all.length - 1];
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.onclose?.({});
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** Answers every `subscribe` sent so far with `subscribed` at `cursor`. */
  ackSubscribes(cursor = '100'): void {
    for (const f of this.sent.filter((x) => x.action === 'subscribe')) this.receive({ type: 'subscribed', channel: f.channel, cursor });
  }
  actions(): string[] {
    return this.sent.map((f) => f.action as string);
  }
}

/**
 * The client options of the unit tests: WebSocket only, on the fakes, `random` 0.5, a 1-s reconnect spread (the tests
 * not about the storm spread: U(0, 1 s) = 500 ms), no storage.
 */
export function fakeClientOptions(clock: FakeClock, events: FakeWindow): ClientOptions {
  return {
    ticket: async (): Promise<TicketAnswer> => ({ ticket: 't', wsUrl: 'ws://test/live?ticket=t' }),
    transports: ['ws'],
    WebSocket: FakeWebSocket,
    timers: clock,
    random: () => 0.5,
    reconnectSpreadMs: 1000,
    storage: null,
    events,
  };
}

/** Opens the current fake socket and answers its subscribes at `cursor`. */
export async function openWs(cursor = '100'): Promise<FakeWebSocket> {
  await settle();
  const ws = FakeWebSocket.last;
  ws.open();
  await settle();
  ws.ackSubscribes(cursor);
  await settle();
  return ws;
}

/** An SSE server the test drives: each request gets a stream the test writes to (`streams[i]` for the i-th request). */
export const sseServer = () => {
  const urls: string[] = [];
  const streams: ReadableStreamDefaultController<Uint8Array>[] = [];
  const enc = new TextEncoder();
  const f = (async (url: string) => {
    urls.push(url);
    return new Response(new ReadableStream<Uint8Array>({ start: (c) => void streams.push(c) }), { status: 200 });
  }) as unknown as typeof fetch;
  const send = (text: string) => streams[streams.length - 1].enqueue(enc.encode(text));
  return { urls, streams, f, send, lastEventId: (i: number) => new URL(urls[i]).searchParams.get('lastEventId') };
};

/** An event target for `visibilitychange` and `online`. */
export class FakeWindow {
  private readonly l = new Map<string, Set<() => void>>();
  addEventListener(t: string, f: () => void): void {
    (this.l.get(t) ?? this.l.set(t, new Set()).get(t)!).add(f);
  }
  removeEventListener(t: string, f: () => void): void {
    this.l.get(t)?.delete(f);
  }
  dispatch(t: string): void {
    for (const f of this.l.get(t) ?? []) f();
  }
}
