/**
 * A small evaluator of a synthesized AWS WAF web ACL (`AWS::WAFv2::WebACL` properties) against one request, for the
 * infra tests: which rule terminates it (block) or that it is allowed. It reads the template's rules in priority order,
 * as WAF does, and models only what the blueprint's web ACL uses; anything else throws, so a rule it cannot read never
 * passes silently.
 *
 * The AWS managed common rule set is opaque; of its rules, the two that concern the streaming requests are modelled as
 * the WAF developer guide documents them ("Baseline rule groups", AWSManagedRulesCommonRuleSet): `NoUserAgent_HEADER`
 * (no User-Agent header) and `SizeRestrictions_QUERYSTRING` (a query string over 2,048 bytes), each blocking unless a
 * rule action override says otherwise, and each adding its label whatever its action. A rate-based rule never matches
 * one request (its limit is at least 10); its scope-down is evaluated all the same, so a malformed one still throws.
 */

export interface WafRequest {
  /** The path as sent, e.g. `/events`. */
  readonly path: string;
  /** The query string as sent, without `?` (percent-encoded as the client encoded it). */
  readonly query?: string;
  /** Header names in lower case. */
  readonly headers?: Record<string, string>;
}

export interface WafVerdict {
  readonly action: 'ALLOW' | 'BLOCK';
  /** The rule that blocked the request. */
  readonly rule?: string;
  /** Labels added on the way. */
  readonly labels: readonly string[];
  /** Rules whose action was count and that matched. */
  readonly counted: readonly string[];
}

type Json = Record<string, unknown>;

const CRS = 'awswaf:managed:aws:core-rule-set:';
/** The modelled rules of AWSManagedRulesCommonRuleSet: name, label, and whether a request matches. */
const COMMON_RULES: { name: string; label: string; matches: (r: WafRequest) => boolean }[] = [
  { name: 'NoUserAgent_HEADER', label: `${CRS}NoUserAgent_Header`, matches: (r) => !('user-agent' in (r.headers ?? {})) },
  { name: 'SizeRestrictions_QUERYSTRING', label: `${CRS}SizeRestrictions_QueryString`, matches: (r) => Buffer.byteLength(r.query ?? '') > 2048 },
];

export function evaluateWebAcl(acl: Json, request: WafRequest): WafVerdict {
  const labels: string[] = [];
  const counted: string[] = [];
  const rules = [...(acl.Rules as Json[])].sort((a, b) => (a.Priority as number) - (b.Priority as number));
  for (const rule of rules) {
    const name = rule.Name as string;
    const statement = rule.Statement as Json;
    if (statement.ManagedRuleGroupStatement) {
      const group = statement.ManagedRuleGroupStatement as Json;
      if (group.VendorName !== 'AWS' || group.Name !== 'AWSManagedRulesCommonRuleSet') throw new Error(`unmodelled managed rule group ${String(group.Name)}`);
      const overrides = new Map(((group.RuleActionOverrides as Json[] | undefined) ?? []).map((o) => [o.Name as string, o.ActionToUse as Json]));
      const groupCounts = 'Count' in ((rule.OverrideAction as Json) ?? {});
      for (const inner of COMMON_RULES) {
        if (!inner.matches(request)) continue;
        labels.push(inner.label);
        const action = overrides.get(inner.name) ?? { Block: {} };
        if ('Block' in action && !groupCounts) return { action: 'BLOCK', rule: `${name}/${inner.name}`, labels, counted };
        counted.push(`${name}/${inner.name}`);
      }
      continue;
    }
    if (!matches(statement, request, labels)) continue;
    const action = rule.Action as Json;
    for (const l of ((rule.RuleLabels as Json[] | undefined) ?? []).map((x) => x.Name as string)) labels.push(l);
    if ('Block' in action) return { action: 'BLOCK', rule: name, labels, counted };
    if ('Allow' in action) return { action: 'ALLOW', rule: name, labels, counted };
    if ('Count' in action) counted.push(name);
    else throw new Error(`unmodelled action of ${name}: ${JSON.stringify(action)}`);
  }
  if (!('Allow' in (acl.DefaultAction as Json))) throw new Error('unmodelled default action');
  return { action: 'ALLOW', labels, counted };
}

