/**
 * The runtime's environment contract: every variable name, by the key of its row in `contract/settings.ts` (where each
 * setting's name, type, range, default and doc live, once).
 *
 * Infrastructure (`lib/`) imports these to set variables on functions and containers; the runtime (`core/`, `lambda/`,
 * `service/`) parses them once at cold start from the same rows. Neither side spells a name as a string literal, so a
 * rename is one edit in the table.
 */
import { CORE_SETTINGS, envNames, LAMBDA_SETTINGS, SERVICE_SETTINGS } from './settings';

/** Read by every runtime (Lambdas, SSE service, local stack). */
export const CORE_ENV = envNames(CORE_SETTINGS);

/** Read by the Lambda handlers (HTTP and WebSocket APIs). */
export const LAMBDA_ENV = envNames(LAMBDA_SETTINGS);

/** Read by the SSE service (Fargate task). */
export const SERVICE_ENV = envNames(SERVICE_SETTINGS);

export type CoreEnvName = (typeof CORE_ENV)[keyof typeof CORE_ENV];
export type LambdaEnvName = (typeof LAMBDA_ENV)[keyof typeof LAMBDA_ENV];
export type ServiceEnvName = (typeof SERVICE_ENV)[keyof typeof SERVICE_ENV];
/** Every variable the runtime reads. */
export type RuntimeEnvName = CoreEnvName | LambdaEnvName | ServiceEnvName;
