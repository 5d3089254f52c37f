/**
 * The stage config (lib/stage-config.ts, read by bin/config.ts): one vocabulary. The zod schema is the only definition
 * of the keys, DEFAULTS (lib/defaults.ts) the only table of defaults (taking a runtime variable's from its row in
 * contract/settings.ts), and docs/DEPLOY.md's configuration table is checked against both, key by key; for the keys that
 * become runtime variables, DEPLOY's default, the template's value and the runtime's parsed default against the row.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import ts from 'typescript';
import { z } from 'zod';
import { CORE_SETTINGS, LAMBDA_SETTINGS, SERVICE_SETTINGS, type Setting } from '../../contract/settings';
import { coreConfigFromEnv } from '../../core/config';
import { lambdaConfigFromEnv } from '../../lambda/shared/config';
import { serviceConfigFromEnv } from '../../service/config';
import { DEFAULTS, REDIS_ENGINE_VERSION_DEFAULTS, STAGE_SETTINGS } from '../../lib/defaults';
import { StageConfigSchema } from '../../lib/stage-config';
import { App } from 'aws-cdk-lib';
import { readStageConfig, StageConfigError } from '../../bin/config';
import { buildStack, CDK_CONTEXT, containerEnv, REPO_ROOT, STAGES, templateOf, WITH_API_GATEWAY_WEBSOCKETS } from './support';

/** Every key a stage may set, as a dotted path: top-level keys, and the keys of each section (one level down). */
function schemaKeys(): string[] {
  return Object.entries(StageConfigSchema.shape).flatMap(([key, schema]) => {
    const inner = schema instanceof z.ZodOptional ? schema.unwrap() : schema;
    return inner instanceof z.ZodObject ? Object.keys(inner.shape).map((k) => `${key}.${k}`) : [key];
  });
}

/** DEFAULTS flattened the same way (a section's object-valued key, like ticketApi.auth, is one value). */
function defaultsByKey(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [key, value] of Object.entries(DEFAULTS)) {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) out.set(`${key}.${k}`, v);
    } else {
      out.set(key, value);
    }
  }
  return out;
}

const DEPLOY_MD = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'DEPLOY.md'), 'utf8');

/**
 * The configuration table of a DEPLOY.md: key → its default cell. A row may document several keys with their defaults
 * side by side: `` `sse.cpu` / `sse.memoryMiB` `` with `` `256` / `512` ``, a second key without a section taking the
 * first one's (`` `webSocket.throttleRateLimit` / `throttleBurstLimit` ``), or `` `account`, `region` `` sharing one cell.
 */
function deployTable(markdown: string): Map<string, string> {
  const lines = markdown.split('\n');
  const header = lines.indexOf('| key | default | meaning |');
  if (header < 0) throw new Error('DEPLOY.md has no configuration table (| key | default | meaning |)');
  const rows = new Map<string, string>();
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [keyCell, defaultCell] = line.replace(/^\|\s*|\s*\|$/g, '').split(/\s+\|\s+/);
    const keys = keyCell.split(/\s*[/,]\s*/).map((k) => /^`([A-Za-z.]+)`$/.exec(k)?.[1]);
    if (keys.some((k) => k === undefined)) throw new Error(`DEPLOY.md configuration table: the key cell "${keyCell}" is not \`key\` [/ \`key\`]`);
    const section = (keys[0] as string).includes('.') ? (keys[0] as string).split('.')[0] : undefined;
    const full = keys.map((k) => (section && !(k as string).includes('.') ? `${section}.${k}` : (k as string)));
    const side = keyCell.includes(' / ') ? defaultCell.split(/\s+\/\s+/) : full.map(() => defaultCell);
    if (side.length !== full.length) throw new Error(`DEPLOY.md configuration table: ${full.join(', ')} need ${full.length} defaults, "${defaultCell}" has ${side.length}`);
    full.forEach((key, i) => {
      if (rows.has(key)) throw new Error(`DEPLOY.md configuration table: ${key} has two rows`);
      rows.set(key, side[i]);
    });
  }
  return rows;
}

/** The backticked values of a default cell, as JSON. */
function documentedValues(cell: string): unknown[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => JSON.parse(m[1]));
}