/** Whether a rate-based rule counts `request` (its scope-down statement matches; no scope-down counts every request). */
export function rateRuleCounts(rule: Json, request: WafRequest): boolean {
  const rate = (rule.Statement as Json).RateBasedStatement as Json | undefined;
  if (!rate) throw new Error(`${String(rule.Name)} is not a rate-based rule`);
  return rate.ScopeDownStatement ? matches(rate.ScopeDownStatement as Json, request, []) : true;
}

function matches(s: Json, r: WafRequest, labels: readonly string[]): boolean {
  if (s.AndStatement) return ((s.AndStatement as Json).Statements as Json[]).every((x) => matches(x, r, labels));
  if (s.OrStatement) return ((s.OrStatement as Json).Statements as Json[]).some((x) => matches(x, r, labels));
  if (s.NotStatement) return !matches((s.NotStatement as Json).Statement as Json, r, labels);
  if (s.LabelMatchStatement) {
    const m = s.LabelMatchStatement as Json;
    if (m.Scope !== 'LABEL') throw new Error(`unmodelled label scope ${String(m.Scope)}`);
    return labels.includes(m.Key as string);
  }
  if (s.ByteMatchStatement) {
    const m = s.ByteMatchStatement as Json;
    const value = transform(field(m.FieldToMatch as Json, r), m.TextTransformations as Json[]);
    const search = m.SearchString as string;
    switch (m.PositionalConstraint) {
      case 'EXACTLY':
        return value === search;
      case 'STARTS_WITH':
        return value.startsWith(search);
      case 'CONTAINS':
        return value.includes(search);
      default:
        throw new Error(`unmodelled positional constraint ${String(m.PositionalConstraint)}`);
    }
  }
  if (s.SizeConstraintStatement) {
    const m = s.SizeConstraintStatement as Json;
    const size = Buffer.byteLength(transform(field(m.FieldToMatch as Json, r), m.TextTransformations as Json[]));
    const n = m.Size as number;
    const ops: Record<string, boolean> = { GT: size > n, GE: size >= n, LT: size < n, LE: size <= n, EQ: size === n, NE: size !== n };
    if (!(String(m.ComparisonOperator) in ops)) throw new Error(`unmodelled comparison ${String(m.ComparisonOperator)}`);
    return ops[m.ComparisonOperator as string];
  }
  if (s.RateBasedStatement) {
    const m = s.RateBasedStatement as Json;
    if (m.ScopeDownStatement) matches(m.ScopeDownStatement as Json, r, labels);
    if ((m.Limit as number) < 10) throw new Error('a rate limit below 10 is not one WAF accepts');
    return false;
  }
  throw new Error(`unmodelled statement ${Object.keys(s).join(', ')}`);
}

function field(f: Json, r: WafRequest): string {
  if (f.UriPath) return r.path;
  if (f.QueryString) return r.query ?? '';
  throw new Error(`unmodelled field ${Object.keys(f).join(', ')}`);
}

function transform(value: string, transformations: Json[]): string {
  let v = value;
  for (const t of [...transformations].sort((a, b) => (a.Priority as number) - (b.Priority as number))) {
    switch (t.Type) {
      case 'NONE':
        break;
      case 'URL_DECODE':
        v = v.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
        break;
      case 'LOWERCASE':
        v = v.toLowerCase();
        break;
      case 'NORMALIZE_PATH':
        v = normalizePath(v);
        break;
      default:
        throw new Error(`unmodelled text transformation ${String(t.Type)}`);
    }
  }
  return v;
}

/** WAF's NORMALIZE_PATH: multiple slashes to one, self references (`/./`) and back references (`/a/../`) removed. */
function normalizePath(p: string): string {
  const out: string[] = [];
  for (const seg of p.replace(/\/{2,}/g, '/').split('/')) {
    if (seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const joined = out.join('/');
  return joined.startsWith('/') ? joined : `/${joined}`;
}
