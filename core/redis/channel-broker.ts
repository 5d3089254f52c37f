import type { ParsedChannel } from '../channels';
import { LAST_ID_TAIL_SECONDS } from '../config';
import { CLOCK_ALLOWANCE_US, REPLAY_FRAME_BYTES, type BrokerPageBudget, type BrokerPublish, type BrokerPublishOutcome, type BrokerReplayOptions, type ChannelCursor, type PositionBroker, type PositionPage } from '../broker';
import { MARK_LOST, pageBudget, PUBLISH_STEPS, publishArgs, publishWithUserLimits, RedisBrokerBase } from './broker';
import { Script } from './client';

/**
 * The {@link PositionBroker} on Redis: positions per channel (docs/DESIGN.md, "Positions per channel"). Every script
 * here touches the keys of one channel only, all tagged `{channel}`, so each runs on the shard that owns the channel's
 * slot; a call over several channels is one script per channel, sent together.
 *
 * A channel's keys: its history stream (`h:`), horizon (`hx:`), gap (`hg:`), last id (`hl:`), base (`hb:`, its epoch)
 * and lost ranges (`hr:`); the first four keep their names and meaning from the sequence, so history written before
 * stays readable.
 */

/**
 * Lua shared by every script here, after MARK_LOST (for `clockUs`, `markLost`, `isLost`). `channelState(history,
 * horizon, gap, last id, base, lost ranges[, appending])` writes nothing and returns:
 * - `last`: the channel's last id (its `hl:`, else its newest entry), or nil;
 * - `base`: its base, 0 when it has none but has history or markers (its epoch began before positions were per
 *   channel), nil when it has no key at all (no event was kept, or everything was lost or expired); with `appending`
 *   and a last id, not read (nil): an append needs the base only to start a channel that has no last id;
 * - `pos`: its position: the last id, else the base, else 0 ("nothing yet"), or one past the top of its lost ranges
 *   when that is not below it (ids up to it, and that one, are never issued: a reader reset there continues outside);
 * - `lost`: true when it has lost ranges.
 * Only a publish writes a base (readers write nothing here: see DESIGN's abuse rules): Redis time when the channel has
 * no key, else 0.
 */
export const CHANNEL_STATE = `${MARK_LOST}
local t = redis.call('TIME')
local clock = clockUs(t)
local function num(v)
  return string.format('%.0f', v)
end
local function channelState(kHist, kHorizon, kGap, kLast, kBase, kLost, appending)
  local last = tonumber(redis.call('GET', kLast) or '')
  if not last then
    local top = redis.call('XREVRANGE', kHist, '+', '-', 'COUNT', 1)
    if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
  end
  local base
  if not (appending and last) then
    base = tonumber(redis.call('GET', kBase) or '')
    if not base and (last or redis.call('EXISTS', kHorizon, kGap) > 0) then base = 0 end
  end
  local pos = last or base or 0
  local lost = redis.call('ZRANGE', kLost, -1, -1, 'WITHSCORES')
  if lost[2] and tonumber(lost[2]) >= pos then pos = tonumber(lost[2]) + 1 end
  return last, base, pos, lost[2] ~= nil
end`;

