import { parseChannel, type ParsedChannel } from '../channels';
import type { CoreConfig } from '../config';
import { RealtimeError } from '../errors';
import { encodePresenceInfo, presenceMode, type PresenceMember, type PresenceSnapshot } from '../presence';
import { publishArgs, publishCommandOf } from './broker';
import { CHANNEL_APPEND, CHANNEL_STATE } from './channel-broker';
import { Script, type RedisLike } from './client';
import { Keys } from './keys';
import { GATEWAY_HOLDER_PREFIX } from '../occupancy';
import type { Fanout, UseCaseLogger } from '../publishing';

/**
 * Presence's key names (docs/DESIGN.md, "Presence"), beside the rest of `Keys` but apart from it, so the bundles that do
 * not use presence do not carry them. A channel's are tagged `{channel}` (its slot); the deployment-wide ones `{pr}`.
 */
export class PresenceKeys {
  constructor(readonly prefix: string) {}

  /** Presence (core/redis/presence.ts): a channel's members, hash `sub` → live connections (0 in grace). */
  presenceMembers(channel: string): string {
    return `${this.prefix}pc:{${channel}}`;
  }
  /** Presence: a channel's members' `info`, hash `sub` → JSON. */
  presenceInfos(channel: string): string {
    return `${this.prefix}pi:{${channel}}`;
  }
  /** Presence: a channel's connections, hash connection → `sub`. */
  presenceConnections(channel: string): string {
    return `${this.prefix}pk:{${channel}}`;
  }
  /** Presence: one holder's connections on a channel (a set; in the channel's slot). */
  presenceHolderConnections(channel: string, holder: string): string {
    return `${this.prefix}po:{${channel}}:${holder}`;
  }
  /** Presence: a channel's members in their grace period, scored by its end (epoch ms). */
  presenceGrace(channel: string): string {
    return `${this.prefix}pg:{${channel}}`;
  }
  /** The prefix of presence's deployment-wide keys: one hash tag (leases, holders' channels, sweeps, due channels). */
  get presencePrefix(): string {
    return `${this.prefix}{pr}`;
  }
  /** Presence holders of the tasks scored by the end of their lease (epoch ms): swept by any task once it ended. */
  get presenceLeases(): string {
    return `${this.presencePrefix}l`;
  }
  /**
   * API Gateway connections (`gw:{id}`) scored by the end of their lease (epoch ms): apart from the tasks', since only
   * the gateway sweeper may end one (after GetConnection answered 410), never a task's sweep.
   */
  get presenceGatewayLeases(): string {
    return `${this.presencePrefix}g`;
  }
  /** The channels where a presence holder has connections (written before each join). */
  presenceHolderChannels(holder: string): string {
    return `${this.presencePrefix}c:${holder}`;
  }
  /** Presence holders whose lease ended, being swept (their channels: {@link presenceSweepChannels}). */
  get presenceSweeping(): string {
    return `${this.presencePrefix}s`;
  }
  /** The channels of a swept presence holder still to be dropped. */
  presenceSweepChannels(holder: string): string {
    return `${this.presencePrefix}z:${holder}`;
  }
  /** Channels with members in grace, scored by the earliest grace end (epoch ms), and their versions (a hash). */
  get presenceDue(): string {
    return `${this.presencePrefix}d`;
  }
  get presenceDueVersions(): string {
    return `${this.presencePrefix}dv`;
  }
  /** Count mode: channels whose count changed, scored by when (epoch ms), and their versions. */
  get presenceCountDue(): string {
    return `${this.presencePrefix}n`;
  }
  get presenceCountDueVersions(): string {
    return `${this.presencePrefix}nv`;
  }
  /** Count mode: the count a channel last announced and when (a hash: `count`, `at`). */
  presenceCount(channel: string): string {
    return `${this.prefix}pn:{${channel}}`;
  }
}

