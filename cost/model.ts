/**
 * The cost and capacity planner behind `npm run cost`: monthly cost of each transport for a load,
 * with its breakdown per AWS item, and the Fargate tasks and Redis node it implies.
 *
 * Pure functions over three inputs: the load, the stage's settings, and two committed files:
 * `cost/prices.json` (list prices with their sources and date) and `cost/figures.json` (what one
 * task does, from this project's own benchmark). Egress to the internet is the same for every
 * transport that delivers the same bytes, so it is shown apart and left out of the totals.
 */
import { DEFAULT_NAMESPACES, type Namespaces } from '../core/config';
import { CORE_SETTINGS } from '../contract/settings';
import { DEFAULTS } from '../lib/defaults';
import figuresFile from './figures.json';
import pricesFile from './prices.json';

/** The ways of delivering the planner prices (the blueprint's and the references'); not the session seam's `Transport`. */
export type DeliveryOption = 'sse' | 'ws-tasks' | 'ws-apigw' | 'poll-tasks' | 'poll-lambda' | 'appsync';
export const DELIVERY_OPTIONS: readonly DeliveryOption[] = ['sse', 'ws-tasks', 'ws-apigw', 'poll-tasks', 'poll-lambda', 'appsync'];

export const DELIVERY_OPTION_NAMES: Record<DeliveryOption, string> = {
  sse: 'SSE on Fargate tasks',
  'ws-tasks': 'WebSocket on Fargate tasks',
  'ws-apigw': 'WebSocket on API Gateway',
  'poll-tasks': 'Long poll on Fargate tasks',
  'poll-lambda': 'Short poll, HTTP API + Lambda',
  appsync: 'AppSync Events (managed reference)',
};

/** The audience and its traffic. */
export interface Load {
  /** Concurrent connections, held all month. */
  readonly connections: number;
  /** Messages each connection receives per second. */
  readonly rate: number;
  /** Bytes of one message as delivered (the envelope). Defaults to 1024. */
  readonly size: number;
  /** Connections one published message reaches (publishes/s = connections × rate / fanout). Defaults to all connections. */
  readonly fanout: number;
  /** Presence (issue 24): every connection a member of one channel of `roomSize`. Unset: presence off. */
  readonly presence?: PresenceLoad;
}

/** Presence as the planner prices it: a namespace's mode, its channels' size, and how often members come and go. */
export interface PresenceLoad {
  readonly mode: 'members' | 'count';
  /** Members per channel (one connection per member). */
  readonly roomSize: number;
  /** Joins per member per hour, each followed by a leave (a user coming back later is a new join). */
  readonly churnPerHour: number;
}

/** What the stage deploys (cdk.json `stages.<name>` with the constructs' defaults). */
export interface StageSettings {
  readonly name: string;
  /** Fargate task CPU units (1024 = 1 vCPU). */
  readonly taskCpu: number;
  readonly taskMemoryMiB: number;
  readonly minTasks: number;
  readonly maxTasks: number;
  readonly targetConnectionsPerTask: number;
  readonly targetCpuPercent: number;
  readonly heartbeatMs: number;
  readonly sessionTtlSeconds: number;
  readonly redisEngine: 'valkey' | 'redis';
  readonly redisNodeType: string;
  /** Nodes per shard (a primary and its replicas). */
  readonly redisNodes: number;
  /** `redis.shards`: 1 is one replication group (cluster mode off); 2 or more, cluster mode with that many shards. */
  readonly redisShards: number;
  readonly natGateways: number;
  readonly maxAzs: number;
  readonly lambdaMemoryMiB: number;
  /** Alarms and dashboards the stack creates (CloudWatch). */
  readonly alarms: number;
  /** The stage's namespaces (`namespaces` in cdk.json). Defaults to the runtime's (`DEFAULT_NAMESPACES`). */
  readonly namespaces?: Namespaces;
  /** The per-user limits the stage sets (`limits` in cdk.json); unset ones are the runtime's defaults. */
  readonly limits?: { readonly userPublishPerMinute?: number; readonly userRetainedBytes?: number };
  /** Largest envelope in bytes (`maxPayloadBytes`). Defaults to 32768. */
  readonly maxPayloadBytes?: number;
  /** The delivery canary (`canary` in cdk.json) when it is on: how often it runs, its burst, the transports it probes. */
  readonly canary?: CanarySettings;
}

/** What the delivery canary (lib/canary.ts) does each run, for its price. */
export interface CanarySettings {
  readonly intervalMinutes: number;
  /** Events published per run (`canary.burst`). */
  readonly burst: number;
  /** Transports it probes: SSE, long poll, and `/live` and/or the API Gateway WebSocket as `webSocket.mode` deploys them. */
  readonly transports: number;
  /** Whether one of them is the API Gateway WebSocket (`webSocket.mode` `apigateway` or `both`). */
  readonly apiGateway: boolean;
}

/** The worst case one user can keep in Redis in one namespace that users publish to. */
export interface RetainedPerUser {
  readonly namespace: string;
  /** USER_RETAINED_BYTES: bytes per window of one history TTL (0: no budget). */
  readonly budgetBytes: number;
  readonly windowSeconds: number;
  /** What the user can keep at most: three windows of the budget, or what the publish rate allows if less. */
  readonly worstBytes: number;
  /** What the publish rate alone would allow (events live up to two history TTLs): the bound without the budget. */
  readonly rateBoundBytes: number;
}

/**
 * Worst-case bytes one user keeps in Redis, per namespace users may publish to (`publish: authenticated`). An event
 * leaves the history once older than the TTL (at the channel's next publish) or with the stream (a TTL after its last
 * event), so it lives less than two TTLs; the budget counts a fixed window of one TTL, and two TTLs span at most three
 * windows. Without a budget, the publish rate bounds it: rate × two TTLs × the largest envelope.
 */
export function retainedPerUser(stage: StageSettings): RetainedPerUser[] {
  const namespaces = stage.namespaces ?? DEFAULT_NAMESPACES;
  const budget = stage.limits?.userRetainedBytes ?? CORE_SETTINGS.userRetainedBytes.default;
  const rate = stage.limits?.userPublishPerMinute ?? CORE_SETTINGS.userPublishPerMinute.default;
  const payload = stage.maxPayloadBytes ?? DEFAULTS.maxPayloadBytes;
  return Object.entries(namespaces)
    .filter(([, p]) => p.publish === 'authenticated' && p.historySize > 0)
    .map(([namespace, p]) => {
      const rateBoundBytes = rate === 0 ? Number.POSITIVE_INFINITY : rate * ((2 * p.historyTtlSeconds) / 60) * payload;
      const worstBytes = budget === 0 ? rateBoundBytes : Math.min(3 * budget, rateBoundBytes);
      return { namespace, budgetBytes: budget, windowSeconds: p.historyTtlSeconds, worstBytes, rateBoundBytes };
    });
}

