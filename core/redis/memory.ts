import { CONNECTION_TTL_SECONDS } from '../connections';
import { IDEMPOTENCY_TTL_SECONDS } from '../broker';

/**
 * Estimates of the Redis memory the runtime's keys take, in the bytes `MEMORY USAGE key SAMPLES 0`
 * reports on Redis 7.0 with jemalloc (x86_64 or arm64) and default encodings. Redis also keeps about
 * 16 B per key in its main hash table buckets and 24-32 B per key with a TTL in the expiry table,
 * which `MEMORY USAGE` leaves out: {@link KEY_BOOKKEEPING_BYTES} adds it where totals are given.
 *
 * They are estimates for sizing a node (ElastiCache `cache.*` memory, `maxmemory` headroom), checked
 * against real keys by `test/runtime/memory.test.ts`; they are not limits.
 */

/** Per key, beyond `MEMORY USAGE`: main-table bucket plus expiry-table entry. */
export const KEY_BOOKKEEPING_BYTES = 40;

/** The allocation jemalloc makes for a request of `n` bytes (its size classes: 4 per doubling). */
export function allocBytes(n: number): number {
  if (n <= 8) return 8;
  if (n <= 128) return Math.ceil(n / 16) * 16;
  const step = 2 ** (Math.floor(Math.log2(n - 1)) - 2);
  return Math.ceil(n / step) * step;
}

/** An sds string of `len` bytes: header (3, 5 or 9 bytes), content and the terminating NUL. */
function sdsBytes(len: number): number {
  return allocBytes((len < 256 ? 3 : len < 65536 ? 5 : 9) + len + 1);
}

/** The dictEntry of the main table and the key's sds. */
function keyBytes(keyLength: number): number {
  return 24 + sdsBytes(keyLength);
}

/**
 * A string key. `value` is the stored length, or `'int'` for a decimal integer (ids, counters),
 * which Redis keeps inside the object header.
 */
export function stringKeyBytes(keyLength: number, value: number | 'int'): number {
  if (value === 'int') return keyBytes(keyLength) + 16;
  // Up to 44 bytes the object and its string share one allocation (embstr).
  return keyBytes(keyLength) + (value <= 44 ? allocBytes(16 + 3 + value + 1) : 16 + sdsBytes(value));
}

/** Bytes a listpack element of `len` bytes takes (string encoding, length prefix, back-length). */
function lpStringBytes(len: number): number {
  const head = len < 64 ? 1 : len < 4096 ? 2 : 5;
  const body = head + len;
  return body + (body < 128 ? 1 : body < 16384 ? 2 : body < 2097152 ? 3 : 4);
}

const STREAM_NODE_MAX_BYTES = 4096;
const STREAM_NODE_MAX_ENTRIES = 100;
/** Listpack header and end byte, plus the master entry (count, deleted, one field `e`, terminator). */
const STREAM_NODE_BASE = 7 + 2 + 2 + 2 + 3 + 2;

/**
 * Default gap between two events of one channel for {@link historyBytes}, in microseconds: one event a second. A busier
 * channel's entries are a byte or two smaller, a quieter one's up to two bytes larger (ids are Redis time in µs).
 */
export const DEFAULT_EVENT_GAP_US = 1_000_000;

/** Bytes of a listpack integer entry's encoding (without its back length): 7-bit, 13-, 16-, 24-, 32- or 64-bit. */
function lpIntBytes(v: number): number {
  if (v >= 0 && v < 128) return 1;
  if (v >= -4096 && v < 4096) return 2;
  if (v >= -32768 && v < 32768) return 3;
  if (v >= -8388608 && v < 8388608) return 4;
  if (v >= -2147483648 && v < 2147483648) return 5;
  return 9;
}

/**
 * A channel's history stream holding `events` envelopes of `envelopeBytes` each, `gapUs` apart, after `published`
 * events in all (more than `events` once the history is full: trimming drops whole nodes only, so
 * the oldest node may still hold trimmed entries). Models Redis 7.0's stream layout: nodes of at
 * most 4096 bytes or 100 entries, the last one preallocated to 4096 bytes, a radix tree of about two
 * nodes per listpack.
 */