/**
 * Presence on Redis (docs/DESIGN.md, "Presence"). A channel's members live beside its stream, in its slot (`{channel}`):
 * `pc:` (sub → live connections, 0 in grace: its fields are the member set), `pi:` (sub → info), `pk:` (connection →
 * sub), `po:…:holder` (a holder's connections on the channel), `pg:` (members in grace → its end). Each change of the
 * member set and its `presence.join` / `presence.leave` event are one script (the event appended by `channelAppend`,
 * with the channel's next id, its history and live delivery), and a snapshot reads the members and the channel's
 * position in one script.
 *
 * Holders (a task, an API Gateway connection `gw:{id}`: the holders of occupancy, core/occupancy.ts) hold leases in
 * one deployment-wide slot (`{pr}`); a sweep drops the connections of a holder whose lease ended, and settles the
 * grace periods that ended.
 */

/**
 * KEYS of the channel scripts: 1-7 the channel's publish keys (as CHANNEL_PUBLISH: history, idempotency (the history
 * again), horizon, gap, last id, base, lost ranges), 8 members, 9 infos, 10 connections, 11 grace, 12 the holder's
 * connections (absent for SNAPSHOT and SETTLE). ARGV 1-14 as CHANNEL_PUBLISH's (the tail is set per event), 15 the
 * mode (`members` appends events), then the script's own.
 */
const PRESENCE_STEPS = `${CHANNEL_APPEND}
local emitting = ARGV[15] == 'members'
-- Whether the member set changed (count mode: the caller marks the channel's count due).
local changed = 0
-- The envelopes appended, in order (the caller hands them to the WebSocket fan-out).
local emitted = {}
local function emit(kind, sub, info)
  changed = 1
  if not emitting then return end
  local d = '{"sub":' .. cjson.encode(sub)
  if info then d = d .. ',"info":' .. info end
  ARGV[3] = '","type":"presence.' .. kind .. '","data":' .. d .. '},"ts":'
  local _, env = channelAppend(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  emitted[#emitted + 1] = env
end
local function leaveMember(sub)
  redis.call('HDEL', KEYS[8], sub)
  redis.call('HDEL', KEYS[9], sub)
  redis.call('ZREM', KEYS[11], sub)
  emit('leave', sub)
end
-- Removes one connection; its member leaves with its last one, or (graceEnd > 0) waits in grace: returns 1 then.
local function dropConnection(conn, graceEnd)
  local sub = redis.call('HGET', KEYS[10], conn)
  if not sub then return 0 end
  redis.call('HDEL', KEYS[10], conn)
  if redis.call('HINCRBY', KEYS[8], sub, -1) > 0 then return 0 end
  if graceEnd > 0 then
    redis.call('HSET', KEYS[8], sub, 0)
    redis.call('ZADD', KEYS[11], graceEnd, sub)
    return 1
  end
  leaveMember(sub)
  return 0
end`;

/**
 * ARGV[16] connection, 17 sub, 18 info ('' none). The connection's member joins with its first connection, unless it
 * is in its grace period (it takes it back, silently). A connection already joined changes nothing. Returns {1 when the
 * member set changed, the envelopes appended}.
 */
const JOIN = new Script(`${PRESENCE_STEPS}
if redis.call('HSETNX', KEYS[10], ARGV[16], ARGV[17]) == 0 then return {0, emitted} end
redis.call('SADD', KEYS[12], ARGV[16])
if redis.call('HINCRBY', KEYS[8], ARGV[17], 1) == 1 and redis.call('ZREM', KEYS[11], ARGV[17]) == 0 then
  local info = nil
  if ARGV[18] ~= '' then
    info = ARGV[18]
    redis.call('HSET', KEYS[9], ARGV[17], info)
  end
  emit('join', ARGV[17], info)
end
return {changed, emitted}
`);

/**
 * ARGV[16] connection, 17 grace end (epoch ms; 0: the member leaves at once). Returns {1 when its member went into
 * grace, 1 when the member set changed, the envelopes appended}.
 */
const LEAVE = new Script(`${PRESENCE_STEPS}
redis.call('SREM', KEYS[12], ARGV[16])
local graced = dropConnection(ARGV[16], tonumber(ARGV[17]))
return {graced, changed, emitted}
`);