/** Every disagreement between a DEPLOY.md configuration table and the schema and DEFAULTS, one line each. */
function tableProblems(markdown: string): string[] {
  const table = deployTable(markdown);
  const defaults = defaultsByKey();
  const keys = schemaKeys();
  const problems = [
    ...keys.filter((k) => !table.has(k)).map((k) => `${k}: no row`),
    ...[...table.keys()].filter((k) => !keys.includes(k)).map((k) => `${k}: not a stage key`),
  ];
  for (const key of keys.filter((k) => table.has(k) && k !== 'redis.engineVersion')) {
    const cell = table.get(key) as string;
    if (!defaults.has(key)) {
      if (!/^unset\b/.test(cell)) problems.push(`${key}: documented "${cell}", but DEFAULTS has none (write "unset (...)")`);
    } else if (!cell.startsWith('`') || JSON.stringify(documentedValues(cell)[0]) !== JSON.stringify(defaults.get(key))) {
      problems.push(`${key}: documented "${cell}", DEFAULTS says ${JSON.stringify(defaults.get(key))}`);
    }
  }
  return problems;
}

describe('one vocabulary: schema, DEFAULTS and docs/DEPLOY.md', () => {
  const table = deployTable(DEPLOY_MD);
  const defaults = defaultsByKey();

  test('docs/DEPLOY.md: no disagreement with the schema or DEFAULTS', () => {
    expect(tableProblems(DEPLOY_MD)).toEqual([]);
  });

  test('docs/DEPLOY.md: one row per schema key, no more, no fewer', () => {
    expect([...table.keys()].sort()).toEqual(schemaKeys().sort());
  });

  test('DEFAULTS: every key is a schema key', () => {
    const keys = new Set(schemaKeys());
    expect([...defaults.keys()].filter((k) => !keys.has(k))).toEqual([]);
  });

  test.each(schemaKeys().filter((k) => k !== 'redis.engineVersion'))('%s: the documented default is DEFAULTS\' (or "unset" when it has none)', (key) => {
    const cell = table.get(key) ?? '';
    if (defaults.has(key)) {
      expect(cell.startsWith('`')).toBe(true);
      expect(documentedValues(cell)[0]).toEqual(defaults.get(key));
    } else {
      expect(cell).toMatch(/^unset\b/);
    }
  });

  test('redis.engineVersion: documented per engine, as REDIS_ENGINE_VERSION_DEFAULTS', () => {
    const expected = Object.entries(REDIS_ENGINE_VERSION_DEFAULTS).map(([engine, version]) => `\`${JSON.stringify(version)}\` (${engine})`).join(', ');
    expect(table.get('redis.engineVersion')).toBe(expected);
    expect(Object.keys(REDIS_ENGINE_VERSION_DEFAULTS)).toEqual(StageConfigSchema.shape.redis.unwrap().shape.engine.unwrap().options);
  });

  test('the check bites: a wrong default, a default documented as unset, a missing row and an unknown key are reported', () => {
    const doctored = DEPLOY_MD.replace('| `sse.cpu` / `sse.memoryMiB` | `256` / `512` |', '| `sse.cpu` / `sse.memoryMiB` | `512` / `512` |')
      .replace(/^\| `sse.nofileLimit` \| `65536` \|/m, '| `sse.nofileLimit` | unset |')
      .replace(/^\| `sse.domainName` .*\n/m, '')
      .replace('| `sse.containerInsights` |', '| `sse.insights` |');
    expect(tableProblems(doctored)).toEqual([
      'sse.domainName: no row',
      'sse.containerInsights: no row',
      'sse.insights: not a stage key',
      'sse.cpu: documented "`512`", DEFAULTS says 256',
      'sse.nofileLimit: documented "unset", DEFAULTS says 65536',
    ]);
  });
});

/** The runtime's parsed default of a row: what the parser of its table gives for an environment without it. */
function runtimeDefault(row: Setting): unknown {
  const find = (table: Record<string, Setting>) => Object.keys(table).find((k) => table[k] === row);
  const service = serviceConfigFromEnv({ [SERVICE_SETTINGS.sessionSecret.env]: 'x'.repeat(32) }) as unknown as Record<string, unknown>;
  const core = find(CORE_SETTINGS);
  if (core === 'logLevel') return service.logLevel;
  if (core) return (coreConfigFromEnv({}) as unknown as Record<string, unknown>)[core];
  const lambda = find(LAMBDA_SETTINGS);
  if (lambda) return (lambdaConfigFromEnv({}) as unknown as Record<string, unknown>)[lambda];
  return service[find(SERVICE_SETTINGS) as string];
}

