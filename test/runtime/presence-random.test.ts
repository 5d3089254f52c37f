import { parseChannel } from '../../core/channels';
import type { Namespaces } from '../../core/config';
import { PresenceKeys, RedisPresence } from '../../core/redis/presence';
import { Keys } from '../../core/redis/keys';
import { startLocalStack, type LocalStack } from '../../local/stack';
import { queuedDelivery } from '../../core/fanout-queue';
import { createClient, type Client, type Presence, type TicketAnswer, type TicketRequest } from '../../client/src/index';
import { Relay } from '../support/client-kit';
import { ContainerCredentialsEndpoint, SqsEndpoint } from '../support/aws-stand-ins';
import { prng } from '../support/prng';
import { WebSocket as NodeWebSocket } from 'ws';
import { eventually, RawStream, redisUrl, spawnTask, TEST_NAMESPACES, uid, useRedis, type SpawnedTask } from '../support/harness';
import { WsClient } from './ws-support';
import type Redis from 'ioredis';

/**
 * Issue 24, "done when": clients join, leave, reconnect and switch transports (SSE, long poll and `/live` on two task
 * processes, and the API Gateway emulator of the local stack), on a schedule drawn from a seeded PRNG; the membership
 * every observing client computes equals the ground truth at every snapshot's position and at quiescence, and the
 * channel's stream holds exactly the joins and leaves the schedule implies (no leave/join flicker on a reconnect or a
 * switch). Observers: raw protocol clients (their snapshot plus the `presence.*` events above its position, checked
 * snapshot by snapshot) and client SDK clients (`client.presence(channel).members()`, over `/live`, SSE and long poll,
 * reconnecting to the other task when a `blip` drops a task's SDK connections, and over the API Gateway emulator's
 * WebSocket, reconnecting to it when a `blip` drops the gateway's SDK connections). The API Gateway connections get the
 * presence events live through the fan-out queue, as on AWS: the two tasks send theirs to it over SQS's
 * `SendMessageBatch` (a stand-in that hands them to the local stack's queue, consumed by the fan-out worker).
 *
 * The ground truth comes from the schedule alone: a user is a member of a channel while it has a live connection to it
 * or is in its grace period. The grace is set long (PRESENCE_GRACE_MS, 10 minutes: it never ends by itself during a run)
 * and the schedule ends it with an explicit settle at a time past the grace ends (what a task's settle does when that
 * time comes), so whether a user is in grace never depends on how fast this machine is. Ops run one at a time; an op
 * that changes the membership is waited for (the store shows it) and its position recorded, so the truth at any
 * position is known. Nothing here asserts a duration: every wait is for a condition.
 *
 * Reproduce a failure with PRESENCE_RANDOM_SEED=<seed printed in the error> npx jest test/runtime/presence-random.test.ts.
 */

const GRACE_MS = 600_000;
const SUBS = ['ann', 'bob', 'cat', 'dan', 'eve', 'fay'];
const OPS = Number(process.env.PRESENCE_RANDOM_OPS ?? 120);
/** Schedules per run, each on new channels over the same processes: `PRESENCE_RANDOM_SEED` runs that one alone. */
const SCHEDULES = 3;
const MAX_CONNECTIONS = 10;
const NAMESPACES: Namespaces = {
  ...TEST_NAMESPACES,
  room: { subscribe: 'authenticated', publish: 'authenticated', historySize: 1000, historyTtlSeconds: 600, presence: 'members' },
};
const infoOf = (sub: string) => ({ name: sub.toUpperCase() });

/** Raw protocol clients (`sse`, `poll`, `live`, `apigw`), and the client SDK over `/live` (`sdk-ws`), SSE, long poll and API Gateway (`sdk-apigw`). */
type Transport = 'sse' | 'poll' | 'live' | 'apigw' | 'sdk-ws' | 'sdk-sse' | 'sdk-poll' | 'sdk-apigw';
type Members = Map<string, unknown>;
interface Snap {
  readonly channel: string;
  readonly position: number;
  readonly members: Members;
  readonly by: string;
}
interface Envelope {
  readonly channel: string;
  readonly id: string;
  readonly type: string;
  readonly data: { sub: string; info?: unknown };
}

