import type { CoreConfig } from './config';
import { Keys, sha256 } from './redis/keys';
import { Script, type RedisLike } from './redis/client';

/**
 * Backend events (issue 25): what the deployment tells backends through its EventBridge bus.
 *
 * | detail-type | when | detail (besides `id`, `type`, `at`) |
 * | --- | --- | --- |
 * | `channel.occupied` | a channel got its first subscriber anywhere in the deployment | `channel` |
 * | `channel.vacated` | its last subscriber left and none came back within the debounce | `channel` |
 * | `user.revoked` | `POST /revoke` moved the user's epoch | `sub`, `epoch` |
 * | `client.publish` | a client (ticket holder) published to a namespace with `clientEvents: true` | `channel`, `eventId`, `eventType`, `sub`, `data` |
 *
 * Delivery is at least once: every event is first appended to an outbox in Redis (a stream) by whoever decides it (the
 * occupancy scripts, the revoke and publish paths, before they answer), then relayed to EventBridge by the tasks
 * ({@link EventRelay}), which acknowledge an entry only once `PutEvents` accepted it. A relay that dies holding entries
 * leaves them pending; another task claims them after {@link RELAY_CLAIM_IDLE_MS}. So an event may arrive twice: its
 * `detail.id` is the same on every copy (EventBridge's own event id is not: it is assigned per `PutEvents`), and
 * consumers deduplicate on it. `presence.join` / `presence.leave` are the presence issue's (6/9) and not emitted yet.
 */

/** The `source` of every backend event. */
export const EVENT_SOURCE = 'realtime';

export const BACKEND_EVENT_TYPES = ['channel.occupied', 'channel.vacated', 'user.revoked', 'client.publish'] as const;
export type BackendEventType = (typeof BACKEND_EVENT_TYPES)[number];

/** One backend event as it goes to the bus: `detail` is the JSON text of `{id, type, at, ...}`. */
export interface BackendEvent {
  readonly type: BackendEventType;
  /** The dedupe id (also `detail.id`). */
  readonly id: string;
  readonly detail: string;
}

/** Which entries a bus did not take: `retryable` ones (throttling, an internal failure) stay in the outbox. */
export interface PutOutcome {
  readonly failed: readonly { readonly index: number; readonly retryable: boolean; readonly code?: string }[];
}

/** The port to the event bus (EventBridge `PutEvents`, `core/aws/eventbridge.ts`; a test may pass anything). */
export interface EventBus {
  put(events: readonly BackendEvent[]): Promise<PutOutcome>;
}

/** The part of the domain config the producers read. */
export interface EventsConfig {
  readonly keyPrefix: string;
  /** Write backend events to the outbox (BACKEND_EVENTS). Defaults to false: nothing is written. */
  readonly backendEvents?: boolean;
}

/** Entries the outbox keeps at most (approximately): what piles up while EventBridge is unreachable. */
export const OUTBOX_MAX_ENTRIES = 100_000;

/**
 * KEYS: outbox   ARGV: max entries, type, detail JSON (without `id`), id ('' = the entry's stream id)
 * Returns the entry's stream id.
 */
export const APPEND = new Script(`
local f = {'t', ARGV[2], 'd', ARGV[3]}
if ARGV[4] ~= '' then f[5] = 'i'; f[6] = ARGV[4] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(f))
`);

/**
 * Appends a backend event to the outbox (nothing when BACKEND_EVENTS is off). `id` is the dedupe id: give the same one
 * for the same fact (an idempotent retry of a publish), so a second append is recognised downstream.
 */
export async function appendEvent(type: BackendEventType, fields: Record<string, unknown>, id: string, deps: { readonly redis: RedisLike; readonly config: EventsConfig; readonly now?: () => number }): Promise<void> {
  if (!deps.config.backendEvents) return;
  const keys = new Keys(deps.config.keyPrefix);
  await APPEND.run(deps.redis, [keys.eventsOutbox], [OUTBOX_MAX_ENTRIES, type, JSON.stringify({ ...fields, at: (deps.now ?? Date.now)() }), id]);
}

/** The dedupe id of a fact: 32 hex digits of SHA-256 over its parts. */
export function eventId(...parts: (string | number)[]): string {
  return sha256(parts.join('\n')).slice(0, 32);
}

/** `user.revoked`, once per revocation (the epoch is new each time). */
export function userRevoked(sub: string, epoch: number, deps: { readonly redis: RedisLike; readonly config: EventsConfig }): Promise<void> {
  return appendEvent('user.revoked', { sub, epoch }, eventId('user.revoked', sub, epoch), deps);
}

/** True when a client's publish to `channel` emits `client.publish` (its namespace opted in). */
export function emitsClientPublish(channel: string, config: Pick<CoreConfig, 'namespaces'> & EventsConfig): boolean {
  if (!config.backendEvents) return false;
  const ns = channel.slice(0, channel.indexOf(':'));
  return Object.prototype.hasOwnProperty.call(config.namespaces, ns) && config.namespaces[ns].clientEvents === true;
}

// The relay (tasks): outbox → bus.

/** The consumer group of the outbox. */
export const RELAY_GROUP = 'relay';
/** Milliseconds an entry stays with a relay that took it before another may claim it (a task killed mid-relay). */
export const RELAY_CLAIM_IDLE_MS = 30_000;

