/**
 * RealtimeStack, which composes the constructs: what crosses them (the stage's trustedPrincipals, reserved
 * concurrency, namespaces and limits, no unauthenticated route), outputs and SSM parameters, no physical names,
 * the pinned environment, and the checks on stage-wide settings.
 */
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { RealtimeStack } from '../../lib/realtime-stack';
import type { RealtimeStageConfig } from '../../lib/stage-config';
import { attributes, blueprintFunctions, buildStack, buildStageApp, CERT, containerEnv, logicalIdOf, newApp, PROD_STAGE, type Resources, templateOf, useStageTemplate, WITH_API_GATEWAY_WEBSOCKETS } from './support';

/**
 * The blueprint's Lambda functions as the stack names them (ticket issuer, publish, revoke, the WebSocket API's four, the
 * fan-out worker and its dead-letter consumer when there are), and the template's functions checked to be exactly those: loops over them then
 * cannot pass on an empty list, or miss a function added later.
 */
function functionsOf(stack: RealtimeStack, template: Template): Resources {
  const named = [
    stack.ticketApi.handler,
    stack.publishApi.handler,
    stack.publishApi.revokeHandler,
    stack.publishApi.historyHandler,
    ...(stack.webSocket ? [stack.webSocket.authorizerFunction, stack.webSocket.connectFunction, stack.webSocket.disconnectFunction, stack.webSocket.messageFunction] : []),
    ...(stack.webSocketFanout ? [stack.webSocketFanout.worker, stack.webSocketFanout.deadLetterConsumer] : []),
  ].map((f) => logicalIdOf(f.function));
  const found = blueprintFunctions(template);
  expect(Object.keys(found).sort()).toEqual([...new Set(named)].sort());
  expect(named.length).toBeGreaterThanOrEqual(3);
  return found;
}

describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node) with webSocket.mode both', () => {
  let stack: RealtimeStack;
  let template: Template;
  useStageTemplate('dev', (s, t) => ((stack = s), (template = t)), WITH_API_GATEWAY_WEBSOCKETS);

  test('no unauthenticated route: every HTTP route is IAM or JWT; on the WebSocket only $connect is entered, through the authorizer', () => {
    const wsApi = JSON.stringify(stack.resolve(stack.webSocket!.api.apiId));
    const routes = Object.values(template.findResources('AWS::ApiGatewayV2::Route')) as Resources[string][];
    // The loop below sees the HTTP routes and the WebSocket's (not an empty list).
    expect(routes.map((r) => r.Properties.RouteKey)).toEqual(expect.arrayContaining(['POST /tickets', 'POST /publish', 'POST /revoke', '$connect', '$disconnect', '$default']));
    for (const route of routes) {
      const p = route.Properties;
      if (JSON.stringify(p.ApiId) !== wsApi) {
        expect([p.RouteKey, p.AuthorizationType]).toEqual([p.RouteKey, expect.stringMatching(/^(AWS_IAM|JWT)$/)]);
      } else if (p.RouteKey === '$connect') {
        expect(p.AuthorizationType).toBe('CUSTOM');
        expect(p.AuthorizerId).toBeDefined();
      } else {
        // API Gateway only authorises $connect; later frames ride the admitted connection.
        expect(p.AuthorizationType).toBe('NONE');
      }
    }
  });

  test('TRUSTED_PRINCIPALS: on the ticket issuer, publish, revoke and history functions only; dev trusts no IAM caller (explicit [] in cdk.json)', () => {
    const withVar = Object.entries(functionsOf(stack, template))
      .filter(([, fn]) => 'TRUSTED_PRINCIPALS' in (fn.Properties.Environment as { Variables: object }).Variables)
      .map(([id, fn]) => [id, (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables.TRUSTED_PRINCIPALS]);
    const expected = [stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler, stack.publishApi.historyHandler].map((f) => [logicalIdOf(f.function), '']);
    expect(withVar.sort()).toEqual(expected.sort());
  });

  test('reserved concurrency: none by default, the fan-out functions (publish, ws-message) included (an account with a quota of 10 deploys)', () => {
    const fns = Object.entries(functionsOf(stack, template));
    expect(fns.map(([id]) => id)).toEqual(expect.arrayContaining([stack.publishApi.handler, stack.webSocket!.messageFunction].map((f) => logicalIdOf(f.function))));
    for (const [id, fn] of fns) expect([id, fn.Properties.ReservedConcurrentExecutions]).toEqual([id, undefined]);
  });

  test('outputs (webSocket.mode both): TicketUrl, SseUrl, PollUrl, WebSocketUrl, LiveUrl, PublishUrl, RedisEndpoint, EventBusArn', () => {
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual(['EventBusArn', 'LiveUrl', 'PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl', 'WebSocketUrl']);
    template.hasOutput('LiveUrl', { Value: stack.resolve(stack.sse.liveUrl) });
    template.hasOutput('TicketUrl', { Value: stack.resolve(stack.ticketApi.url) });
    template.hasOutput('PublishUrl', { Value: stack.resolve(stack.publishApi.url) });
    template.hasOutput('WebSocketUrl', { Value: stack.resolve(stack.webSocket!.url) });
    template.hasOutput('SseUrl', { Value: stack.resolve(stack.sse.eventsUrl) });
  });

  test('SSM parameters: the same values under /realtime/dev/{OutputName}', () => {
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs)).toHaveLength(8);
    for (const [name, output] of Object.entries(outputs)) {
      template.hasResourceProperties('AWS::SSM::Parameter', { Name: `/realtime/dev/${name}`, Type: 'String', Value: output.Value });
    }
    template.resourceCountIs('AWS::SSM::Parameter', Object.keys(outputs).length);
  });

  test('log retention: every log group keeps events for the stage\'s logRetentionDays', () => {
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup'));
    expect(groups.length).toBeGreaterThanOrEqual(11);
    for (const g of groups) expect(g.Properties.RetentionInDays).toBe(7);
  });

  test('no physical names: CloudFormation names every resource, so stages deploy side by side', () => {
    const nameKeys: Record<string, string> = {
      'AWS::Lambda::Function': 'FunctionName',
      'AWS::IAM::Role': 'RoleName',
      'AWS::SecretsManager::Secret': 'Name',
      'AWS::Logs::LogGroup': 'LogGroupName',
      'AWS::EC2::SecurityGroup': 'GroupName',
      'AWS::ElastiCache::ReplicationGroup': 'ReplicationGroupId',
      'AWS::ElasticLoadBalancingV2::LoadBalancer': 'Name',
      'AWS::ElasticLoadBalancingV2::TargetGroup': 'Name',
      'AWS::ECS::Cluster': 'ClusterName',
      'AWS::ECS::Service': 'ServiceName',
      'AWS::ApiGatewayV2::Api': 'Name',
      'AWS::CloudWatch::Dashboard': 'DashboardName',
      'AWS::CloudWatch::Alarm': 'AlarmName',
    };
    for (const [type, key] of Object.entries(nameKeys)) {
      for (const r of Object.values(template.findResources(type))) {
        // API Gateway requires Name (not an identifier: names may repeat); each says its stack and its role.
        if (type === 'AWS::ApiGatewayV2::Api') expect(r.Properties[key]).toMatch(/^Realtime-dev-(tickets|publish|websocket)$/);
        else expect([type, r.Properties?.[key]]).toEqual([type, undefined]);
      }
    }
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let stack: RealtimeStack;
  let template: Template;
  const prod = PROD_STAGE;
  useStageTemplate('prod', (s, t) => ((stack = s), (template = t)));

  test('environment: pinned to the stage\'s account and region', () => {
    expect(stack.account).toBe(prod.account);
    expect(stack.region).toBe(prod.region);
  });

  test('custom domain: the load balancer DNS name is an output, for the CNAME or alias record', () => {
    template.hasOutput('SseLoadBalancerDnsName', { Value: stack.resolve(stack.sse.loadBalancer.loadBalancerDnsName) });
  });

  test('TRUSTED_PRINCIPALS: the stage\'s trustedPrincipals on the ticket issuer, publish and revoke functions; the canary\'s role (on in prod) beside them on tickets and publish', () => {
    const trusted = (prod.trustedPrincipals as unknown as string[]).join(',');
    expect(trusted).toMatch(/^arn:aws:iam::\d{12}:role\//);
    const vars = (fn: { function: import('aws-cdk-lib/aws-lambda').Function }) =>
      (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const canaryRole = logicalIdOf(stack.api.canary!.function.function.role!);
    for (const fn of [stack.ticketApi.handler, stack.publishApi.handler]) expect(vars(fn).TRUSTED_PRINCIPALS).toEqual({ 'Fn::Join': ['', [`${trusted},`, { 'Fn::GetAtt': [canaryRole, 'Arn'] }]] });
    expect(vars(stack.publishApi.revokeHandler).TRUSTED_PRINCIPALS).toBe(trusted);
  });

  test('SSM parameters: under /realtime/prod/', () => {
    template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/realtime/prod/TicketUrl' });
  });
});

describe('configs that switch behaviour', () => {
  test('namespaces: passed through as NAMESPACES_JSON to every Lambda and the SSE task', () => {
    const namespaces = { scores: { subscribe: 'public' }, room: { subscribe: 'authenticated', publish: 'authenticated' } };
    const stack = buildStack({ namespaces });
    const template = templateOf(stack);
    for (const fn of Object.values(functionsOf(stack, template))) {
      expect((fn.Properties.Environment as { Variables: Record<string, string> }).Variables.NAMESPACES_JSON).toBe(JSON.stringify(namespaces));
    }
    expect(containerEnv(template).NAMESPACES_JSON).toBe(JSON.stringify(namespaces));
  });

  test('limits: USER_PUBLISH_PER_MINUTE, USER_NEW_CHANNELS_PER_HOUR and USER_RETAINED_BYTES on the functions that publish (publish API, WebSocket messages)', () => {
    const stack = buildStack({ webSocket: { mode: 'both' }, limits: { userPublishPerMinute: 120, userNewChannelsPerHour: 30, userRetainedBytes: 1_000_000 } });
    const template = templateOf(stack);
    for (const fn of [stack.publishApi.handler, stack.webSocket!.messageFunction]) {
      const vars = (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(vars).toMatchObject({ USER_PUBLISH_PER_MINUTE: '120', USER_NEW_CHANNELS_PER_HOUR: '30', USER_RETAINED_BYTES: '1000000' });
    }
  });

  test('limits: only the keys set are passed (0 = off is passed too); none set leaves the runtime defaults', () => {
    const only = templateOf(buildStack({ limits: { userNewChannelsPerHour: 0 } }));
    only.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ USER_NEW_CHANNELS_PER_HOUR: '0', USER_PUBLISH_PER_MINUTE: Match.absent() }) } });
    const none = JSON.stringify(templateOf(buildStack()).toJSON());
    expect(none).not.toMatch(/USER_PUBLISH_PER_MINUTE|USER_NEW_CHANNELS_PER_HOUR/);
  });

  test('reserved concurrency (opt-in): publishApi.reservedConcurrency and webSocket.messageReservedConcurrency set the fan-out functions', () => {
    const stack = buildStack({ publishApi: { reservedConcurrency: 40 }, webSocket: { mode: 'both', messageReservedConcurrency: 60 } });
    const template = templateOf(stack);
    const reserved = (f: { function: import('aws-cdk-lib/aws-lambda').Function }) => template.toJSON().Resources[logicalIdOf(f.function)].Properties.ReservedConcurrentExecutions;
    expect(reserved(stack.publishApi.handler)).toBe(40);
    expect(reserved(stack.webSocket!.messageFunction)).toBe(60);
  });

  test('reserved concurrency 0: no reservation (the property absent), never Lambda\'s 0 that throttles every call', () => {
    const stack = buildStack({ publishApi: { reservedConcurrency: 0 }, webSocket: { mode: 'both', messageReservedConcurrency: 0 } });
    const template = templateOf(stack);
    const reserved = (f: { function: import('aws-cdk-lib/aws-lambda').Function }) => template.toJSON().Resources[logicalIdOf(f.function)].Properties;
    expect(reserved(stack.publishApi.handler)).not.toHaveProperty('ReservedConcurrentExecutions');
    expect(reserved(stack.webSocket!.messageFunction)).not.toHaveProperty('ReservedConcurrentExecutions');
  });

  test('trustedPrincipals unset (secure default): TRUSTED_PRINCIPALS is set, empty, on the ticket issuer, publish and revoke functions', () => {
    const stack = buildStack();
    const template = templateOf(stack);
    for (const fn of [stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler]) {
      const vars = (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(vars.TRUSTED_PRINCIPALS).toBe('');
    }
  });

  test('trustedPrincipals: several ARNs joined with commas, role paths kept', () => {
    const arns = ['arn:aws:iam::123456789012:role/service/publisher', 'arn:aws:iam::123456789012:user/ops-bot'];
    const stack = buildStack({ trustedPrincipals: arns });
    templateOf(stack).hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TRUSTED_PRINCIPALS: arns.join(','), WS_MANAGEMENT_ENDPOINT: Match.absent(), SSE_URL: Match.anyValue() }) },
    });
  });

  test('no namespaces configured: NAMESPACES_JSON is left unset (the runtime defaults apply)', () => {
    const stack = buildStack();
    const template = templateOf(stack);
    for (const fn of Object.values(functionsOf(stack, template))) {
      expect((fn.Properties.Environment as { Variables: Record<string, string> }).Variables).not.toHaveProperty('NAMESPACES_JSON');
    }
  });

  test('defaults (empty config): 2 SSE tasks to 10, 2 Redis nodes, IAM tickets, no CORS, 30-day logs', () => {
    const template = templateOf(buildStack());
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 2, MaxCapacity: 10 });
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { NumCacheClusters: 2, MultiAZEnabled: true, Engine: 'valkey', EngineVersion: '8.0' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'AWS_IAM' });
    template.allResourcesProperties('AWS::ApiGatewayV2::Api', { CorsConfiguration: Match.absent() });
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  test('two stages in one app: both synthesise side by side', () => {
    const { app } = buildStageApp('dev');
    const { RealtimeStack } = jest.requireActual('../../lib/realtime-stack') as typeof import('../../lib/realtime-stack');
    new RealtimeStack(app, 'Realtime-second', { stageName: 'second', config: {} });
    const assembly = app.synth();
    expect(assembly.stacks.map((s) => s.stackName).sort()).toEqual(['Realtime-dev', 'Realtime-second']);
  });
});

