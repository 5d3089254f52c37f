import { OUTBOX_MAX_ENTRIES, type EventsConfig } from './backend-events';
import { Keys } from './redis/keys';
import { Script, type RedisLike } from './redis/client';

/**
 * Deployment-wide channel occupancy, for `channel.occupied` / `channel.vacated` (core/backend-events.ts).
 *
 * A *holder* subscribes to channels: a task (its hub's first local listener of a channel to its last, whatever the
 * transport: SSE, poll, `/live`) or an API Gateway connection (`gw:{connectionId}`, from its registration to its
 * `$disconnect`). In Redis, under one hash tag (`{prefix}{be}`):
 *
 * - `oc:{channel}`: the set of holders of the channel. A channel is occupied while it is not empty.
 * - `ot:{holder}`: the set of channels a holder holds.
 * - `oh`: every holder's lease end (a sorted set, epoch ms). Tasks renew theirs every tick; an API Gateway connection's
 *   lease is its longest life ({@link GATEWAY_LEASE_MS}), since nothing renews it.
 * - `sw:{holder}` / `osw`: channels of holders being swept (lease ended, or dropped), and those holders.
 * - `ov`: channels that lost their last holder, scored by when.
 *
 * `channel.occupied` is appended to the outbox in the same script that adds a channel's first holder, unless the
 * channel is in `ov` (it came back within the debounce: nothing is said). `channel.vacated` is appended by a sweep
 * when a channel has been in `ov` for the debounce and still has no holder. So a channel that flaps inside the debounce
 * says nothing, and the two events alternate per channel.
 *
 * A task killed without releasing (SIGKILL, a crashed host) stops renewing: the first sweep after its lease ended moves
 * its channels to `sw:` and releases them in batches; they are vacated after the debounce. A task whose lease ended while
 * it was alive (a long pause) learns it at its next renewal (the lease is new again) and acquires its channels again;
 * a channel it still holds is skipped by the sweep (`ot:` names it again), one already released comes back from `ov`
 * silently, or as a new `channel.occupied` after the debounce.
 */

/** API Gateway closes a WebSocket connection after 2 hours; a lost `$disconnect` holds its channels that long, plus 5 minutes. */
export const GATEWAY_LEASE_MS = 2 * 3600_000 + 5 * 60_000;

/** What the holder name of an API Gateway connection starts with. */
export const GATEWAY_HOLDER_PREFIX = 'gw:';

/** The holder name of an API Gateway connection. */
export const gatewayHolder = (connectionId: string): string => `${GATEWAY_HOLDER_PREFIX}${connectionId}`;

const OCCUPIED = `local function occupied(c, at)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 't', 'channel.occupied', 'd', '{"channel":' .. cjson.encode(c) .. ',"at":' .. at .. '}')
end`;

/** Lua: ends holder `h`'s lease; its channels move to `sw:{h}` for the sweeps (KEYS[lease], KEYS[sweeping] by index). */
const drop = (leases: number, sweeping: number) => `local function drop(P, h)
  redis.call('ZREM', KEYS[${leases}], h)
  if redis.call('EXISTS', P .. 'ot:' .. h) == 1 then
    redis.call('SUNIONSTORE', P .. 'sw:' .. h, P .. 'sw:' .. h, P .. 'ot:' .. h)
    redis.call('DEL', P .. 'ot:' .. h)
    redis.call('SADD', KEYS[${sweeping}], h)
  end
end`;

/**
 * KEYS: leases, vacating, outbox   ARGV: prefix, outbox max, holder, lease end ('' = keep), now, channels...
 * Returns {occupied events appended, 1 when the holder had no lease before}.
 */
const ACQUIRE = new Script(`${OCCUPIED}
local P, h = ARGV[1], ARGV[3]
local fresh = 0
if ARGV[4] ~= '' then fresh = redis.call('ZADD', KEYS[1], ARGV[4], h) end
local n = 0
for i = 6, #ARGV do
  local c = ARGV[i]
  redis.call('SADD', P .. 'ot:' .. h, c)
  if redis.call('SADD', P .. 'oc:' .. c, h) == 1 and redis.call('SCARD', P .. 'oc:' .. c) == 1 then
    if redis.call('ZREM', KEYS[2], c) == 0 then
      occupied(c, ARGV[5])
      n = n + 1
    end
  end
end
return {n, fresh}
`);

/** KEYS: vacating   ARGV: prefix, holder, now, channels...   Returns the channels left without a holder. */
const RELEASE = new Script(`
local P, h = ARGV[1], ARGV[2]
local n = 0
for i = 4, #ARGV do
  local c = ARGV[i]
  redis.call('SREM', P .. 'ot:' .. h, c)
  if redis.call('SREM', P .. 'oc:' .. c, h) == 1 and redis.call('SCARD', P .. 'oc:' .. c) == 0 then
    redis.call('ZADD', KEYS[1], ARGV[3], c)
    n = n + 1
  end
end
return n
`);

/** KEYS: leases, sweeping   ARGV: prefix, holder   Ends the holder's lease now; its channels are released by sweeps. */
const DROP = new Script(`${drop(1, 2)}
drop(ARGV[1], ARGV[2])
return 1
`);

