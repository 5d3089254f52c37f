import { Token } from 'aws-cdk-lib';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { DEFAULTS } from './defaults';
import { checkRange, invalid } from './errors';

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
   * Path prefixes the rate-based rule counts (the other paths, such as the health check, are never rate limited).
   * @default ['/events', '/poll']
   */
  readonly rateLimitedPaths?: readonly string[];
  /**
   * Whether the AWS managed common rule set (`AWSManagedRulesCommonRuleSet`: OWASP-style bad inputs, oversized
   * headers, known bad bots) blocks, or only counts (to try it on live traffic first).
   * @default true
   */
  readonly blockCommonRuleSet?: boolean;
}

const WINDOWS = new Set([60, 120, 300, 600]);

/**
 * AWS WAF on the SSE load balancer: a regional web ACL with the AWS managed common rule set and a per-IP rate-based
 * rule scoped to the stream and poll paths, associated with the ALB. API Gateway HTTP and WebSocket APIs cannot be
 * associated with a web ACL (AWS WAF protects API Gateway REST APIs only), so the ticket, publish and WebSocket APIs
 * are protected by their stage throttling, their authorizers and the runtime's per-user limits instead.
 */
export class LoadBalancerWaf extends Construct {
  public readonly webAcl: wafv2.CfnWebACL;

  constructor(scope: Construct, id: string, props: LoadBalancerWafProps) {
    super(scope, id);
    const limit = props.rateLimit ?? DEFAULTS.waf.rateLimit;
    const window = props.rateLimitWindowSeconds ?? DEFAULTS.waf.rateLimitWindowSeconds;
    const paths = props.rateLimitedPaths ?? ['/events', '/poll'];
    checkRange(this, 'rateLimit', limit, 10, 2_000_000_000, ' requests');
    if (!Token.isUnresolved(window) && !WINDOWS.has(window)) {
      invalid(this, `rateLimitWindowSeconds (${window}) is not a rate-based rule window`, 'Use 60, 120, 300 or 600');
    }
    if (paths.length === 0 || paths.some((p) => !/^\/[A-Za-z0-9._~/-]*$/.test(p))) {
      invalid(this, `rateLimitedPaths [${paths.join(', ')}] must list at least one path prefix starting with "/"`, 'List prefixes like /events and /poll');
    }
    const pathMatch = (prefix: string): wafv2.CfnWebACL.StatementProperty => ({
      byteMatchStatement: {
        fieldToMatch: { uriPath: {} },
        positionalConstraint: 'STARTS_WITH',
        searchString: prefix,
        textTransformations: [{ priority: 0, type: 'NONE' }],
      },
    });
    const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({ cloudWatchMetricsEnabled: true, metricName, sampledRequestsEnabled: true });

    this.webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      description: 'Realtime SSE load balancer: AWS managed common rules, per-IP rate limit on streams and polls',
      defaultAction: { allow: {} },
      visibilityConfig: visibility('RealtimeSse'),
      rules: [
        {
          name: 'AWSManagedRulesCommonRuleSet',
          priority: 0,
          statement: { managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesCommonRuleSet' } },
          overrideAction: (props.blockCommonRuleSet ?? true) ? { none: {} } : { count: {} },
          visibilityConfig: visibility('RealtimeSseCommonRules'),
        },
        {
          name: 'PerIpRateOnStreamsAndPolls',
          priority: 1,
          statement: {
            rateBasedStatement: {
              limit,
              evaluationWindowSec: window,
              aggregateKeyType: 'IP',
              scopeDownStatement: paths.length === 1 ? pathMatch(paths[0]) : { orStatement: { statements: paths.map(pathMatch) } },
            },
          },
          action: { block: {} },
          visibilityConfig: visibility('RealtimeSsePerIpRate'),
        },
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'Association', { resourceArn: props.loadBalancer.loadBalancerArn, webAclArn: this.webAcl.attrArn });
  }
}