export interface LineItem {
  readonly item: string;
  readonly monthly: number;
  /** How it was computed, in words a reviewer can redo. */
  readonly basis: string;
}

export interface TransportEstimate {
  readonly transport: DeliveryOption;
  readonly name: string;
  /** Monthly total, egress excluded. */
  readonly total: number;
  readonly items: readonly LineItem[];
  /** Fargate tasks needed (task transports). */
  readonly tasks?: number;
  /** What bounds the task count: connections per task, CPU, or the stage's minimum. */
  readonly tasksBoundBy?: 'connections' | 'cpu' | 'minTasks';
  readonly notes: readonly string[];
}

export interface Estimate {
  readonly load: Load;
  readonly stage: StageSettings;
  readonly region: string;
  readonly pricesChecked: string;
  readonly transports: readonly TransportEstimate[];
  /** Egress to the internet, the same for every transport (excluded from the totals). */
  readonly egress: LineItem;
  /** The Redis node the load needs (memory), whether the stage's node is enough, and the shards its publishes need. */
  readonly redis: { readonly nodeType: string; readonly neededMiB: number; readonly stageNodeEnough: boolean } & RedisShards;
  /** What one (hostile) user can keep in Redis at worst, per namespace users publish to. */
  readonly retainedPerUser: readonly RetainedPerUser[];
  /** What presence adds (when the load has it). */
  readonly presence?: PresenceEstimate;
}

type Tiered = { readonly tiers: readonly { readonly upTo?: number; readonly price: number }[] };

export const PRICES = pricesFile.items;
export const HOURS = pricesFile.hoursPerMonth;
export const SECONDS = HOURS * 3600;
export const MINUTES = HOURS * 60;

export interface Figures {
  readonly sseDeliveryCpuUs: number;
  /** RSS per held SSE stream, heartbeats on (`npm run bench -- --capacity`, the largest size one process held). */
  readonly sseIdleKbPerConnection: number;
  /** RSS per held `/live` WebSocket, likewise. */
  readonly liveIdleKbPerConnection: number;
  /** Server CPU of one held SSE stream per second with no events (its heartbeats), µs. */
  readonly sseHeldCpuUsPerConnectionSecond: number;
  /** The same for a `/live` WebSocket (heartbeat frame and ping each interval). */
  readonly liveHeldCpuUsPerConnectionSecond: number;
  readonly processBaseMb: number;
  readonly sseConnectCpuUs: number;
  readonly apiGatewayPostCpuMs: number;
  readonly pollRequestCpuUs: number;
  /** Server CPU per delivery of a WebSocket on the tasks (`/live`), relative to an SSE stream's, same run. */
  readonly wsTasksCpuFactor: number;
  /** Redis engine CPU (µs of the shard primary's command thread) per publish, positions per channel (`npm run bench:publish`). */
  readonly redisPublishCpuUs: number;
  /** Presence, from `npm run bench -- --presence`: Redis script µs per join and per leave in members mode (with its event). */
  readonly presenceJoinRedisUs: number;
  readonly presenceLeaveRedisUs: number;
  /** Redis script µs per join or leave in count mode (no event; the channel marked due). */
  readonly presenceCountChangeRedisUs: number;
  /** Task CPU per presence event delivered to a stream. */
  readonly presenceEventCpuUs: number;
  /** A snapshot, per member it lists: Redis script µs, the task's CPU, bytes sent. */
  readonly presenceSnapshotRedisUsPerMember: number;
  readonly presenceSnapshotCpuUsPerMember: number;
  readonly presenceSnapshotBytesPerMember: number;
  /** A count-mode snapshot (one `HLEN`, whatever the room's size): Redis script µs, and the task's CPU. */
  readonly presenceCountSnapshotRedisUs: number;
  readonly presenceCountSnapshotCpuUs: number;
}

/** The committed figures; a figure not measured yet is an error, not a silent guess. */
export function committedFigures(): Figures {
  const m = figuresFile.measured as Record<string, { value: number | null }>;
  const get = (k: keyof Figures): number => {
    const v = m[k]?.value;
    if (typeof v !== 'number') throw new Error(`cost/figures.json has no measured ${k}: run the benchmark that writes it (see its "from")`);
    return v;
  };
  return {
    sseDeliveryCpuUs: get('sseDeliveryCpuUs'),
    sseIdleKbPerConnection: get('sseIdleKbPerConnection'),
    liveIdleKbPerConnection: get('liveIdleKbPerConnection'),
    sseHeldCpuUsPerConnectionSecond: get('sseHeldCpuUsPerConnectionSecond'),
    liveHeldCpuUsPerConnectionSecond: get('liveHeldCpuUsPerConnectionSecond'),
    processBaseMb: get('processBaseMb'),
    sseConnectCpuUs: get('sseConnectCpuUs'),
    apiGatewayPostCpuMs: get('apiGatewayPostCpuMs'),
    pollRequestCpuUs: get('pollRequestCpuUs'),
    wsTasksCpuFactor: get('wsTasksCpuFactor'),
    redisPublishCpuUs: get('redisPublishCpuUs'),
    presenceJoinRedisUs: get('presenceJoinRedisUs'),
    presenceLeaveRedisUs: get('presenceLeaveRedisUs'),
    presenceCountChangeRedisUs: get('presenceCountChangeRedisUs'),
    presenceEventCpuUs: get('presenceEventCpuUs'),
    presenceSnapshotRedisUsPerMember: get('presenceSnapshotRedisUsPerMember'),
    presenceSnapshotCpuUsPerMember: get('presenceSnapshotCpuUsPerMember'),
    presenceSnapshotBytesPerMember: get('presenceSnapshotBytesPerMember'),
    presenceCountSnapshotRedisUs: get('presenceCountSnapshotRedisUs'),
    presenceCountSnapshotCpuUs: get('presenceCountSnapshotCpuUs'),
  };
}

/**
 * Seconds of Lambda time the planner prices per run of the API Gateway presence sweeper (lib/presence-sweeper.ts: one run a
 * minute). Not measured: a run that finds no ended lease is one Redis read; its timeout (50 s) bounds a run that finds many.
 */
export const PRESENCE_SWEEP_PRICED_SECONDS = 1;