/**
 * KEYS: leases, vacating, outbox, sweeping
 * ARGV: prefix, outbox max, now, debounce ms, batch, holder ('' = every holder, and emit due vacates)
 * One bounded round: holders whose lease ended are dropped; up to `batch` of the dropped holders' channels are released
 * (a channel the holder acquired again since is kept); channels vacant since `now - debounce` get `channel.vacated`.
 * Returns 1 when work is left for another round.
 */
const SWEEP = new Script(`${drop(1, 4)}
local P, now, batch = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[5])
local more = 0
local holders
if ARGV[6] == '' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)
  if #dead == batch then more = 1 end
  for _, h in ipairs(dead) do drop(P, h) end
  holders = redis.call('SRANDMEMBER', KEYS[4], 16)
else
  holders = {ARGV[6]}
end
local budget = batch
for _, h in ipairs(holders) do
  if budget <= 0 then more = 1; break end
  local cs = redis.call('SPOP', P .. 'sw:' .. h, budget)
  budget = budget - #cs
  for _, c in ipairs(cs) do
    if redis.call('SISMEMBER', P .. 'ot:' .. h, c) == 0 and redis.call('SREM', P .. 'oc:' .. c, h) == 1 and redis.call('SCARD', P .. 'oc:' .. c) == 0 then
      redis.call('ZADD', KEYS[2], now, c)
    end
  end
  if redis.call('EXISTS', P .. 'sw:' .. h) == 0 then redis.call('SREM', KEYS[4], h) else more = 1 end
end
if ARGV[6] == '' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]), 'WITHSCORES', 'LIMIT', 0, batch)
  if #due == 2 * batch then more = 1 end
  for i = 1, #due, 2 do
    local c = due[i]
    redis.call('ZREM', KEYS[2], c)
    if redis.call('SCARD', P .. 'oc:' .. c) == 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 't', 'channel.vacated', 'd', '{"channel":' .. cjson.encode(c) .. ',"at":' .. due[i + 1] .. '}')
    end
  end
end
return more
`);

export interface OccupancyDeps {
  readonly redis: RedisLike;
  readonly config: EventsConfig;
}

/** Channels (and work items) handled per script call, so no call holds Redis for long. */
export const OCCUPANCY_BATCH = 500;

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += OCCUPANCY_BATCH) out.push(items.slice(i, i + OCCUPANCY_BATCH));
  return out;
}

/**
 * `holder` holds `channels` (and its lease ends at `leaseUntil`, when given). Resolves with whether the holder had no
 * lease before (a task learns it was swept). Nothing when BACKEND_EVENTS is off.
 */
export async function acquire(holder: string, channels: readonly string[], deps: OccupancyDeps, now: number, leaseUntil?: number): Promise<{ leaseWasNew: boolean }> {
  if (!deps.config.backendEvents) return { leaseWasNew: false };
  const keys = new Keys(deps.config.keyPrefix);
  let leaseWasNew = false;
  const parts = channels.length ? chunks(channels) : [[]];
  for (const part of parts) {
    const [, fresh] = (await ACQUIRE.run(
      deps.redis,
      [keys.occupancyLeases, keys.occupancyVacating, keys.eventsOutbox],
      [keys.eventsPrefix, OUTBOX_MAX_ENTRIES, holder, leaseUntil ?? '', now, ...part],
    )) as [number, number];
    if (fresh === 1) leaseWasNew = true;
  }
  return { leaseWasNew };
}

/** `holder` no longer holds `channels`; those left without a holder are vacated after the debounce. */
export async function release(holder: string, channels: readonly string[], deps: OccupancyDeps, now: number): Promise<void> {
  if (!deps.config.backendEvents || !channels.length) return;
  const keys = new Keys(deps.config.keyPrefix);
  for (const part of chunks(channels)) await RELEASE.run(deps.redis, [keys.occupancyVacating], [keys.eventsPrefix, holder, now, ...part]);
}

/** Ends `holder` (a connection gone, a task closing) and releases all its channels now. */
export async function dropHolder(holder: string, deps: OccupancyDeps, now: number): Promise<void> {
  if (!deps.config.backendEvents) return;
  const keys = new Keys(deps.config.keyPrefix);
  await DROP.run(deps.redis, [keys.occupancyLeases, keys.sweepingHolders], [keys.eventsPrefix, holder]);
  while (Number(await sweepRound(deps, now, 0, holder)) === 1);
}

function sweepRound(deps: OccupancyDeps, now: number, debounceMs: number, holder = ''): Promise<unknown> {
  const keys = new Keys(deps.config.keyPrefix);
  return SWEEP.run(
    deps.redis,
    [keys.occupancyLeases, keys.occupancyVacating, keys.eventsOutbox, keys.sweepingHolders],
    [keys.eventsPrefix, OUTBOX_MAX_ENTRIES, now, debounceMs, OCCUPANCY_BATCH, holder],
  );
}

/**
 * Sweeps: releases the channels of holders whose lease ended before `now`, and appends `channel.vacated` for channels
 * without a holder since `now - debounceMs`. Runs bounded rounds until nothing is left (at most `maxRounds`). Any task
 * may sweep at any time; concurrent sweeps share the work.
 */
export async function sweep(deps: OccupancyDeps, now: number, debounceMs: number, maxRounds = 100): Promise<void> {
  if (!deps.config.backendEvents) return;
  for (let i = 0; i < maxRounds; i++) if (Number(await sweepRound(deps, now, debounceMs)) !== 1) return;
}
