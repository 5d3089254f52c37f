import { Token } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

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
  throw new BlueprintValidationError(`${scope.node.path}: ${problem}. ${fix}`);
}

/** Checks an integer prop is within [min, max]; tokens are skipped (they resolve at deploy time). */
export function checkRange(scope: IConstruct, name: string, value: number | undefined, min: number, max: number, unit = ''): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    invalid(scope, `${name} (${value}) must be an integer from ${min} to ${max}${unit}`, `Set ${name} within that range`);
  }
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