/** Count mode announces a channel's count at most once per PRESENCE_COUNT_INTERVAL_MS (2 s, core/redis/presence.ts). */
export const PRESENCE_COUNT_EVENTS_PER_SECOND = 0.5;
/** Bytes of a `presence.join` / `presence.leave` envelope as delivered (a sub of about 10 characters, no info), and of a `presence.count`. */
const PRESENCE_EVENT_BYTES = 130;
const PRESENCE_COUNT_BYTES = 110;
/** Redis memory per member: its entries in the members, connections and holder's hashes and sets. */
const PRESENCE_REDIS_BYTES_PER_MEMBER = 300;

/** What presence adds to a load, per second (the same for every transport that carries it). */
export interface PresenceEstimate extends PresenceLoad {
  readonly joinsPerSecond: number;
  /** Presence events delivered (members: every join and leave to every member of its room; count: the coalesced counts). */
  readonly eventDeliveriesPerSecond: number;
  /** Streams that start on a presence channel (the churn's joins and the reconnect cookie's recycling), each taking a snapshot. */
  readonly connectsPerSecond: number;
  readonly snapshotsPerSecond: number;
  /** Redis engine µs per second: joins, leaves, counts, snapshots. */
  readonly redisUsPerSecond: number;
  /** Task CPU µs per second: deliveries, snapshots, the churn's connects. */
  readonly taskCpuUsPerSecond: number;
  /** Bytes per second to the clients: events and snapshots. */
  readonly bytesPerSecond: number;
}

/**
 * Presence's cost (docs/DESIGN.md "Presence"). Members mode: each join and leave is one script (its event appended and
 * published) and one event delivered to every member of the room, so a room of R members churning c times per member
 * per hour delivers 2·R·c/3600 events per member per second: per room R² (quadratic). Count mode: the same scripts
 * without events; a room announces its count at most every 2 s, so at most 0.5 deliveries per member per second,
 * whatever R. Both read a snapshot for each stream that starts: members mode every member of the room, count mode only
 * their number (one `HLEN`: flat).
 */
export function presenceEstimate(load: Load, stage: StageSettings, figures: Figures): PresenceEstimate | undefined {
  const p = load.presence;
  if (!p || load.connections === 0) return undefined;
  const n = load.connections;
  const r = Math.min(p.roomSize, n);
  const rooms = n / r;
  const joinsPerSecond = (n * p.churnPerHour) / 3600;
  const connectsPerSecond = joinsPerSecond + n / (stage.sessionTtlSeconds * 0.75);
  const snapshotsPerSecond = connectsPerSecond;
  const snapshotRedis = snapshotsPerSecond * (p.mode === 'members' ? r * figures.presenceSnapshotRedisUsPerMember : figures.presenceCountSnapshotRedisUs);
  const snapshotCpu = snapshotsPerSecond * (p.mode === 'members' ? r * figures.presenceSnapshotCpuUsPerMember : figures.presenceCountSnapshotCpuUs);
  const churnConnectsCpu = joinsPerSecond * figures.sseConnectCpuUs;
  const members = p.mode === 'members';
  // Members: every join and leave to every member of its room. Count: each room's count at most every 2 s.
  const countsPerRoom = Math.min(PRESENCE_COUNT_EVENTS_PER_SECOND, (2 * r * p.churnPerHour) / 3600);
  const eventDeliveriesPerSecond = members ? 2 * joinsPerSecond * r : n * countsPerRoom;
  const changesRedis = members ? joinsPerSecond * (figures.presenceJoinRedisUs + figures.presenceLeaveRedisUs) : 2 * joinsPerSecond * figures.presenceCountChangeRedisUs + rooms * countsPerRoom * figures.redisPublishCpuUs;
  return {
    ...p,
    joinsPerSecond,
    eventDeliveriesPerSecond,
    connectsPerSecond,
    snapshotsPerSecond,
    redisUsPerSecond: changesRedis + snapshotRedis,
    taskCpuUsPerSecond: eventDeliveriesPerSecond * figures.presenceEventCpuUs + snapshotCpu + churnConnectsCpu,
    bytesPerSecond: members ? eventDeliveriesPerSecond * PRESENCE_EVENT_BYTES + snapshotsPerSecond * r * figures.presenceSnapshotBytesPerMember : eventDeliveriesPerSecond * PRESENCE_COUNT_BYTES + snapshotsPerSecond * 60,
  };
}

/**
 * The share of one shard's engine (its one command thread: ElastiCache's `EngineCPUUtilization`) the planner lets
 * publishes fill. Half, so a shard keeps room for replays, connects and the WebSocket registry, and so the cluster can
 * still be resharded online (AWS asks for engine CPU under 80 % on multicore nodes, 50 % on single-core ones, while
 * slots move: docs/DESIGN.md "Redis Cluster").
 */
export const REDIS_ENGINE_TARGET = 0.5;

export interface RedisShards {
  /** Shards priced: the stage's `redis.shards`, or more when the publishes need more. */
  readonly shards: number;
  /** Shards the publish rate needs at {@link REDIS_ENGINE_TARGET} of each engine. */
  readonly shardsNeeded: number;
  /** Each shard's engine CPU (%) the publishes take at the shards priced. */
  readonly engineCpuPercent: number;
}

/**
 * Shards for `publishesPerSecond`: each publish is one script on its channel's shard (positions per channel), so with
 * channels spread over the slots each shard serves its share, at the measured Redis CPU per publish.
 */
export function redisShards(publishesPerSecond: number, stage: StageSettings, figures: Figures, otherUsPerSecond = 0): RedisShards {
  const cpuUsPerSecond = publishesPerSecond * figures.redisPublishCpuUs + otherUsPerSecond;
  const shardsNeeded = Math.max(1, Math.ceil(cpuUsPerSecond / (1e6 * REDIS_ENGINE_TARGET)));
  const shards = Math.max(stage.redisShards, shardsNeeded);
  return { shards, shardsNeeded, engineCpuPercent: cpuUsPerSecond / shards / 1e4 };
}

/** Cost of `count` units priced per million in tiers (each tier's `upTo` is cumulative units). */
export function tieredPerMillion(count: number, t: Tiered): number {
  return tiered(count, t, 1e6);
}

/** Cost of `count` units priced per `per` units in tiers (each tier's `upTo` is cumulative units). */
function tiered(count: number, t: Tiered, per: number): number {
  let left = count;
  let prev = 0;
  let total = 0;
  for (const tier of t.tiers) {
    const cap = tier.upTo === undefined ? Infinity : tier.upTo - prev;
    const n = Math.min(left, cap);
    total += (n / per) * tier.price;
    left -= n;
    if (tier.upTo !== undefined) prev = tier.upTo;
    if (left <= 0) break;
  }
  return total;
}

/** Messages API Gateway bills for one message of `bytes` (32 KB increments). */
export function meteredMessages(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / PRICES.apiGatewayWebSocketMessages.meteredBytes));
}

