import { Script } from './client';

/**
 * The Lua of the ticket path (`core/tickets.ts`), apart from `scripts.ts` so the ticket issuer's bundle does not carry
 * the connection registry's scripts: esbuild treats a template literal with a substitution (`${CHANNEL_STATE}`) as
 * having side effects, so a module's scripts built that way stay in every bundle that imports the module, used or not.
 * `scripts.ts` re-exports it (one list of the registry's, tickets' and revocation's scripts).
 */

/**
 * Counts a ticket against its user's tickets of the current one-minute window (from the first one). KEYS: the user's
 * counter   ARGV: tickets per minute. Returns 0 (counted), or the seconds until the window ends when the user is over
 * the limit (nothing is written then). The ticket itself is one SET in its own slot, after this.
 */
export const TICKET_RATE = /* @__PURE__ */ new Script(`
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