export function historyBytes(keyLength: number, events: number, envelopeBytes: number, published = events, gapUs = DEFAULT_EVENT_GAP_US): number {
  if (events <= 0) return 0;
  // flags, id difference to the node's first entry, sequence difference, value, element count (each with its
  // one-byte back length). Ids are Redis time in microseconds, so the id difference is the time since the node's
  // first entry: its listpack integer grows with the gap between the channel's events (lpIntBytes).
  const fixed = 2 + 2 + lpStringBytes(envelopeBytes) + 2;
  const fieldBytes = envelopeBytes + 1;
  const nodes: { used: number; count: number; first: number }[] = [];
  let node: { used: number; count: number; first: number } | undefined;
  for (let i = 0; i < published; i++) {
    if (!node || node.used + fieldBytes >= STREAM_NODE_MAX_BYTES || node.count >= STREAM_NODE_MAX_ENTRIES) {
      node = { used: STREAM_NODE_BASE, count: 0, first: i };
      nodes.push(node);
    }
    node.used += fixed + lpIntBytes((i - node.first) * gapUs) + 1;
    node.count++;
  }
  // Trimming removes only nodes whose every entry is older than the retained ones.
  const firstKept = published - events;
  const kept = nodes.filter((n) => n.first + n.count > firstKept);
  let bytes = 0;
  kept.forEach((n, i) => {
    const last = i === kept.length - 1;
    bytes += last ? Math.max(STREAM_NODE_MAX_BYTES, allocBytes(n.used)) : allocBytes(n.used);
  });
  const raxNodes = 2 * kept.length + (kept.length > 1 ? 2 : 0);
  // robj + stream struct, 16 B per listpack key and 244 B per radix-tree node as Redis counts them.
  return keyBytes(keyLength) + 16 + 88 + 16 * kept.length + 244 * raxNodes + bytes;
}

/** The length of an envelope for `dataJsonBytes` of JSON data (ids and times as the publish script writes them). */
export function envelopeBytes(channelLength: number, typeLength: number, dataJsonBytes: number): number {
  // {"channel":"…","id":"<16>","type":"…","data":…,"ts":<13>,"prev":"<16>"}
  return 12 + channelLength + 8 + 16 + 10 + typeLength + 9 + dataJsonBytes + 6 + 13 + 9 + 16 + 1 + 1;
}

export interface ChannelEstimate {
  /** The history stream, full. */
  readonly history: number;
  /** Last id, horizon and gap keys (`hl:`, `hx:`, `hg:`): live for the history TTL plus 7 days. */
  readonly markers: number;
  /** Each idempotency key (live 24 h): ~184 B. */
  readonly perIdempotencyKey: number;
  /** History and markers, with the per-key bookkeeping. */
  readonly total: number;
}

/**
 * One channel with a full history of `historySize` envelopes of `envelopeBytes` each, after
 * `published` events (defaults to one and a half times the history: the oldest node is partly trimmed).
 */
export function estimateChannel(input: {
  readonly prefixLength: number;
  readonly channelLength: number;
  readonly historySize: number;
  readonly envelopeBytes: number;
  readonly published?: number;
  /** Microseconds between two events of the channel (ids are Redis time); defaults to {@link DEFAULT_EVENT_GAP_US}. */
  readonly gapUs?: number;
}): ChannelEstimate {
  const name = input.prefixLength + 3 + input.channelLength;
  const history = historyBytes(input.prefixLength + 2 + input.channelLength, input.historySize, input.envelopeBytes, input.published ?? Math.ceil(input.historySize * 1.5), input.gapUs);
  const markers = 3 * stringKeyBytes(name, 'int');
  // `idem:` + SHA-256 hex; the value is `<id> <event hash, 43 chars>`.
  const perIdempotencyKey = stringKeyBytes(input.prefixLength + 5 + 64, 16 + 1 + 43) + KEY_BOOKKEEPING_BYTES;
  return { history, markers, perIdempotencyKey, total: history + markers + (input.historySize > 0 ? 4 : 3) * KEY_BOOKKEEPING_BYTES };
}