/** Every variable the synthesised template sets, across the functions and the task: name → the distinct values. */
function templateVariables(template: ReturnType<typeof templateOf>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (name: string, value: unknown) => out.set(name, (out.get(name) ?? new Set()).add(typeof value === 'string' ? value : JSON.stringify(value)));
  for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
    for (const [name, value] of Object.entries((fn.Properties.Environment?.Variables ?? {}) as Record<string, unknown>)) add(name, value);
  }
  for (const [name, value] of Object.entries(containerEnv(template))) add(name, value);
  return out;
}

/**
 * For each stage key that becomes a runtime variable: the default docs/DEPLOY.md documents, the value the template sets
 * when the stage leaves the key out (or nothing, when the runtime's own default applies) and the runtime's parsed default,
 * each against the row of contract/settings.ts. One line per disagreement.
 */
function settingProblems(markdown: string, variables: Map<string, Set<string>>): string[] {
  const table = deployTable(markdown);
  const problems: string[] = [];
  for (const [key, row] of Object.entries(STAGE_SETTINGS)) {
    const cell = table.get(key) ?? '';
    const documented = cell.startsWith('`') ? documentedValues(cell)[0] : Number(/^unset \(the runtime's default, (\d+)\)$/.exec(cell)?.[1]);
    if (documented !== row.default) problems.push(`${key}: docs/DEPLOY.md says ${JSON.stringify(documented)}, ${row.env}'s row ${JSON.stringify(row.default)}`);
    const set = variables.get(row.env);
    if (!defaultsByKey().has(key) ? set !== undefined : [...(set ?? [])].join() !== String(row.default)) {
      problems.push(`${key}: the template sets ${row.env} to ${set ? [...set].join(', ') : 'nothing'}, the row's default is ${JSON.stringify(row.default)}`);
    }
    if (runtimeDefault(row) !== row.default) problems.push(`${key}: the runtime reads ${JSON.stringify(runtimeDefault(row))} for an unset ${row.env}, the row says ${JSON.stringify(row.default)}`);
  }
  return problems;
}

describe('each setting once: docs/DEPLOY.md, the template\'s environment and the runtime\'s default are the row of contract/settings.ts', () => {
  const variables = templateVariables(templateOf(buildStack(WITH_API_GATEWAY_WEBSOCKETS)));
  const docs = propDefaults();

  test('no disagreement for any stage key that becomes a runtime variable', () => {
    expect(Object.keys(STAGE_SETTINGS).length).toBeGreaterThanOrEqual(10);
    expect(settingProblems(DEPLOY_MD, variables)).toEqual([]);
  });

  test.each(Object.entries(STAGE_SETTINGS))('%s: DEFAULTS takes the row\'s default and the stage key is a schema key', (key, row) => {
    expect(schemaKeys()).toContain(key);
    expect([key, defaultsByKey().get(key) ?? 'unset (the runtime applies it)']).toEqual([key, key.startsWith('limits.') ? 'unset (the runtime applies it)' : row.default]);
  });

  test.each([
    ['limits.userPublishPerMinute', 'RealtimeLimits.userPublishPerMinute'],
    ['limits.userNewChannelsPerHour', 'RealtimeLimits.userNewChannelsPerHour'],
    ['limits.userRetainedBytes', 'RealtimeLimits.userRetainedBytes'],
    ['ticketTtlSeconds', 'RealtimeApiProps.ticketTtlSeconds'],
    ['maxPayloadBytes', 'RealtimeApiProps.maxPayloadBytes'],
    ['logLevel', 'RealtimeApiProps.logLevel'],
  ])('%s: the @default of %s is the row\'s default', (key, prop) => {
    const text = docs.get(prop) ?? '';
    const value = text.startsWith('- ') ? Number(/the runtime's default, (\d+)/.exec(text)?.[1]) : parseDocValue(text);
    expect([prop, value]).toEqual([prop, STAGE_SETTINGS[key].default]);
  });

  test('the check bites: a documented default, a template value and a runtime default that drifted are reported', () => {
    const doctored = DEPLOY_MD.replace(/^\| `sse.heartbeatMs` \| `15000` \|/m, '| `sse.heartbeatMs` | `20000` |')
      .replace(/^(\| `limits.userPublishPerMinute` \| unset \(the runtime's default, )300\)/m, '$1600)');
    const drifted = new Map(variables).set(SERVICE_SETTINGS.pollTimeoutMs.env, new Set(['30000'])).set(CORE_SETTINGS.userPublishPerMinute.env, new Set(['600']));
    expect(settingProblems(doctored, drifted)).toEqual([
      'sse.heartbeatMs: docs/DEPLOY.md says 20000, HEARTBEAT_MS\'s row 15000',
      'sse.pollTimeoutMs: the template sets POLL_TIMEOUT_MS to 30000, the row\'s default is 25000',
      'limits.userPublishPerMinute: docs/DEPLOY.md says 600, USER_PUBLISH_PER_MINUTE\'s row 300',
      'limits.userPublishPerMinute: the template sets USER_PUBLISH_PER_MINUTE to 600, the row\'s default is 300',
    ]);
  });
});

/** `@default` tags of every interface property in lib/: `Interface.prop` → tag text. */
function propDefaults(): Map<string, string> {
  const out = new Map<string, string>();
  const dir = path.join(REPO_ROOT, 'lib');
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const source = ts.createSourceFile(file, fs.readFileSync(path.join(dir, file), 'utf8'), ts.ScriptTarget.ES2022, true);
    source.forEachChild((node) => {
      if (!ts.isInterfaceDeclaration(node)) return;
      for (const member of node.members) {
        if (!ts.isPropertySignature(member) || !ts.isIdentifier(member.name)) continue;
        const tag = ts.getJSDocTags(member).find((t) => t.tagName.text === 'default');
        if (tag) out.set(`${node.name.text}.${member.name.text}`, ts.getTextOfJSDocComment(tag.comment)?.replace(/\s+/g, ' ') ?? '');
      }
    });
  }
  return out;
}

/** The props interfaces each stage section passes through to (the first that declares a prop documents it). */
const SECTION_PROPS: Record<string, string[]> = {
  network: ['NetworkProps'],
  redis: ['RedisPubSubProps'],
  sse: ['SseServiceProps', 'SseLoadBalancerProps'],
  webSocket: ['WebSocketModeProps', 'RealtimeWebSocketApiProps', 'RuntimeApiProps'],
  ticketApi: ['TicketApiProps', 'TrustedCallerApiProps', 'RuntimeApiProps'],
  publishApi: ['PublishApiProps', 'TrustedCallerApiProps', 'RuntimeApiProps'],
};
const API_LABELS: Record<string, string> = { webSocket: 'the WebSocket API', ticketApi: 'the ticket API', publishApi: 'the publish API' };

/** A `@default` value as written in TypeScript (`'valkey'`, `{ type: 'iam' }`, `Duration.hours(1)`), as JSON-comparable data. */
function parseDocValue(text: string): unknown {
  const duration = /^Duration\.(seconds|minutes|hours|days)\((\d+)\)/.exec(text);
  if (duration) return Number(duration[2]) * { seconds: 1, minutes: 60, hours: 3600, days: 86_400 }[duration[1] as 'seconds'];
  const literal = /^(\{[^}]*\}|\[[^\]]*\]|'[^']*'|-?\d+|true|false)/.exec(text)?.[1];
  if (literal === undefined) return undefined;
  return JSON.parse(literal.replace(/'/g, '"').replace(/([{,]\s*)([A-Za-z]\w*)\s*:/g, '$1"$2":'));
}

describe('the construct props document DEFAULTS', () => {
  const docs = propDefaults();
  const sectionKeys = [...defaultsByKey().keys()].filter((k) => k.includes('.') && k.split('.')[0] in SECTION_PROPS);

  test.each(sectionKeys)('%s: the @default of the prop it passes through to', (key) => {
    const [section, name] = key.split('.');
    const seconds = name.endsWith('Seconds') ? name.slice(0, -'Seconds'.length) : undefined;
    const found = SECTION_PROPS[section]
      .flatMap((iface) => [`${iface}.${name}`, ...(seconds ? [`${iface}.${seconds}`] : [])])
      .find((k) => docs.has(k));
    expect([key, found]).toEqual([key, expect.any(String)]);
    const text = docs.get(found as string) as string;
    const value = defaultsByKey().get(key);
    if (text.startsWith('- ') && section in API_LABELS) {
      // shared props document every API's default in one sentence
      expect(text).toContain(`${JSON.stringify(value)} for ${API_LABELS[section]}`);
    } else {
      expect([found, parseDocValue(text)]).toEqual([found, value]);
    }
  });

  test('redis.engineVersion: documented per engine, as REDIS_ENGINE_VERSION_DEFAULTS', () => {
    const expected = Object.entries(REDIS_ENGINE_VERSION_DEFAULTS).map(([engine, version]) => `'${version}' for ${engine}`).join(', ');
    expect(docs.get('RedisPubSubProps.engineVersion')).toBe(expected);
  });

  test('stage-wide keys: logLevel, trustedPrincipals and allowedOrigins documented as DEFAULTS on the props that take them', () => {
    expect(parseDocValue(docs.get('RuntimeApiProps.logLevel') ?? '')).toEqual(DEFAULTS.logLevel);
    expect(parseDocValue(docs.get('SseServiceProps.logLevel') ?? '')).toEqual(DEFAULTS.logLevel);
    expect(parseDocValue(docs.get('TrustedCallerApiProps.trustedPrincipals') ?? '')).toEqual(DEFAULTS.trustedPrincipals);
    expect(parseDocValue(docs.get('SseServiceProps.allowedOrigins') ?? '')).toEqual(DEFAULTS.allowedOrigins);
    expect(parseDocValue(docs.get('TicketApiProps.allowedOrigins') ?? '')).toEqual(DEFAULTS.allowedOrigins);
  });

  test('the check reads TypeScript defaults', () => {
    expect(parseDocValue("{ type: 'iam' }")).toEqual({ type: 'iam' });
    expect(parseDocValue('Duration.hours(1)')).toBe(3600);
    expect(parseDocValue("[] - no CORS")).toEqual([]);
    expect(parseDocValue("'rt:'")).toBe('rt:');
    expect(parseDocValue('- a new VPC')).toBeUndefined();
  });
});

describe('the constructs apply DEFAULTS (empty stage config, but webSocket.mode both: the default tasks has no API Gateway WebSocket API to check)', () => {
  const stack = buildStack(WITH_API_GATEWAY_WEBSOCKETS);
  const template = templateOf(stack);

  test('SSE service: task size, scaling bounds and targets, timings', () => {
    const d = DEFAULTS.sse;
    template.hasResourceProperties('AWS::ECS::TaskDefinition', { Cpu: String(d.cpu), Memory: String(d.memoryMiB) });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: d.minTasks, MaxCapacity: d.maxTasks });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: d.targetConnectionsPerTask }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: d.targetCpuPercent }),
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'idle_timeout.timeout_seconds', Value: String(d.idleTimeoutSeconds) }]),
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'deregistration_delay.timeout_seconds', Value: String(d.deregistrationDelaySeconds) },
        { Key: 'stickiness.lb_cookie.duration_seconds', Value: String(d.stickinessDurationSeconds) },
      ]),
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Ulimits: [{ Name: 'nofile', SoftLimit: d.nofileLimit, HardLimit: d.nofileLimit }],
          Environment: Match.arrayWith([{ Name: 'LOG_LEVEL', Value: DEFAULTS.logLevel }]),
        }),
      ],
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Environment: Match.arrayWith([{ Name: 'HEARTBEAT_MS', Value: String(d.heartbeatMs) }]) })],
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Environment: Match.arrayWith([{ Name: 'POLL_TIMEOUT_MS', Value: String(d.pollTimeoutMs) }]) })],
    });
    // The write window: adaptive with its budget, no fixed window.
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'MAX_WRITE_DELAY_MS', Value: String(d.maxWriteDelayMs) },
            { Name: 'LATENCY_BUDGET_MS', Value: String(d.latencyBudgetMs) },
            { Name: 'WRITE_DELAY_MS', Value: String(d.writeDelayMs) },
          ]),
        }),
      ],
    });
    template.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: d.containerInsights ? 'enabled' : 'disabled' }] });
  });

  test('Redis, network and log retention', () => {
    const r = DEFAULTS.redis;
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      Engine: r.engine,
      EngineVersion: REDIS_ENGINE_VERSION_DEFAULTS[r.engine],
      CacheNodeType: r.nodeType,
      NumCacheClusters: r.nodes,
      Port: r.port,
      SnapshotRetentionLimit: r.snapshotRetentionDays,
    });
    template.hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot' });
    expect(r.removalPolicy).toBe('snapshot');
    template.resourceCountIs('AWS::EC2::NatGateway', DEFAULTS.network.natGateways);
    template.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: true }, DEFAULTS.network.maxAzs);
    template.resourceCountIs('AWS::EC2::FlowLog', DEFAULTS.network.flowLogs ? 1 : 0);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: DEFAULTS.logRetentionDays });
  });

  test('APIs: stage name, throttles, reserved concurrency, IAM tickets, runtime limits', () => {
    const stage = (api: unknown, rate: number, burst: number) =>
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        ApiId: stack.resolve(api),
        DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: rate, ThrottlingBurstLimit: burst }),
      });
    stage(stack.webSocket!.api.apiId, DEFAULTS.webSocket.throttleRateLimit, DEFAULTS.webSocket.throttleBurstLimit);
    stage(stack.ticketApi.endpoint.api.apiId, DEFAULTS.ticketApi.throttleRateLimit, DEFAULTS.ticketApi.throttleBurstLimit);
    stage(stack.publishApi.endpoint.api.apiId, DEFAULTS.publishApi.throttleRateLimit, DEFAULTS.publishApi.throttleBurstLimit);
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: DEFAULTS.webSocket.stageName });
    const resources = template.toJSON().Resources;
    const reserved = (fn: { function: { node: { defaultChild?: unknown } } }) =>
      resources[stack.resolve((fn.function.node.defaultChild as { logicalId: string }).logicalId)].Properties.ReservedConcurrentExecutions;
    // No reservation by default (DEFAULTS has none): Lambda keeps 100 unreserved, and a new account's quota may be 10.
    expect(DEFAULTS.webSocket).not.toHaveProperty('messageReservedConcurrency');
    expect(DEFAULTS.publishApi).not.toHaveProperty('reservedConcurrency');
    expect(reserved(stack.webSocket!.messageFunction)).toBeUndefined();
    expect(reserved(stack.publishApi.handler)).toBeUndefined();
    expect(DEFAULTS.ticketApi.auth).toEqual({ type: 'iam' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'AWS_IAM' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TICKET_TTL_SECONDS: String(DEFAULTS.ticketTtlSeconds), MAX_PAYLOAD_BYTES: String(DEFAULTS.maxPayloadBytes) }) },
    });
  });
});