/**
 * Lua shared by the scripts that take a reader's cursor on one channel. KEYS: history, horizon, gap, last id, base,
 * lost ranges. ARGV[1] cursor, ARGV[2] '1' for a shared cursor (see `ChannelCursor.shared`), ARGV[3] the markers' TTL.
 * A cursor further ahead of Redis time than {@link CLOCK_ALLOWANCE_US} returns `invalid` before anything is written.
 * Otherwise it sets `reset` (1: the reader must reset this channel), `from` (where to read after) and `pos` (where the
 * reader continues):
 * - 0 means nothing seen: the reader is given the channel's epoch from its start (reset only when that is not held);
 * - a channel without any key: a cursor above 0 of its own saw events that are all gone: reset, continue from 0; a
 *   shared cursor (maybe another channel's id) is not reset and continues from 0 too (nothing of the channel is
 *   above it or below it); nothing is written;
 * - below the base: an earlier epoch (history lost): reset, read from the base (a shared cursor is not held to the base:
 *   it stands for everything up to it, and the epoch's events are above it);
 * - above the position (a failover lost the channel's last writes, or, for a shared cursor, an id of another channel):
 *   (position, cursor] is recorded as lost in the channel's lost ranges, so no id the reader holds is issued again on
 *   this channel, and the reader is reset and continues one past the cursor. A shared cursor is not reset for it, and
 *   writes only when it is ahead of Redis time (an id of a primary whose clock was ahead), since ids issued from now on
 *   are above it anyway; it continues from the channel's own position (nothing of the channel lies between it and the
 *   cursor), so that its position, now the reader's own cursor on this channel, is not taken for a roll-back later. This is the one write a reader can cause: on a channel that has keys, bounded as the
 *   sequence's was (a cursor within 1 s of Redis time, ranges merged, the newest 64 kept);
 * - inside a lost range: reset.
 */
const CHANNEL_CURSOR = `${CHANNEL_STATE}
local cursor = tonumber(ARGV[1])
if cursor > clock + ${CLOCK_ALLOWANCE_US} then return 'invalid' end
local shared = ARGV[2] == '1'
local last, base, pos = channelState(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local reset = 0
local from = cursor
if not base then
  if cursor > 0 and not shared then
    reset = 1
    from = 0
  end
  pos = 0
elseif cursor > 0 and cursor < base and not shared then
  reset = 1
  from = base
elseif cursor > pos then
  if not shared or cursor > clock then
    markLost(KEYS[6], num(pos), ARGV[1])
    redis.call('EXPIRE', KEYS[6], ARGV[3])
  end
  if not shared then
    reset = 1
    pos = cursor + 1
  elseif cursor > clock then
    pos = cursor + 1
  end
elseif isLost(KEYS[6], cursor) then
  reset = 1
end`;

/**
 * Lua shared by the scripts that append an event to a channel (CHANNEL_PUBLISH here, the presence scripts of
 * `core/redis/presence.ts`): CHANNEL_STATE, PUBLISH_STEPS, and `channelAppend(history, idempotency, horizon, gap, last
 * id, base, lost ranges)`, which appends the envelope of ARGV (as PUBLISH_STEPS reads it: ARGV[1] live channel, 2-3
 * head and tail, 4-9, 14) under the channel's next id (Redis time in microseconds, or one more than the channel's
 * position when that is not below it), writes the base when the channel has none (refreshes it otherwise), and returns
 * the id and envelope. Called several times in one script, each call takes the next id. Its first write is the last
 * id's `SET`, which Redis refuses when it is out of memory (`maxmemory` with `noeviction`): a script is refused only at
 * its first write, later ones cannot be (Redis 7 runs the rest once it has written), so with any other first write a
 * publish to a full Redis would go through, or half of it (test/runtime/memory-full.test.ts). `appendAt(the same
 * keys, last, base, pos, lost)` does the same from a `channelState(..., true)` the caller took (CHANNEL_PUBLISH, which
 * needs the last id before it admits the event).
 */
export const CHANNEL_APPEND = `${CHANNEL_STATE}${PUBLISH_STEPS}
local function appendAt(kH, kI, kX, kG, kL, kB, kR, last, base, pos, lost)
-- A channel without any key starts its epoch now: its first id is above the base.
if not last and not base then base = clock pos = clock end
local n = clock
if n <= pos then n = pos + 1 end
local id = num(n)
redis.call('SET', kL, id, 'EX', ARGV[9])
if last then
  -- The base is only refreshed: 0 when the channel has none (its history predates positions per channel).
  if redis.call('EXPIRE', kB, ARGV[9]) == 0 then redis.call('SET', kB, '0', 'EX', ARGV[9]) end
else
  redis.call('SET', kB, num(base), 'EX', ARGV[9])
end
local env = envelope(t, id, last and num(last))
append(kH, kX, kG, last and num(last), id, env, clock)
if lost then redis.call('EXPIRE', kR, ARGV[9]) end
finish(kI, id, env)
return id, env
end
local function channelAppend(kH, kI, kX, kG, kL, kB, kR)
local last, base, pos, lost = channelState(kH, kX, kG, kL, kB, kR, true)
return appendAt(kH, kI, kX, kG, kL, kB, kR, last, base, pos, lost)
end`;

