/**
 * Fine-grained assertions for every promise of the blueprint, on the stages of cdk.json (built as bin/app.ts builds them)
 * and on a few configs that switch behaviour. Each template is built once per describe.
 */
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import { DRAIN_MARGIN_MS, drainTiming, EXIT_MARGIN_SECONDS, FARGATE_MAX_STOP_TIMEOUT_SECONDS } from '../../lib/drain-timing';
import type { RealtimeStack } from '../../lib/realtime-stack';
import { MESSAGE_ROUTES, TICKET_IDENTITY_SOURCE } from '../../lib/websocket-api';
import { buildStack, buildStageApp, CDK_CONTEXT, logicalIdOf, onlyLogicalId, templateOf } from './support';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

/** Attributes of a load balancer or target group as a map. */
function attributes(list: unknown): Record<string, string> {
  return Object.fromEntries((list as { Key: string; Value: string }[]).map((a) => [a.Key, a.Value]));
}

/** The environment of the SSE container as a map. */
function containerEnv(template: Template): Record<string, unknown> {
  const [taskDef] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as Resources[string][];
  const [container] = taskDef.Properties.ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[];
  return Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]));
}

/** The SSE container definition (the task has one container). */
function container(template: Template): Record<string, unknown> {
  const [taskDef] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as Resources[string][];
  const [c] = taskDef.Properties.ContainerDefinitions as Record<string, unknown>[];
  return c;
}

/** The stop sequence as deployed: target group deregistration delay, drain window, poll interval, container stopTimeout. */
function stopSequence(template: Template) {
  const [tg] = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')) as Resources[string][];
  const env = containerEnv(template);
  return {
    delaySeconds: Number(attributes(tg.Properties.TargetGroupAttributes)['deregistration_delay.timeout_seconds']),
    drainTimeoutMs: Number(env.DRAIN_TIMEOUT_MS),
    stopPollMs: Number(env.STOP_POLL_MS),
    stopTimeoutSeconds: container(template).StopTimeout as number,
  };
}

/** Checks the relations drainTiming promises, on a deployed stop sequence. */
function expectDrainInsideDelay(seq: ReturnType<typeof stopSequence>): void {
  // metadata path: seen STOPPED within one poll, drained, with a margin, before the ALB cuts the streams
  expect(seq.stopPollMs + seq.drainTimeoutMs + DRAIN_MARGIN_MS).toBeLessThanOrEqual(seq.delaySeconds * 1000);
  // SIGTERM fallback: the drain and the exit fit between SIGTERM and SIGKILL, within Fargate's ceiling
  expect(seq.stopTimeoutSeconds * 1000).toBeGreaterThanOrEqual(seq.drainTimeoutMs + EXIT_MARGIN_SECONDS * 1000);
  expect(seq.stopTimeoutSeconds).toBeLessThanOrEqual(FARGATE_MAX_STOP_TIMEOUT_SECONDS);
  expect(seq.drainTimeoutMs).toBeGreaterThan(0);
}

/** The blueprint's own functions (the CDK custom resource provider is not one): they all carry NODE_OPTIONS. */
function blueprintFunctions(template: Template): Resources {
  return template.findResources('AWS::Lambda::Function', {
    Properties: { Environment: { Variables: { NODE_OPTIONS: Match.stringLikeRegexp('--enable-source-maps') } } },
  }) as Resources;
}