/** One client connection of the schedule, on one transport; what it observed of presence. */
interface Conn {
  readonly name: string;
  readonly sub: string;
  readonly channels: readonly string[];
  /** True when it computes a membership (a long poll gets no snapshot yet: it only takes part). */
  readonly observes: boolean;
  /** Snapshots it received, in order. */
  snapshots(): Snap[];
  /** Its membership of `channel` by the client's rule (latest snapshot + `presence.*` events above its position), or undefined before a snapshot. */
  membership(channel: string): Members | undefined;
  /** Errors the client saw that the schedule did not cause. */
  readonly errors: string[];
  close(): Promise<void>;
}

const membersOf = (list: readonly { sub: string; info?: unknown }[]): Members => new Map(list.map((m) => [m.sub, m.info]));

/** The client's rule: the snapshot, then every `presence.*` event with an id above its position, in id order. */
function applyEvents(snap: Snap | undefined, events: readonly Envelope[]): Members | undefined {
  if (!snap) return undefined;
  const m = new Map(snap.members);
  const above = events.filter((e) => e.channel === snap.channel && e.type.startsWith('presence.') && Number(e.id) > snap.position).sort((a, b) => Number(a.id) - Number(b.id));
  for (const e of above) {
    if (e.type === 'presence.join') m.set(e.data.sub, e.data.info);
    else if (e.type === 'presence.leave') m.delete(e.data.sub);
  }
  return m;
}

const show = (m: Members | undefined) => (m === undefined ? 'none' : JSON.stringify([...m].sort(([a], [b]) => (a < b ? -1 : 1))));

let redis: Redis;
const cleanup = useRedis((r) => (redis = r));

class SseConn implements Conn {
  readonly observes = true;
  readonly errors: string[] = [];
  private readonly stream: RawStream;
  constructor(readonly name: string, readonly sub: string, readonly channels: readonly string[], base: string, ticket: string) {
    this.stream = new RawStream(`${base}/events?channels=${channels.join(',')}&ticket=${ticket}`);
  }
  async open(): Promise<void> {
    await this.stream.until((s) => s.events().some((e) => e.event === 'ready'), 15_000);
  }
  snapshots(): Snap[] {
    return this.stream
      .events()
      .filter((e) => e.event === 'presence')
      .map((e) => JSON.parse(e.data) as { channel: string; position: string; members: { sub: string; info?: unknown }[] })
      .map((s) => ({ channel: s.channel, position: Number(s.position), members: membersOf(s.members), by: this.name }));
  }
  private envelopes(): Envelope[] {
    return this.stream
      .events()
      .filter((e) => e.event?.startsWith('presence.'))
      .map((e) => JSON.parse(e.data) as Envelope);
  }
  membership(channel: string): Members | undefined {
    return applyEvents(this.snapshots().filter((s) => s.channel === channel).at(-1), this.envelopes());
  }
  async close(): Promise<void> {
    if (this.stream.ended) this.errors.push('the stream ended before the schedule closed it');
    this.stream.close();
  }
}

/**
 * `/live` on a task or the API Gateway emulator: the same frames; a snapshot by the `presence` action once open, then the
 * `presence.*` events live (on API Gateway through the fan-out: DESIGN, "Presence", "Live to API Gateway connections").
 */
