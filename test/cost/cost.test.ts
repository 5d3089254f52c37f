import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICE_SETTINGS } from '../../contract/settings';
import { canaryMetrics } from '../../lambda/handlers/canary';
import { apiGatewayPingsPerSecond, CANARY_METRICS_ALL, CANARY_METRICS_PER_TRANSPORT, committedFigures, egressCost, estimate, PRESENCE_COUNT_EVENTS_PER_SECOND, PRESENCE_SWEEP_PRICED_SECONDS, lcus, redisShards, REDIS_ENGINE_TARGET, meteredMessages, PRICES, retainedPerUser, SECONDS, MINUTES, HOURS, TICKETS_PER_CONNECTION_HOUR, tieredPerMillion, type Figures, type Load, type DeliveryOption } from '../../cost/model';
import { loadStage, STAGE_DEFAULTS } from '../../cost/stage';
import { idleTable, readmeTable } from '../../cost/tables';
import { run } from '../../scripts/cost';

/** Fixed figures, so these cases do not move when a benchmark rewrites cost/figures.json. */
const FIGURES: Figures = {
  sseDeliveryCpuUs: 5,
  sseIdleKbPerConnection: 12,
  liveIdleKbPerConnection: 12,
  sseHeldCpuUsPerConnectionSecond: 0,
  liveHeldCpuUsPerConnectionSecond: 0,
  processBaseMb: 70,
  sseConnectCpuUs: 350,
  apiGatewayPostCpuMs: 0.5,
  pollRequestCpuUs: 250,
  wsTasksCpuFactor: 1.1,
  redisPublishCpuUs: 20,
  presenceJoinRedisUs: 100,
  presenceLeaveRedisUs: 80,
  presenceCountChangeRedisUs: 40,
  presenceEventCpuUs: 2,
  presenceSnapshotRedisUsPerMember: 0.5,
  presenceSnapshotCpuUsPerMember: 1,
  presenceSnapshotBytesPerMember: 40,
  presenceCountSnapshotRedisUs: 15,
  presenceCountSnapshotCpuUs: 60,
};
const dev = loadStage('dev');
const load = (connections: number, rate: number, size = 1024): Load => ({ connections, rate, size, fanout: Math.max(1, connections) });
const item = (t: DeliveryOption, name: string, l: Load, stage = dev) => {
  const e = estimate(l, stage, FIGURES).transports.find((x) => x.transport === t)!;
  const i = e.items.find((x) => x.item.startsWith(name));
  if (!i) throw new Error(`no item ${name} in ${t}: ${e.items.map((x) => x.item).join(', ')}`);
  return i.monthly;
};
const total = (t: DeliveryOption, l: Load, stage = dev) => estimate(l, stage, FIGURES).transports.find((x) => x.transport === t)!.total;

describe('unit boundaries', () => {
  test('API Gateway meters WebSocket messages in 32 KB steps', () => {
    expect(meteredMessages(1)).toBe(1);
    expect(meteredMessages(32768)).toBe(1);
    expect(meteredMessages(32769)).toBe(2);
    expect(meteredMessages(131072)).toBe(4);
  });

  test('tiers: HTTP API $1.00/M up to 300 M then $0.90/M; WebSocket messages $1.00/M up to 1 B then $0.80/M', () => {
    expect(tieredPerMillion(300e6, PRICES.httpApiRequests)).toBeCloseTo(300, 6);
    expect(tieredPerMillion(301e6, PRICES.httpApiRequests)).toBeCloseTo(300.9, 6);
    expect(tieredPerMillion(2e9, PRICES.apiGatewayWebSocketMessages)).toBeCloseTo(1000 + 800, 6);
  });

  test('egress: the first 100 GB free, then $0.09/GB', () => {
    expect(egressCost(100)).toBe(0);
    expect(egressCost(110)).toBeCloseTo(0.9, 6);
    expect(egressCost(100 + 10240)).toBeCloseTo(10240 * 0.09, 6);
    expect(egressCost(100 + 10240 + 100)).toBeCloseTo(10240 * 0.09 + 100 * 0.085, 6);
  });

  test('ALB LCU: the largest of its four dimensions', () => {
    expect(lcus({ newConnectionsPerSecond: 50, activeConnections: 0, processedGbPerHour: 0, ruleEvaluationsPerSecond: 0 })).toEqual({ lcu: 2, dimension: 'newConnectionsPerSecond' });
    expect(lcus({ newConnectionsPerSecond: 1, activeConnections: 9000, processedGbPerHour: 0, ruleEvaluationsPerSecond: 0 })).toEqual({ lcu: 3, dimension: 'activeConnections' });
    expect(lcus({ newConnectionsPerSecond: 1, activeConnections: 9000, processedGbPerHour: 4, ruleEvaluationsPerSecond: 0 })).toEqual({ lcu: 4, dimension: 'processedGbPerHour' });
    expect(lcus({ newConnectionsPerSecond: 0, activeConnections: 0, processedGbPerHour: 0, ruleEvaluationsPerSecond: 5000 })).toEqual({ lcu: 5, dimension: 'ruleEvaluationsPerSecond' });
  });
});

