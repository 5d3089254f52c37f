import { CHANNEL_STATE } from './channel-broker';
import { Script } from './client';

/**
 * The Lua of the connection registry (`core/connections.ts`), tickets (`core/tickets.ts`) and revocation
 * (`core/revocation.ts`), each run atomically by EVALSHA (`Script`). The use-cases beside the domain rules name the
 * keys and arguments; what each script does to them is documented here, with the script. The events' scripts are the
 * broker's (`core/redis/broker.ts`).
 */

// connections (core/connections.ts): one slot per script (the user's set, the connection's record, one channel's keys)

/**
 * KEYS: the user's connection set   ARGV: connection id, max connections of the user (0: no cap), ttl
 * Adds the connection to its user's set. Returns 0, or -1 (nothing written) when the user already holds the maximum.
 */
export const USER_ADMIT = /* @__PURE__ */ new Script(`
local max = tonumber(ARGV[2])
if max > 0 and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= max then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 0
`);

/** KEYS: record   ARGV: sub, grant JSON, now, ttl.  Writes a new connection's record, without subscriptions. */
export const RECORD_OPEN = /* @__PURE__ */ new Script(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[1], 'g', ARGV[2], 'a', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
`);

/**
 * Joins one channel's subscriber set, in the channel's slot. KEYS: subscriber set, then the channel's history, horizon,
 * gap, last id, base and lost ranges (as CHANNEL_POSITION)   ARGV: connection id, floor to keep ('' for a new
 * subscription), ttl. A new subscription's floor is the channel's position (CHANNEL_STATE, core/redis/channel-broker.ts),
 * read in the same atomic step as the SADD: every event of the channel with a higher id is published after the member
 * exists, so the fan-out finds it. Returns the floor.
 */
export const CHANNEL_JOIN = /* @__PURE__ */ new Script(`${CHANNEL_STATE}
local floor = ARGV[2]
if floor == '' then
  local last, base, pos = channelState(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  floor = num(pos)
end
redis.call('SADD', KEYS[1], ARGV[1] .. '|' .. floor)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return floor
`);

/**
 * Records subscriptions in a connection's record. KEYS: record   ARGV: ttl, max subscriptions (0: no cap), then pairs of
 * channel and floor. Returns -1 (nothing written) for an unknown connection, else per pair a status and the floor
 * recorded: 0 added, 1 already subscribed (the recorded floor is kept and returned), -2 refused (too many).
 */
export const RECORD_SUBSCRIBE = /* @__PURE__ */ new Script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local max = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 2 do
  local field = 'c:' .. ARGV[i]
  local prev = redis.call('HGET', KEYS[1], field)
  if prev then
    out[#out + 1] = 1
    out[#out + 1] = prev
  elseif max > 0 and redis.call('HLEN', KEYS[1]) - 3 >= max then
    out[#out + 1] = -2
    out[#out + 1] = '0'
  else
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
    out[#out + 1] = 0
    out[#out + 1] = ARGV[i + 1]
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return out
`);

/** KEYS: record   ARGV: channel, floor.  Removes the subscription if its floor is still that one; returns 1 when removed. */
export const RECORD_UNSUBSCRIBE = /* @__PURE__ */ new Script(`
local field = 'c:' .. ARGV[1]
if redis.call('HGET', KEYS[1], field) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], field)
return 1
`);

/**
 * KEYS: record   ARGV: registered-before (epoch ms, or -1 for always)
 * Deletes the record and returns {1, sub, channel, floor, channel, floor...} (its subscriptions, whose members the
 * caller removes from the channels' sets), {1} when there was none, or {0} (nothing written) when it was registered at
 * or after ARGV[1] (a connection still inside its `$connect`).
 */
export const RECORD_CLOSE = /* @__PURE__ */ new Script(`
local h = redis.call('HGETALL', KEYS[1])
local out = {1}
for i = 1, #h, 2 do
  if h[i] == 'a' and ARGV[1] ~= '-1' and tonumber(h[i + 1]) >= tonumber(ARGV[1]) then return {0} end
end
for i = 1, #h, 2 do
  if h[i] == 's' then out[2] = h[i + 1] end
end
if out[2] then
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'c:' then
      out[#out + 1] = string.sub(h[i], 3)
      out[#out + 1] = h[i + 1]
    end
  end
end
redis.call('DEL', KEYS[1])
return out
`);

// tickets (core/tickets.ts): TICKET_RATE lives in ./ticket-scripts (the ticket issuer's bundle takes it from there,
// without the registry's scripts, whose sources esbuild keeps once this module is in a bundle); re-exported here.
export { TICKET_RATE } from './ticket-scripts';

// revocation (core/revocation.ts)

/**
 * KEYS: epoch   ARGV: sub, control channel, ttl.  Returns the new epoch.
 *
 * Flagged `allow-oom`: under `maxmemory` with `noeviction` Redis refuses every write command flagged
 * `denyoom` (SET too, even over an existing key of the same size), and a script without flags fails at
 * its SET. A revocation must not wait for memory: this script may write its one key (about 100 bytes,
 * at most one per revoked user per 30 days; only trusted backends revoke) past `maxmemory`. Its PUBLISH
 * needs no memory either way. Redis 7.0+ (ElastiCache Redis 7.x, Valkey 7.2+).
 */
export const REVOKE = /* @__PURE__ */ new Script(`#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local epoch = string.format('%d', math.max(prev + 1, now))
redis.call('SET', KEYS[1], epoch, 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[2], '{"sub":' .. cjson.encode(ARGV[1]) .. ',"epoch":' .. epoch .. '}')
return epoch
`);