/** ARGV[16] grace end. Every connection of the holder on the channel, as LEAVE. Returns {members that went into grace, changed, envelopes}. */
const DROP = new Script(`${PRESENCE_STEPS}
local n = 0
for _, conn in ipairs(redis.call('SMEMBERS', KEYS[12])) do n = n + dropConnection(conn, tonumber(ARGV[16])) end
redis.call('DEL', KEYS[12])
return {n, changed, emitted}
`);

/** ARGV[16] now. Members whose grace ended by then (and still without a connection) leave. Returns {the next grace end or '', changed, envelopes}. */
const SETTLE = new Script(`${PRESENCE_STEPS}
for _, sub in ipairs(redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', ARGV[16])) do
  if tonumber(redis.call('HGET', KEYS[8], sub) or '1') <= 0 then leaveMember(sub) else redis.call('ZREM', KEYS[11], sub) end
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
return {nxt[2] or '', changed, emitted}
`);

/**
 * Count mode. KEYS 1-8 as above, 9 the channel's announced count (`pn:`)   ARGV 1-14 as above, 15 now, 16 interval.
 * Appends `presence.count` {count} when the member count differs from the one last announced and the interval since
 * that passed. Returns {'' (nothing left to do) or when to try again (epoch ms), the envelope appended or ''}.
 */
const COUNT = new Script(`${CHANNEL_APPEND}
local n = redis.call('HLEN', KEYS[8])
local last = redis.call('HMGET', KEYS[9], 'count', 'at')
if last[1] and tonumber(last[1]) == n then return {'', ''} end
local now, at = tonumber(ARGV[15]), tonumber(last[2] or '0')
if now < at + tonumber(ARGV[16]) then return {num(at + tonumber(ARGV[16])), ''} end
ARGV[3] = '","type":"presence.count","data":{"count":' .. n .. '},"ts":'
local _, env = channelAppend(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[9], 'count', n, 'at', ARGV[15])
redis.call('EXPIRE', KEYS[9], ARGV[9])
return {'', env}
`);

/**
 * KEYS 1-9 as above   ARGV: 'count' (count mode) or ''. Returns {position, members flat (sub, count...), infos flat (sub,
 * info...)}, or in count mode {position, the number of members} (one `HLEN`: flat in the room's size); writes nothing.
 */
const SNAPSHOT = new Script(`${CHANNEL_STATE}
local last, base, pos = channelState(KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
if ARGV[1] == 'count' then return {num(pos), redis.call('HLEN', KEYS[8])} end
return {num(pos), redis.call('HGETALL', KEYS[8]), redis.call('HGETALL', KEYS[9])}
`);

/** KEYS: leases   ARGV: holder, lease end, 'renew' (only an existing lease) or ''. Returns 1 when set (new or renewed). */
const LEASE = new Script(`
if ARGV[3] == 'renew' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
`);

/**
 * KEYS: leases, the holder's channels   ARGV: holder, channel, lease end needed (epoch ms). Records that the holder has
 * connections on the channel, before it joins them, when its lease runs at least that long (so the sweep of a lease
 * about to end cannot miss the join that follows). Returns 0 when it does not: the holder must take a new lease.
 */
const REGISTER = new Script(`
local ends = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if ends < tonumber(ARGV[3]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
`);

/**
 * KEYS: leases, sweeping, the holder's channels, its channels to sweep   ARGV: holder, [before]. Ends the lease now (given
 * `before`: only a lease that ended before it, so a holder that renewed since ENDED listed it keeps its lease): the channels
 * move to the sweep. Returns 1 when it ended it.
 */
const END = new Script(`
if ARGV[2] then
  local ends = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not ends or tonumber(ends) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SUNIONSTORE', KEYS[4], KEYS[4], KEYS[3])
  redis.call('DEL', KEYS[3])
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
`);

