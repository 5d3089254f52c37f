/** LoadBalancerWaf: the web ACL on the SSE load balancer, its two rules, the switch, and its validations. */
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { LoadBalancerWaf, type LoadBalancerWafProps } from '../../lib/load-balancer-waf';
import { buildStack, buildStageApp, newApp, templateOf } from './support';

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
  test('web ACL: regional, allow by default, the AWS managed common rule set first (blocking), then the rate rule', () => {
    build().hasResourceProperties('AWS::WAFv2::WebACL', {
      Scope: 'REGIONAL',
      DefaultAction: { Allow: {} },
      Rules: [
        Match.objectLike({ Name: 'AWSManagedRulesCommonRuleSet', Priority: 0, OverrideAction: { None: {} }, Statement: { ManagedRuleGroupStatement: { VendorName: 'AWS', Name: 'AWSManagedRulesCommonRuleSet' } } }),
        Match.objectLike({ Name: 'PerIpRateOnStreamsAndPolls', Priority: 1, Action: { Block: {} } }),
      ],
    });
  });

  test('rate rule: per IP, 1000 per 300 s by default, counted only on paths starting with /events or /poll', () => {
    const rule = Match.objectLike({
      Statement: {
        RateBasedStatement: {
          Limit: 1000,
          EvaluationWindowSec: 300,
          AggregateKeyType: 'IP',
          ScopeDownStatement: {
            OrStatement: {
              Statements: ['/events', '/poll'].map((p) => ({
                ByteMatchStatement: { FieldToMatch: { UriPath: {} }, PositionalConstraint: 'STARTS_WITH', SearchString: p, TextTransformations: [{ Priority: 0, Type: 'NONE' }] },
              })),
            },
          },
        },
      },
    });
    build().hasResourceProperties('AWS::WAFv2::WebACL', { Rules: Match.arrayWith([rule]) });
  });

  test('rateLimit, rateLimitWindowSeconds, one path, blockCommonRuleSet false: as given (one path needs no OR); the common rules only count', () => {
    build({ rateLimit: 200, rateLimitWindowSeconds: 60, rateLimitedPaths: ['/events'], blockCommonRuleSet: false }).hasResourceProperties('AWS::WAFv2::WebACL', {
      Rules: [
        Match.objectLike({ OverrideAction: { Count: {} } }),
        Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: 200, EvaluationWindowSec: 60, ScopeDownStatement: { ByteMatchStatement: Match.objectLike({ SearchString: '/events' }) } }) } }),
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
    ['a window WAF does not offer', { rateLimitWindowSeconds: 30 }, /^Fixture\/Waf: rateLimitWindowSeconds \(30\) is not a rate-based rule window/],
    ['no paths', { rateLimitedPaths: [] }, /^Fixture\/Waf: rateLimitedPaths \[\] must list at least one path prefix/],
    ['a path without a leading slash', { rateLimitedPaths: ['events'] }, /^Fixture\/Waf: rateLimitedPaths \[events\] must list/],
  ])('%s: fails', (_what, props, message) => {
    expect(() => build(props)).toThrow(message);
  });
});