/** Monthly egress cost of `gb` to the internet (first 100 GB free, then tiers). */
export function egressCost(gb: number): number {
  const p = PRICES.dataTransferOut;
  let left = Math.max(0, gb - p.freeGb);
  let prev = 0;
  let total = 0;
  for (const tier of p.tiers as { upToGb?: number; price: number }[]) {
    const cap = tier.upToGb === undefined ? Infinity : tier.upToGb - prev;
    const n = Math.min(left, cap);
    total += n * tier.price;
    left -= n;
    if (tier.upToGb !== undefined) prev = tier.upToGb;
    if (left <= 0) break;
  }
  return total;
}

export interface LcuInput {
  readonly newConnectionsPerSecond: number;
  readonly activeConnections: number;
  readonly processedGbPerHour: number;
  readonly ruleEvaluationsPerSecond: number;
}

/** ALB capacity units: the largest of the four dimensions (at least the hourly charge's worth of nothing). */
export function lcus(x: LcuInput): { lcu: number; dimension: keyof LcuInput } {
  const d = PRICES.albLcuDimensions;
  const dims: [keyof LcuInput, number][] = [
    ['newConnectionsPerSecond', x.newConnectionsPerSecond / d.newConnectionsPerSecond],
    ['activeConnections', x.activeConnections / d.activeConnections],
    ['processedGbPerHour', x.processedGbPerHour / d.processedGbPerHour],
    ['ruleEvaluationsPerSecond', x.ruleEvaluationsPerSecond / d.ruleEvaluationsPerSecond],
  ];
  const [dimension, lcu] = dims.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { lcu, dimension };
}

/** A unit price as written on the price page: up to 5 decimals, trailing zeros dropped. */
const money = (n: number) => `$${Number(n.toFixed(5))}`;
/** A count as the planner prints it (1.23 M, 4.5 k, 12.34). */
export const fmt = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : `${Math.round(n * 100) / 100}`);

function redisNodeHour(stage: StageSettings, nodeType: string): number {
  const nodes = PRICES.elastiCacheNodeHour.nodes as Record<string, { price: number }>;
  const node = nodes[nodeType];
  if (!node) throw new Error(`No price for ElastiCache node type ${nodeType}; known: ${Object.keys(nodes).join(', ')}`);
  return node.price * (stage.redisEngine === 'redis' ? PRICES.elastiCacheNodeHour.redisOssFactor : 1);
}

/** Items every deployment of the blueprint pays whatever the transport carries: network, Redis, secrets, alarms. */
function sharedItems(stage: StageSettings, redisNodeType: string, opts: { alb: boolean }, shards = stage.redisShards): LineItem[] {
  const items: LineItem[] = [];
  items.push({ item: 'NAT gateways', monthly: stage.natGateways * PRICES.natGatewayHour.price * HOURS, basis: `${stage.natGateways} × ${money(PRICES.natGatewayHour.price)}/h` });
  const ips = stage.natGateways + (opts.alb ? stage.maxAzs : 0);
  items.push({ item: 'public IPv4 addresses', monthly: ips * PRICES.publicIpv4Hour.price * HOURS, basis: `${ips} (${stage.natGateways} NAT${opts.alb ? `, ${stage.maxAzs} ALB` : ''}) × ${money(PRICES.publicIpv4Hour.price)}/h` });
  const nodeHour = redisNodeHour(stage, redisNodeType);
  const perShard = `${stage.redisNodes} node(s) × $${nodeHour.toFixed(4)}/h`;
  items.push({ item: `ElastiCache ${stage.redisEngine} ${redisNodeType}`, monthly: shards * stage.redisNodes * nodeHour * HOURS, basis: shards === 1 ? perShard : `${shards} shards × ${perShard}` });
  items.push({ item: 'Secrets Manager', monthly: 2 * PRICES.secretsManagerSecretMonth.price, basis: '2 secrets (Redis AUTH, session)' });
  items.push({ item: 'CloudWatch alarms, dashboard', monthly: stage.alarms * PRICES.cloudWatchAlarmMonth.price + PRICES.cloudWatchDashboardMonth.price, basis: `${stage.alarms} alarms, 1 dashboard` });
  items.push(metricsItem(stage, opts));
  if (stage.canary) items.push(canaryItem(stage, stage.canary));
  return items;
}

/** The tasks' EMF metrics (service/metrics.ts: one document a minute, dimension `service` only, so one series per name). */
export const TASK_METRICS = 8;
/** The canary's EMF metrics (lambda/handlers/canary.ts): nine per transport, seven over all of them (`Transport=all`). */
export const CANARY_METRICS_PER_TRANSPORT = 9;
export const CANARY_METRICS_ALL = 7;

/**
 * Custom metrics the stack writes whatever the load (EMF lines are custom metrics, billed per name and dimension set):
 * the tasks' (where tasks run) and the canary's. Apps' client reports (`ClientReports` by namespace and transport,
 * nine per pair) come on top when the SDK's reporter is on; it is off by default and not priced here.
 */
function metricsItem(stage: StageSettings, opts: { alb: boolean }): LineItem {
  const task = opts.alb ? TASK_METRICS : 0;
  const canary = stage.canary ? stage.canary.transports * CANARY_METRICS_PER_TRANSPORT + CANARY_METRICS_ALL : 0;
  const parts = [task ? `${task} of the tasks` : '', canary ? `${canary} of the canary (${stage.canary!.transports} transports × ${CANARY_METRICS_PER_TRANSPORT} + ${CANARY_METRICS_ALL} over all)` : ''].filter(Boolean);
  return {
    item: 'CloudWatch custom metrics (EMF)',
    monthly: tiered(task + canary, PRICES.cloudWatchMetricMonth, 1),
    basis: `${task + canary} metrics${parts.length ? ` (${parts.join(', ')})` : ''} × ${money(PRICES.cloudWatchMetricMonth.tiers[0].price)}/month`,
  };
}

/**
 * Seconds of Lambda time the planner prices per canary run (lib/canary.ts, 256 MB). Not measured on AWS: a run connects
 * its transports at once, publishes its burst one call after another and ends when every transport has it; a run that
 * misses an event waits up to 10 s more, and the function's timeout (50 s) bounds it.
 */
export const CANARY_PRICED_SECONDS = 3;
const CANARY_MEMORY_MIB = 256;

/**
 * The delivery canary (lib/canary.ts), on when `canary.enabled`: EventBridge Scheduler runs it every `intervalMinutes`
 * (inside Scheduler's free invocations, as for the presence sweeper), and each run takes a ticket per transport, publishes
 * its burst through `POST /publish` and, with the API Gateway WebSocket, holds one connection for about a minute and
 * receives the burst on it. Its custom metrics are in the metrics item.
 */