class WsConn implements Conn {
  readonly observes = true;
  readonly errors: string[] = [];
  private readonly ws: WsClient;
  private closing = false;
  constructor(readonly name: string, readonly sub: string, readonly channels: readonly string[], url: string) {
    this.ws = new WsClient(url);
    void this.ws.closed.then(() => {
      if (!this.closing) this.errors.push(`closed by the server (${this.ws.closeCode})`);
    });
  }
  async open(): Promise<void> {
    await this.ws.opened;
    await this.askSnapshots();
  }
  async askSnapshots(): Promise<void> {
    for (const channel of this.channels) {
      const before = this.snapshots().filter((s) => s.channel === channel).length;
      this.ws.send({ action: 'presence', channel });
      await this.ws.until(() => this.snapshots().filter((s) => s.channel === channel).length > before || this.ws.frames.some((f) => f.type === 'error'), 15_000, `${this.name}: a presence snapshot`);
    }
    const err = this.ws.frames.find((f) => f.type === 'error');
    if (err) this.errors.push(JSON.stringify(err));
  }
  snapshots(): Snap[] {
    return this.ws.frames
      .filter((f) => f.type === 'presence')
      .map((f) => f as unknown as { channel: string; position: string; members: { sub: string; info?: unknown }[] })
      .map((s) => ({ channel: s.channel, position: Number(s.position), members: membersOf(s.members), by: this.name }));
  }
  membership(channel: string): Members | undefined {
    return applyEvents(this.snapshots().filter((s) => s.channel === channel).at(-1), this.ws.events() as unknown as Envelope[]);
  }
  async close(): Promise<void> {
    this.closing = true;
    this.ws.ws.close();
    await this.ws.closed;
  }
}

/**
 * A long-poll client: the first poll redeems the ticket (`wait=0`) and gets the reconnect cookie, later polls send the
 * spent ticket, the cookie and the cursor, one after another until closed. Each poll is a session of the task: it joins
 * at its start and leaves, with the grace, at its end, so between two polls the member is in grace for a moment.
 */
class PollConn implements Conn {
  readonly observes = false;
  readonly errors: string[] = [];
  private readonly abort = new AbortController();
  private cookie = '';
  private cursor = '';
  private readonly events: Envelope[] = [];
  private loop: Promise<void> = Promise.resolve();
  constructor(readonly name: string, readonly sub: string, readonly channels: readonly string[], private readonly base: string, private readonly ticket: string) {}
  private async poll(first: boolean): Promise<void> {
    const q = `channels=${this.channels.join(',')}&ticket=${this.ticket}${first ? '&wait=0' : `&cursor=${encodeURIComponent(this.cursor)}`}`;
    const res = await fetch(`${this.base}/poll?${q}`, { headers: this.cookie ? { cookie: this.cookie } : {}, signal: this.abort.signal });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`poll answered ${res.status}: ${text}`);
    const jar = new Map(this.cookie ? this.cookie.split('; ').map((c) => c.split('=', 2) as [string, string]) : []);
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    this.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const body = JSON.parse(text) as { events: Envelope[]; cursor: string };
    this.events.push(...body.events);
    this.cursor = body.cursor;
  }
  async open(): Promise<void> {
    await this.poll(true);
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        try {
          await this.poll(false);
        } catch (err) {
          if (!this.abort.signal.aborted) this.errors.push((err as Error).message);
          return;
        }
      }
    })();
  }
  snapshots(): Snap[] {
    return [];
  }
  membership(): Members | undefined {
    return undefined;
  }
  async close(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}

/**
 * A client SDK client (`createClient`) following each channel with `client.presence(channel)`: its membership is the
 * SDK's `members()`. It reaches the tasks through a relay per task; a `blip` cuts every connection through a relay (a
 * task dropping its clients), and each connection attempt after that goes to the other task (the ticket function
 * routes them), so the SDK reconnects, on the other task, and resumes by id. On API Gateway (`sdk-apigw`) it connects
 * where the ticket answer's `wsUrl` says (the emulator, through a relay of its own), as an app does: a `blip` of the
 * gateway drops those connections (the emulator runs `$disconnect`) and the SDK reconnects there and resumes by id.
 */
class SdkConn implements Conn {
  readonly observes = true;
  readonly errors: string[] = [];
  private client?: Client;
  private readonly presences = new Map<string, Presence>();
  constructor(
    readonly name: string,
    readonly sub: string,
    readonly channels: readonly string[],
    private readonly transport: 'ws' | 'sse' | 'poll',
    private readonly ticket: (req: TicketRequest) => Promise<TicketAnswer>,
  ) {}
  async open(): Promise<void> {
    const client = createClient({ WebSocket: NodeWebSocket, storage: null, events: null, ticket: this.ticket, transports: [this.transport], reconnectSpreadMs: 100 });
    this.client = client;
    // A blip's reset is a network error the SDK recovers from; anything else is the server refusing it.
    client.on('error', (e) => e.code !== 'network' && this.errors.push(`${e.code}: ${e.message}`));
    for (const c of this.channels) this.presences.set(c, client.presence(c));
    await eventually(() => client.state === 'open', 15_000, `${this.name} open`);
  }
  snapshots(): Snap[] {
    return [];
  }
  membership(channel: string): Members | undefined {
    const p = this.presences.get(channel);
    return p?.synced ? new Map(p.members().map((m) => [m.sub, m.info])) : undefined;
  }
  async close(): Promise<void> {
    this.client?.close();
  }
}