describe('dev stage (cdk.json, IAM tickets, HTTP listener, single Redis node)', () => {
  let stack: RealtimeStack;
  let template: Template;
  beforeAll(() => {
    stack = buildStageApp('dev').stack;
    template = templateOf(stack);
  });

  test('load balancer stickiness: on, by load balancer cookie', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'stickiness.enabled', Value: 'true' },
        { Key: 'stickiness.type', Value: 'lb_cookie' },
      ]),
    });
  });

  test('ALB idle timeout: at least twice the heartbeat, above the long-poll timeout', () => {
    const lbAttrs = new Capture();
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { LoadBalancerAttributes: lbAttrs });
    const idleSeconds = Number(attributes(lbAttrs.asArray())['idle_timeout.timeout_seconds']);
    const env = containerEnv(template);
    expect(idleSeconds * 1000).toBeGreaterThanOrEqual(2 * Number(env.HEARTBEAT_MS));
    expect(idleSeconds * 1000).toBeGreaterThan(Number(env.POLL_TIMEOUT_MS));
    expect(env).toMatchObject({ HEARTBEAT_MS: '15000', POLL_TIMEOUT_MS: '25000' });
  });

  test('drain timing: DRAIN_TIMEOUT_MS, STOP_POLL_MS, container StopTimeout and the deregistration delay agree (30 s default)', () => {
    const seq = stopSequence(template);
    expect(seq).toEqual({ delaySeconds: 30, ...drainTiming(30) });
    expectDrainInsideDelay(seq);
  });

  test('TRUST_PROXY_HOPS: 1 behind the ALB (client IP = right-most X-Forwarded-For entry)', () => {
    expect(containerEnv(template).TRUST_PROXY_HOPS).toBe('1');
  });

  test('load balancer: internet-facing, HTTP/2 on, invalid header fields dropped', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'routing.http2.enabled', Value: 'true' },
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
      ]),
    });
  });

  test('no certificate: one HTTP listener on port 80 forwarding to the tasks, and cookies not Secure', () => {
    template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    expect(containerEnv(template).COOKIE_SECURE).toBe('false');
  });

  test('health checks: the target group checks /healthz (liveness), and no health check uses the deep Redis readiness check', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { HealthCheckPath: '/healthz' });
    for (const tg of Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup'))) {
      expect(tg.Properties.HealthCheckPath).toBe('/healthz');
    }
    // an ECS container health check, if one is ever added, must use liveness too
    const healthCheck = container(template).HealthCheck;
    expect(JSON.stringify(healthCheck ?? {})).not.toMatch(/deep/);
    if (healthCheck) expect(JSON.stringify(healthCheck)).toMatch(/\/healthz/);
    expect(JSON.stringify(template.toJSON())).not.toMatch(/healthz\?deep/);
  });

  test('SseUnhealthyTargets alarm: describes a liveness failure, not Redis (a Redis outage no longer fails /healthz)', () => {
    const description = new Capture();
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'UnHealthyHostCount', AlarmDescription: description });
    expect(description.asString()).toMatch(/liveness/);
    expect(description.asString()).not.toMatch(/Redis unreachable/);
  });

  test('target group: health check on /healthz, short deregistration delay for endless streams', () => {
    const tgAttrs = new Capture();
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/healthz',
      Matcher: { HttpCode: '200' },
      Port: 8080,
      TargetType: 'ip',
      TargetGroupAttributes: tgAttrs,
    });
    expect(Number(attributes(tgAttrs.asArray())['deregistration_delay.timeout_seconds'])).toBeLessThanOrEqual(60);
  });

  test('SSE task: ARM64, nofile ulimit of at least 65536, port 8080, read-only root filesystem', () => {
    const ulimits = new Capture();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      RequiresCompatibilities: ['FARGATE'],
      ContainerDefinitions: [
        Match.objectLike({
          Ulimits: ulimits,
          PortMappings: [{ ContainerPort: 8080, Protocol: 'tcp' }],
          ReadonlyRootFilesystem: true,
        }),
      ],
    });
    const nofile = (ulimits.asArray() as { Name: string; SoftLimit: number; HardLimit: number }[]).find((u) => u.Name === 'nofile');
    expect(nofile?.SoftLimit).toBeGreaterThanOrEqual(65536);
    expect(nofile?.HardLimit).toBeGreaterThanOrEqual(65536);
  });

  test('SSE task: Redis AUTH and the session secret come in as ECS secrets, never as plain environment', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Secrets: Match.arrayWith([
            { Name: 'SESSION_SECRET', ValueFrom: stack.resolve(stack.sse.sessionSecret.secretArn) },
            { Name: 'REDIS_PASSWORD', ValueFrom: stack.resolve(stack.redis.authToken.secretArn) },
          ]),
        }),
      ],
    });
    const env = containerEnv(template);
    expect(Object.keys(env)).not.toEqual(expect.arrayContaining(['REDIS_PASSWORD']));
    expect(Object.keys(env)).not.toEqual(expect.arrayContaining(['SESSION_SECRET']));
    expect(env).toMatchObject({
      PORT: '8080',
      REDIS_URL: stack.resolve(stack.redis.url),
      KEY_PREFIX: 'rt:',
      ALLOWED_ORIGINS: 'http://localhost:5173',
      LOG_LEVEL: 'debug',
    });
  });

  test('session secret: generated, at least 32 characters, no commas (the runtime splits on them)', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Description: Match.stringLikeRegexp('SESSION_SECRET'),
      GenerateSecretString: { PasswordLength: Match.anyValue(), ExcludePunctuation: true },
    });
    const secrets = template.findResources('AWS::SecretsManager::Secret');
    for (const s of Object.values(secrets)) {
      expect(s.Properties.GenerateSecretString.PasswordLength).toBeGreaterThanOrEqual(32);
    }
  });

  test('ECS service: circuit breaker with rollback, no public IP, private subnets', () => {
    template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DeploymentConfiguration: Match.objectLike({
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
        MinimumHealthyPercent: 100,
      }),
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
  });

  test('autoscaling: target tracking on ALB connections per healthy task and on CPU', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 1,
      MaxCapacity: 4,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 10000,
        CustomizedMetricSpecification: {
          Metrics: Match.arrayWith([
            Match.objectLike({ Id: 'connections', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ActiveConnectionCount' }) }) }),
            Match.objectLike({ Id: 'tasks', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'HealthyHostCount' }) }) }),
            Match.objectLike({ Expression: 'connections / tasks', ReturnData: true }),
          ]),
        },
      }),
    });
  });

  test('Redis: in-transit encryption and an AUTH token resolved from Secrets Manager, encrypted at rest', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      TransitEncryptionEnabled: true,
      AtRestEncryptionEnabled: true,
      AuthToken: {
        'Fn::Join': ['', ['{{resolve:secretsmanager:', stack.resolve(stack.redis.authToken.secretArn), ':SecretString:::}}']],
      },
      Engine: 'valkey',
    });
  });

  test('Redis with one node (dev): no Multi-AZ, no automatic failover', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      NumCacheClusters: 1,
      MultiAZEnabled: false,
      AutomaticFailoverEnabled: false,
    });
  });

  test('Redis memory: a valkey8 parameter group with maxmemory-policy noeviction, used by the replication group', () => {
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', {
      CacheParameterGroupFamily: 'valkey8',
      Properties: { 'maxmemory-policy': 'noeviction' },
    });
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      CacheParameterGroupName: { Ref: onlyLogicalId(template, 'AWS::ElastiCache::ParameterGroup') },
    });
  });

  test('Redis alarms: Evictions above 0 and DatabaseMemoryUsagePercentage at or above 80 %, max over the nodes', () => {
    const metricIn = (name: string) => Match.arrayWith([Match.objectLike({ MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: name }) }) })]);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: metricIn('Evictions'),
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: metricIn('DatabaseMemoryUsagePercentage'),
      Threshold: 80,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
  });

  test('Redis removal policy (dev: destroy): deleted with the stack, no final snapshot', () => {
    const [group] = Object.values(template.findResources('AWS::ElastiCache::ReplicationGroup'));
    expect(group.DeletionPolicy ?? 'Delete').toBe('Delete');
    expect(group.UpdateReplacePolicy ?? 'Delete').toBe('Delete');
  });

  test('Redis security group: ingress only from the SSE task and the Lambda security groups, on the Redis port', () => {
    const redisSg = stack.resolve(stack.redis.securityGroup.securityGroupId);
    const allowed = [
      stack.resolve(stack.sse.service.connections.securityGroups[0].securityGroupId),
      ...[...stack.webSocket.functions, stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler].map((f) => stack.resolve(f.connections.securityGroups[0].securityGroupId)),
    ];
    const ingress = Object.values(template.findResources('AWS::EC2::SecurityGroupIngress', { Properties: { GroupId: redisSg } })) as Resources[string][];
    expect(ingress.map((r) => r.Properties.SourceSecurityGroupId)).toEqual(expect.arrayContaining(allowed));
    expect(ingress).toHaveLength(allowed.length);
    for (const rule of ingress) {
      expect(rule.Properties).toMatchObject({ IpProtocol: 'tcp', FromPort: 6379, ToPort: 6379 });
      expect(rule.Properties).not.toHaveProperty('CidrIp');
      expect(rule.Properties).not.toHaveProperty('CidrIpv6');
    }
    // and no inline ingress on the group itself
    const groupId = onlyLogicalId(template, 'AWS::EC2::SecurityGroup', { GroupDescription: Match.stringLikeRegexp('Realtime Redis') });
    expect(template.toJSON().Resources[groupId].Properties.SecurityGroupIngress).toBeUndefined();
  });

  test('WebSocket authorizer: REQUEST type, identity source is the ticket query string, on $connect', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'REQUEST',
      IdentitySource: [TICKET_IDENTITY_SOURCE],
    });
    expect(TICKET_IDENTITY_SOURCE).toBe('route.request.querystring.ticket');
    const authorizerId = onlyLogicalId(template, 'AWS::ApiGatewayV2::Authorizer');
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
      RouteKey: '$connect',
      AuthorizationType: 'CUSTOM',
      AuthorizerId: { Ref: authorizerId },
    });
  });

  test('WebSocket routes: selection by $request.body.action, the protocol routes of 2/4 and $default', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'WEBSOCKET', RouteSelectionExpression: '$request.body.action' });
    const wsApi = stack.resolve(stack.webSocket.api.apiId);
    const keys = Object.values(template.findResources('AWS::ApiGatewayV2::Route', { Properties: { ApiId: wsApi } })).map((r) => r.Properties.RouteKey);
    expect(keys.sort()).toEqual(['$connect', '$default', '$disconnect', ...MESSAGE_ROUTES].sort());
  });

  test('WebSocket stage: throttled, with access logs', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      ApiId: stack.resolve(stack.webSocket.api.apiId),
      StageName: 'live',
      DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: 500, ThrottlingBurstLimit: 1000 }),
      AccessLogSettings: Match.objectLike({ DestinationArn: stack.resolve(stack.webSocket.accessLogGroup.logGroupArn) }),
    });
  });

  test('publish route: POST /publish with IAM authorisation', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /publish', AuthorizationType: 'AWS_IAM' });
  });

  test('ticket route (dev default): POST /tickets with IAM authorisation', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'AWS_IAM' });
  });

  test('backend tickets (IAM stage): POST /tickets itself serves backends, no second route', () => {
    const ticketApi = stack.resolve(stack.ticketApi.endpoint.api.apiId);
    const keys = Object.values(template.findResources('AWS::ApiGatewayV2::Route', { Properties: { ApiId: ticketApi } })).map((r) => r.Properties.RouteKey);
    expect(keys).toEqual(['POST /tickets']);
    expect(stack.ticketApi.backendUrl).toBe(stack.ticketApi.url);
  });

  test('no unauthenticated route: every HTTP route is IAM or JWT; on the WebSocket only $connect is entered, through the authorizer', () => {
    const wsApi = JSON.stringify(stack.resolve(stack.webSocket.api.apiId));
    for (const route of Object.values(template.findResources('AWS::ApiGatewayV2::Route')) as Resources[string][]) {
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

  test('HTTP API stages: throttled and access-logged; CORS on the ticket API from allowedOrigins, none on publish', () => {
    template.resourcePropertiesCountIs('AWS::ApiGatewayV2::Stage', { StageName: '$default', DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: Match.anyValue() }), AccessLogSettings: Match.anyValue() }, 2);
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      Description: 'Realtime ticket API',
      CorsConfiguration: Match.objectLike({ AllowOrigins: ['http://localhost:5173'], AllowMethods: ['POST'] }),
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
      ProtocolType: 'HTTP',
      Description: 'Realtime publish API (IAM)',
      CorsConfiguration: Match.absent(),
    });
  });

  test('Lambdas: seven, all Node.js 24 on ARM64, bundled with source maps enabled, traced, in the VPC', () => {
    const fns = Object.values(blueprintFunctions(template));
    expect(fns).toHaveLength(7);
    for (const fn of fns) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        TracingConfig: { Mode: 'Active' },
        VpcConfig: expect.objectContaining({ SubnetIds: expect.any(Array) }),
      });
    }
  });

  test('Lambda environment: Redis, runtime limits and Powertools settings on every function', () => {
    for (const fn of Object.values(blueprintFunctions(template))) {
      expect((fn.Properties.Environment as { Variables: object }).Variables).toMatchObject({
        REDIS_URL: stack.resolve(stack.redis.url),
        REDIS_SECRET_ARN: stack.resolve(stack.redis.authToken.secretArn),
        KEY_PREFIX: 'rt:',
        TICKET_TTL_SECONDS: '30',
        MAX_PAYLOAD_BYTES: '32768',
        LOG_LEVEL: 'debug',
        POWERTOOLS_LOG_LEVEL: 'DEBUG',
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
  });

  test('ticket issuer: knows the public SSE and WebSocket URLs', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ SSE_URL: stack.resolve(stack.sse.eventsUrl), WS_URL: stack.resolve(stack.webSocket.url) }) },
    });
    expect(JSON.stringify(stack.resolve(stack.sse.eventsUrl))).toMatch(/\/events/);
    expect(JSON.stringify(stack.resolve(stack.webSocket.url))).toMatch(/wss:\/\//);
  });

  test('Lambdas read the Redis AUTH token: every function role may GetSecretValue on that secret only', () => {
    const secret = stack.resolve(stack.redis.authToken.secretArn);
    for (const fn of [...stack.webSocket.functions, stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler]) {
      const role = logicalIdOf(fn.function.role!);
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: role }],
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['secretsmanager:GetSecretValue']), Resource: secret })]) },
      });
    }
  });

  test('execute-api:ManageConnections: POST only for publish and ws-message, DELETE only for revoke, on this API\'s stage, nothing else', () => {
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) =>
      (p.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[])
        .filter((st) => JSON.stringify(st.Action).includes('execute-api:ManageConnections') || JSON.stringify(st.Action).includes('execute-api:*'))
        .map((st) => ({ roles: p.Properties.Roles as unknown[], action: st.Action, resource: st.Resource })),
    );
    const apiRef = stack.resolve(stack.webSocket.api.apiId);
    const arn = (method: string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':execute-api:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':', apiRef, `/live/${method}/@connections/*`]],
    });
    const role = (f: { function: { role?: unknown } }) => ({ Ref: logicalIdOf(f.function.role as never) });
    expect(statements).toEqual(
      expect.arrayContaining([
        { roles: [role(stack.publishApi.handler)], action: 'execute-api:ManageConnections', resource: arn('POST') },
        { roles: [role(stack.webSocket.messageFunction)], action: 'execute-api:ManageConnections', resource: arn('POST') },
        { roles: [role(stack.publishApi.revokeHandler)], action: 'execute-api:ManageConnections', resource: arn('DELETE') },
      ]),
    );
    expect(statements).toHaveLength(3);
    expect(JSON.stringify(statements)).not.toMatch(/\/(GET|\*)\/@connections/);
  });

  test('revoke route: POST /revoke with IAM authorisation, on the publish API, to its own function', () => {
    const publishApi = stack.resolve(stack.publishApi.endpoint.api.apiId);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { ApiId: publishApi, RouteKey: 'POST /revoke', AuthorizationType: 'AWS_IAM' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      ApiId: publishApi,
      IntegrationUri: stack.resolve(stack.publishApi.revokeHandler.function.functionArn),
    });
  });

  test('TRUSTED_PRINCIPALS: on the ticket issuer, publish and revoke functions only; dev trusts no IAM caller (explicit [] in cdk.json)', () => {
    const withVar = Object.entries(blueprintFunctions(template))
      .filter(([, fn]) => 'TRUSTED_PRINCIPALS' in (fn.Properties.Environment as { Variables: object }).Variables)
      .map(([id, fn]) => [id, (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables.TRUSTED_PRINCIPALS]);
    const expected = [stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler].map((f) => [logicalIdOf(f.function), '']);
    expect(withVar.sort()).toEqual(expected.sort());
  });

  test('reserved concurrency: 100 on each fan-out function (publish, ws-message), none on the others', () => {
    const fanOut = [stack.publishApi.handler, stack.webSocket.messageFunction].map((f) => logicalIdOf(f.function));
    for (const [id, fn] of Object.entries(blueprintFunctions(template))) {
      expect([id, fn.Properties.ReservedConcurrentExecutions]).toEqual([id, fanOut.includes(id) ? 100 : undefined]);
    }
  });

  test('WS_MANAGEMENT_ENDPOINT: set on exactly the functions that fan out or close connections, to https://{api}.execute-api.{region}/{stage}', () => {
    const withEndpoint = Object.keys(blueprintFunctions(template)).filter((id) => {
      const vars = (template.toJSON().Resources[id].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      return 'WS_MANAGEMENT_ENDPOINT' in vars;
    });
    expect(withEndpoint.sort()).toEqual([stack.publishApi.handler, stack.webSocket.messageFunction, stack.publishApi.revokeHandler].map((f) => logicalIdOf(f.function)).sort());
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          WS_MANAGEMENT_ENDPOINT: {
            'Fn::Join': ['', ['https://', stack.resolve(stack.webSocket.api.apiId), '.execute-api.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, '/live']],
          },
        }),
      },
    });
  });

  test('outputs: TicketUrl, SseUrl, PollUrl, WebSocketUrl, PublishUrl, RedisEndpoint', () => {
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual(['PollUrl', 'PublishUrl', 'RedisEndpoint', 'SseUrl', 'TicketUrl', 'WebSocketUrl']);
    template.hasOutput('TicketUrl', { Value: stack.resolve(stack.ticketApi.url) });
    template.hasOutput('PublishUrl', { Value: stack.resolve(stack.publishApi.url) });
    template.hasOutput('WebSocketUrl', { Value: stack.resolve(stack.webSocket.url) });
    template.hasOutput('SseUrl', { Value: stack.resolve(stack.sse.eventsUrl) });
  });

  test('SSM parameters: the same values under /realtime/dev/{OutputName}', () => {
    const outputs = template.findOutputs('*');
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

  test('network: a new VPC over 2 AZs, private subnets with a NAT route, one NAT gateway, flow logs on', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false }, 2);
    template.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: true }, 2);
    template.resourcePropertiesCountIs('AWS::EC2::Route', { DestinationCidrBlock: '0.0.0.0/0', NatGatewayId: Match.anyValue() }, 2);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
  });

  test('observability: a dashboard and alarms for 5xx, target health, Lambda errors, Redis CPU and memory, connections', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => JSON.stringify(a.Properties));
    const has = (re: RegExp) => alarms.filter((a) => re.test(a)).length;
    expect(has(/HTTPCode_ELB_5XX_Count/)).toBe(1);
    expect(has(/HTTPCode_Target_5XX_Count/)).toBe(1);
    expect(has(/UnHealthyHostCount/)).toBe(1);
    expect(has(/"MetricName":"HealthyHostCount"/)).toBe(1);
    expect(has(/ActiveConnectionCount/)).toBe(1);
    expect(has(/"MetricName":"Errors"/)).toBe(7);
    expect(has(/"MetricName":"5xx"/)).toBe(2);
    expect(has(/EngineCPUUtilization/)).toBe(1);
    expect(has(/DatabaseMemoryUsagePercentage/)).toBe(1);
    expect(has(/"MetricName":"Evictions"/)).toBe(1);
  });

  test('no alarm topic configured: alarms carry no actions', () => {
    template.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: Match.absent() });
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
        // API Gateway requires Name and CDK derives it from the construct path, unique per stack.
        if (type === 'AWS::ApiGatewayV2::Api') expect(r.Properties[key]).toMatch(/^Realtimedev|^Api$/);
        else expect([type, r.Properties?.[key]]).toEqual([type, undefined]);
      }
    }
  });
});