function canaryItem(stage: StageSettings, c: CanarySettings): LineItem {
  const runs = MINUTES / c.intervalMinutes;
  const tickets = runs * c.transports;
  const publishes = runs * c.burst;
  const calls = tickets + publishes;
  const gbs = runs * CANARY_PRICED_SECONDS * (CANARY_MEMORY_MIB / 1024) + (tickets * 0.01 + publishes * 0.02) * (stage.lambdaMemoryMiB / 1024);
  // The subscribe frame and its answer, then the burst.
  const wsMessages = c.apiGateway ? runs * (c.burst + 2) : 0;
  const wsMinutes = c.apiGateway ? runs : 0;
  const monthly =
    ((runs + calls) / 1e6) * PRICES.lambdaRequests.price +
    gbs * PRICES.lambdaArmGbSecond.price +
    tieredPerMillion(calls, PRICES.httpApiRequests) +
    tieredPerMillion(wsMessages, PRICES.apiGatewayWebSocketMessages) +
    (wsMinutes / 1e6) * PRICES.apiGatewayWebSocketConnectionMinutes.price;
  return {
    item: 'delivery canary (Scheduler + Lambda + its calls)',
    monthly,
    basis:
      `${fmt(runs)} runs (every ${c.intervalMinutes} min) priced at ${CANARY_PRICED_SECONDS} s each at ${CANARY_MEMORY_MIB} MB; ` +
      `${fmt(tickets)} tickets and ${fmt(publishes)} publishes (${c.burst} a run) through the HTTP APIs` +
      (c.apiGateway ? `; ${fmt(wsMessages)} WebSocket messages and ${fmt(wsMinutes)} connection-minutes on API Gateway` : ''),
  };
}

/**
 * Ticket calls (`POST /tickets`: an HTTP API request and a Lambda invocation) per connection per
 * hour, by transport, as browsers and the client SDK make them.
 */
export const TICKETS_PER_CONNECTION_HOUR: Readonly<Record<'sse' | 'ws-tasks' | 'ws-apigw' | 'poll-tasks', { readonly perHour: number; readonly why: string }>> = {
  sse: { perHour: 1, why: 'one per page session: EventSource reconnects ride the reconnect cookie' },
  'ws-tasks': { perHour: 0.5, why: 'one per connection; the client SDK renews it before 2 h' },
  'ws-apigw': { perHour: 0.5, why: "one per connection; renewed before API Gateway's 2-hour cap" },
  'poll-tasks': { perHour: 1, why: 'one per poll session: later polls ride the reconnect cookie, not one per answer' },
};

/** The client SDK's WebSocket liveness defaults: a `ping` after PING_MS without hearing anything, and after IDLE_SEND_MS without sending. */
export const SDK_PING_MS = 20_000;
export const SDK_IDLE_SEND_MS = 540_000;

/** Liveness pings per connection per second on API Gateway: one per quiet PING_MS, at least one per IDLE_SEND_MS. */
export function apiGatewayPingsPerSecond(rate: number): number {
  return Math.max(1000 / SDK_PING_MS - rate, 1000 / SDK_IDLE_SEND_MS);
}

/** Tickets through the ticket HTTP API and its Lambda, at the transport's rate. */
function ticketItems(load: Load, stage: StageSettings, transport: keyof typeof TICKETS_PER_CONNECTION_HOUR): LineItem[] {
  const t = TICKETS_PER_CONNECTION_HOUR[transport];
  const tickets = load.connections * t.perHour * HOURS;
  if (tickets === 0) return [];
  const gbs = tickets * (stage.lambdaMemoryMiB / 1024) * 0.01;
  return [
    {
      item: 'ticket API (HTTP API + Lambda)',
      monthly: tieredPerMillion(tickets, PRICES.httpApiRequests) + (tickets / 1e6) * PRICES.lambdaRequests.price + gbs * PRICES.lambdaArmGbSecond.price,
      basis: `${fmt(tickets)} tickets (${t.perHour} per connection per hour: ${t.why}), 10 ms each at ${stage.lambdaMemoryMiB} MB`,
    },
  ];
}

/**
 * The API Gateway presence sweeper (lib/presence-sweeper.ts): EventBridge Scheduler runs it once a minute, whatever the load.
 * Its invocations are inside Scheduler's monthly free invocations (14 million; then $1.00 per million:
 * https://aws.amazon.com/eventbridge/pricing/, not re-read here), so only the Lambda is priced.
 */
function presenceSweeperItem(stage: StageSettings): LineItem {
  const runs = MINUTES;
  const gbs = runs * PRESENCE_SWEEP_PRICED_SECONDS * (stage.lambdaMemoryMiB / 1024);
  return {
    item: 'presence sweeper (Scheduler + Lambda)',
    monthly: (runs / 1e6) * PRICES.lambdaRequests.price + gbs * PRICES.lambdaArmGbSecond.price,
    basis: `${fmt(runs)} runs (one a minute, EventBridge Scheduler, inside its free invocations), priced at ${PRESENCE_SWEEP_PRICED_SECONDS} s each at ${stage.lambdaMemoryMiB} MB`,
  };
}

/** Publishes through POST /publish (HTTP API + Lambda, 20 ms each). */
function publishItems(publishesPerSecond: number, stage: StageSettings, postCost = 0): LineItem[] {
  const pubs = publishesPerSecond * SECONDS;
  if (pubs === 0) return [];
  const gbs = pubs * (stage.lambdaMemoryMiB / 1024) * 0.02;
  return [
    {
      item: 'publish API (HTTP API + Lambda)',
      monthly: tieredPerMillion(pubs, PRICES.httpApiRequests) + (pubs / 1e6) * PRICES.lambdaRequests.price + gbs * PRICES.lambdaArmGbSecond.price + postCost,
      basis: `${fmt(pubs)} publishes, 20 ms each at ${stage.lambdaMemoryMiB} MB`,
    },
  ];
}

interface TaskPlan {
  readonly tasks: number;
  readonly boundBy: 'connections' | 'cpu' | 'minTasks';
  readonly connectionsPerTask: number;
  readonly cpuPerTaskUsPerSecond: number;
  readonly notes: string[];
}

/**
 * Fargate tasks for `connections` held and `cpuUsPerSecond` of work, within the stage's task size and scaling targets.
 * A task holds the fewest of: what 80 % of its memory holds at `kbPerConnection` (measured per transport by `npm run
 * bench -- --capacity`) after the process's base, and the scaling policy's target.
 */