type StreamEntry = [id: string, fields: string[]];

/** What the relay needs: scripts and the stream commands (XGROUP, XREADGROUP, XAUTOCLAIM, XACK, XDEL) by name. ioredis satisfies it. */
export interface RelayRedis extends RedisLike {
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

export interface RelayOptions {
  readonly redis: RelayRedis;
  readonly config: EventsConfig;
  readonly bus: EventBus;
  /** This relay's consumer name (the task). */
  readonly consumer: string;
  /** Entries read per round. Defaults to 100. */
  readonly batch?: number;
  /** See {@link RELAY_CLAIM_IDLE_MS}. */
  readonly claimIdleMs?: number;
  /** Told about entries the bus refused for good (dropped: they would fail again). */
  readonly onDropped?: (event: BackendEvent, code: string | undefined) => void;
}

/** The event an outbox entry holds (`detail.id`: the entry's own id, else the stream id). */
export function outboxEvent(streamId: string, fields: readonly string[]): BackendEvent | null {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  if (!(BACKEND_EVENT_TYPES as readonly string[]).includes(f.t)) return null;
  let rest: Record<string, unknown>;
  try {
    rest = JSON.parse(f.d ?? '{}') as Record<string, unknown>;
  } catch {
    return null;
  }
  const id = f.i || streamId;
  return { type: f.t as BackendEventType, id, detail: JSON.stringify({ id, type: f.t, ...rest }) };
}

/**
 * Moves outbox entries to the bus, at least once. Each {@link tick} takes this relay's own pending entries (those a
 * bus refused before), then new ones, then entries other relays took more than `claimIdleMs` ago and never
 * acknowledged; it acknowledges and deletes what the bus accepted, and drops (with `onDropped`) what it refused for good.
 */
export class EventRelay {
  private grouped = false;
  private readonly keys: Keys;
  constructor(private readonly o: RelayOptions) {
    this.keys = new Keys(o.config.keyPrefix);
  }

  /** One round; resolves with the number of events the bus accepted. */
  async tick(): Promise<number> {
    const key = this.keys.eventsOutbox;
    const n = this.o.batch ?? 100;
    if (!this.grouped) {
      await this.o.redis.call('XGROUP', 'CREATE', key, RELAY_GROUP, '0', 'MKSTREAM').catch((err: Error) => {
        if (!String(err.message).startsWith('BUSYGROUP')) throw err;
      });
      this.grouped = true;
    }
    try {
      const own = await this.read('0', n);
      const fresh = own.length < n ? await this.read('>', n - own.length) : [];
      let entries = [...own, ...fresh];
      if (entries.length < n) {
        const claimed = (await this.o.redis.call('XAUTOCLAIM', key, RELAY_GROUP, this.o.consumer, this.o.claimIdleMs ?? RELAY_CLAIM_IDLE_MS, '0-0', 'COUNT', n - entries.length)) as [string, StreamEntry[]];
        const seen = new Set(entries.map((e) => e[0]));
        entries = [...entries, ...(claimed[1] ?? []).filter((e) => e && !seen.has(e[0]))];
      }
      return await this.deliver(entries);
    } catch (err) {
      // The stream or its group vanished (Redis lost its data, or the key was deleted): create it again next round.
      if (String((err as Error).message).startsWith('NOGROUP')) this.grouped = false;
      throw err;
    }
  }

  private async read(from: string, count: number): Promise<StreamEntry[]> {
    const res = (await this.o.redis.call('XREADGROUP', 'GROUP', RELAY_GROUP, this.o.consumer, 'COUNT', count, 'STREAMS', this.keys.eventsOutbox, from)) as [string, StreamEntry[]][] | null;
    const entries = res?.[0]?.[1] ?? [];
    // Entries trimmed away while pending (the outbox's MAXLEN) come back with null fields: acknowledged, so they never
    // take the places of real pending entries in later reads (redis-server 7.0 drops them from the pending list once
    // it returned them; acknowledging does not depend on that).
    const gone = entries.filter((e) => !Array.isArray(e[1])).map((e) => e[0]);
    if (gone.length) await this.o.redis.call('XACK', this.keys.eventsOutbox, RELAY_GROUP, ...gone);
    return entries.filter((e) => Array.isArray(e[1]));
  }

  private async deliver(entries: StreamEntry[]): Promise<number> {
    if (!entries.length) return 0;
    const key = this.keys.eventsOutbox;
    const events: BackendEvent[] = [];
    const ids: string[] = [];
    const done: string[] = [];
    for (const [sid, fields] of entries) {
      const e = outboxEvent(sid, fields);
      if (e) {
        events.push(e);
        ids.push(sid);
      } else done.push(sid); // unreadable: nothing to send
    }
    const outcome = events.length ? await this.o.bus.put(events) : { failed: [] };
    const failed = new Map(outcome.failed.map((f) => [f.index, f]));
    let accepted = 0;
    events.forEach((e, i) => {
      const f = failed.get(i);
      if (!f) {
        accepted++;
        done.push(ids[i]);
      } else if (!f.retryable) {
        this.o.onDropped?.(e, f.code);
        done.push(ids[i]);
      }
    });
    if (done.length) {
      await this.o.redis.call('XACK', key, RELAY_GROUP, ...done);
      await this.o.redis.call('XDEL', key, ...done);
    }
    return accepted;
  }
}