describe('RealtimeStack validation', () => {
  const make = (config: RealtimeStageConfig, stageName = 'test') => () => new RealtimeStack(newApp(), 'Realtime', { stageName, config });

  test.each<[string, RealtimeStageConfig, RegExp]>([
    ['log retention that CloudWatch does not offer', { logRetentionDays: 8 }, /^Realtime: logRetentionDays \(8\) is not a CloudWatch Logs retention\. Use one of 1, 3, 5, 7, 14, 30/],
    ['ticket TTL below 5 s', { ticketTtlSeconds: 2 }, /^Realtime: ticketTtlSeconds \(2\) must be an integer from 5 to 300 seconds/],
    ['payload above the WebSocket frame size', { maxPayloadBytes: 40_000 }, /maxPayloadBytes \(40000\) must be an integer from 256 to 32768 bytes/],
    [
      'namespaces too big for the Lambda environment',
      { namespaces: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`namespace-${i}`, { subscribe: 'authenticated', publish: 'authenticated' }])) },
      /^Realtime: namespaces is \d+ bytes as JSON \(NAMESPACES_JSON\), over 2048\. Merge namespaces/,
    ],
    [
      'vpcId and vpcAttributes together',
      { network: { vpcId: 'vpc-0123456789abcdef0', vpcAttributes: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: [], publicSubnetIds: [], privateSubnetIds: [] } } },
      /^Realtime: network\.vpcId and network\.vpcAttributes are both set\. Keep one/,
    ],
    [
      'new-VPC options on an existing VPC',
      {
        network: {
          natGateways: 2,
          vpcAttributes: { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['a', 'b'], publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'], privateSubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] },
        },
      },
      /^Realtime\/Network: natGateways only apply to a new VPC/,
    ],
    ['negative publish reserved concurrency', { publishApi: { reservedConcurrency: -1 } }, /^Realtime\/PublishApi: reservedConcurrency \(-1\) must be an integer from 0 to 10000/],
    ['WebSocket message reserved concurrency above 10000', { webSocket: { mode: 'both', messageReservedConcurrency: 20_000 } }, /^Realtime\/WebSocket: messageReservedConcurrency \(20000\) must be an integer from 0 to 10000/],
    ['negative publish limit', { limits: { userPublishPerMinute: -1 } }, /^Realtime: limits\.userPublishPerMinute \(-1\) must be an integer from 0 to 1000000\. Set limits\.userPublishPerMinute within that range$/],
    ['new-channel limit above the runtime maximum', { limits: { userNewChannelsPerHour: 1_000_001 } }, /^Realtime: limits\.userNewChannelsPerHour \(1000001\) must be an integer from 0 to 1000000/],
    ['retained-bytes limit above the runtime maximum', { limits: { userRetainedBytes: 2 ** 31 } }, /^Realtime: limits\.userRetainedBytes \(2147483648\) must be an integer from 0 to 1073741824 bytes/],
    ['SSE heartbeat too close to the idle timeout', { sse: { heartbeatMs: 20_000, idleTimeoutSeconds: 30 } }, /^Realtime\/Sse: heartbeatMs \(20000\) must be at most half the ALB idle timeout \(30 s\)/],
  ])('%s: fails', (_name, config, message) => {
    expect(make(config)).toThrow(message);
  });

  test('stage name that cannot be an SSM path segment: fails', () => {
    expect(make({}, 'Prod_1')).toThrow(/^Realtime: stageName "Prod_1" is not valid\. Use 1 to 32 lowercase letters, digits or "-", starting with a letter/);
  });
});
describe('webSocket.mode: where WebSockets terminate', () => {
  const wsApis = (t: Template) => Object.values(t.findResources('AWS::ApiGatewayV2::Api')).filter((r) => r.Properties.ProtocolType === 'WEBSOCKET');
  const issuerWsUrl = (t: Template) =>
    Object.values(blueprintFunctions(t))
      .map((fn) => (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables)
      .filter((v) => 'SSE_URL' in v)
      .map((v) => v.WS_URL);

  describe('tasks', () => {
    let stack: RealtimeStack;
    let template: Template;
    beforeAll(() => {
      stack = buildStack({ webSocket: { mode: 'tasks' } });
      template = templateOf(stack);
    });

    test('mode tasks: no API Gateway WebSocket resources (API, routes, authorizer, its functions, its alarm)', () => {
      expect(stack.webSocket).toBeUndefined();
      expect(wsApis(template)).toEqual([]);
      template.resourceCountIs('AWS::ApiGatewayV2::Authorizer', Object.keys(template.findResources('AWS::ApiGatewayV2::Authorizer', { Properties: { AuthorizerType: 'JWT' } })).length);
      expect(Object.keys(template.findResources('AWS::CloudWatch::Alarm')).filter((id) => id.includes('WebSocketIntegrationErrors'))).toEqual([]);
      expect(Object.keys(functionsOf(stack, template)).filter((id) => /^WebSocket/.test(id))).toEqual([]);
    });

    test('mode tasks: outputs and SSM parameters name LiveUrl (ws://…/live on the ALB), no WebSocketUrl', () => {
      const outputs = template.findOutputs('*');
      expect(Object.keys(outputs).sort()).toEqual(['EventBusArn', 'LiveUrl', 'PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl']);
      template.hasOutput('LiveUrl', { Value: stack.resolve(stack.sse.liveUrl) });
      expect(JSON.stringify(stack.resolve(stack.sse.liveUrl))).toMatch(/"ws:\/\/".*"\/live"/);
      template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/realtime/test/LiveUrl', Value: stack.resolve(stack.sse.liveUrl) });
      template.resourceCountIs('AWS::SSM::Parameter', 7);
    });

    test('mode tasks: the ticket issuer hands out the tasks\' URL', () => {
      expect(issuerWsUrl(template)).toEqual([stack.resolve(stack.sse.liveUrl)]);
    });

    test('mode tasks: upgrades ride the one listener to the tasks (no listener rule), idle timeout >= 2 x heartbeat', () => {
      template.resourceCountIs('AWS::ElasticLoadBalancingV2::ListenerRule', 0);
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { DefaultActions: [Match.objectLike({ Type: 'forward' })] });
      const idle = Number(attributes(Object.values(template.findResources('AWS::ElasticLoadBalancingV2::LoadBalancer'))[0].Properties.LoadBalancerAttributes)['idle_timeout.timeout_seconds']);
      expect(idle * 1000).toBeGreaterThanOrEqual(2 * Number(containerEnv(template).HEARTBEAT_MS));
    });

    test('mode tasks: an HTTPS stage hands out wss://', () => {
      const https = buildStack({ webSocket: { mode: 'tasks' }, sse: { certificateArn: CERT, domainName: 'rt.example.com' } });
      expect(https.sse.liveUrl).toBe('wss://rt.example.com/live');
    });

    test('mode tasks with API Gateway keys: fails naming the keys and the fix', () => {
      expect(() => buildStack({ webSocket: { mode: 'tasks', throttleRateLimit: 10 } })).toThrow(/webSocket\.mode is "tasks" but webSocket\.throttleRateLimit .*Drop those keys, or use mode "both" or "apigateway"/s);
    });
  });

  describe('apigateway', () => {
    let stack: RealtimeStack;
    let template: Template;
    beforeAll(() => {
      stack = buildStack({ webSocket: { mode: 'apigateway' } });
      template = templateOf(stack);
    });

    test('mode apigateway: the WebSocket API, WebSocketUrl only, and the ticket issuer hands out its URL', () => {
      expect(wsApis(template)).toHaveLength(1);
      expect(Object.keys(template.findOutputs('*')).sort()).toEqual(['EventBusArn', 'PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl', 'WebSocketUrl']);
      expect(issuerWsUrl(template)).toEqual([stack.resolve(stack.webSocket!.url)]);
    });
  });

  describe('the default: tasks', () => {
    test('an empty stage: mode tasks, no API Gateway WebSocket API, LiveUrl, tickets name the tasks', () => {
      const stack = buildStack();
      const template = templateOf(stack);
      expect(stack.webSocketMode).toBe('tasks');
      expect(stack.webSocket).toBeUndefined();
      expect(wsApis(template)).toEqual([]);
      expect(Object.keys(template.findOutputs('*'))).not.toContain('WebSocketUrl');
      expect(issuerWsUrl(template)).toEqual([stack.resolve(stack.sse.liveUrl)]);
    });
  });

  describe('both (the migration mode)', () => {
    test('mode both: the WebSocket API and LiveUrl; tickets name the tasks', () => {
      const stack = buildStack({ webSocket: { mode: 'both' } });
      const template = templateOf(stack);
      expect(stack.webSocketMode).toBe('both');
      expect(wsApis(template)).toHaveLength(1);
      expect(Object.keys(template.findOutputs('*'))).toEqual(expect.arrayContaining(['WebSocketUrl', 'LiveUrl']));
      expect(issuerWsUrl(template)).toEqual([stack.resolve(stack.sse.liveUrl)]);
    });
  });
});

describe('webSocket.mode and the per-user publish limits', () => {
  test('limits: with WebSockets on the tasks, the task container gets USER_PUBLISH_PER_MINUTE and USER_NEW_CHANNELS_PER_HOUR too', () => {
    const env = containerEnv(templateOf(buildStack({ webSocket: { mode: 'tasks' }, limits: { userPublishPerMinute: 7, userNewChannelsPerHour: 9 } })));
    expect(env).toMatchObject({ USER_PUBLISH_PER_MINUTE: '7', USER_NEW_CHANNELS_PER_HOUR: '9' });
  });
  test('limits: mode apigateway leaves the task container without them (nothing publishes there)', () => {
    const env = containerEnv(templateOf(buildStack({ webSocket: { mode: 'apigateway' }, limits: { userPublishPerMinute: 7 } })));
    expect(env.USER_PUBLISH_PER_MINUTE).toBeUndefined();
  });
});