/** KEYS: sweeping, the holder's channels to sweep   ARGV: holder, channels done... Forgets them; the holder when none is left. */
const SWEPT = new Script(`
for i = 2, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
return 1
`);

/** KEYS: due, versions   ARGV: channel, when. The channel is due by then at the latest; its version moves. */
const DUE = new Script(`
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
`);

/** KEYS: due, versions   ARGV: now, batch. Returns {channel, version...} of channels due by now. */
const CLAIM = new Script(`
local out = {}
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  out[#out + 1] = c
  out[#out + 1] = redis.call('HGET', KEYS[2], c) or '0'
end
return out
`);

/**
 * KEYS: due, versions   ARGV: channel, version claimed, next grace end ('' none). After SETTLE: the channel is due
 * again at the next grace end, or no longer, unless a leave marked it since the claim (its version moved): then it
 * stays due (at the earlier of the two).
 */
const UNDUE = new Script(`
if (redis.call('HGET', KEYS[2], ARGV[1]) or '0') == ARGV[2] then
  if ARGV[3] == '' then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
  else
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  end
elseif ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
end
return 1
`);

/** KEYS: a set   ARGV: count. Up to count members (RedisLike has no SRANDMEMBER; a script keeps the port small). */
const SRANDMEMBER = new Script(`return redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[1]))`);

/**
 * KEYS: leases   ARGV: before (epoch ms), offset, count. Holders whose lease ended before then, oldest first; writes
 * nothing. The tasks' sweep ends each with END given the same time, which declares its keys (a script here could not:
 * it finds the holders, so their keys would be undeclared); the gateway sweeper asks API Gateway about each first.
 */
const ENDED = new Script(`return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))`);

/** Every presence script, by name (for the cluster-slot audit). */
export const PRESENCE_SCRIPTS = { JOIN, LEAVE, DROP, SETTLE, COUNT, SNAPSHOT, LEASE, REGISTER, ENDED, END, SWEPT, DUE, CLAIM, UNDUE, SRANDMEMBER } as const;

/** Count mode: at most one `presence.count` per channel per this many milliseconds. */
export const PRESENCE_COUNT_INTERVAL_MS = 2_000;
/** Holders, channels and due channels handled per script call of a sweep. */
export const PRESENCE_SWEEP_BATCH = 200;
/** A join needs its holder's lease to run at least this much longer (see REGISTER). */
export const PRESENCE_REGISTER_MARGIN_MS = 5_000;
const MAX_ROUNDS = 100;

/** The holder's lease ended (it was swept): it takes a new one under a new name before it joins again. */
export class PresenceLeaseLost extends Error {
  constructor(readonly holder: string) {
    super(`presence holder ${holder} has no lease (swept, or about to be): take a new one`);
    this.name = 'PresenceLeaseLost';
  }
}

export interface PresenceConnection {
  /** The holder: a task (`task:…`, with its lease generation) or an API Gateway connection (`gw:{connectionId}`). */
  readonly holder: string;
  /** The connection, unique in the deployment (e.g. `holder/id`). */
  readonly connection: string;
}

/** What a store does with the presence events its scripts appended, besides their live delivery in Redis. */
export interface RedisPresenceOptions {
  /**
   * Hands each appended `presence.*` envelope, in the channel's order, to the WebSocket delivery of API Gateway
   * connections: the publish path's fan-out (core/fanout-queue.ts `dispatchFanout`, inline or through the fan-out
   * queue). A failure is logged, not thrown: the event is in the channel's history. Defaults to none (a deployment
   * without API Gateway connections: the tasks' hubs get the events through Redis).
   */
  readonly fanout?: Fanout;
  /** Where a failed fan-out is logged. Defaults to none. */
  readonly logger?: Pick<UseCaseLogger, 'warn'>;
}

/** An API Gateway connection's holder name (`gw:{connectionId}`, occupancy's), whose lease the gateway sweeper keeps. */
export const isGatewayHolder = (holder: string): boolean => holder.startsWith(GATEWAY_HOLDER_PREFIX);

export interface PresenceJoin extends PresenceConnection {
  readonly sub: string;
  readonly info?: unknown;
}

