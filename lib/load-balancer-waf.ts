import { Token } from 'aws-cdk-lib';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { cursorMaxLength, MAX_CHANNEL_LENGTH, TICKET_LENGTH } from '../contract/limits';
import { CORE_SETTINGS } from '../contract/settings';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

/** The paths whose requests carry a channel list, a ticket and a cursor in the query string (`/live`: a ticket). */
export const STREAMING_PATHS = ['/events', '/poll', '/live'] as const;

/**
 * The longest query string a valid request to a streaming path can have, in bytes: every query parameter the runtime
 * reads there (`channels` with CORE_SETTINGS.maxChannelsPerConnection.default names of MAX_CHANNEL_LENGTH characters and their
 * commas, `ticket`, `lastEventId` and `cursor`: a connection cursor over that many channels, `cursorMaxLength`), each character percent-encoded (3 bytes, the longest form a client may
 * send), plus {@link STREAM_QUERY_HEADROOM_BYTES} for parameters the runtime ignores (cache busters, trace ids).
 * AWS WAF blocks longer query strings on those paths; the common rule set's 2,048-byte limit does not apply there.
 */
export const STREAM_QUERY_HEADROOM_BYTES = 1024;
export const STREAM_QUERY_MAX_BYTES = streamQueryMaxBytes(CORE_SETTINGS.maxChannelsPerConnection.default);

function streamQueryMaxBytes(maxChannels: number): number {
  const encoded = (chars: number) => 3 * chars;
  const channels = 'channels='.length + encoded(maxChannels * MAX_CHANNEL_LENGTH + (maxChannels - 1));
  const ticket = '&ticket='.length + encoded(TICKET_LENGTH);
  const cursors = '&lastEventId='.length + '&cursor='.length + 2 * encoded(cursorMaxLength(maxChannels));
  return channels + ticket + cursors + STREAM_QUERY_HEADROOM_BYTES;
}

/**
 * Rules of AWSManagedRulesCommonRuleSet that refuse what a valid streaming request is: a query string over 2,048 bytes
 * (sixteen channel names and a ticket), no User-Agent (server-side clients often send none). They count instead of
 * block, and {@link LoadBalancerWaf}'s `CommonRulesOffStreamingPaths` blocks on their labels off the streaming paths.
 * Labels: WAF developer guide, "Baseline rule groups".
 */
export const STREAMING_COMMON_RULE_OVERRIDES = [
  { rule: 'SizeRestrictions_QUERYSTRING', label: 'awswaf:managed:aws:core-rule-set:SizeRestrictions_QueryString' },
  { rule: 'NoUserAgent_HEADER', label: 'awswaf:managed:aws:core-rule-set:NoUserAgent_Header' },
] as const;

/** Properties of a {@link LoadBalancerWaf}. */
export interface LoadBalancerWafProps {
  /** The load balancer the web ACL protects (the SSE service's). */
  readonly loadBalancer: elbv2.IApplicationLoadBalancer;
  /**
   * Requests one client IP may send to `rateLimitedPaths` within `rateLimitWindowSeconds` before AWS WAF blocks it
   * (403) until its rate falls again (10 to 2000000000). A browser `EventSource` opens one request per (re)connect and a
   * long poll one per answer, so the default leaves room for about 3 requests a second per IP, NAT included.
   * @default 1000
   */
  readonly rateLimit?: number;
  /**
   * The window over which `rateLimit` is counted: 60, 120, 300 or 600 seconds.
   * @default 300
   */
  readonly rateLimitWindowSeconds?: number;
  /**
   * Path prefixes the rate-based rule counts (the health check has a rule of its own, {@link healthCheckRateLimit}).
   * @default ['/events', '/poll', '/live']
   */
  readonly rateLimitedPaths?: readonly string[];
  /**
   * Requests one client IP may send to `/healthz` within `rateLimitWindowSeconds` (10 to 2000000000): the deep form
   * (`?deep=1`) pings Redis, so it must not be a free amplifier. The load balancer's own health checks do not pass
   * through AWS WAF.
   * @default 100
   */
  readonly healthCheckRateLimit?: number;
  /**
   * Whether the AWS managed common rule set (`AWSManagedRulesCommonRuleSet`: OWASP-style bad inputs, oversized
   * headers, known bad bots) blocks, or only counts (to try it on live traffic first).
   * @default true
   */
  readonly blockCommonRuleSet?: boolean;
}

const WINDOWS = new Set([60, 120, 300, 600]);

/**
 * AWS WAF on the SSE load balancer: a regional web ACL with the AWS managed common rule set (its query-size and
 * User-Agent rules scoped off the streaming paths, where a valid request breaks them, and a query bound of their own
 * there, {@link STREAM_QUERY_MAX_BYTES}), per-IP rate-based rules on the streaming paths and on `/healthz`, associated
 * with the ALB. API Gateway HTTP and WebSocket APIs cannot be
 * associated with a web ACL (AWS WAF protects API Gateway REST APIs only), so the ticket, publish and WebSocket APIs
 * are protected by their stage throttling, their authorizers and the runtime's per-user limits instead.
 */
export class LoadBalancerWaf extends Construct {
  public readonly webAcl: wafv2.CfnWebACL;