interface Stage {
  readonly stack: LocalStack;
  readonly tasks: Record<'A' | 'B', SpawnedTask>;
  /** A relay in front of each task and of the API Gateway emulator, for the SDK clients. */
  readonly relays: Record<'A' | 'B' | 'gw', Relay>;
  readonly prefix: string;
  readonly channels: readonly string[];
  /** A channel of the probes only (see `drain`). */
  readonly probeChannel: string;
}

/** Runs one schedule; throws with the seed and the last ops on the first disagreement. */
async function runSchedule(stage: Stage, seed: number): Promise<{ ops: number; joins: number; leaves: number; snapshots: number; settles: number; byTransport: Record<string, number>; log: string[] }> {
  const { stack, tasks, relays, prefix, channels, probeChannel } = stage;
  const random = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  // The schedule's settles play a task's: their leaves go to the API Gateway connections through the fan-out queue.
  const fanout = queuedDelivery({ redis, config: stack.lambda.config.core, queue: stack.queue!, shards: stack.lambda.config.wsFanoutShards }).fanout;
  const presence = new RedisPresence(redis, { keyPrefix: prefix, namespaces: NAMESPACES }, { fanout });
  const pkeys = new PresenceKeys(prefix);
  const parsed = new Map(channels.map((c) => [c, parseChannel(c, NAMESPACES)]));
  const log: string[] = [];

  // The ground truth, per channel: live connections per user, the members, and the membership after each change at
  // the position the store gave it (the truth at a position is the last change at or below it).
  const live = new Map(channels.map((c) => [c, new Map<string, number>()]));
  const members = new Map(channels.map((c) => [c, new Map<string, unknown>()]));
  const truth = new Map<string, { position: number; members: Members }[]>(channels.map((c) => [c, [{ position: 0, members: new Map() }]]));
  // What the channel's stream must hold: each join alone, each settle's leaves as a set.
  const expected = new Map<string, { kind: 'join' | 'leave'; subs: string[] }[]>(channels.map((c) => [c, []]));
  const open: Conn[] = [];
  const everyone: Conn[] = [];
  let n = 0;
  let joins = 0;
  let leaves = 0;

  const truthAt = (channel: string, position: number): Members => truth.get(channel)!.filter((t) => t.position <= position).at(-1)!.members;
  const record = async (channel: string, what: string): Promise<void> => {
    const want = members.get(channel)!;
    let snap: Awaited<ReturnType<RedisPresence['snapshot']>> | undefined;
    await eventually(
      async () => {
        snap = await presence.snapshot(parsed.get(channel)!);
        return show(membersOf(snap.members)) === show(want);
      },
      15_000,
      `the store to show ${what} on ${channel}: ${show(want)}`,
    ).catch(async (err: Error) => {
      const conns = await redis.hgetall(pkeys.presenceConnections(channel));
      const odd = new Set((snap?.members ?? []).map((m) => m.sub).filter((sub) => !want.has(sub)));
      const ops = log.filter((l) => [...odd].some((x) => l.includes(` ${x} `)));
      throw new Error(`${err.message} (it shows ${JSON.stringify(snap?.members)}, connections ${JSON.stringify(conns)}); their ops:\n  ${ops.join('\n  ')}`);
    });
    truth.get(channel)!.push({ position: snap!.position, members: new Map(want) });
  };

  /** The stack's ticket issuer's answer, asked as the trusted backend, with the user's presence info. */
  async function ticketAnswer(sub: string, chans: readonly string[], transport: 'sse' | 'ws'): Promise<TicketAnswer> {
    const res = await fetch(stack.outputs.TicketUrl.replace(/\/tickets$/, '/backend/tickets'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sub, channels: chans, transport, info: infoOf(sub) }),
    });
    if (res.status !== 201) throw new Error(`ticket: ${res.status} ${await res.text()}`);
    return (await res.json()) as TicketAnswer;
  }
  const mint = async (sub: string, chans: readonly string[], transport: 'sse' | 'ws'): Promise<string> => (await ticketAnswer(sub, chans, transport)).ticket;

  async function connect(sub: string, transport: Transport, task: 'A' | 'B', chans: string[]): Promise<Conn> {
    const name = `#${++n} ${sub} ${transport}${transport.endsWith('apigw') ? '' : `@${task}`} [${chans.map((c) => channels.indexOf(c)).join(',')}]`;
    const base = tasks[task].base;
    let conn: Conn & { open(): Promise<void> };
    if (transport === 'sdk-apigw') {
      // The ticket answer names the stage's WebSocket endpoint (`wsUrl`, the emulator's with `?ticket=`), reached through its relay.
      const ticketFn = async (req: TicketRequest): Promise<TicketAnswer> => {
        const answer = await ticketAnswer(sub, req.channels, req.transport);
        if (!answer.wsUrl?.startsWith(stack.outputs.WebSocketUrl)) throw new Error(`the ticket names ${answer.wsUrl}, not the API Gateway endpoint`);
        return { ...answer, wsUrl: relays.gw.via(answer.wsUrl) };
      };
      conn = new SdkConn(name, sub, chans, 'ws', ticketFn);
      cleanup.push(() => conn.close());
      await conn.open();
      return conn;
    }
    if (transport.startsWith('sdk-')) {
      // Each connection attempt of the SDK goes to the task after the one before (through its relay).
      let next = task;
      const ticketFn = async (req: TicketRequest): Promise<TicketAnswer> => {
        const at = next;
        next = next === 'A' ? 'B' : 'A';
        const relayed = relays[at].via(tasks[at].base).replace(/\/$/, '');
        const t = await mint(sub, req.channels, req.transport);
        return { ticket: t, sseUrl: `${relayed}/events`, wsUrl: `${relayed.replace(/^http/, 'ws')}/live?ticket=${encodeURIComponent(t)}` };
      };
      conn = new SdkConn(name, sub, chans, transport.slice(4) as 'ws' | 'sse' | 'poll', ticketFn);
      cleanup.push(() => conn.close());
      await conn.open();
      return conn;
    }
    const ticket = await mint(sub, chans, transport === 'sse' || transport === 'poll' ? 'sse' : 'ws');
    conn =
      transport === 'sse'
        ? new SseConn(name, sub, chans, base, ticket)
        : transport === 'poll'
          ? new PollConn(name, sub, chans, base, ticket)
          : transport === 'live'
            ? new WsConn(name, sub, chans, `${base.replace(/^http/, 'ws')}/live?ticket=${ticket}`)
            : new WsConn(name, sub, chans, `${stack.outputs.WebSocketUrl}?ticket=${ticket}`);
    cleanup.push(() => conn.close());
    await conn.open();
    return conn;
  }

  /** Opens a connection; each channel where its user was no member is a join, waited for and recorded. */
  async function openOp(sub: string, transport: Transport, task: 'A' | 'B', chans: string[]): Promise<Conn> {
    const conn = await connect(sub, transport, task, chans);
    open.push(conn);
    everyone.push(conn);
    for (const c of chans) {
      live.get(c)!.set(sub, (live.get(c)!.get(sub) ?? 0) + 1);
      if (members.get(c)!.has(sub)) continue;
      members.get(c)!.set(sub, infoOf(sub));
      expected.get(c)!.push({ kind: 'join', subs: [sub] });
      joins++;
      await record(c, `${sub} joined`);
    }
    return conn;
  }

  /** Closes a connection: its user stays a member (in grace when it was the last) until a settle. */
  async function closeOp(conn: Conn): Promise<void> {
    open.splice(open.indexOf(conn), 1);
    await conn.close();
    for (const c of conn.channels) live.get(c)!.set(conn.sub, live.get(c)!.get(conn.sub)! - 1);
  }

  /**
   * The grace periods end: a settle at a time past the grace ends of the members without a live connection. Before it,
   * the store must agree on who is in grace (every close and open of the schedule applied): exactly those members are
   * in grace up to that time. A long poll between two polls is in grace too, for a moment, with a later end; one
   * whose end is not after that time is waited out.
   */
  /**
   * Each task applies its sessions' joins and leaves in order, one at a time (service/presence.ts), some time after the
   * session opened or closed: a connection closed just after it opened may still have its join running. A probe stream
   * (its own user, on a channel of its own) opened on each task now joins after everything queued before it: once the
   * store shows it, every join and leave of the schedule's connections on that task has run.
   */
  async function drain(): Promise<void> {
    const probe = parseChannel(probeChannel, NAMESPACES);
    const probes = async () => Number((await presence.snapshot(probe)).members.find((m) => m.sub === 'probe')?.connections ?? 0);
    for (const task of ['A', 'B'] as const) {
      const s = new RawStream(`${tasks[task].base}/events?channels=${probeChannel}&ticket=${await mint('probe', [probeChannel], 'sse')}`);
      cleanup.push(() => s.close());
      await eventually(async () => (await probes()) === 1, 15_000, `the probe on task ${task}`);
      s.close();
      await eventually(async () => (await probes()) === 0, 15_000, `the probe on task ${task} gone`);
    }
  }

  async function settleOp(): Promise<void> {
    await drain();
    const going = new Map(channels.map((c) => [c, [...members.get(c)!.keys()].filter((s) => (live.get(c)!.get(s) ?? 0) === 0)]));
    if (![...going.values()].some((g) => g.length)) return;
    let at = 0;
    let seen = '';
    await eventually(
      async () => {
        const graces = await Promise.all(channels.map(async (c) => new Map(Object.entries(await redis.zrange(pkeys.presenceGrace(c), 0, -1, 'WITHSCORES').then(pairs)))));
        seen = JSON.stringify(graces.map((g) => Object.fromEntries([...g].map(([k, v]) => [k, v - Date.now()]))));
        const ends = channels.flatMap((c, i) => going.get(c)!.map((s) => graces[i].get(s)));
        if (ends.some((e) => e === undefined)) return false;
        at = Math.max(...(ends as number[]));
        // Past the last of those closes (same machine clock as the tasks): a poll that goes between two polls from now on
        // gets a grace end after `at`.
        if (Date.now() <= at - GRACE_MS) return false;
        return channels.every((c, i) => [...graces[i]].every(([s, end]) => end > at || going.get(c)!.includes(s)));
      },
      15_000,
      `the store to agree on who is in grace: ${JSON.stringify(Object.fromEntries(going))}`,
    ).catch(async (err: Error) => {
      const counts = await Promise.all(channels.map((c) => redis.hgetall(pkeys.presenceMembers(c))));
      const conns = await Promise.all(channels.map((c) => redis.hgetall(pkeys.presenceConnections(c))));
      const subs = new Set([...going.values()].flat());
      const ops = log.filter((l) => [...subs].some((x) => l.includes(` ${x} `)));
      throw new Error(
        `${err.message}; the store's grace ends (ms from now) ${seen}, connections ${JSON.stringify(counts)} (${JSON.stringify(conns)}), live ${JSON.stringify(channels.map((c) => Object.fromEntries(live.get(c)!)))}; their ops:\n  ${ops.join('\n  ')}`,
      );
    });
    await presence.settle(at);
    for (const c of channels) {
      const g = going.get(c)!;
      if (!g.length) continue;
      for (const s of g) {
        members.get(c)!.delete(s);
        live.get(c)!.delete(s);
      }
      expected.get(c)!.push({ kind: 'leave', subs: [...g].sort() });
      leaves += g.length;
      await record(c, `${g.join(', ')} left`);
    }
  }

  /** Every observer's membership equals the truth now (the events reach them asynchronously: waited for). */
  async function quiescent(what: string): Promise<void> {
    for (const conn of open.filter((x) => x.observes)) {
      for (const c of conn.channels) {
        await eventually(() => show(conn.membership(c)) === show(members.get(c)!), 15_000, `${what}: ${conn.name}'s membership of ${c} to be ${show(members.get(c)!)} (it is ${show(conn.membership(c))})`);
      }
    }
  }

  try {
    for (let op = 0; op < OPS; op++) {
      const r = random();
      const transport = pick<Transport>(['sse', 'poll', 'live', 'apigw', 'sdk-ws', 'sdk-sse', 'sdk-poll', 'sdk-apigw']);
      const task = pick<'A' | 'B'>(['A', 'B']);
      const chans = random() < 0.3 ? [...channels] : [pick(channels)];
      if (open.length === 0 || (r < 0.4 && open.length < MAX_CONNECTIONS)) {
        const sub = pick(SUBS);
        log.push(`open ${sub} ${transport} ${task} ${chans.join(',')}`);
        await openOp(sub, transport, task, chans);
      } else if (r < 0.6) {
        const conn = pick(open);
        log.push(`close ${conn.name}`);
        await closeOp(conn);
      } else if (r < 0.65) {
        // A task drops its SDK clients (through its relay): they reconnect, on the other task, and resume. Or the API
        // Gateway emulator drops its SDK clients: they reconnect to it and resume.
        const target = random() < 1 / 3 ? 'gw' : task;
        log.push(`blip ${target}`);
        relays[target].cut();
        relays[target].restore();
      } else if (r < 0.9) {
        // A reconnect or a transport switch: the same user and channels on another connection, opened before or after
        // the old one closes (within the grace either way: no event).
        const conn = pick(open);
        const first = random() < 0.5 ? 'close' : 'open';
        log.push(`switch ${conn.name} to ${transport} ${task} (${first} first)`);
        if (first === 'close') await closeOp(conn);
        await openOp(conn.sub, transport, task, [...conn.channels]);
        if (first === 'open') await closeOp(conn);
      } else {
        log.push('settle');
        await settleOp();
        await quiescent(`after op ${op} (settle)`);
      }
    }
    log.push('settle (end)');
    await settleOp();
    await quiescent('at the end');

    // Every snapshot any client received equals the truth at its position.
    const snaps = everyone.flatMap((c) => c.snapshots());
    for (const s of snaps) expect(`${s.by} snapshot of ${s.channel} at ${s.position}: ${show(s.members)}`).toBe(`${s.by} snapshot of ${s.channel} at ${s.position}: ${show(truthAt(s.channel, s.position))}`);
    // The channel's stream holds the joins and leaves of the schedule, and nothing else (no flicker).
    const keys = new Keys(prefix);
    for (const c of channels) {
      const entries = (await redis.xrange(keys.history(c), '-', '+')).map(([, fields]) => JSON.parse(fields[1]) as Envelope).filter((e) => e.type.startsWith('presence.'));
      const actual: { kind: string; subs: string[] }[] = [];
      let i = 0;
      for (const want of expected.get(c)!) {
        const got = entries.slice(i, i + want.subs.length);
        i += want.subs.length;
        actual.push({ kind: got.every((e) => e.type === `presence.${want.kind}`) ? want.kind : got.map((e) => e.type).join('+'), subs: got.map((e) => e.data.sub).sort() });
      }
      expect(actual).toEqual(expected.get(c));
      expect(entries.length).toBe(i);
      // Each join carries the ticket's info.
      for (const e of entries.filter((x) => x.type === 'presence.join')) expect(e.data.info).toEqual(infoOf(e.data.sub));
    }
    for (const conn of everyone) expect(`${conn.name}: ${conn.errors.join('; ')}`).toBe(`${conn.name}: `);
    return { ops: OPS, joins, leaves, snapshots: snaps.length, settles: log.filter((l) => l.startsWith('settle')).length, byTransport: countBy(everyone.map((c) => c.name.split(' ')[2].split('@')[0])), log: process.env.PRESENCE_RANDOM_VERBOSE ? log : [] };
  } catch (err) {
    const e = err as Error;
    e.message = `seed ${seed} (PRESENCE_RANDOM_SEED=${seed}); last ops:\n  ${log.slice(-(Number(process.env.PRESENCE_RANDOM_LOG) || 12)).join('\n  ')}\n${e.message}`;
    throw e;
  } finally {
    for (const conn of open.splice(0)) await conn.close().catch(() => undefined);
  }
}