describe('prod stage (cdk.json: HTTPS, JWT tickets, two Redis nodes, pinned env)', () => {
  let stack: RealtimeStack;
  let template: Template;
  const prod = (CDK_CONTEXT.stages as Record<string, Record<string, Record<string, unknown>>>).prod;
  beforeAll(() => {
    stack = buildStageApp('prod').stack;
    template = templateOf(stack);
  });

  test('environment: pinned to the stage\'s account and region', () => {
    expect(stack.account).toBe(prod.account);
    expect(stack.region).toBe(prod.region);
  });

  test('certificate: HTTPS listener on 443 with the certificate, and HTTP on 80 redirecting to it', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTPS',
      Port: 443,
      Certificates: [{ CertificateArn: prod.sse.certificateArn }],
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'redirect', RedirectConfig: Match.objectLike({ Protocol: 'HTTPS', Port: '443' }) })],
    });
  });

  test('certificate: cookies Secure, SSE URL is https on the configured domain', () => {
    expect(containerEnv(template).COOKIE_SECURE).toBe('true');
    template.hasOutput('SseUrl', { Value: `https://${prod.sse.domainName}/events` });
  });

  test('custom domain: the load balancer DNS name is an output, for the CNAME or alias record', () => {
    template.hasOutput('SseLoadBalancerDnsName', { Value: stack.resolve(stack.sse.loadBalancer.loadBalancerDnsName) });
  });

  test('ticket route: JWT authorizer with the configured issuer and audience', () => {
    const auth = (prod.ticketApi as { auth: { issuer: string; audience: string[] } }).auth;
    const authorizerId = onlyLogicalId(template, 'AWS::ApiGatewayV2::Authorizer', { AuthorizerType: 'JWT' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: { Issuer: auth.issuer, Audience: auth.audience },
      IdentitySource: ['$request.header.Authorization'],
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /tickets', AuthorizationType: 'JWT', AuthorizerId: { Ref: authorizerId } });
  });

  test('backend ticket route (JWT stage): POST /backend/tickets with IAM on the same API and issuer, for granted namespaces', () => {
    const ticketApi = stack.resolve(stack.ticketApi.endpoint.api.apiId);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { ApiId: ticketApi, RouteKey: 'POST /backend/tickets', AuthorizationType: 'AWS_IAM' });
    const issuer = stack.resolve(stack.ticketApi.handler.function.functionArn);
    const integrations = Object.values(template.findResources('AWS::ApiGatewayV2::Integration', { Properties: { ApiId: ticketApi } }));
    expect(integrations.map((i) => stack.resolve(i.Properties.IntegrationUri))).toEqual([issuer, issuer]);
  });

  test('Redis with two nodes: Multi-AZ with automatic failover', () => {
    template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      NumCacheClusters: 2,
      MultiAZEnabled: true,
      AutomaticFailoverEnabled: true,
      CacheNodeType: 'cache.t4g.small',
    });
  });

  test('Redis removal policy (prod: snapshot): a final snapshot before deletion or replacement', () => {
    template.hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });

  test('access logs: on, to an encrypted, SSL-only bucket (the region is known)', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'access_logs.s3.enabled', Value: 'true' }]),
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: Match.objectLike({ BlockPublicAcls: true, RestrictPublicBuckets: true }),
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  test('network: one NAT gateway per AZ', () => {
    template.resourceCountIs('AWS::EC2::NatGateway', 2);
  });

  test('execute-api:ManageConnections: still only this API\'s stage with a pinned account and region', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'execute-api:ManageConnections',
            Resource: { 'Fn::Join': ['', [`arn:aws:execute-api:${prod.region}:${prod.account}:`, stack.resolve(stack.webSocket.api.apiId), '/live/POST/@connections/*']] },
          }),
        ]),
      },
    });
  });

  test('TRUSTED_PRINCIPALS: the stage\'s trustedPrincipals on the ticket issuer, publish and revoke functions', () => {
    const trusted = (prod.trustedPrincipals as unknown as string[]).join(',');
    expect(trusted).toMatch(/^arn:aws:iam::\d{12}:role\//);
    for (const fn of [stack.ticketApi.handler, stack.publishApi.handler, stack.publishApi.revokeHandler]) {
      const vars = (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(vars.TRUSTED_PRINCIPALS).toBe(trusted);
    }
  });

  test('SSM parameters: under /realtime/prod/', () => {
    template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/realtime/prod/TicketUrl' });
  });
});