describe('stage config (cdk.json context, zod)', () => {
  const read = (stage: unknown, stages: unknown = { [String(stage)]: {} }) => () =>
    readStageConfig(new App({ context: { stages, ...(stage === undefined ? {} : { stage }) } }).node);
  const readConfig = (config: unknown) => read('x', { x: config });

  test('no stage given: the dev stage is read', () => {
    expect(read(undefined, { dev: { logLevel: 'warn' } })()).toEqual({ stageName: 'dev', config: { logLevel: 'warn' } });
  });

  test('unknown stage: fails naming the stages that exist', () => {
    expect(read('typo', { dev: {}, prod: {} })).toThrow(
      /^Unknown stage "typo": cdk\.json context "stages" defines dev, prod\. Pass -c stage=<one of those>, or add "typo" to "stages"\.$/,
    );
  });

  test('no stages in the context: fails saying what to add', () => {
    expect(read('dev', null)).toThrow(/^cdk\.json context has no "stages" object: add "stages": \{ "dev": \{\} \} to the context of cdk\.json$/);
  });

  test.each<[string, unknown, RegExp]>([
    ['unknown key (a typo)', { sse: { heartbeat: 1000 } }, /^Invalid stage config stages\.x\.sse\.heartbeat: unknown key/],
    ['unknown top-level key', { origins: [] }, /^Invalid stage config stages\.x\.origins: unknown key/],
    ['string where a number goes', { sse: { heartbeatMs: '15000' } }, /^Invalid stage config stages\.x\.sse\.heartbeatMs: .*expected number, received string$/],
    ['fractional number', { redis: { nodes: 1.5 } }, /^Invalid stage config stages\.x\.redis\.nodes: .*expected int/],
    ['bad account id', { account: '1234', region: 'eu-west-1' }, /^Invalid stage config stages\.x\.account: must be a 12-digit AWS account id$/],
    ['bad region', { account: '123456789012', region: 'Europe' }, /^Invalid stage config stages\.x\.region: must be a region like eu-west-1$/],
    ['account without region', { account: '123456789012' }, /^Invalid stage config stages\.x\.region: set account and region together, or neither \(environment-agnostic\)$/],
    ['VPC lookup without an environment', { network: { vpcId: 'vpc-0123456789abcdef0' } }, /^Invalid stage config stages\.x\.network\.vpcId: looking a VPC up needs the stage's account and region/],
    ['bad VPC id', { network: { vpcId: 'my-vpc' } }, /^Invalid stage config stages\.x\.network\.vpcId: must be a VPC id like vpc-0abc123/],
    ['wildcard origin', { allowedOrigins: ['*'] }, /^Invalid stage config stages\.x\.allowedOrigins\.0: must be an origin like https:\/\/app\.example\.com/],
    ['JWT without audience', { ticketApi: { auth: { type: 'jwt', issuer: 'https://issuer.example.com' } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.audience: /],
    ['JWT issuer over http', { ticketApi: { auth: { type: 'jwt', issuer: 'http://issuer.example.com', audience: ['a'] } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.issuer: must be the https URL of the token issuer \(iss\)$/],
    ['unknown auth type', { ticketApi: { auth: { type: 'none' } } }, /^Invalid stage config stages\.x\.ticketApi\.auth\.type: /],
    ['bad certificate ARN', { sse: { certificateArn: 'my-cert' } }, /^Invalid stage config stages\.x\.sse\.certificateArn: must be an ACM certificate ARN$/],
    ['bad log level', { logLevel: 'verbose' }, /^Invalid stage config stages\.x\.logLevel: /],
    ['bad alarm topic ARN', { alarmTopicArn: 'ops' }, /^Invalid stage config stages\.x\.alarmTopicArn: must be an SNS topic ARN$/],
    ['unknown Redis engine', { redis: { engine: 'memcached' } }, /^Invalid stage config stages\.x\.redis\.engine: /],
    ['Redis removal policy retain', { redis: { removalPolicy: 'retain' } }, /^Invalid stage config stages\.x\.redis\.removalPolicy: /],
    ['publish limit as a string', { limits: { userPublishPerMinute: '60' } }, /^Invalid stage config stages\.x\.limits\.userPublishPerMinute: .*expected number, received string$/],
    ['unknown limit (a typo)', { limits: { publishPerMinute: 60 } }, /^Invalid stage config stages\.x\.limits\.publishPerMinute: unknown key/],
    ['trusted principal that is not an ARN', { trustedPrincipals: ['backend'] }, /^Invalid stage config stages\.x\.trustedPrincipals\.0: must be an IAM role or user ARN \(List IAM role or user ARNs, like arn:aws:iam::123456789012:role\/my-backend\)$/],
    [
      'trusted principal given as an assumed-role session',
      { trustedPrincipals: ['arn:aws:iam::123456789012:role/ok', 'arn:aws:sts::123456789012:assumed-role/backend/session'] },
      /^Invalid stage config stages\.x\.trustedPrincipals\.1: must be an IAM role or user ARN \(List the role of that session instead: arn:aws:iam::123456789012:role\/backend\)$/,
    ],
    ['trustedPrincipals as one string', { trustedPrincipals: 'arn:aws:iam::123456789012:role/ok' }, /^Invalid stage config stages\.x\.trustedPrincipals: .*expected array/],
    ['reserved concurrency as a fraction', { publishApi: { reservedConcurrency: 2.5 } }, /^Invalid stage config stages\.x\.publishApi\.reservedConcurrency: .*expected int/],
  ])('%s: fails with one line naming the key', (_name, config, message) => {
    const run = readConfig(config);
    expect(run).toThrow(StageConfigError);
    expect(run).toThrow(message);
    expect(run).toThrow(/^[^\n]+$/); // one line
  });

  test('several problems: the first is named, the rest counted', () => {
    expect(readConfig({ logLevel: 'loud', sse: { cpu: 'big' }, redis: { nodez: 2 } })).toThrow(/^Invalid stage config stages\.x\.\S+: .* \(and 2 more\)$/);
  });

  test('every stage in cdk.json parses', () => {
    for (const name of STAGES) expect(read(name, CDK_CONTEXT.stages)().stageName).toBe(name);
  });
});