export function planTasks(connections: number, cpuUsPerSecond: number, stage: StageSettings, figures: Figures, kbPerConnection = figures.sseIdleKbPerConnection): TaskPlan {
  const vcpu = stage.taskCpu / 1024;
  const cpuPerTask = vcpu * 1e6 * (stage.targetCpuPercent / 100);
  const memoryKb = stage.taskMemoryMiB * 1024 * 0.8 - figures.processBaseMb * 1024;
  const byMemory = Math.max(0, Math.floor(memoryKb / kbPerConnection));
  const connectionsPerTask = Math.max(1, Math.min(byMemory, stage.targetConnectionsPerTask));
  const forConnections = Math.ceil(connections / connectionsPerTask);
  const forCpu = Math.ceil(cpuUsPerSecond / cpuPerTask);
  const tasks = Math.max(stage.minTasks, forConnections, forCpu);
  const boundBy = tasks === stage.minTasks && stage.minTasks >= Math.max(forConnections, forCpu) ? 'minTasks' : forCpu > forConnections ? 'cpu' : 'connections';
  const notes: string[] = [];
  if (tasks > stage.maxTasks) notes.push(`needs ${tasks} tasks, above the stage's sse.maxTasks (${stage.maxTasks}): raise it, or use bigger tasks (sse.cpu/sse.memoryMiB)`);
  return { tasks, boundBy, connectionsPerTask, cpuPerTaskUsPerSecond: cpuPerTask, notes };
}

function fargateItem(plan: TaskPlan, stage: StageSettings): LineItem {
  const hourly = (stage.taskCpu / 1024) * PRICES.fargateArmVcpuHour.price + (stage.taskMemoryMiB / 1024) * PRICES.fargateArmGbHour.price;
  return {
    item: 'Fargate tasks (ARM64)',
    monthly: plan.tasks * hourly * HOURS,
    basis: `${plan.tasks} × ${stage.taskCpu / 1024} vCPU/${stage.taskMemoryMiB / 1024} GB at $${hourly.toFixed(5)}/h (${plan.connectionsPerTask ? `bound by ${plan.boundBy}; ${fmt(plan.connectionsPerTask)} connections per task` : 'sse.minTasks'})`,
  };
}

function albItem(x: LcuInput): LineItem {
  const { lcu, dimension } = lcus(x);
  return {
    item: 'Application Load Balancer',
    monthly: (PRICES.albHour.price + lcu * PRICES.albLcuHour.price) * HOURS,
    basis: `$${PRICES.albHour.price}/h + ${lcu.toFixed(2)} LCU (by ${dimension}) × $${PRICES.albLcuHour.price}/h`,
  };
}

function total(items: readonly LineItem[]): number {
  return items.reduce((a, i) => a + i.monthly, 0);
}

/** Bytes one SSE frame adds around the envelope (`id:`, `event:`, `data:` lines). */
const SSE_FRAME_OVERHEAD = 40;
/** Bytes of HTTP request + response headers of one poll. */
const POLL_HTTP_OVERHEAD = 600;
/** WebSocket frame header (server to client, unmasked) for messages up to 64 KB. */
const WS_FRAME_OVERHEAD = 4;
/** API Gateway fan-out (lib/websocket-fanout.ts): audiences from this size go through the queue, in this many shards, posted by workers of this size. */
const FANOUT_INLINE_MAX = DEFAULTS.webSocketFanout.inlineMax;
const FANOUT_SHARDS = DEFAULTS.webSocketFanout.shards;
const FANOUT_WORKER_MIB = 1024;

/**
 * Redis memory the load needs: history of every channel, tickets in flight, the WebSocket registry on API Gateway; the
 * node type is chosen for one shard's part of it (`shards` sharing the channels evenly).
 */
export function redisNeeds(load: Load, stage: StageSettings, historySize = 200, shards = 1): { nodeType: string; neededMiB: number; stageNodeEnough: boolean } {
  const channels = load.connections === 0 ? 0 : Math.max(1, Math.ceil(load.connections / load.fanout));
  const historyBytes = channels * (5 * 1024 + historySize * (load.size + 60));
  const registryBytes = load.connections * 1200;
  const presenceBytes = load.presence ? load.connections * PRESENCE_REDIS_BYTES_PER_MEMBER : 0;
  const neededMiB = (historyBytes + registryBytes + presenceBytes) / (1024 * 1024) + 5;
  const nodes = PRICES.elastiCacheNodeHour.nodes as Record<string, { price: number; memoryGiB: number }>;
  // ElastiCache reserves 25 % of a node's memory by default (reserved-memory-percent).
  const fits = (type: string) => nodes[type].memoryGiB * 1024 * 0.75 >= neededMiB / shards;
  const byPrice = Object.keys(nodes).sort((a, b) => nodes[a].price - nodes[b].price);
  const nodeType = byPrice.find(fits) ?? byPrice[byPrice.length - 1];
  return { nodeType, neededMiB, stageNodeEnough: nodes[stage.redisNodeType] ? fits(stage.redisNodeType) : false };
}