/**
 * Publish on one channel (PUBLISH_STEPS in `core/redis/broker.ts`: idempotency, the user's verdict, trimming by count
 * and age with the horizon, the gap, the last id, live delivery of the same bytes), the id taken from the channel: Redis time in microseconds, or one more than the channel's position when that is not below it (so ids only
 * grow on a channel, stay above its base and above every id recorded lost on it).
 *
 * KEYS: history stream, idempotency key (an unused one repeats the history's), horizon, gap, last id, base, lost ranges
 * ARGV: live channel, envelope head, envelope tail, history size, history TTL, idempotency TTL, use idempotency, event
 *       hash, markers' TTL, the user's refusal (0 none, 3 rate, 5 retained bytes), its seconds, 1 when a new channel
 *       may be started, the seconds until it may, the publish command (PUBLISH or SPUBLISH)
 * Returns as PUBLISH: {id, 0, envelope, new channel 1|0}, {id, 1} duplicate, {id, 2} conflict, {'', 3|4|5, seconds}.
 */
const CHANNEL_PUBLISH = new Script(`${CHANNEL_APPEND}
local last, base, pos, lost = channelState(KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], true)
local fresh = admit(KEYS[2], KEYS[5], KEYS[1], KEYS[3], last)
if type(fresh) == 'table' then return fresh end
local id, env = appendAt(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], last, base, pos, lost)
return {id, 0, env, fresh}
`);

/**
 * One page of what one channel received after the reader's cursor (see CHANNEL_CURSOR for reset, `from` and the
 * position), with the coverage rule per channel: trimmed (horizon above `from`, unless
 * `held`): reset, nothing replayed; created again after it expired (gap above `from`): reset, and what the stream holds
 * is replayed; expired with a last id above `from`: reset. Read in chunks of the budget left (at least one entry): the
 * page ends at `max events` or `max bytes` (each event its envelope plus {@link REPLAY_FRAME_BYTES}; the first is taken
 * whatever its size). In reverse, newest first from below `before` down to `from`.
 *
 * KEYS: as CHANNEL_CURSOR   ARGV: cursor, shared, markers' TTL, max events, max bytes, entry bytes (the largest
 * envelope plus its frame), reverse ('1' or ''), before ('' for none), held ('1': read a trimmed stream too)
 * Returns `invalid`, or {reset, position, more, from, {id, envelope, id, envelope...}}.
 */
const CHANNEL_REPLAY = new Script(`${CHANNEL_CURSOR}
local replay = true
local horizon = redis.call('GET', KEYS[2])
if horizon and tonumber(horizon) > from and ARGV[9] ~= '1' then
  reset = 1
  replay = false
else
  local gap = redis.call('GET', KEYS[3])
  if gap and tonumber(gap) > from then
    reset = 1
  elseif redis.call('EXISTS', KEYS[1]) == 0 then
    if last and last > from then reset = 1 end
    replay = false
  end
end
-- Nothing to replay: the reader continues from the channel's position.
if not replay then from = pos end
local rev = ARGV[7] == '1'
local after = num(from)
local upper = '+'
if ARGV[8] ~= '' then upper = '(' .. ARGV[8] .. '-0' end
${pageBudget(4)}
local out = {}
while replay do
  local chunk = math.floor((maxB - bytes) / unit)
  if chunk > maxN - count then chunk = maxN - count end
  if chunk < 1 then chunk = 1 end
  local buf
  if rev then
    buf = redis.call('XREVRANGE', KEYS[1], upper, '(' .. after .. '-0', 'COUNT', chunk)
  else
    buf = redis.call('XRANGE', KEYS[1], '(' .. after .. '-0', upper, 'COUNT', chunk)
  end
  for _, e in ipairs(buf) do
    if not fits(e) then break end
    local id = string.match(e[1], '^(%d+)')
    out[#out + 1] = id
    out[#out + 1] = e[2][2]
    if rev then upper = '(' .. e[1] else after = id end
  end
  if more == 1 or #buf < chunk then break end
end
return {reset, num(pos), more, num(from), out}
`);