export class RedisPresence {
  private readonly keys: Keys;
  private readonly pk: PresenceKeys;
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';

  constructor(
    private readonly redis: RedisLike,
    private readonly config: Pick<CoreConfig, 'keyPrefix' | 'namespaces'>,
    private readonly options: RedisPresenceOptions = {},
  ) {
    this.keys = new Keys(config.keyPrefix);
    this.pk = new PresenceKeys(config.keyPrefix);
    this.publishCommand = publishCommandOf(redis);
  }

  private channelKeys(channel: string, holder?: string): string[] {
    const k = this.keys;
    const p = this.pk;
    const history = k.history(channel);
    const keys = [history, history, k.horizon(channel), k.gap(channel), k.lastId(channel), k.base(channel), k.lostRanges(channel), p.presenceMembers(channel), p.presenceInfos(channel), p.presenceConnections(channel), p.presenceGrace(channel)];
    if (holder !== undefined) keys.push(p.presenceHolderConnections(channel, holder));
    return keys;
  }

  /** ARGV 1-15 of the channel scripts. */
  private channelArgs(c: ParsedChannel): (string | number)[] {
    const head = `{"channel":${JSON.stringify(c.channel)},"id":"`;
    return [this.keys.live(c.channel), ...publishArgs({ channel: c, head, tail: '' }), 0, 0, 1, 0, this.publishCommand, presenceMode(c)];
  }

  /** The lease set of a holder: the gateway's for an API Gateway connection, the tasks' otherwise. */
  private leasesOf(holder: string): string {
    return isGatewayHolder(holder) ? this.pk.presenceGatewayLeases : this.pk.presenceLeases;
  }

  /** Takes (or extends) the holder's lease to `until`. Resolves true when the holder had none. */
  async lease(holder: string, until: number): Promise<boolean> {
    return Number(await LEASE.run(this.redis, [this.leasesOf(holder)], [holder, until, ''])) === 1;
  }

  /** Extends the holder's lease to `until`; false when it has none (it was swept): the holder needs a new name. */
  async renew(holder: string, until: number): Promise<boolean> {
    return Number(await LEASE.run(this.redis, [this.leasesOf(holder)], [holder, until, 'renew'])) === 1;
  }

  /**
   * API Gateway holders whose lease ended before `now`, oldest first, skipping the first `offset` (those a sweep could
   * not decide on); at most `count`. Writes nothing: the gateway sweeper renews or ends each.
   */
  async gatewayLeasesEnded(now: number, offset: number, count: number): Promise<string[]> {
    return (await ENDED.run(this.redis, [this.pk.presenceGatewayLeases], [now, offset, count])) as string[];
  }

  /** Hands the envelopes a script appended to the WebSocket delivery, in order (see {@link RedisPresenceOptions.fanout}). */
  private async deliver(channel: string, envelopes: readonly string[] | undefined): Promise<void> {
    const fanout = this.options.fanout;
    if (!fanout || !envelopes?.length) return;
    for (const envelope of envelopes) {
      try {
        await fanout(channel, envelope);
      } catch (err) {
        this.options.logger?.warn('presence: the fan-out of an event to API Gateway connections failed; it is in the channel history', { channel, error: err as Error });
      }
    }
  }

  /** The connection joins the channel's presence (its user's member joins with its first connection). */
  async join(c: ParsedChannel, j: PresenceJoin, now: number): Promise<void> {
    const info = encodePresenceInfo(j.info);
    const p = this.pk;
    const ok = await REGISTER.run(this.redis, [this.leasesOf(j.holder), p.presenceHolderChannels(j.holder)], [j.holder, c.channel, now + PRESENCE_REGISTER_MARGIN_MS]);
    if (Number(ok) !== 1) throw new PresenceLeaseLost(j.holder);
    const [changed, emitted] = (await JOIN.run(this.redis, this.channelKeys(c.channel, j.holder), [...this.channelArgs(c), j.connection, j.sub, info])) as [number, string[]];
    await this.counted(c, changed, now);
    await this.deliver(c.channel, emitted);
  }