const countBy = (xs: string[]): Record<string, number> => xs.reduce<Record<string, number>>((o, x) => ({ ...o, [x]: (o[x] ?? 0) + 1 }), {});

/** ZRANGE … WITHSCORES pairs as [member, score]. */
function pairs(flat: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < flat.length; i += 2) out[flat[i]] = Number(flat[i + 1]);
  return out;
}

test('randomized: joins, leaves, reconnects and transport switches over two task processes and API Gateway; every snapshot and every observer agrees with the truth', async () => {
  const given = process.env.PRESENCE_RANDOM_SEED;
  const seeds = given ? [Number(given)] : Array.from({ length: SCHEDULES }, () => Math.floor(Math.random() * 2 ** 31));
  const prefix = `pr${uid()}:`;
  const env = {
    KEY_PREFIX: prefix,
    NAMESPACES_JSON: JSON.stringify(NAMESPACES),
    PRESENCE_GRACE_MS: String(GRACE_MS),
    USER_CONNECTIONS: '0',
    USER_TICKETS_PER_MINUTE: '0',
    METRICS_INTERVAL_MS: '0',
  };
  const stack = await startLocalStack({ redisUrl: redisUrl(), env: { ...env, LOG_LEVEL: 'warn' } });
  cleanup.push(() => stack.close());
  // The tasks hand their presence events to the fan-out queue as on AWS (WS_FANOUT_QUEUE_URL, signed with the task
  // role's credentials): SQS's SendMessageBatch, here a stand-in that passes each batch on to the stack's queue.
  const creds = new ContainerCredentialsEndpoint();
  const sqs = new SqsEndpoint('us-east-1', creds);
  sqs.onBatch = async (batch) => {
    const { failed } = await stack.queue!.send(batch.Entries.map((e) => ({ body: e.MessageBody, groupId: e.MessageGroupId, deduplicationId: e.MessageDeduplicationId })));
    if (failed.length) throw new Error(`the local queue refused ${failed.length} messages`);
  };
  await Promise.all([creds.start(), sqs.start()]);
  cleanup.push(() => Promise.all([creds.close(), sqs.close()]));
  const taskEnv = {
    ...env,
    WS_FANOUT_QUEUE_URL: `${sqs.base}/000000000000/presence-random.fifo`,
    WS_FANOUT_SHARDS: String(stack.lambda.config.wsFanoutShards),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: '',
    AWS_CONTAINER_CREDENTIALS_FULL_URI: `${creds.base}${creds.fullPath}`,
    AWS_CONTAINER_AUTHORIZATION_TOKEN: creds.token,
  };
  const [A, B] = await Promise.all([spawnTask(taskEnv, cleanup), spawnTask(taskEnv, cleanup)]);
  const relays = { A: new Relay(Number(new URL(A.base).port)), B: new Relay(Number(new URL(B.base).port)), gw: new Relay(Number(new URL(stack.outputs.WebSocketUrl).port)) };
  await Promise.all([relays.A.start(), relays.B.start(), relays.gw.start()]);
  cleanup.push(() => Promise.all([relays.A.close(), relays.B.close(), relays.gw.close()]));
  for (const seed of seeds) {
    const channels = [`room:${uid()}`, `room:${uid()}`];
    const outcome = await runSchedule({ stack, tasks: { A, B }, relays, prefix, channels, probeChannel: `room:${uid()}` }, seed);
    if (process.env.PRESENCE_RANDOM_VERBOSE) console.log(`seed ${seed}: ${JSON.stringify(outcome)}`);
    // The schedule did what it is for: members joined and left, and clients saw snapshots.
    expect(outcome.joins).toBeGreaterThan(0);
    expect(outcome.leaves).toBeGreaterThan(0);
    expect(outcome.snapshots).toBeGreaterThan(0);
  }
  // The tasks' presence events went to the API Gateway connections' fan-out queue (SQS, as on AWS).
  expect(sqs.batches.length).toBeGreaterThan(0);
}, 120_000);