/** KEYS: as CHANNEL_CURSOR   ARGV: cursor, shared, markers' TTL.  Returns `invalid` or {reset, position}. */
const CHANNEL_CLAIM = new Script(`${CHANNEL_CURSOR}
return {reset, num(pos)}
`);

/** KEYS: as CHANNEL_CURSOR.  Returns the channel's position (see CHANNEL_STATE); writes nothing. */
const CHANNEL_POSITION = new Script(`${CHANNEL_STATE}
local last, base, pos = channelState(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return num(pos)
`);

/** Every script on positions per channel, by name (for the cluster-slot audit in test/runtime/script-slots.test.ts). */
export const CHANNEL_SCRIPTS = { CHANNEL_PUBLISH, CHANNEL_REPLAY, CHANNEL_CLAIM, CHANNEL_POSITION } as const;

const FORWARD: BrokerReplayOptions = { reverse: false };
/** Most reads of a replay page: the first of every channel, then of those that had more while the page has room. */
export const READ_ROUNDS = 3;

type ChannelPage = [number, string, number, string, string[]];

export class RedisChannelBroker extends RedisBrokerBase implements PositionBroker {
  /** The channel's keys in the order CHANNEL_CURSOR names them. */
  private channelKeys(channel: string): string[] {
    const k = this.keys;
    return [k.history(channel), k.horizon(channel), k.gap(channel), k.lastId(channel), k.base(channel), k.lostRanges(channel)];
  }

  publish(p: BrokerPublish): Promise<BrokerPublishOutcome> {
    const k = this.keys;
    const c = p.channel.channel;
    const [history, horizon, gap, lastId, base, lost] = this.channelKeys(c);
    const idempotency = p.idempotency ? k.idempotency(c, p.idempotency.principal, p.idempotency.key) : history;
    return publishWithUserLimits(this.redis, k, p, (verdict) =>
      CHANNEL_PUBLISH.run(this.redis, [history, idempotency, horizon, gap, lastId, base, lost], [k.live(c), ...publishArgs(p), ...verdict, this.publishCommand]),
    );
  }