/**
 * A channel's subscriber set `wsub:{channel}` with `members` connections (members `{id}|{floor}`,
 * `connectionIdLength` + 17 bytes): a hash table of at least 4 slots, doubled as it fills.
 */
export function subscriberSetBytes(keyLength: number, members: number, connectionIdLength = 16): number {
  let slots = 4;
  while (slots < members) slots *= 2;
  return keyBytes(keyLength) + 16 + 56 + 8 * slots + members * (24 + sdsBytes(connectionIdLength + 17));
}

function hashBytes(fields: readonly (readonly [number, number | 'int'])[]): number {
  const listpack = fields.length <= 128 && fields.every(([f, v]) => f <= 64 && (v === 'int' || v <= 64));
  if (listpack) {
    const lp = 7 + fields.reduce((s, [f, v]) => s + lpStringBytes(f) + (v === 'int' ? 10 : lpStringBytes(v)), 0);
    return 16 + allocBytes(lp);
  }
  let slots = 4;
  while (slots < fields.length) slots *= 2;
  // Integers are kept as strings in a hash table.
  return 16 + 56 + 8 * slots + fields.reduce((s, [f, v]) => s + 24 + sdsBytes(f) + sdsBytes(v === 'int' ? 16 : v), 0);
}

export interface ConnectionEstimate {
  /** The connection record `wc:{id}` (identity, grant, one field per subscription). */
  readonly record: number;
  /** Its member in each channel's subscriber set `wsub:{channel}` (`{id}|{floor}` and the set's table). */
  readonly perSubscription: number;
  /** Record and subscriptions, with the per-key bookkeeping of the record. */
  readonly total: number;
}

/**
 * One registered WebSocket connection subscribed to `channelLengths.length` channels (the ticket's),
 * for `CONNECTION_TTL_SECONDS` at most after its last change. API Gateway connection ids are 16
 * characters. The subscriber sets are shared by every connection of a channel; their fixed part is
 * left out.
 */
export function estimateConnection(input: {
  readonly prefixLength: number;
  readonly subLength: number;
  readonly channelLengths: readonly number[];
  readonly connectionIdLength?: number;
}): ConnectionEstimate {
  const id = input.connectionIdLength ?? 16;
  const grant = 2 + input.channelLengths.reduce((s, c) => s + c + 3, 0) - (input.channelLengths.length ? 1 : 0);
  const record =
    keyBytes(input.prefixLength + 3 + id) +
    hashBytes([[1, input.subLength], [1, grant], [1, 'int'], ...input.channelLengths.map((c) => [2 + c, 'int'] as const)]);
  // A member of the channel's subscriber set: dictEntry, sds, and one and a half table slots on average.
  const perSubscription = 24 + sdsBytes(id + 17) + 12;
  return { record, perSubscription, total: record + KEY_BOOKKEEPING_BYTES + perSubscription * input.channelLengths.length };
}

/** One ticket `tk:{sha256}` (lives `TICKET_TTL_SECONDS`, 30 s by default, or until redeemed). */
export function estimateTicket(input: { readonly prefixLength: number; readonly subLength: number; readonly channelLengths: readonly number[] }): number {
  // {"s":"…","c":["…",…],"t":"sse","i":<13>}
  const json = 6 + input.subLength + 7 + input.channelLengths.reduce((s, c) => s + c + 3, 0) - (input.channelLengths.length ? 1 : 0) + 16 + 14;
  return stringKeyBytes(input.prefixLength + 3 + 64, json) + KEY_BOOKKEEPING_BYTES;
}

/** How long each kind of key lives, for the doc table. */
export const KEY_LIFETIMES = {
  history: 'history TTL after the last event (chat: 1 h, scores/user: 24 h)',
  markers: 'history TTL + 7 days after the last event',
  idempotency: `${IDEMPOTENCY_TTL_SECONDS / 3600} h`,
  connection: `until $disconnect, at most ${CONNECTION_TTL_SECONDS / 3600} h after the last change`,
  ticket: 'until redeemed, at most TICKET_TTL_SECONDS (30 s)',
} as const;