  constructor(scope: Construct, id: string, props: LoadBalancerWafProps) {
    super(scope, id);
    const limit = props.rateLimit ?? DEFAULTS.waf.rateLimit;
    const window = props.rateLimitWindowSeconds ?? DEFAULTS.waf.rateLimitWindowSeconds;
    const paths = props.rateLimitedPaths ?? STREAMING_PATHS;
    const healthLimit = props.healthCheckRateLimit ?? DEFAULTS.waf.healthCheckRateLimit;
    const block = props.blockCommonRuleSet ?? true;
    checkRange(this, 'rateLimit', limit, 10, 2_000_000_000, ' requests');
    checkRange(this, 'healthCheckRateLimit', healthLimit, 10, 2_000_000_000, ' requests');
    if (!Token.isUnresolved(window) && !WINDOWS.has(window)) {
      invalid(this, `rateLimitWindowSeconds (${window}) is not a rate-based rule window`, 'Use 60, 120, 300 or 600');
    }
    if (paths.length === 0 || paths.some((p) => !/^\/[A-Za-z0-9._~/-]*$/.test(p))) {
      invalid(this, `rateLimitedPaths [${paths.join(', ')}] must list at least one path prefix starting with "/"`, 'List prefixes like /events and /poll');
    }
    // Paths are matched as the runtime sees them (WHATWG URL: percent-decoded dot segments resolved): URL_DECODE then
    // NORMALIZE_PATH, so /a/../events or //healthz cannot step around a rule.
    const pathMatch = (path: string, positionalConstraint: 'STARTS_WITH' | 'EXACTLY' = 'STARTS_WITH'): wafv2.CfnWebACL.StatementProperty => ({
      byteMatchStatement: {
        fieldToMatch: { uriPath: {} },
        positionalConstraint,
        searchString: path,
        textTransformations: [
          { priority: 0, type: 'URL_DECODE' },
          { priority: 1, type: 'NORMALIZE_PATH' },
        ],
      },
    });
    const anyOf = (statements: wafv2.CfnWebACL.StatementProperty[]): wafv2.CfnWebACL.StatementProperty =>
      statements.length === 1 ? statements[0] : { orStatement: { statements } };
    const streamingPath = anyOf(STREAMING_PATHS.map((p) => pathMatch(p, 'EXACTLY')));
    const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({ cloudWatchMetricsEnabled: true, metricName, sampledRequestsEnabled: true });

    this.webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      description: 'Realtime SSE load balancer: AWS managed common rules scoped for the streaming paths, per-IP rate limits on streams, polls, sockets and health checks',
      defaultAction: { allow: {} },
      visibilityConfig: visibility('RealtimeSse'),
      rules: [
        {
          name: 'AWSManagedRulesCommonRuleSet',
          priority: 0,
          statement: {
            managedRuleGroupStatement: {
              vendorName: 'AWS',
              name: 'AWSManagedRulesCommonRuleSet',
              // Counted (and labelled) here; the next rule blocks them everywhere but on the streaming paths.
              ruleActionOverrides: STREAMING_COMMON_RULE_OVERRIDES.map((o) => ({ name: o.rule, actionToUse: { count: {} } })),
            },
          },
          overrideAction: block ? { none: {} } : { count: {} },
          visibilityConfig: visibility('RealtimeSseCommonRules'),
        },
        {
          name: 'CommonRulesOffStreamingPaths',
          priority: 1,
          statement: {
            andStatement: {
              statements: [
                { orStatement: { statements: STREAMING_COMMON_RULE_OVERRIDES.map((o) => ({ labelMatchStatement: { scope: 'LABEL', key: o.label } })) } },
                { notStatement: { statement: streamingPath } },
              ],
            },
          },
          action: block ? { block: {} } : { count: {} },
          visibilityConfig: visibility('RealtimeSseCommonRulesOffStreams'),
        },
        {
          name: 'StreamingQueryStringSize',
          priority: 2,
          statement: {
            andStatement: {
              statements: [
                streamingPath,
                { sizeConstraintStatement: { fieldToMatch: { queryString: {} }, comparisonOperator: 'GT', size: STREAM_QUERY_MAX_BYTES, textTransformations: [{ priority: 0, type: 'NONE' }] } },
              ],
            },
          },
          action: { block: {} },
          visibilityConfig: visibility('RealtimeSseStreamQuerySize'),
        },
        {
          name: 'PerIpRateOnStreamsAndPolls',
          priority: 3,
          statement: {
            rateBasedStatement: {
              limit,
              evaluationWindowSec: window,
              aggregateKeyType: 'IP',
              scopeDownStatement: anyOf(paths.map((p) => pathMatch(p))),
            },
          },
          action: { block: {} },
          visibilityConfig: visibility('RealtimeSsePerIpRate'),
        },
        {
          name: 'PerIpRateOnHealthChecks',
          priority: 4,
          statement: {
            rateBasedStatement: {
              limit: healthLimit,
              evaluationWindowSec: window,
              aggregateKeyType: 'IP',
              scopeDownStatement: pathMatch('/healthz', 'EXACTLY'),
            },
          },
          action: { block: {} },
          visibilityConfig: visibility('RealtimeSseHealthRate'),
        },
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'Association', { resourceArn: props.loadBalancer.loadBalancerArn, webAclArn: this.webAcl.attrArn });
  }
}