  /**
   * One script per channel, sent together; each reads at most the page's budget shared among the channels (at least
   * one event). While the page has room and some channels had more, those are read again (up to {@link READ_ROUNDS}
   * rounds) with the room left shared among them, so one busy channel among idle ones still fills the page. The reads
   * are merged in id order up to the budget and, so that a reader continuing from one number per channel (or one for
   * all) misses nothing, up to the lowest last id read of a channel that had more (the highest in reverse): a
   * channel's events beyond it are read again by the next page.
   */
  async replay(reads: readonly ChannelCursor[], budget: BrokerPageBudget, order: BrokerReplayOptions = FORWARD): Promise<PositionPage | 'invalid'> {
    const rev = order.reverse;
    const state = reads.map((read) => ({ read, read1: false, reset: false, pos: 0, from: 0, more: true, last: 0, got: [] as { id: number; env: string }[] }));
    let count = 0;
    let bytes = 0;
    for (let round = 0; round < READ_ROUNDS; round++) {
      const pending = state.filter((c) => c.more);
      if (pending.length === 0 || count >= budget.maxEvents || bytes >= budget.maxBytes) break;
      const share = [Math.max(1, Math.ceil((budget.maxEvents - count) / pending.length)), Math.max(1, Math.floor((budget.maxBytes - bytes) / pending.length)), budget.entryBytes];
      const pages = (await Promise.all(
        pending.map((c) => {
          // A later round reads on from the last id read: forward after it, in reverse below it.
          const cursor = c.read1 && !rev ? c.last : c.read.cursor;
          const before = c.read1 && rev ? c.last : order.before;
          return CHANNEL_REPLAY.run(this.redis, this.channelKeys(c.read.channel.channel), [
            String(cursor),
            c.read1 || c.read.shared ? '1' : '',
            c.read.channel.policy.historyTtlSeconds + LAST_ID_TAIL_SECONDS,
            ...share,
            rev ? '1' : '',
            before === undefined ? '' : String(before),
            order.held ? '1' : '',
          ]);
        }),
      )) as ('invalid' | ChannelPage)[];
      if (pages.some((p) => p === 'invalid')) return 'invalid';
      (pages as ChannelPage[]).forEach(([reset, pos, more, from, flat], k) => {
        const c = pending[k];
        if (!c.read1) c.from = Number(from);
        c.read1 = true;
        c.reset ||= reset === 1;
        c.pos = Number(pos);
        c.more = more === 1;
        for (let j = 0; j < flat.length; j += 2) {
          c.got.push({ id: Number(flat[j]), env: flat[j + 1] });
          count++;
          bytes += Buffer.byteLength(flat[j + 1]) + REPLAY_FRAME_BYTES;
        }
        if (c.got.length) c.last = c.got[c.got.length - 1].id;
      });
    }
    const beyond = (id: number, bound: number) => (rev ? id < bound : id > bound);
    // The bound: where the shortest channel that had more stopped.
    let bound: number | undefined;
    for (const c of state) if (c.more && c.got.length && (bound === undefined || beyond(bound, c.last))) bound = c.last;
    const merged = state.flatMap((c, i) => c.got.map((e) => ({ ...e, i })));
    merged.sort((a, b) => (rev ? b.id - a.id : a.id - b.id) || a.i - b.i);
    const events: string[] = [];
    const lastOf = new Map<number, number>();
    let taken = 0;
    let more = bound !== undefined;
    for (const e of merged) {
      if (bound !== undefined && beyond(e.id, bound)) break;
      const size = Buffer.byteLength(e.env) + REPLAY_FRAME_BYTES;
      if (events.length >= budget.maxEvents || (events.length > 0 && taken + size > budget.maxBytes)) {
        more = true;
        break;
      }
      events.push(e.env);
      taken += size;
      lastOf.set(e.i, e.id);
    }
    // Cut by the budget, a channel continues after its last event in the page, else from where it was read (or its
    // position, when that is lower: a shared cursor above a quiet channel, with nothing of the channel in between).
    const positions = state.map((c, i) => (more ? (lastOf.get(i) ?? Math.min(c.from, c.pos)) : Math.max(c.pos, lastOf.get(i) ?? 0)));
    return { events, resets: state.map((c) => c.reset), positions, more };
  }

  async claim(read: ChannelCursor): Promise<{ reset: boolean; position: number } | 'invalid'> {
    const r = (await CHANNEL_CLAIM.run(this.redis, this.channelKeys(read.channel.channel), [
      String(read.cursor),
      read.shared ? '1' : '',
      read.channel.policy.historyTtlSeconds + LAST_ID_TAIL_SECONDS,
    ])) as 'invalid' | [number, string];
    return r === 'invalid' ? 'invalid' : { reset: r[0] === 1, position: Number(r[1]) };
  }

  positions(channels: readonly ParsedChannel[]): Promise<number[]> {
    return Promise.all(
      channels.map(async (c) => Number(await CHANNEL_POSITION.run(this.redis, this.channelKeys(c.channel), []))),
    );
  }
}