/** The whole estimate: every transport for one load on one stage. */
export function estimate(load: Load, stage: StageSettings, figures: Figures = committedFigures()): Estimate {
  const n = load.connections;
  const deliveriesPerSecond = n * load.rate;
  const deliveries = deliveriesPerSecond * SECONDS;
  const publishesPerSecond = n === 0 ? 0 : deliveriesPerSecond / load.fanout;
  const presence = presenceEstimate(load, stage, figures);
  const shards = redisShards(publishesPerSecond, stage, figures, presence?.redisUsPerSecond);
  const redis = { ...redisNeeds(load, stage, 200, shards.shards), ...shards };
  const redisType = redis.stageNodeEnough ? stage.redisNodeType : redis.nodeType;
  const redisNote = redis.stageNodeEnough ? [] : [`Redis needs ~${Math.ceil(redis.neededMiB)} MiB${shards.shards > 1 ? ` over ${shards.shards} shards` : ''}: priced as ${redis.nodeType} instead of the stage's ${stage.redisNodeType}`];
  if (shards.shards > stage.redisShards) {
    redisNote.push(
      `${fmt(publishesPerSecond)} publishes/s at ${figures.redisPublishCpuUs} µs of Redis engine CPU each${presence ? ` and presence's ${fmt(presence.redisUsPerSecond / 1e6)} s of engine time per second` : ''} need ${shards.shards} shards (each engine at most ${REDIS_ENGINE_TARGET * 100} % busy): priced as ${shards.shards} shards instead of the stage's redis.shards (${stage.redisShards})`,
    );
  }
  const presenceNote = presence
    ? [`presence (${presence.mode}, rooms of ${presence.roomSize.toLocaleString('en-US')}): ${fmt(presence.eventDeliveriesPerSecond)} events delivered/s and ${fmt(presence.snapshotsPerSecond)} snapshots/s priced in the tasks' CPU and bytes`]
    : [];
  const out: TransportEstimate[] = [];

  // A transport held by the Fargate tasks behind the ALB: task CPU for deliveries and connects, ALB connections and bytes.
  const onTasks = (
    transport: 'sse' | 'ws-tasks',
    t: { connectsPerSecond: number; cpuFactor: number; frameOverhead: number; heartbeatBytes: number; kbPerConnection: number; heldCpuUs: number; notes: readonly string[] },
  ): TransportEstimate => {
    // Deliveries, connects, the heartbeats of every held connection, and presence's deliveries, snapshots and churn.
    const cpu = deliveriesPerSecond * figures.sseDeliveryCpuUs * t.cpuFactor + t.connectsPerSecond * figures.sseConnectCpuUs + n * t.heldCpuUs + (presence?.taskCpuUsPerSecond ?? 0) * t.cpuFactor;
    const plan = planTasks(n, cpu, stage, figures, t.kbPerConnection);
    const bytesPerSecond = deliveriesPerSecond * (load.size + t.frameOverhead) + (n * t.heartbeatBytes) / (stage.heartbeatMs / 1000) + (presence?.bytesPerSecond ?? 0);
    const items = [
      fargateItem(plan, stage),
      albItem({ newConnectionsPerSecond: t.connectsPerSecond, activeConnections: n, processedGbPerHour: (bytesPerSecond * 3600) / 1e9, ruleEvaluationsPerSecond: 0 }),
      ...sharedItems(stage, redisType, { alb: true }, shards.shards),
      ...ticketItems(load, stage, transport),
      ...publishItems(publishesPerSecond, stage),
    ];
    return { transport, name: DELIVERY_OPTION_NAMES[transport], total: total(items), items, tasks: plan.tasks, tasksBoundBy: plan.boundBy, notes: [...t.notes, ...plan.notes, ...redisNote, ...presenceNote] };
  };

  // SSE on the tasks: one frame per delivery, a 6-byte heartbeat, reconnects when the cookie-bound stream recycles.
  out.push(
    onTasks('sse', {
      connectsPerSecond: n / (stage.sessionTtlSeconds * 0.75),
      cpuFactor: 1,
      frameOverhead: SSE_FRAME_OVERHEAD,
      heartbeatBytes: 6,
      kbPerConnection: figures.sseIdleKbPerConnection,
      heldCpuUs: figures.sseHeldCpuUsPerConnectionSecond,
      notes: [],
    }),
  );

  // WebSocket on the tasks (`/live`): like SSE, at the measured ratio of its CPU per delivery to SSE's; a ping and its
  // pong per heartbeat; a reconnect about every 2 hours (the client SDK renews a connection before it is 2 hours old).
  out.push(
    onTasks('ws-tasks', {
      connectsPerSecond: n / (2 * 3600),
      cpuFactor: figures.wsTasksCpuFactor,
      frameOverhead: WS_FRAME_OVERHEAD,
      heartbeatBytes: 2 * 6,
      kbPerConnection: figures.liveIdleKbPerConnection,
      heldCpuUs: figures.liveHeldCpuUsPerConnectionSecond,
      notes: [`CPU per delivery ${figures.wsTasksCpuFactor}× SSE's (cost/figures.json)`],
    }),
  );

  // API Gateway WebSocket: every delivery is a billed message (32 KB steps) posted by a fan-out Lambda; connection-minutes;
  // the client SDK's liveness pings (each a message each way and a ws-message invocation): one per 20 s without an event, at least one per 9 min.
  {
    const pings = n * apiGatewayPingsPerSecond(load.rate) * SECONDS;
    // Presence: each event delivered is a message posted by the fan-out; each snapshot a `presence` action and its answer.
    const presenceDeliveries = (presence?.eventDeliveriesPerSecond ?? 0) * SECONDS;
    const presenceSnapshots = presence ? presence.snapshotsPerSecond * SECONDS * (1 + meteredMessages(Math.min(presence.roomSize, n) * figures.presenceSnapshotBytesPerMember)) : 0;
    const messages = deliveries * meteredMessages(load.size) + pings * 2 + presenceDeliveries + presenceSnapshots;
    const connMinutes = n * MINUTES;
    const fanoutGbs = (deliveries + presenceDeliveries) * (figures.apiGatewayPostCpuMs / 1000) * (FANOUT_WORKER_MIB / 1024);
    const queueRequests = load.fanout >= FANOUT_INLINE_MAX ? publishesPerSecond * SECONDS * FANOUT_SHARDS : 0;
    const reconnects = n * (HOURS / 2);
    const connectInvocations = reconnects * 3;
    const items = [
      { item: 'API Gateway WebSocket messages', monthly: tieredPerMillion(messages, PRICES.apiGatewayWebSocketMessages), basis: `${fmt(messages)} messages (${fmt(deliveries)} deliveries × ${meteredMessages(load.size)}, ${fmt(pings)} pings each way${presence ? `, ${fmt(presenceDeliveries + presenceSnapshots)} of presence` : ''})` },
      {
        item: 'Lambda ws-message (pings)',
        monthly: (pings / 1e6) * PRICES.lambdaRequests.price + pings * 0.01 * (stage.lambdaMemoryMiB / 1024) * PRICES.lambdaArmGbSecond.price,
        basis: `${fmt(pings)} pings (the client SDK pings after 20 s without an event, at least every 9 min), 10 ms each`,
      },
      { item: 'API Gateway connection-minutes', monthly: (connMinutes / 1e6) * PRICES.apiGatewayWebSocketConnectionMinutes.price, basis: `${fmt(connMinutes)} connection-minutes` },
      {
        item: 'Lambda fan-out (PostToConnection)',
        monthly: fanoutGbs * PRICES.lambdaArmGbSecond.price,
        basis: `${fmt(deliveries)} posts × ${figures.apiGatewayPostCpuMs} ms of worker time at ${FANOUT_WORKER_MIB} MB`,
      },
      {
        item: 'SQS FIFO fan-out queue',
        monthly: ((queueRequests * 2) / 1e6) * PRICES.sqsFifoRequests.price,
        basis: `${fmt(queueRequests)} work items (one per event and shard when an audience passes ${FANOUT_INLINE_MAX}), sent and received`,
      },
      {
        item: 'Lambda $connect/authorizer/$disconnect',
        monthly: (connectInvocations / 1e6) * PRICES.lambdaRequests.price + connectInvocations * 0.02 * (stage.lambdaMemoryMiB / 1024) * PRICES.lambdaArmGbSecond.price,
        basis: `a reconnect every 2 h (API Gateway's limit): ${fmt(connectInvocations)} invocations`,
      },
      ...(presence ? [presenceSweeperItem(stage)] : []),
      ...sharedItems(stage, redisType, { alb: false }, shards.shards),
      ...ticketItems(load, stage, 'ws-apigw'),
      ...publishItems(publishesPerSecond, stage),
    ];
    const gatewayPresence = presence ? [`${presenceNote[0]}; on API Gateway each presence event is a message and a post`] : [];
    out.push({ transport: 'ws-apigw', name: DELIVERY_OPTION_NAMES['ws-apigw'], total: total(items), items, notes: [...redisNote, ...gatewayPresence] });
  }

  // Long poll on the tasks: one request per delivery (a poll answers when an event arrives), or one per POLL_TIMEOUT when quiet.
  {
    // Presence events answer polls like any event; snapshots and churn cost the tasks as on SSE.
    const presencePerMember = presence ? presence.eventDeliveriesPerSecond / n : 0;
    const requestsPerSecond = n * Math.max(load.rate + presencePerMember, 1 / 25);
    const cpu = requestsPerSecond * figures.pollRequestCpuUs + (presence ? presence.taskCpuUsPerSecond - presence.eventDeliveriesPerSecond * figures.presenceEventCpuUs : 0);
    const plan = planTasks(n, cpu, stage, figures);
    const bytesPerSecond = requestsPerSecond * (POLL_HTTP_OVERHEAD + load.size * Math.min(1, load.rate * 25));
    const items = [
      fargateItem(plan, stage),
      albItem({ newConnectionsPerSecond: n / 60, activeConnections: n, processedGbPerHour: (bytesPerSecond * 3600) / 1e9, ruleEvaluationsPerSecond: 0 }),
      ...sharedItems(stage, redisType, { alb: true }, shards.shards),
      ...ticketItems(load, stage, 'poll-tasks'),
      ...publishItems(publishesPerSecond, stage),
    ];
    out.push({ transport: 'poll-tasks', name: DELIVERY_OPTION_NAMES['poll-tasks'], total: total(items), items, tasks: plan.tasks, tasksBoundBy: plan.boundBy, notes: [...plan.notes, ...redisNote, ...presenceNote] });
  }

  // Short poll through the HTTP API and a Lambda: one request per connection per message interval (at least every 25 s).
  {
    const requests = n * Math.max(load.rate, 1 / 25) * SECONDS;
    const gbs = requests * 0.01 * (stage.lambdaMemoryMiB / 1024);
    const items = [
      { item: 'HTTP API requests', monthly: tieredPerMillion(requests, PRICES.httpApiRequests), basis: `${fmt(requests)} polls` },
      { item: 'Lambda (poll handler)', monthly: (requests / 1e6) * PRICES.lambdaRequests.price + gbs * PRICES.lambdaArmGbSecond.price, basis: `${fmt(requests)} invocations × 10 ms at ${stage.lambdaMemoryMiB} MB` },
      ...sharedItems(stage, redisType, { alb: false }, shards.shards),
      ...publishItems(publishesPerSecond, stage),
    ];
    out.push({ transport: 'poll-lambda', name: DELIVERY_OPTION_NAMES['poll-lambda'], total: total(items), items, notes: ['a reference: the blueprint does not deploy it (polls go to the tasks)', ...redisNote, ...(presence ? ['presence not priced here (a reference without it)'] : [])] });
  }

  // AppSync Events: each publish and each delivery is an operation, plus connection-minutes; nothing of ours to run.
  {
    const ops = deliveries + publishesPerSecond * SECONDS;
    const connMinutes = n * MINUTES;
    const items = [
      { item: 'AppSync Events operations', monthly: (ops / 1e6) * PRICES.appSyncEventsOperations.price, basis: `${fmt(ops)} operations (deliveries + publishes)` },
      { item: 'AppSync Events connection-minutes', monthly: (connMinutes / 1e6) * PRICES.appSyncEventsConnectionMinutes.price, basis: `${fmt(connMinutes)} connection-minutes` },
    ];
    out.push({ transport: 'appsync', name: DELIVERY_OPTION_NAMES.appsync, total: total(items), items, notes: ['a managed reference: no Redis, tasks or NAT of ours', ...(presence ? ['AppSync Events has no presence: not priced'] : [])] });
  }

  const gb = (deliveries * load.size + (presence?.bytesPerSecond ?? 0) * SECONDS) / 1e9;
  return {
    load,
    stage,
    region: pricesFile.region,
    pricesChecked: pricesFile.checked,
    transports: out,
    egress: { item: 'data transfer out (every transport)', monthly: egressCost(gb), basis: `${gb.toFixed(0)} GB of messages to the internet, first 100 GB free` },
    redis,
    retainedPerUser: retainedPerUser(stage),
    ...(presence ? { presence } : {}),
  };
}

/**
 * The audience size below which `a` (API Gateway WebSockets) costs less than `b` (SSE on the tasks), for one broadcast
 * channel at this rate and size, found by bisection; undefined when one is cheaper at every size up to 10 M.
 */
export function crossover(load: { readonly rate: number; readonly size: number }, stage: StageSettings, a: DeliveryOption = 'ws-apigw', b: DeliveryOption = 'sse', figures = committedFigures()): number | undefined {
  const cost = (n: number, t: DeliveryOption) => estimate({ ...load, connections: n, fanout: Math.max(1, n) }, stage, figures).transports.find((x) => x.transport === t)!.total;
  let lo = 1;
  let hi = 10_000_000;
  if (cost(lo, a) >= cost(lo, b)) return undefined;
  if (cost(hi, a) < cost(hi, b)) return undefined;
  while (hi - lo > Math.max(1, lo * 0.005)) {
    const mid = Math.floor((lo + hi) / 2);
    if (cost(mid, a) < cost(mid, b)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The idle bill of a deployed stage (no connections, no traffic), as docs/DEPLOY.md shows it. */
export function idleCost(stage: StageSettings): LineItem[] {
  const plan: TaskPlan = { tasks: stage.minTasks, boundBy: 'minTasks', connectionsPerTask: 0, cpuPerTaskUsPerSecond: 0, notes: [] };
  const alb: LineItem = { item: 'Application Load Balancer', monthly: PRICES.albHour.price * HOURS, basis: `$${PRICES.albHour.price}/h (LCUs near zero)` };
  return [fargateItem(plan, stage), alb, ...sharedItems(stage, stage.redisNodeType, { alb: true })];
}