describe('10,000 connections, each receiving one 1 KB message per second (the scenarios of issue 7/8)', () => {
  const l = load(10_000, 1);
  const deliveries = 10_000 * SECONDS; // 26.28 B

  test('API Gateway WebSocket: messages (first 1 B at $1, the rest at $0.80, pings every 9 min both ways) and connection-minutes', () => {
    const messages = deliveries + 10_000 * (MINUTES / 9) * 2;
    expect(item('ws-apigw', 'API Gateway WebSocket messages', l)).toBeCloseTo(1000 + ((messages - 1e9) / 1e6) * 0.8, 4);
    expect(item('ws-apigw', 'API Gateway connection-minutes', l)).toBeCloseTo(((10_000 * MINUTES) / 1e6) * 0.25, 6);
    // About $22,000 a month, almost all message fees.
    expect(total('ws-apigw', l)).toBeGreaterThan(21_000);
    expect(total('ws-apigw', l)).toBeLessThan(22_500);
  });

  test('AppSync Events: every delivery and publish an operation at $1/M, plus connection-minutes at $0.08/M', () => {
    const ops = deliveries + 1 * SECONDS;
    expect(total('appsync', l)).toBeCloseTo((ops / 1e6) * 1 + ((10_000 * MINUTES) / 1e6) * 0.08, 4);
  });

  test('short poll through the HTTP API and Lambda: one request per connection per second', () => {
    expect(item('poll-lambda', 'HTTP API requests', l)).toBeCloseTo(300 + ((deliveries - 300e6) / 1e6) * 0.9, 4);
    expect(item('poll-lambda', 'Lambda (poll handler)', l)).toBeCloseTo((deliveries / 1e6) * 0.2 + deliveries * 0.01 * 0.25 * 0.0000133334, 4);
    expect(total('poll-lambda', l)).toBeGreaterThan(29_000);
  });

  test('SSE on the tasks: the CPU of 10k deliveries/s fits the stage minimum; the ALB is billed by processed bytes', () => {
    const e = estimate(l, dev, FIGURES).transports.find((x) => x.transport === 'sse')!;
    // CPU: 10,000 × 5 µs + reconnects (10,000 / 675 s × 350 µs) = 55.2 ms/s, under one 0.25 vCPU task at 60 % (150 ms/s).
    expect(e.tasks).toBe(1);
    // Processed: 10,000 × 1,064 B/s + heartbeats, per hour, in GB: ≈ 38.3 LCU.
    const gbPerHour = ((10_000 * (1024 + 40) + (10_000 * 6) / 15) * 3600) / 1e9;
    expect(item('sse', 'Application Load Balancer', l)).toBeCloseTo((0.0225 + gbPerHour * 0.008) * HOURS, 4);
    expect(item('sse', 'Fargate tasks', l)).toBeCloseTo((0.25 * 0.03238 + 0.5 * 0.00356) * HOURS, 6);
    // About $355 in the round figures; two orders of magnitude under API Gateway.
    expect(e.total).toBeGreaterThan(250);
    expect(e.total).toBeLessThan(400);
  });

  test('long poll on the tasks: one request per delivery, the tasks bound by CPU', () => {
    const e = estimate(l, dev, FIGURES).transports.find((x) => x.transport === 'poll-tasks')!;
    // 10,000 requests/s × 250 µs = 2.5 s of CPU per second over 0.15 vCPU of each task: 17 tasks.
    expect(e.tasks).toBe(17);
    expect(e.tasksBoundBy).toBe('cpu');
    expect(e.notes.join(' ')).toMatch(/above the stage's sse.maxTasks \(4\)/);
    expect(e.total).toBeGreaterThan(400);
    expect(e.total).toBeLessThan(700);
  });
});

test('a small, bursty audience: API Gateway WebSockets cost less than SSE tasks (no ALB, no always-on task)', () => {
  const l = load(100, 0.01);
  expect(total('ws-apigw', l)).toBeLessThan(total('sse', l));
  // 100 × 0.01/s × 2.628 M s = 2.628 M deliveries + the SDK's liveness pings each way: an event every 100 s leaves
  // four quiet 20 s stretches, a ping each (0.05 - 0.01 per second); the rest is NAT, Redis and the ticket API.
  expect(item('ws-apigw', 'API Gateway WebSocket messages', l)).toBeCloseTo(((100 * 0.01 * SECONDS + 100 * (0.05 - 0.01) * SECONDS * 2) / 1e6) * 1, 6);
});

describe('ticket calls per transport (each a POST /tickets: HTTP API request + Lambda invocation)', () => {
  const ticketCost = (calls: number) => (calls / 1e6) * 1 + (calls / 1e6) * 0.2 + calls * 0.01 * 0.25 * 0.0000133334;
  test.each([
    ['sse', 1],
    ['ws-tasks', 0.5],
    ['ws-apigw', 0.5],
    ['poll-tasks', 1],
  ] as const)('%s: %f per connection per hour, whatever the message rate', (t, perHour) => {
    expect(TICKETS_PER_CONNECTION_HOUR[t].perHour).toBe(perHour);
    for (const rate of [0.01, 1, 10]) expect(item(t, 'ticket API', load(10_000, rate))).toBeCloseTo(ticketCost(10_000 * perHour * HOURS), 4);
  });

  test('long poll: one ticket per poll session (the reconnect cookie carries the later polls), not one per answer', () => {
    const l = load(10_000, 1);
    const perAnswer = 10_000 * 1 * SECONDS; // what one ticket per poll answer would have cost
    expect(item('poll-tasks', 'ticket API', l)).toBeLessThan(ticketCost(perAnswer) / 1000);
    const e = estimate(l, dev, FIGURES).transports.find((x) => x.transport === 'poll-tasks')!;
    expect(e.items.find((i) => i.item.startsWith('ticket API'))!.basis).toMatch(/1 per connection per hour: one per poll session/);
  });
});

test('API Gateway liveness pings follow the client SDK: none beyond one per 9 min while events come every 20 s or faster; one per quiet 20 s otherwise', () => {
  expect(apiGatewayPingsPerSecond(1)).toBeCloseTo(1 / 540, 9);
  expect(apiGatewayPingsPerSecond(0.05)).toBeCloseTo(1 / 540, 9);
  expect(apiGatewayPingsPerSecond(0)).toBeCloseTo(1 / 20, 9);
  // Each costs a message each way and a ws-message invocation.
  const idle = load(1000, 0);
  expect(item('ws-apigw', 'Lambda ws-message (pings)', idle)).toBeCloseTo(((1000 * SECONDS) / 20 / 1e6) * 0.2 + ((1000 * SECONDS) / 20) * 0.01 * 0.25 * 0.0000133334, 4);
});

test('task count bound by connections per task: 100,000 idle-ish connections on dev tasks need ten', () => {
  const e = estimate(load(100_000, 0.01), dev, FIGURES).transports.find((x) => x.transport === 'sse')!;
  expect(e.tasks).toBe(10);
  expect(e.tasksBoundBy).toBe('connections');
});

describe('connections per task from `npm run bench -- --capacity` (issue 27)', () => {
  // A task whose memory, not the scaling target, bounds it: 256 MiB, target 100,000.
  const small = { ...dev, taskMemoryMiB: 256, targetConnectionsPerTask: 100_000, maxTasks: 1000 };
  const measured: Figures = { ...FIGURES, sseIdleKbPerConnection: 5.4, liveIdleKbPerConnection: 9.6, sseHeldCpuUsPerConnectionSecond: 0.55, liveHeldCpuUsPerConnectionSecond: 1.7 };
  const plan = (t: DeliveryOption, l: Load, f = measured) => estimate(l, small, f).transports.find((x) => x.transport === t)!;

  test('a /live socket is sized by its own measured memory, an SSE stream by its own', () => {
    // (256 MiB × 0.8 − 70 MB) / KB per connection: 25,580 SSE streams or 14,384 /live sockets per task.
    expect(plan('sse', load(1_000_000, 0)).tasks).toBe(Math.ceil(1_000_000 / Math.floor((256 * 1024 * 0.8 - 70 * 1024) / 5.4)));
    expect(plan('ws-tasks', load(1_000_000, 0)).tasks).toBe(Math.ceil(1_000_000 / Math.floor((256 * 1024 * 0.8 - 70 * 1024) / 9.6)));
    expect(plan('ws-tasks', load(1_000_000, 0)).tasksBoundBy).toBe('connections');
  });

  test('held connections cost their heartbeats\' CPU even with no traffic', () => {
    // 1,000,000 /live sockets × 1.7 µs/s = 1.7 s of CPU per second: 12 tasks of 0.25 vCPU at 60 % (150 ms/s each).
    const big = { ...small, taskMemoryMiB: 8192 };
    const e = estimate(load(1_000_000, 0), big, measured).transports.find((x) => x.transport === 'ws-tasks')!;
    expect(e.tasks).toBe(Math.ceil((1_000_000 * 1.7 + (1_000_000 / 7200) * 350) / 150_000));
    expect(e.tasksBoundBy).toBe('cpu');
  });
});

test('--stage prod prices that stage: two NAT gateways, two t4g.small nodes, 0.5 vCPU tasks', () => {
  const prod = loadStage('prod');
  expect(prod).toMatchObject({ natGateways: 2, redisNodes: 2, redisNodeType: 'cache.t4g.small', taskCpu: 512, taskMemoryMiB: 1024, minTasks: 2, maxTasks: 20 });
  expect(item('sse', 'NAT gateways', load(10, 1), prod)).toBeCloseTo(2 * 0.045 * HOURS, 6);
  expect(item('sse', 'ElastiCache', load(10, 1), prod)).toBeCloseTo(2 * 0.0256 * HOURS, 6);
});

describe('Redis shards priced from publishes/s (issue 23, item 7)', () => {
  const nodeHour = (type: string) => (PRICES.elastiCacheNodeHour.nodes as Record<string, { price: number }>)[type].price;

  test('one broadcast channel needs one shard; a stage with redis.shards 3 pays for three', () => {
    const e = estimate(load(100_000, 1), dev, FIGURES);
    expect(e.redis).toMatchObject({ shards: 1, shardsNeeded: 1 });
    expect(item('sse', 'ElastiCache', load(100_000, 1))).toBeCloseTo(dev.redisNodes * nodeHour(dev.redisNodeType) * HOURS, 6);
    const three = { ...dev, redisShards: 3 };
    expect(estimate(load(100_000, 1), three, FIGURES).redis).toMatchObject({ shards: 3, shardsNeeded: 1 });
    expect(item('sse', 'ElastiCache', load(100_000, 1), three)).toBeCloseTo(3 * dev.redisNodes * nodeHour(dev.redisNodeType) * HOURS, 6);
  });

  test('1M users, one personal channel each, one notification per second: 1M publishes/s at 20 µs each fill 40 engines at 50 %', () => {
    const perUser: Load = { connections: 1_000_000, rate: 1, size: 1024, fanout: 1 };
    const e = estimate(perUser, dev, FIGURES);
    expect(REDIS_ENGINE_TARGET).toBe(0.5);
    expect(e.redis).toMatchObject({ shards: 40, shardsNeeded: 40 });
    expect(e.redis.engineCpuPercent).toBeCloseTo(50, 6);
    const sse = e.transports.find((t) => t.transport === 'sse')!;
    expect(sse.items.find((i) => i.item.startsWith('ElastiCache'))!.basis).toBe(`40 shards × ${dev.redisNodes} node(s) × $${nodeHour(e.redis.nodeType).toFixed(4)}/h`);
    expect(sse.notes.join(' ')).toContain("priced as 40 shards instead of the stage's redis.shards (1)");
    // Half the rate, half the shards (rounded up).
    expect(redisShards(500_000, dev, FIGURES)).toMatchObject({ shards: 20 });
    expect(redisShards(500_001, dev, FIGURES)).toMatchObject({ shards: 21 });
  });

  test('the CLI names the shards', () => {
    const r = run(['--connections', '1000000', '--rate', '1', '--fanout', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Redis shards: \d+ \(the publishes need \d+; stage redis.shards 1\)/);
  });
});

describe('npm run cost', () => {
  test('prints the table with the breakdown and task counts', () => {
    const r = run(['--connections', '10000', '--rate', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\| SSE on Fargate tasks \| \$\d+ \| \d+ \((minTasks|cpu|connections)\) \|/);
    expect(r.stdout).toMatch(/\| WebSocket on API Gateway \| \$2\d,\d{3} \| – \|/);
    expect(r.stdout).toContain('Application Load Balancer: $0.0225/h');
    expect(r.stdout).toMatch(/Crossover: below ~\d+ connections/);
    const j = JSON.parse(run(['--connections', '10000', '--rate', '1', '--json']).stdout);
    expect(j.transports.map((t: { transport: string }) => t.transport).sort()).toEqual(['appsync', 'poll-lambda', 'poll-tasks', 'sse', 'ws-apigw', 'ws-tasks']);
  });

  test.each([
    [['--connections', '-5', '--rate', '1'], /--connections must be at least 0, got -5/],
    [['--connections', 'ten', '--rate', '1'], /--connections must be a number, got "ten"/],
    [['--connections', '10', '--rate', '1.5x'], /--rate must be a number/],
    [['--connections', '10.5', '--rate', '1'], /--connections must be a whole number/],
    [['--rate', '1'], /--connections is required/],
    [['--connections', '10', '--rate', '1', '--stage', 'staging'], /unknown stage "staging": cdk.json defines dev, prod/],
    [['--connections', '10', '--rate', '1', '--region', 'eu-west-1'], /no prices for region "eu-west-1"/],
    [['--connections', '10', '--rate', '1', '--fanout', '20'], /--fanout \(20\) cannot exceed --connections \(10\)/],
    [['--connections', '10', '--rate', '1', '--size', '200000'], /--size must be at most 131072/],
    [['--connections', '10', '--rate', '1', '--frobnicate'], /Unknown option '--frobnicate'/],
  ])('bad input %j: one line on stderr, exit code 2', (argv, message) => {
    const r = run(argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.split('\n')).toHaveLength(1);
  });
});

describe('the docs carry the planner\'s own tables', () => {
  const root = join(__dirname, '..', '..');
  test('README "What it costs" equals npm run cost -- --readme-table', () => {
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain(readmeTable());
  });
  test('docs/DEPLOY.md idle cost equals npm run cost -- --idle-table', () => {
    expect(readFileSync(join(root, 'docs/DEPLOY.md'), 'utf8')).toContain(idleTable());
  });
  test('the stage defaults the planner assumes are the ones docs/DEPLOY.md documents', () => {
    const deploy = readFileSync(join(root, 'docs/DEPLOY.md'), 'utf8');
    const row = (key: string) => deploy.split('\n').find((l) => l.startsWith(`| \`${key}\``)) ?? '';
    expect(row('sse.cpu')).toContain(`\`${STAGE_DEFAULTS.taskCpu}\` / \`${STAGE_DEFAULTS.taskMemoryMiB}\``);
    expect(row('sse.minTasks')).toContain(`\`${STAGE_DEFAULTS.minTasks}\` / \`${STAGE_DEFAULTS.maxTasks}\``);
    expect(row('sse.targetConnectionsPerTask')).toContain(`\`${STAGE_DEFAULTS.targetConnectionsPerTask}\``);
    expect(row('redis.nodeType')).toContain(`"${STAGE_DEFAULTS.redisNodeType}"`);
    expect(row('redis.nodes')).toContain(`\`${STAGE_DEFAULTS.redisNodes}\``);
    expect(row('network.natGateways')).toContain(`\`${STAGE_DEFAULTS.natGateways}\``);
  });
});

describe('retained bytes per user (issue 20, item 6)', () => {
  test('chat defaults: three windows of USER_RETAINED_BYTES (8 MiB per 3600 s), where the publish rate alone allowed 300/min × 2 h × 32 KB', () => {
    expect(retainedPerUser(dev)).toEqual([{ namespace: 'chat', budgetBytes: 8 * 1024 * 1024, windowSeconds: 3600, worstBytes: 24 * 1024 * 1024, rateBoundBytes: 300 * 120 * 32768 }]);
  });
  test('a stage\'s limits and namespaces: no budget leaves the rate bound; server-only and history-less namespaces keep nothing for users', () => {
    const stage = {
      ...dev,
      limits: { userRetainedBytes: 0, userPublishPerMinute: 10 },
      namespaces: {
        room: { subscribe: 'granted', publish: 'authenticated', historySize: 50, historyTtlSeconds: 600 },
        feed: { subscribe: 'public', publish: 'server', historySize: 50, historyTtlSeconds: 600 },
        ping: { subscribe: 'authenticated', publish: 'authenticated', historySize: 0, historyTtlSeconds: 600 },
      },
    } as const;
    expect(retainedPerUser(stage)).toEqual([{ namespace: 'room', budgetBytes: 0, windowSeconds: 600, worstBytes: 10 * 20 * 32768, rateBoundBytes: 10 * 20 * 32768 }]);
  });
  test('npm run cost prints the worst case per user', () => {
    expect(run(['--connections', '1000', '--rate', '1']).stdout).toContain('Retained bytes per user, worst case, namespace chat: 24 MiB (3 windows of USER_RETAINED_BYTES 8.0 MiB per 3600 s');
  });
});

describe('the cost planner reads a stage through the stage schema (lib/stage-config.ts), as cdk synth does', () => {
  const withStages = (stages: unknown) => {
    const root = mkdtempSync(join(tmpdir(), 'cost-stage-'));
    writeFileSync(join(root, 'cdk.json'), JSON.stringify({ context: { stages } }));
    return root;
  };

  test.each<[string, unknown, RegExp]>([
    ['a typo of a key', { sse: { minTask: 4 } }, /^Invalid stage config stages\.x\.sse\.minTask: unknown key/],
    ['a string where a number goes', { sse: { cpu: 'big' } }, /^Invalid stage config stages\.x\.sse\.cpu: .*expected number, received string$/],
    ['a namespace the runtime refuses', { namespaces: { feed: { subscribe: 'everyone' } } }, /NAMESPACES_JSON\.feed\.subscribe/],
  ])('%s: refused with the one line cdk synth prints, not priced', (_name, stage, message) => {
    expect(() => loadStage('x', withStages({ x: stage }))).toThrow(message);
  });

  test('namespaces get the runtime\'s defaults (historySize, historyTtlSeconds), as NAMESPACES_JSON would', () => {
    const stage = loadStage('x', withStages({ x: { namespaces: { feed: { subscribe: 'authenticated', publish: 'authenticated' } } } }));
    expect(stage.namespaces).toEqual({ feed: { subscribe: 'authenticated', publish: 'authenticated', historySize: 1000, historyTtlSeconds: 86400 } });
  });

  test('the canary (canary.enabled, on in prod) is priced: its runs, tickets and publishes, and its custom metrics; a stage without it pays neither', () => {
    const load: Load = { connections: 1000, rate: 1, size: 256, fanout: 1000 };
    const items = (stage: ReturnType<typeof loadStage>) => estimate(load, stage, FIGURES).transports.find((t) => t.transport === 'sse')!.items;
    const canary = (stage: ReturnType<typeof loadStage>) => items(stage).find((i) => i.item.startsWith('delivery canary'));
    const metrics = (stage: ReturnType<typeof loadStage>) => items(stage).find((i) => i.item.startsWith('CloudWatch custom metrics'))!;
    const metricPrice = PRICES.cloudWatchMetricMonth.tiers[0].price;

    expect(dev.canary).toBeUndefined();
    expect(canary(dev)).toBeUndefined();
    // The tasks' eight EMF metrics (service/metrics.ts), whatever the stage.
    expect(metrics(dev).monthly).toBeCloseTo(8 * metricPrice, 9);

    // prod: every minute, a burst of 10, over SSE, /live and long poll (webSocket.mode tasks: no API Gateway).
    const prod = loadStage('prod');
    expect(prod.canary).toEqual({ intervalMinutes: 1, burst: 10, transports: 3, apiGateway: false });
    const runs = MINUTES;
    const tickets = runs * 3;
    const publishes = runs * 10;
    const gbs = runs * 3 * 0.25 + (tickets * 0.01 + publishes * 0.02) * (prod.lambdaMemoryMiB / 1024);
    expect(canary(prod)!.monthly).toBeCloseTo(((runs + tickets + publishes) / 1e6) * PRICES.lambdaRequests.price + gbs * PRICES.lambdaArmGbSecond.price + tieredPerMillion(tickets + publishes, PRICES.httpApiRequests), 9);
    expect(canary(prod)!.basis).not.toMatch(/WebSocket/);
    // Nine metrics per transport and seven over all (lambda/handlers/canary.ts), beside the tasks' eight.
    expect(metrics(prod).monthly).toBeCloseTo((8 + 3 * 9 + 7) * metricPrice, 9);
    // The count is what the canary's handler writes: its EMF documents for a run over three transports.
    const transport = (t: 'sse' | 'live' | 'poll') => ({ transport: t, connectMs: 40, received: 10, lost: 0, gaps: 0, duplicated: 0, outOfOrder: 0, latenciesMs: [12], p50Ms: 12, p99Ms: 12 });
    const docs = canaryMetrics({ channel: 'chat:canary-x', published: 10, publishErrors: 0, transports: [transport('sse'), transport('live'), transport('poll')] }, 'RealtimeBlueprint') as { _aws: { CloudWatchMetrics: { Metrics: unknown[] }[] } }[];
    const written = docs.reduce((n, d) => n + d._aws.CloudWatchMetrics.reduce((m, c) => m + c.Metrics.length, 0), 0);
    expect(written).toBe(3 * CANARY_METRICS_PER_TRANSPORT + CANARY_METRICS_ALL);
    // The idle bill carries both: a canary runs whether or not anyone is connected.
    expect(idleTable()).toMatch(/\| delivery canary \(Scheduler \+ Lambda \+ its calls\) \| — \| \$1\.\d\d \|/);

    // webSocket.mode both, every 5 minutes, bursts of 20: four transports, one of them on API Gateway.
    const both = loadStage('x', withStages({ x: { webSocket: { mode: 'both' }, canary: { enabled: true, intervalMinutes: 5, burst: 20 } } }));
    expect(both.canary).toEqual({ intervalMinutes: 5, burst: 20, transports: 4, apiGateway: true });
    expect(canary(both)!.basis).toMatch(/^8\.8 k runs \(every 5 min\).*35\.0 k tickets and 175\.2 k publishes \(20 a run\).*192\.7 k WebSocket messages and 8\.8 k connection-minutes on API Gateway$/);
    expect(metrics(both).monthly).toBeCloseTo((8 + 4 * 9 + 7) * metricPrice, 9);
  });

  test('the reconnect cookie\'s life is SESSION_TTL_SECONDS\' row default', () => {
    expect(STAGE_DEFAULTS.sessionTtlSeconds).toBe(SERVICE_SETTINGS.sessionTtlSeconds.default);
  });
});

describe('presence priced (issue 24, item 4): members mode grows with the room, count mode stays flat', () => {
  /** 100,000 members in rooms of `roomSize`, each joining (and later leaving) `churn` times an hour, no other traffic. */
  const withPresence = (mode: 'members' | 'count', roomSize: number, churn = 6, connections = 100_000): Load => ({ connections, rate: 0, size: 1024, fanout: connections, presence: { mode, roomSize, churnPerHour: churn } });
  const p = (l: Load) => estimate(l, dev, FIGURES).presence!;
  const joins = (100_000 * 6) / 3600;

  test('members: every join and leave is delivered to every member of its room (2 × joins/s × room size), so per room it grows as the square of the room', () => {
    expect(p(withPresence('members', 100)).eventDeliveriesPerSecond).toBeCloseTo(2 * joins * 100, 6);
    expect(p(withPresence('members', 1000)).eventDeliveriesPerSecond).toBeCloseTo(2 * joins * 1000, 6);
    // One room of 1,000 members against one of 100 (the same churn per member): 100 times the deliveries.
    const room = (size: number) => p(withPresence('members', size, 6, size)).eventDeliveriesPerSecond;
    expect(room(1000) / room(100)).toBeCloseTo(100, 6);
  });

  test('members: Redis pays each join and leave, and each snapshot reads every member; the tasks pay each delivery and each snapshot', () => {
    const e = p(withPresence('members', 1000));
    // A stream starts for each join, and for each recycled reconnect cookie.
    const snapshots = joins + 100_000 / (dev.sessionTtlSeconds * 0.75);
    expect(e.connectsPerSecond).toBeCloseTo(snapshots, 6);
    expect(e.snapshotsPerSecond).toBeCloseTo(snapshots, 6);
    expect(e.redisUsPerSecond).toBeCloseTo(joins * (100 + 80) + snapshots * 1000 * 0.5, 6);
    expect(e.taskCpuUsPerSecond).toBeCloseTo(2 * joins * 1000 * 2 + snapshots * 1000 * 1 + joins * FIGURES.sseConnectCpuUs, 6);
  });

  test('count: at most one count per 2 s per room, delivered to its members: flat per member once a room churns faster than that', () => {
    expect(PRESENCE_COUNT_EVENTS_PER_SECOND).toBe(0.5);
    const small = p(withPresence('count', 1000));
    const big = p(withPresence('count', 100_000));
    expect(small.eventDeliveriesPerSecond).toBeCloseTo(100_000 * 0.5, 6);
    expect(big.eventDeliveriesPerSecond).toBeCloseTo(100_000 * 0.5, 6);
    // A quiet room announces each change: 10 members joining and leaving once an hour make 20 changes an hour, under 0.5/s.
    const quiet = p(withPresence('count', 10, 1, 10));
    expect(quiet.eventDeliveriesPerSecond).toBeCloseTo(10 * ((2 * 10 * 1) / 3600), 9);
    // Redis: each change, and each announced count (a publish).
    // Each snapshot reads the number of members only (one HLEN): the same in a room of 1,000 and of 100,000.
    expect(small.redisUsPerSecond).toBeCloseTo(2 * joins * 40 + 100 * 0.5 * 20 + small.snapshotsPerSecond * 15, 6);
    expect(big.redisUsPerSecond - 2 * joins * 40 - 1 * 0.5 * 20).toBeCloseTo(big.snapshotsPerSecond * 15, 6);
  });

  test('a big members room makes the SSE tasks CPU-bound and fills Redis; count mode pays its few events and its snapshots, which read only the count', () => {
    const none = estimate({ connections: 100_000, rate: 0, size: 1024, fanout: 100_000 }, dev, FIGURES);
    const members = estimate(withPresence('members', 10_000), dev, FIGURES);
    const count = estimate(withPresence('count', 10_000), dev, FIGURES);
    const sse = (e: typeof none) => e.transports.find((t) => t.transport === 'sse')!;
    expect(sse(members).tasksBoundBy).toBe('cpu');
    expect(sse(members).tasks!).toBeGreaterThan(3 * sse(none).tasks!);
    const c = p(withPresence('count', 10_000));
    expect(c.taskCpuUsPerSecond).toBeCloseTo(100_000 * 0.5 * 2 + c.snapshotsPerSecond * 60 + joins * FIGURES.sseConnectCpuUs, 6);
    expect(sse(count).tasks!).toBeLessThan(sse(members).tasks!);
    expect(members.redis.engineCpuPercent).toBeGreaterThan(count.redis.engineCpuPercent);
    expect(sse(members).total).toBeGreaterThan(sse(count).total);
    expect(sse(members).notes.join(' ')).toMatch(/presence \(members, rooms of 10,000\)/);
  });

  test('on API Gateway, presence adds the sweeper: a Lambda run a minute by EventBridge Scheduler (inside its free invocations)', () => {
    const gw = (l: Load) => estimate(l, dev, FIGURES).transports.find((t) => t.transport === 'ws-apigw')!;
    const sweeper = (l: Load) => gw(l).items.find((i) => i.item.startsWith('presence sweeper'));
    expect(sweeper({ connections: 100_000, rate: 0, size: 1024, fanout: 100_000 })).toBeUndefined();
    const item = sweeper(withPresence('members', 100))!;
    const runs = MINUTES;
    expect(item.monthly).toBeCloseTo((runs / 1e6) * PRICES.lambdaRequests.price + runs * PRESENCE_SWEEP_PRICED_SECONDS * (dev.lambdaMemoryMiB / 1024) * PRICES.lambdaArmGbSecond.price, 9);
    expect(item.basis).toMatch(/43.8 k runs/);
    expect(item.basis).toMatch(/Scheduler/);
    // The same sweeper whatever the room: its cost does not grow with the load.
    expect(sweeper(withPresence('count', 10_000))!.monthly).toBeCloseTo(item.monthly, 9);
    expect(gw(withPresence('members', 100)).notes.join(' ')).not.toMatch(/being built/);
  });

  test('npm run cost --presence prints what presence adds', () => {
    const r = run(['--connections', '10000', '--rate', '0.1', '--presence', 'members', '--room-size', '1000', '--churn', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Presence \(members, rooms of 1,000, 2 joins per member per hour\): [\d.]+ k? ?join\/leave events delivered per second/m);
    const j = JSON.parse(run(['--connections', '10000', '--rate', '0.1', '--presence', 'count', '--room-size', '1000', '--json']).stdout);
    expect(j.load.presence).toEqual({ mode: 'count', roomSize: 1000, churnPerHour: 1 });
  });

  test.each([
    [['--connections', '10', '--rate', '1', '--presence', 'everyone'], /--presence must be "members" or "count", got "everyone"/],
    [['--connections', '10', '--rate', '1', '--presence', 'members', '--room-size', '0'], /--room-size must be at least 1, got 0/],
    [['--connections', '10', '--rate', '1', '--presence', 'members', '--room-size', '20'], /--room-size \(20\) cannot exceed --connections \(10\)/],
    [['--connections', '10', '--rate', '1', '--room-size', '5'], /--room-size and --churn need --presence/],
    [['--connections', '10', '--rate', '1', '--presence', 'count', '--room-size', '5', '--churn', '-1'], /--churn must be at least 0, got -1/],
  ])('bad presence input %j: one line on stderr, exit code 2', (argv, message) => {
    const r = run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test('the committed figures hold the presence figures npm run bench -- --presence measured', () => {
    const f = committedFigures();
    for (const k of ['presenceJoinRedisUs', 'presenceLeaveRedisUs', 'presenceCountChangeRedisUs', 'presenceEventCpuUs', 'presenceSnapshotRedisUsPerMember', 'presenceSnapshotCpuUsPerMember', 'presenceSnapshotBytesPerMember', 'presenceCountSnapshotRedisUs', 'presenceCountSnapshotCpuUs'] as const) expect(f[k]).toBeGreaterThan(0);
  });
});
