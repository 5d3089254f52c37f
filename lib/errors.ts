import { Token } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { LAMBDA_ENV, type IntSetting } from '../contract/settings';

/** The one error class of the infrastructure code: a construct prop or stage setting that cannot work. */
export class BlueprintValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlueprintValidationError';
  }
}

/**
 * Throws a {@link BlueprintValidationError} that names the construct path, what is wrong and how to fix it:
 * `Realtime-dev/SseService: heartbeatMs (40000) must be at most half the ALB idle timeout (60 s). Lower heartbeatMs or raise idleTimeout.`
 */
export function invalid(scope: IConstruct, problem: string, fix: string): never {
  throw new BlueprintValidationError(`${displayPath(scope)}: ${problem}. ${fix}`);
}

/**
 * The construct path as logical ids see it: CDK leaves a construct with the id `Default` out of the logical ids below
 * it, and so do these messages (`RealtimeStack` holds its `RealtimeApi` as `Default`, so its paths read as before).
 */
function displayPath(scope: IConstruct): string {
  return scope.node.scopes
    .filter((c, i) => i > 0 && c.node.id !== 'Default')
    .map((c) => c.node.id)
    .join('/');
}

/** Checks an integer prop is within [min, max]; tokens are skipped (they resolve at deploy time). */
export function checkRange(scope: IConstruct, name: string, value: number | undefined, min: number, max: number, unit = ''): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    invalid(scope, `${name} (${value}) must be an integer from ${min} to ${max}${unit}`, `Set ${name} within that range`);
  }
}

/** {@link checkRange} with the range of a setting's row (contract/settings.ts): a stage that synthesises also starts. */
export function checkSetting(scope: IConstruct, name: string, value: number | undefined, row: IntSetting, unit = ''): void {
  checkRange(scope, name, value, row.min, row.max, unit);
}

/** A browser origin: `scheme://host[:port]`, no wildcard, path or trailing slash. */
export const ORIGIN_PATTERN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;

/**
 * Checks browser origins for CORS with credentials: `scheme://host[:port]`, no wildcard, no path.
 * Browsers refuse `*` when credentials (the reconnect cookie, a bearer token) are involved.
 */
export function checkOrigins(scope: IConstruct, name: string, origins: readonly string[]): void {
  for (const origin of origins) {
    if (Token.isUnresolved(origin)) continue;
    if (!ORIGIN_PATTERN.test(origin)) {
      invalid(scope, `${name} entry "${origin}" is not an origin`, 'List origins as scheme://host[:port] (for example https://app.example.com), without "*", path or trailing slash');
    }
  }
}

/**
 * An IAM role or user ARN (with an optional path), as `TRUSTED_PRINCIPALS` lists them. An STS assumed-role session ARN
 * (`arn:aws:sts::ACCT:assumed-role/NAME/SESSION`) is not one: the runtime matches sessions to their role, so list the role.
 */
export const IAM_PRINCIPAL_ARN_PATTERN = /^arn:aws[a-z-]*:iam::\d{12}:(role|user)\/([\w+=,.@-]+\/)*[\w+=,.@-]{1,128}$/;
/** An STS assumed-role session ARN: its role is `arn:aws:iam::{1}:role/{2}`. */
export const ASSUMED_ROLE_SESSION_PATTERN = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([\w+=,.@-]+)\/[\w+=,.@-]+$/;
/** Room for `TRUSTED_PRINCIPALS` in a Lambda environment (4 KB in all, shared with the other variables). */
export const TRUSTED_PRINCIPALS_MAX_CHARS = 1024;

/** What to list instead of `arn`: the role of an assumed-role session ARN, or a generic hint. */
export function trustedPrincipalFix(arn: string): string {
  const session = ASSUMED_ROLE_SESSION_PATTERN.exec(arn);
  if (session) return `List the role of that session instead: arn:${session[1]}:iam::${session[2]}:role/${session[3]}`;
  return 'List IAM role or user ARNs, like arn:aws:iam::123456789012:role/my-backend';
}

/**
 * Checks IAM principals trusted by the HTTP API Lambdas (`TRUSTED_PRINCIPALS`): role or user ARNs, no wildcards, no
 * session ARNs, short enough for the Lambda environment. Tokens are skipped.
 */
export function checkTrustedPrincipals(scope: IConstruct, name: string, arns: readonly string[]): void {
  for (const arn of arns) {
    if (Token.isUnresolved(arn)) continue;
    if (!IAM_PRINCIPAL_ARN_PATTERN.test(arn)) {
      invalid(scope, `${name} entry "${arn}" is not an IAM role or user ARN`, trustedPrincipalFix(arn));
    }
  }
  const joined = arns.filter((a) => !Token.isUnresolved(a)).join(',');
  if (joined.length > TRUSTED_PRINCIPALS_MAX_CHARS) {
    invalid(scope, `${name} is ${joined.length} characters as ${LAMBDA_ENV.trustedPrincipals}, over ${TRUSTED_PRINCIPALS_MAX_CHARS}`, 'Trust fewer principals (one role per backend service), or shorter role paths');
  }
}