  /** The connection leaves; its member leaves with its last connection, after `graceMs` (0: at once). */
  async leave(c: ParsedChannel, l: PresenceConnection, now: number, graceMs: number): Promise<void> {
    const end = graceMs > 0 ? now + graceMs : 0;
    // Due before the script (a crash after it leaves a settle with nothing to do, never a member stuck in grace), and
    // again after it when it put a member in grace (a sweep that settled the channel in between sees the new version).
    if (end) await this.due(c.channel, end);
    const [graced, changed, emitted] = (await LEAVE.run(this.redis, this.channelKeys(c.channel, l.holder), [...this.channelArgs(c), l.connection, end])) as [number, number, string[]];
    if (graced > 0) await this.due(c.channel, end);
    await this.counted(c, changed, now);
    await this.deliver(c.channel, emitted);
  }

  /** The members of the channel and its position, read in one step. */
  async snapshot(c: ParsedChannel): Promise<PresenceSnapshot> {
    if (presenceMode(c) === 'count') {
      const [at, count] = (await SNAPSHOT.run(this.redis, this.channelKeys(c.channel), ['count'])) as [string, number];
      return { members: [], count: Number(count), position: Number(at) };
    }
    const [pos, counts, infos] = (await SNAPSHOT.run(this.redis, this.channelKeys(c.channel), [''])) as [string, string[], string[]];
    const info = new Map<string, string>();
    for (let i = 0; i < infos.length; i += 2) info.set(infos[i], infos[i + 1]);
    const members: PresenceMember[] = [];
    for (let i = 0; i < counts.length; i += 2) {
      const sub = counts[i];
      const json = info.get(sub);
      members.push(json === undefined ? { sub, connections: Number(counts[i + 1]) } : { sub, info: JSON.parse(json) as unknown, connections: Number(counts[i + 1]) });
    }
    members.sort((a, b) => (a.sub < b.sub ? -1 : a.sub > b.sub ? 1 : 0));
    return { members, position: Number(pos) };
  }

  /**
   * One sweep, by any task at any time (concurrent sweeps share the work): the connections of holders whose lease
   * ended before `now` go (their members into grace for `graceMs`), then members whose grace ended leave.
   */
  async sweep(now: number, graceMs: number): Promise<void> {
    await this.sweepHolders(now, graceMs);
    await this.settle(now);
  }