describe('configs that switch behaviour', () => {
  test.each([10, 90, 300])('drain timing with deregistrationDelaySeconds %i: DRAIN_TIMEOUT_MS, StopTimeout and the delay agree', (delay) => {
    const seq = stopSequence(templateOf(buildStack({ sse: { deregistrationDelaySeconds: delay } })));
    expect(seq).toEqual({ delaySeconds: delay, ...drainTiming(delay) });
    expectDrainInsideDelay(seq);
  });

  test('namespaces: passed through as NAMESPACES_JSON to every Lambda and the SSE task', () => {
    const namespaces = { scores: { subscribe: 'public' }, room: { subscribe: 'authenticated', publish: 'authenticated' } };
    const stack = buildStack({ namespaces });
    const template = templateOf(stack);
    for (const fn of Object.values(blueprintFunctions(template))) {
      expect((fn.Properties.Environment as { Variables: Record<string, string> }).Variables.NAMESPACES_JSON).toBe(JSON.stringify(namespaces));
    }
    expect(containerEnv(template).NAMESPACES_JSON).toBe(JSON.stringify(namespaces));
  });

  test.each<[string, string | undefined, string]>([
    ['valkey', undefined, 'valkey8'],
    ['valkey', '7.2', 'valkey7'],
    ['redis', undefined, 'redis7'],
    ['redis', '7.0', 'redis7'],
  ])('Redis parameter group for %s %s: family %s, maxmemory-policy noeviction', (engine, engineVersion, family) => {
    const template = templateOf(buildStack({ redis: { engine: engine as 'valkey' | 'redis', engineVersion } }));
    template.hasResourceProperties('AWS::ElastiCache::ParameterGroup', { CacheParameterGroupFamily: family, Properties: { 'maxmemory-policy': 'noeviction' } });
  });

  test('Redis removal policy by default: a final snapshot before deletion or replacement', () => {
    templateOf(buildStack()).hasResource('AWS::ElastiCache::ReplicationGroup', { DeletionPolicy: 'Snapshot', UpdateReplacePolicy: 'Snapshot' });
  });

  test('limits: USER_PUBLISH_PER_MINUTE and USER_NEW_CHANNELS_PER_HOUR on the functions that publish (publish API, WebSocket messages)', () => {
    const stack = buildStack({ limits: { userPublishPerMinute: 120, userNewChannelsPerHour: 30 } });
    const template = templateOf(stack);
    for (const fn of [stack.publishApi.handler, stack.webSocket.messageFunction]) {
      const vars = (template.toJSON().Resources[logicalIdOf(fn.function)].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(vars).toMatchObject({ USER_PUBLISH_PER_MINUTE: '120', USER_NEW_CHANNELS_PER_HOUR: '30' });
    }
  });

  test('limits: only the keys set are passed (0 = off is passed too); none set leaves the runtime defaults', () => {
    const only = templateOf(buildStack({ limits: { userNewChannelsPerHour: 0 } }));
    only.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ USER_NEW_CHANNELS_PER_HOUR: '0', USER_PUBLISH_PER_MINUTE: Match.absent() }) } });
    const none = JSON.stringify(templateOf(buildStack()).toJSON());
    expect(none).not.toMatch(/USER_PUBLISH_PER_MINUTE|USER_NEW_CHANNELS_PER_HOUR/);
  });

  test('reserved concurrency: publishApi.reservedConcurrency and webSocket.messageReservedConcurrency set the fan-out functions', () => {
    const stack = buildStack({ publishApi: { reservedConcurrency: 40 }, webSocket: { messageReservedConcurrency: 60 } });
    const template = templateOf(stack);
    const reserved = (f: { function: import('aws-cdk-lib/aws-lambda').Function }) => template.toJSON().Resources[logicalIdOf(f.function)].Properties.ReservedConcurrentExecutions;
    expect(reserved(stack.publishApi.handler)).toBe(40);
    expect(reserved(stack.webSocket.messageFunction)).toBe(60);
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
    const template = templateOf(buildStack());
    for (const fn of Object.values(blueprintFunctions(template))) {
      expect((fn.Properties.Environment as { Variables: Record<string, string> }).Variables).not.toHaveProperty('NAMESPACES_JSON');
    }
  });

  test('alarmTopicArn: every alarm notifies the topic on ALARM and OK', () => {
    const topic = 'arn:aws:sns:eu-west-1:123456789012:ops';
    const template = templateOf(buildStack({ alarmTopicArn: topic }));
    template.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: [topic], OKActions: [topic] });
  });

  test('existing VPC by attributes: no VPC created, the tasks, Lambdas and Redis use the given subnets', () => {
    const template = templateOf(
      buildStack({
        network: {
          vpcAttributes: {
            vpcId: 'vpc-0123456789abcdef0',
            availabilityZones: ['eu-west-1a', 'eu-west-1b'],
            publicSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'],
            privateSubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'],
          },
        },
      }),
    );
    template.resourceCountIs('AWS::EC2::VPC', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.hasResourceProperties('AWS::ElastiCache::SubnetGroup', { SubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Subnets: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0aaaaaaaaaaaaaaa2'] });
    template.allResourcesProperties('AWS::Lambda::Function', { VpcConfig: Match.objectLike({ SubnetIds: ['subnet-0bbbbbbbbbbbbbbb1', 'subnet-0bbbbbbbbbbbbbbb2'] }) });
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
