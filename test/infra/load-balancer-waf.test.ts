/**
 * LoadBalancerWaf: the web ACL on the SSE load balancer, its rules, the switch, and its validations; and the web ACL
 * evaluated (waf-evaluator.ts) against the largest requests the runtime accepts on its streaming paths.
 */
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { randomBytes } from 'node:crypto';
import { CHANNEL_NAMESPACE_MAX_LENGTH, cursorMaxLength, TICKET_BYTES, TICKET_LENGTH } from '../../contract/limits';
import { decodeCursor } from '../../core/cursor';
import { CORE_SETTINGS } from '../../contract/settings';
import { MAX_CHANNEL_LENGTH, parseChannelList } from '../../core/channels';
import { DEFAULTS } from '../../lib/defaults';
import { LoadBalancerWaf, type LoadBalancerWafProps, STREAM_QUERY_MAX_BYTES } from '../../lib/load-balancer-waf';
import { buildStack, buildStageApp, newApp, templateOf } from './support';
import { evaluateWebAcl, rateRuleCounts } from './waf-evaluator';

function build(props: Partial<LoadBalancerWafProps> = {}) {
  const stack = new Stack(newApp(), 'Fixture');
  const loadBalancer = elbv2.ApplicationLoadBalancer.fromApplicationLoadBalancerAttributes(stack, 'Alb', {
    loadBalancerArn: 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/sse/0123456789abcdef',
    securityGroupId: 'sg-0123456789abcdef0',
  });
  new LoadBalancerWaf(stack, 'Waf', { loadBalancer, ...props });
  return Template.fromStack(stack);
}

describe('LoadBalancerWaf', () => {
  test('web ACL: regional, allow by default; the AWS managed common rule set first (blocking, but its query-size and User-Agent rules counted), then their block off the streaming paths, the streaming query bound, the rate rules', () => {
    build().hasResourceProperties('AWS::WAFv2::WebACL', {
      Scope: 'REGIONAL',
      DefaultAction: { Allow: {} },
      Rules: [
        Match.objectLike({
          Name: 'AWSManagedRulesCommonRuleSet',
          Priority: 0,
          OverrideAction: { None: {} },
          Statement: {
            ManagedRuleGroupStatement: {
              VendorName: 'AWS',
              Name: 'AWSManagedRulesCommonRuleSet',
              RuleActionOverrides: [
                { Name: 'SizeRestrictions_QUERYSTRING', ActionToUse: { Count: {} } },
                { Name: 'NoUserAgent_HEADER', ActionToUse: { Count: {} } },
              ],
            },
          },
        }),
        Match.objectLike({ Name: 'CommonRulesOffStreamingPaths', Priority: 1, Action: { Block: {} } }),
        Match.objectLike({ Name: 'StreamingQueryStringSize', Priority: 2, Action: { Block: {} } }),
        Match.objectLike({ Name: 'PerIpRateOnStreamsAndPolls', Priority: 3, Action: { Block: {} } }),
        Match.objectLike({ Name: 'PerIpRateOnHealthChecks', Priority: 4, Action: { Block: {} } }),
      ],
    });
  });

  test('rate rule: per IP, 1000 per 300 s by default, counted on paths starting with /events, /poll or /live (percent-decoded, normalized)', () => {
    const rule = Match.objectLike({
      Statement: {
        RateBasedStatement: {
          Limit: 1000,
          EvaluationWindowSec: 300,
          AggregateKeyType: 'IP',
          ScopeDownStatement: {
            OrStatement: {
              Statements: ['/events', '/poll', '/live'].map((p) => ({
                ByteMatchStatement: {
                  FieldToMatch: { UriPath: {} },
                  PositionalConstraint: 'STARTS_WITH',
                  SearchString: p,
                  TextTransformations: [
                    { Priority: 0, Type: 'URL_DECODE' },
                    { Priority: 1, Type: 'NORMALIZE_PATH' },
                  ],
                },
              })),
            },
          },
        },
      },
    });
    build().hasResourceProperties('AWS::WAFv2::WebACL', { Rules: Match.arrayWith([rule]) });
  });

  test('rateLimit, rateLimitWindowSeconds, healthCheckRateLimit, one path, blockCommonRuleSet false: as given (one path needs no OR); the common rules and their block only count', () => {
    build({ rateLimit: 200, rateLimitWindowSeconds: 60, healthCheckRateLimit: 20, rateLimitedPaths: ['/events'], blockCommonRuleSet: false }).hasResourceProperties('AWS::WAFv2::WebACL', {
      Rules: [
        Match.objectLike({ OverrideAction: { Count: {} } }),
        Match.objectLike({ Name: 'CommonRulesOffStreamingPaths', Action: { Count: {} } }),
        Match.objectLike({ Name: 'StreamingQueryStringSize', Action: { Block: {} } }),
        Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: 200, EvaluationWindowSec: 60, ScopeDownStatement: { ByteMatchStatement: Match.objectLike({ SearchString: '/events' }) } }) } }),
        Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: 20, EvaluationWindowSec: 60 }) } }),
      ],
    });
  });

  test('association: the web ACL on the load balancer', () => {
    const t = build();
    const acl = Object.keys(t.findResources('AWS::WAFv2::WebACL'))[0];
    t.hasResourceProperties('AWS::WAFv2::WebACLAssociation', {
      ResourceArn: 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/sse/0123456789abcdef',
      WebACLArn: { 'Fn::GetAtt': [acl, 'Arn'] },
    });
  });

  test('stages: on in prod (the stack\'s load balancer), off in dev (waf.enabled false in cdk.json); on by default', () => {
    const prod = buildStageApp('prod').stack;
    templateOf(prod).hasResourceProperties('AWS::WAFv2::WebACLAssociation', { ResourceArn: prod.resolve(prod.sse.loadBalancer.loadBalancerArn) });
    templateOf(buildStageApp('dev').stack).resourceCountIs('AWS::WAFv2::WebACL', 0);
    templateOf(buildStack({})).resourceCountIs('AWS::WAFv2::WebACL', 1);
    templateOf(buildStack({ waf: { rateLimit: 50 } })).hasResourceProperties('AWS::WAFv2::WebACL', { Rules: Match.arrayWith([Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: 50 }) } })]) });
  });

  test.each<[string, Partial<LoadBalancerWafProps>, RegExp]>([
    ['rate limit below 10', { rateLimit: 5 }, /^Fixture\/Waf: rateLimit \(5\) must be an integer from 10 to 2000000000 requests/],
    ['health check rate limit below 10', { healthCheckRateLimit: 9 }, /^Fixture\/Waf: healthCheckRateLimit \(9\) must be an integer from 10 to 2000000000 requests/],
    ['a window WAF does not offer', { rateLimitWindowSeconds: 30 }, /^Fixture\/Waf: rateLimitWindowSeconds \(30\) is not a rate-based rule window/],
    ['no paths', { rateLimitedPaths: [] }, /^Fixture\/Waf: rateLimitedPaths \[\] must list at least one path prefix/],
    ['a path without a leading slash', { rateLimitedPaths: ['events'] }, /^Fixture\/Waf: rateLimitedPaths \[events\] must list/],
  ])('%s: fails', (_what, props, message) => {
    expect(() => build(props)).toThrow(message);
  });
});