  /** The connections of holders whose lease ended before `now` go (their members into grace for `graceMs`). */
  async sweepHolders(now: number, graceMs: number): Promise<void> {
    const p = this.pk;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const dead = (await ENDED.run(this.redis, [p.presenceLeases], [now, 0, PRESENCE_SWEEP_BATCH])) as string[];
      // The tasks' lease set (a gateway holder from before the gateway's own set is ended from here too).
      for (const holder of dead) await END.run(this.redis, this.endKeys(holder, p.presenceLeases), [holder, now]);
      if (dead.length < PRESENCE_SWEEP_BATCH) break;
    }
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const sweeping = (await SRANDMEMBER.run(this.redis, [p.presenceSweeping], [16])) as string[];
      if (!sweeping.length) break;
      for (const holder of sweeping) await this.dropHolderChannels(holder, now, graceMs);
    }
  }

  /**
   * Members whose grace ended by `now` leave, and channels in count mode whose count changed announce it (at most once
   * per {@link PRESENCE_COUNT_INTERVAL_MS}). Cheap when nothing is due: one script per kind.
   */
  async settle(now: number): Promise<void> {
    const p = this.pk;
    await this.dueRounds([p.presenceDue, p.presenceDueVersions], now, async (c) => {
      const [next, changed, emitted] = (await SETTLE.run(this.redis, this.channelKeys(c.channel), [...this.channelArgs(c), now])) as [string, number, string[]];
      await this.counted(c, changed, now);
      await this.deliver(c.channel, emitted);
      return next;
    });
    await this.dueRounds([p.presenceCountDue, p.presenceCountDueVersions], now, async (c) => {
      const keys = this.channelKeys(c.channel).slice(0, 8);
      keys.push(p.presenceCount(c.channel));
      const [next, envelope] = (await COUNT.run(this.redis, keys, [...this.channelArgs(c).slice(0, 14), now, PRESENCE_COUNT_INTERVAL_MS])) as [string, string];
      if (envelope) await this.deliver(c.channel, [envelope]);
      return next;
    });
  }

  /** Claims the channels due by `now` in `dueKeys` (a due set and its versions), runs `work` on each, and marks each due again at what it returns ('' for never). */
  private async dueRounds(dueKeys: string[], now: number, work: (c: ParsedChannel) => Promise<string>): Promise<void> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const due = (await CLAIM.run(this.redis, dueKeys, [now, PRESENCE_SWEEP_BATCH])) as string[];
      for (let i = 0; i < due.length; i += 2) {
        const next = await work(this.channelOf(due[i]));
        await UNDUE.run(this.redis, dueKeys, [due[i], due[i + 1], next]);
      }
      if (due.length < 2 * PRESENCE_SWEEP_BATCH) break;
    }
  }

  /** Count mode: a change of the member set makes the channel's count due now. */
  private async counted(c: ParsedChannel, changed: number, now: number): Promise<void> {
    if (changed !== 1 || presenceMode(c) !== 'count') return;
    await DUE.run(this.redis, [this.pk.presenceCountDue, this.pk.presenceCountDueVersions], [c.channel, now]);
  }

  /** Ends the holder now (a task closing, an API Gateway connection gone): its connections leave, after `graceMs`. */
  async endHolder(holder: string, now: number, graceMs: number): Promise<void> {
    await END.run(this.redis, this.endKeys(holder), [holder]);
    await this.dropHolderChannels(holder, now, graceMs);
  }

  /** END's keys for `holder`, whose lease is in `leases` (its own set, or the set a sweep listed it from). */
  private endKeys(holder: string, leases = this.leasesOf(holder)): string[] {
    const p = this.pk;
    return [leases, p.presenceSweeping, p.presenceHolderChannels(holder), p.presenceSweepChannels(holder)];
  }

  private async dropHolderChannels(holder: string, now: number, graceMs: number): Promise<void> {
    const p = this.pk;
    const end = graceMs > 0 ? now + graceMs : 0;
    const zKey = p.presenceSweepChannels(holder);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const channels = (await SRANDMEMBER.run(this.redis, [zKey], [PRESENCE_SWEEP_BATCH])) as string[];
      if (!channels.length) {
        await SWEPT.run(this.redis, [p.presenceSweeping, zKey], [holder]);
        return;
      }
      for (const name of channels) {
        const c = this.channelOf(name);
        if (end) await this.due(c.channel, end);
        const [graced, changed, emitted] = (await DROP.run(this.redis, this.channelKeys(c.channel, holder), [...this.channelArgs(c), end])) as [number, number, string[]];
        if (graced > 0) await this.due(c.channel, end);
        await this.counted(c, changed, now);
        await this.deliver(c.channel, emitted);
      }
      await SWEPT.run(this.redis, [p.presenceSweeping, zKey], [holder, ...channels]);
    }
  }

  private due(channel: string, at: number): Promise<unknown> {
    return DUE.run(this.redis, [this.pk.presenceDue, this.pk.presenceDueVersions], [channel, at]);
  }

  /** The channel, or (its namespace gone from the config) one whose presence is off: cleaned up, nothing appended. */
  private channelOf(name: string): ParsedChannel {
    try {
      return parseChannel(name, this.config.namespaces);
    } catch (err) {
      if (!(err instanceof RealtimeError)) throw err;
      const [namespace, ...rest] = name.split(':');
      return { channel: name, namespace, name: rest.join(':'), policy: { subscribe: 'authenticated', publish: 'server', historySize: 0, historyTtlSeconds: 1, presence: 'off' } };
    }
  }
}
