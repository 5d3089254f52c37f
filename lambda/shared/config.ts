import * as z from 'zod/mini';
import { CORE_ENV, LAMBDA_SETTINGS, type SettingsValues } from '../../contract/settings';
import { checkSettings, ConfigError, coreConfigFromEnv, readSettings, type CoreConfig } from '../../core/config';
import { parseTrustedPrincipals, type TrustedPrincipals } from '../../core/principals';

/**
 * The Lambda handlers' configuration: the core settings plus the few only the handlers read, parsed
 * once from the environment at cold start ({@link lambdaConfigFromEnv}, names from
 * `contract/settings.ts`) or given as an object (the local stack, tests).
 */

/** Powertools log levels; LOG_LEVEL also takes pino's names (`fatal` is Powertools' `CRITICAL`). */
const LOG_LEVELS = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR', fatal: 'CRITICAL', critical: 'CRITICAL', silent: 'SILENT' } as const;
export type LambdaLogLevel = (typeof LOG_LEVELS)[keyof typeof LOG_LEVELS];

export interface LambdaConfig {
  readonly core: CoreConfig;
  /** The SSE endpoint (`…/events`) a `sse` ticket's `sseUrl` points at. Defaults to none: `sseUrl` is null. */
  readonly sseUrl?: string;
  /** The WebSocket URL a `ws` ticket's `wsUrl` points at. Defaults to none: `wsUrl` is null. */
  readonly wsUrl?: string;
  /**
   * The WebSocket API stage's callback URL (management API). Defaults to none: publishes are not
   * fanned out to WebSockets, revocations only unregister connections, and the message handler
   * cannot answer frames (it logs an error).
   */
  readonly wsManagementEndpoint?: string;
  /** Posts to the management API in flight per fan-out. */
  readonly wsFanoutConcurrency: number;
  /**
   * Milliseconds after registration during which a 410 keeps a connection (API Gateway answers 410
   * while `$connect` still runs).
   */
  readonly wsGoneGraceMs: number;
  /**
   * The SQS FIFO queue URL of fan-out work items. Defaults to none: every fan-out is inline (one
   * Lambda's loop) and `since` replays are sent whole by the message handler.
   */
  readonly wsFanoutQueueUrl?: string;
  /** Shards (FIFO message groups, parallel workers) of the fan-out. */
  readonly wsFanoutShards: number;
  /** Channels with fewer WebSocket subscribers than this are posted inline. */
  readonly wsFanoutInlineMax: number;
  /** Events of a `since` replay the message handler sends before a worker takes over. */
  readonly wsReplayInlineMax: number;
  /** IAM principals trusted as backends. Defaults to none: every IAM caller gets 403. */
  readonly trustedPrincipals: TrustedPrincipals;
  /** Log level of the handlers' logger. Defaults to Powertools' own (POWERTOOLS_LOG_LEVEL, else INFO). */
  readonly logLevel?: LambdaLogLevel;
}

/** The handlers' own variables: `LAMBDA_SETTINGS` (contract/settings.ts) but `TRUSTED_PRINCIPALS`, parsed by `parseTrustedPrincipals`. */
const { trustedPrincipals: _trusted, ...HANDLER_SETTINGS } = LAMBDA_SETTINGS;

/** The handlers' LOG_LEVEL: its row's values, case-insensitive, plus Powertools' `critical`; unset leaves Powertools' own. */
const LogLevelSchema = z.optional(z.enum(Object.keys(LOG_LEVELS) as [keyof typeof LOG_LEVELS, ...(keyof typeof LOG_LEVELS)[]]));

/**
 * Parses the handlers' environment once. Every bad key, core or Lambda, is named in one line:
 * `Invalid configuration: WS_FANOUT_CONCURRENCY: …; REDIS_URL: …`.
 */
export function lambdaConfigFromEnv(env: NodeJS.ProcessEnv = process.env): LambdaConfig {
  const problems: string[] = [];
  /** Runs one parser; its ConfigError joins the others, so every bad key is named at once. */
  const collect = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message.replace(/^Invalid configuration: /, ''));
      return undefined;
    }
  };
  const core = collect(() => coreConfigFromEnv(env));
  const handler = collect(() => readSettings(HANDLER_SETTINGS, env));
  const trustedPrincipals = collect(() => parseTrustedPrincipals(env[LAMBDA_SETTINGS.trustedPrincipals.env]));
  const rawLevel = env[CORE_ENV.logLevel];
  const level = z.safeParse(LogLevelSchema, rawLevel ? rawLevel.toLowerCase() : undefined);
  if (!level.success) problems.push(`${CORE_ENV.logLevel}: ${level.error.issues.map((i) => i.message).join(', ')}`);
  if (problems.length || !core || !handler || !level.success || !trustedPrincipals) throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  return { core, ...handler, trustedPrincipals, logLevel: level.data === undefined ? undefined : LOG_LEVELS[level.data] };
}

/**
 * The settings a {@link LambdaConfig} is built from, with the same defaults and ranges as the environment: the handler
 * rows of `LAMBDA_SETTINGS` by key (all optional), the core config, and the trusted principals as IAM role or user ARNs
 * (see `core/principals.ts`).
 */
export type LambdaSettings = Partial<SettingsValues<typeof HANDLER_SETTINGS>> & {
  readonly core: CoreConfig;
  readonly trustedPrincipals?: readonly string[];
  readonly logLevel?: LambdaLogLevel;
};

/** A config object from settings (for callers that do not read an environment: the local stack, tests). */
export function lambdaConfig(settings: LambdaSettings): LambdaConfig {
  const { core, trustedPrincipals, logLevel, ...handler } = settings;
  return {
    core,
    ...checkSettings(HANDLER_SETTINGS, handler),
    trustedPrincipals: parseTrustedPrincipals((trustedPrincipals ?? []).join(',')),
    logLevel,
  };
}