/**
 * The largest requests the runtime accepts on its streaming paths, built from its own limits (contract/limits.ts and
 * core's channel grammar): CORE_SETTINGS.maxChannelsPerConnection.default distinct channels of MAX_CHANNEL_LENGTH characters whose
 * names are all `|`, `@` and `=` (3 bytes each once percent-encoded), a ticket, and the longest cursor.
 */
function largestStreamingRequests() {
  const namespace = `n${'s'.repeat(CHANNEL_NAMESPACE_MAX_LENGTH - 1)}`;
  const namespaces = { [namespace]: { subscribe: 'public', publish: 'authenticated', historySize: 10, historyTtlSeconds: 60 } } as never;
  const marks = ['|', '@', '='];
  const channels = Array.from({ length: CORE_SETTINGS.maxChannelsPerConnection.default }, (_, i) => {
    const tail = [Math.floor(i / 9) % 3, Math.floor(i / 3) % 3, i % 3].map((d) => marks[d]).join('');
    return `${namespace}:${'|'.repeat(MAX_CHANNEL_LENGTH - namespace.length - 1 - tail.length)}${tail}`;
  });
  // The runtime takes exactly these, and nothing longer or more.
  expect(parseChannelList(channels, namespaces, CORE_SETTINGS.maxChannelsPerConnection.default)).toHaveLength(CORE_SETTINGS.maxChannelsPerConnection.default);
  expect(channels.every((c) => c.length === MAX_CHANNEL_LENGTH)).toBe(true);
  expect(() => parseChannelList([`${channels[0]}|`], namespaces, CORE_SETTINGS.maxChannelsPerConnection.default)).toThrow(/is not "namespace:name"/);
  expect(() => parseChannelList([...channels, `${namespace}:x`], namespaces, CORE_SETTINGS.maxChannelsPerConnection.default)).toThrow(/At most 16 channels/);
  const ticket = randomBytes(TICKET_BYTES).toString('base64url');
  expect(ticket).toHaveLength(TICKET_LENGTH);
  // The longest connection cursor the runtime takes for that many channels: anchor 0, every field the largest safe integer.
  const n = CORE_SETTINGS.maxChannelsPerConnection.default;
  const cursor = `p1.0${`.${Number.MAX_SAFE_INTEGER.toString(36)}`.repeat(n)}`;
  expect(decodeCursor(cursor, n).positions).toEqual(new Array(n).fill(Number.MAX_SAFE_INTEGER));
  expect(cursor.length).toBeLessThanOrEqual(cursorMaxLength(n));
  // As the client SDK encodes them (encodeURIComponent), and with every byte percent-encoded (valid, and the longest form).
  const sdk = encodeURIComponent;
  const every = (v: string) => [...Buffer.from(v)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  const list = channels.join(',');
  return [sdk, every].flatMap((enc) => [
    { path: '/events', query: `channels=${enc(list)}&ticket=${enc(ticket)}&lastEventId=${enc(cursor)}` },
    { path: '/poll', query: `channels=${enc(list)}&cursor=${enc(cursor)}&ticket=${enc(ticket)}` },
    { path: '/live', query: `ticket=${enc(ticket)}` },
  ]);
}

describe('the web ACL and the largest valid streaming requests (no User-Agent: server-side clients often send none)', () => {
  let acl: Record<string, unknown>;
  beforeAll(() => {
    acl = Object.values(build().findResources('AWS::WAFv2::WebACL'))[0].Properties as Record<string, unknown>;
  });
  const requests = largestStreamingRequests();

  test('the requests are what the issue measured and more: the encoded channel list alone is over 2,048 bytes', () => {
    expect(Buffer.byteLength(requests[0].query)).toBeGreaterThan(6000);
    expect(Math.max(...requests.map((r) => Buffer.byteLength(r.query)))).toBeLessThanOrEqual(STREAM_QUERY_MAX_BYTES);
  });

  test.each(requests.map((r) => [r.path, Buffer.byteLength(r.query), r] as const))('%s with a %i-byte query and no User-Agent: allowed', (_path, _bytes, request) => {
    expect(evaluateWebAcl(acl, request)).toMatchObject({ action: 'ALLOW' });
  });

  test('a streaming path written another way (/a/../events, /./poll): still the streaming path, allowed', () => {
    expect(evaluateWebAcl(acl, { path: '/a/../events', query: requests[0].query })).toMatchObject({ action: 'ALLOW' });
    expect(evaluateWebAcl(acl, { path: '/./poll', query: requests[1].query })).toMatchObject({ action: 'ALLOW' });
  });

  test('off the streaming paths the common rules still block: no User-Agent, or a query over 2,048 bytes', () => {
    expect(evaluateWebAcl(acl, { path: '/healthz' })).toMatchObject({ action: 'BLOCK', rule: 'CommonRulesOffStreamingPaths' });
    expect(evaluateWebAcl(acl, { path: '/eventsx', query: requests[0].query, headers: { 'user-agent': 'curl/8' } })).toMatchObject({ action: 'BLOCK', rule: 'CommonRulesOffStreamingPaths' });
    expect(evaluateWebAcl(acl, { path: '/healthz', query: 'deep=1', headers: { 'user-agent': 'curl/8' } })).toMatchObject({ action: 'ALLOW' });
  });

  test('on the streaming paths a query string above the largest valid one is blocked (the runtime would refuse it anyway)', () => {
    const over = { path: '/events', query: `channels=${'a'.repeat(STREAM_QUERY_MAX_BYTES)}`, headers: { 'user-agent': 'x' } };
    expect(evaluateWebAcl(acl, over)).toMatchObject({ action: 'BLOCK', rule: 'StreamingQueryStringSize' });
    expect(evaluateWebAcl(acl, { ...over, query: over.query.slice(0, STREAM_QUERY_MAX_BYTES) })).toMatchObject({ action: 'ALLOW' });
  });

  test('blockCommonRuleSet false: the same requests are counted, never blocked, on any path', () => {
    const counting = Object.values(build({ blockCommonRuleSet: false }).findResources('AWS::WAFv2::WebACL'))[0].Properties as Record<string, unknown>;
    expect(evaluateWebAcl(counting, { path: '/healthz' })).toMatchObject({ action: 'ALLOW', counted: ['AWSManagedRulesCommonRuleSet/NoUserAgent_HEADER', 'CommonRulesOffStreamingPaths'] });
    for (const r of requests) expect(evaluateWebAcl(counting, r)).toMatchObject({ action: 'ALLOW' });
  });

  test('rate limits: /events, /poll and /live per IP; /healthz (the deep check pings Redis) on a rule of its own with a lower limit', () => {
    const rules = acl.Rules as Record<string, unknown>[];
    const streams = rules.find((r) => r.Name === 'PerIpRateOnStreamsAndPolls') as Record<string, unknown>;
    for (const path of ['/events', '/poll', '/live', '/./live']) expect([path, rateRuleCounts(streams, { path })]).toEqual([path, true]);
    expect(rateRuleCounts(streams, { path: '/healthz' })).toBe(false);
    const health = rules.find((r) => r.Name === 'PerIpRateOnHealthChecks') as Record<string, unknown>;
    expect(rateRuleCounts(health, { path: '/healthz', query: 'deep=1' })).toBe(true);
    expect(rateRuleCounts(health, { path: '//healthz', query: 'deep=1' })).toBe(true);
    expect(rateRuleCounts(health, { path: '/events' })).toBe(false);
    expect(health).toMatchObject({ Action: { Block: {} }, Statement: { RateBasedStatement: expect.objectContaining({ Limit: DEFAULTS.waf.healthCheckRateLimit, AggregateKeyType: 'IP' }) } });
    expect(DEFAULTS.waf.healthCheckRateLimit).toBeLessThan(DEFAULTS.waf.rateLimit);
  });
});
