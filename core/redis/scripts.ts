import { Script } from './client';

/**
 * The Lua of the connection registry (`core/connections.ts`), tickets (`core/tickets.ts`) and revocation
 * (`core/revocation.ts`), each run atomically by EVALSHA (`Script`). The use-cases beside the domain rules name the
 * keys and arguments; what each script does to them is documented here, with the script. The events' scripts are the
 * broker's (`core/redis/broker.ts`).
 */

// connections (core/connections.ts)

/**
 * KEYS: record, seq, user set, channel sets...   ARGV: connection id, sub, grant JSON, now, ttl, max connections of
 * the user (0: no cap), channels...
 * Returns the floor of the initial subscriptions, or -1 (nothing written) when the user already holds the maximum.
 */
export const REGISTER = new Script(`
local max = tonumber(ARGV[6])
if max > 0 and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 and redis.call('SCARD', KEYS[3]) >= max then return -1 end
local floor = redis.call('GET', KEYS[2]) or '0'
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[2], 'g', ARGV[3], 'a', ARGV[4])
for i = 4, #KEYS do
  redis.call('HSET', KEYS[1], 'c:' .. ARGV[i + 3], floor)
  redis.call('SADD', KEYS[i], ARGV[1] .. '|' .. floor)
  redis.call('EXPIRE', KEYS[i], ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return floor
`);

/**
 * KEYS: record, seq, channel set   ARGV: connection id, channel, ttl, max subscriptions
 * Returns {status, floor}: status 0 subscribed, 1 already subscribed (its floor is kept), -1 unknown
 * connection, -2 too many subscriptions.
 */
export const SUBSCRIBE = new Script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, '0'} end
local field = 'c:' .. ARGV[2]
local prev = redis.call('HGET', KEYS[1], field)
if prev then
  redis.call('SADD', KEYS[3], ARGV[1] .. '|' .. prev)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {1, prev}
end
if redis.call('HLEN', KEYS[1]) - 3 >= tonumber(ARGV[4]) then return {-2, '0'} end
local floor = redis.call('GET', KEYS[2]) or '0'
redis.call('HSET', KEYS[1], field, floor)
redis.call('SADD', KEYS[3], ARGV[1] .. '|' .. floor)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {0, floor}
`);

/** KEYS: record, channel set   ARGV: connection id, channel.  Returns 1 when it was subscribed. */
export const UNSUBSCRIBE = new Script(`
local field = 'c:' .. ARGV[2]
local prev = redis.call('HGET', KEYS[1], field)
if not prev then return 0 end
redis.call('SREM', KEYS[2], ARGV[1] .. '|' .. prev)
redis.call('HDEL', KEYS[1], field)
return 1
`);

/**
 * KEYS: record, user set, channel sets...   ARGV: registered-before (epoch ms, or -1 for always), connection id, members...
 * Removes the members, the user-set entry and the record, unless the record was registered at or
 * after ARGV[1] (a connection still inside its `$connect`). Returns 1 when removed.
 */
export const REMOVE = new Script(`
if ARGV[1] ~= '-1' then
  local at = redis.call('HGET', KEYS[1], 'a')
  if at and tonumber(at) >= tonumber(ARGV[1]) then return 0 end
end
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[i]) end
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
`);

// tickets (core/tickets.ts)

/**
 * Counts a ticket against its user's tickets of the current one-minute window (from the first one). KEYS: the user's
 * counter   ARGV: tickets per minute. Returns 0 (counted), or the seconds until the window ends when the user is over
 * the limit (nothing is written then). The ticket itself is one SET in its own slot, after this.
 */
export const TICKET_RATE = new Script(`
local limit = tonumber(ARGV[1])
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= limit then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then redis.call('EXPIRE', KEYS[1], 60) ttl = 60 end
  return math.max(ttl, 1)
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], 60) end
return 0
`);

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
export const REVOKE = new Script(`#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local epoch = string.format('%d', math.max(prev + 1, now))
redis.call('SET', KEYS[1], epoch, 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[2], '{"sub":' .. cjson.encode(ARGV[1]) .. ',"epoch":' .. epoch .. '}')
return epoch
`);
