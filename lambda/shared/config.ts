import * as z from 'zod/mini';
import { CORE_ENV, LAMBDA_ENV } from '../../contract/env';
import { ConfigError, coreConfigFromEnv, formatIssues, type CoreConfig } from '../../core/config';
import { parseTrustedPrincipals, type TrustedPrincipals } from '../../core/principals';
import { MAX_SHARDS } from '../../core/shard';

/**
 * The Lambda handlers' configuration: the core settings plus the few only the handlers read, parsed
 * once from the environment at cold start ({@link lambdaConfigFromEnv}, names from
 * `contract/env.ts`) or given as an object (the local stack, tests).
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
  /** Posts to the management API in flight per fan-out. Defaults to 32. */
  readonly wsFanoutConcurrency: number;
  /**
   * Milliseconds after registration during which a 410 keeps a connection (API Gateway answers 410
   * while `$connect` still runs). Defaults to 10000.
   */
  readonly wsGoneGraceMs: number;
  /**
   * The SQS FIFO queue URL of fan-out work items. Defaults to none: every fan-out is inline (one
   * Lambda's loop) and `since` replays are sent whole by the message handler.
   */
  readonly wsFanoutQueueUrl?: string;
  /** Shards (FIFO message groups, parallel workers) of the fan-out. Defaults to 1. */
  readonly wsFanoutShards: number;
  /** Channels with fewer WebSocket subscribers than this are posted inline. Defaults to 200. */
  readonly wsFanoutInlineMax: number;
  /** Events of a `since` replay the message handler sends before a worker takes over. Defaults to 100. */
  readonly wsReplayInlineMax: number;
  /** IAM principals trusted as backends. Defaults to none: every IAM caller gets 403. */
  readonly trustedPrincipals: TrustedPrincipals;
  /** Log level of the handlers' logger. Defaults to Powertools' own (POWERTOOLS_LOG_LEVEL, else INFO). */
  readonly logLevel?: LambdaLogLevel;
}

export const DEFAULT_WS_FANOUT_CONCURRENCY = 32;
export const DEFAULT_WS_GONE_GRACE_MS = 10_000;
export const DEFAULT_WS_FANOUT_SHARDS = 1;
export const DEFAULT_WS_FANOUT_INLINE_MAX = 200;
export const DEFAULT_WS_REPLAY_INLINE_MAX = 100;

/** An unset or empty variable takes the default. */
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);
/** zod's `preprocess(fn, schema)`, which zod/mini spells as a pipe. */
const preprocess = <T extends z.ZodMiniType>(fn: (v: unknown) => unknown, schema: T) => z.pipe(z.transform(fn), schema);
const url = (schemes: RegExp, what: string) => preprocess(unsetIfEmpty, z.optional(z.string().check(z.regex(schemes, `must be a ${what} URL`))));
/** A whole number from min to max, the default when unset or empty. */
const int = (min: number, max: number, dflt: number) => preprocess(unsetIfEmpty, z._default(z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max)), dflt));

export const LambdaEnvSchema = z.object({
  [LAMBDA_ENV.sseUrl]: url(/^https?:\/\/[^\s]+$/, 'http(s)'),
  [LAMBDA_ENV.wsUrl]: url(/^wss?:\/\/[^\s]+$/, 'ws(s)'),
  [LAMBDA_ENV.wsManagementEndpoint]: url(/^https?:\/\/[^\s]+$/, 'http(s)'),
  [LAMBDA_ENV.wsFanoutConcurrency]: int(1, 1000, DEFAULT_WS_FANOUT_CONCURRENCY),
  [LAMBDA_ENV.wsGoneGraceMs]: int(0, 600_000, DEFAULT_WS_GONE_GRACE_MS),
  [LAMBDA_ENV.wsFanoutQueueUrl]: preprocess(unsetIfEmpty, z.optional(z.string().check(z.regex(/^https?:\/\/[^\s]+\.fifo$/, 'must be the http(s) URL of a FIFO queue (ending in .fifo)')))),
  [LAMBDA_ENV.wsFanoutShards]: int(1, MAX_SHARDS, DEFAULT_WS_FANOUT_SHARDS),
  [LAMBDA_ENV.wsFanoutInlineMax]: int(0, 1_000_000, DEFAULT_WS_FANOUT_INLINE_MAX),
  [LAMBDA_ENV.wsReplayInlineMax]: int(1, 10_000, DEFAULT_WS_REPLAY_INLINE_MAX),
  [CORE_ENV.logLevel]: preprocess(
    (v) => (typeof v === 'string' && v !== '' ? v.toLowerCase() : undefined),
    z.optional(z.enum(Object.keys(LOG_LEVELS) as [keyof typeof LOG_LEVELS, ...(keyof typeof LOG_LEVELS)[]])),
  ),
});

/**
 * Parses the handlers' environment once. Every bad key, core or Lambda, is named in one line:
 * `Invalid configuration: WS_FANOUT_CONCURRENCY: …; REDIS_URL: …`.
 */
export function lambdaConfigFromEnv(env: NodeJS.ProcessEnv = process.env): LambdaConfig {
  const problems: string[] = [];
  let core: CoreConfig | undefined;
  try {
    core = coreConfigFromEnv(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.message.replace(/^Invalid configuration: /, ''));
  }
  const parsed = LambdaEnvSchema.safeParse(env);
  if (!parsed.success) problems.push(formatIssues(parsed.error));
  let trustedPrincipals: TrustedPrincipals | undefined;
  try {
    trustedPrincipals = parseTrustedPrincipals(env[LAMBDA_ENV.trustedPrincipals]);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.message.replace(/^Invalid configuration: /, ''));
  }
  if (problems.length || !core || !parsed.success || !trustedPrincipals) throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  const e = parsed.data;
  const level = e[CORE_ENV.logLevel];
  return {
    core,
    sseUrl: e[LAMBDA_ENV.sseUrl],
    wsUrl: e[LAMBDA_ENV.wsUrl],
    wsManagementEndpoint: e[LAMBDA_ENV.wsManagementEndpoint],
    wsFanoutConcurrency: e[LAMBDA_ENV.wsFanoutConcurrency],
    wsGoneGraceMs: e[LAMBDA_ENV.wsGoneGraceMs],
    wsFanoutQueueUrl: e[LAMBDA_ENV.wsFanoutQueueUrl],
    wsFanoutShards: e[LAMBDA_ENV.wsFanoutShards],
    wsFanoutInlineMax: e[LAMBDA_ENV.wsFanoutInlineMax],
    wsReplayInlineMax: e[LAMBDA_ENV.wsReplayInlineMax],
    trustedPrincipals,
    logLevel: level === undefined ? undefined : LOG_LEVELS[level],
  };
}

/** The settings a {@link LambdaConfig} is built from, with the same defaults as the environment. */
export interface LambdaSettings {
  readonly core: CoreConfig;
  readonly sseUrl?: string;
  readonly wsUrl?: string;
  readonly wsManagementEndpoint?: string;
  /** Defaults to 32. */
  readonly wsFanoutConcurrency?: number;
  /** Defaults to 10000. */
  readonly wsGoneGraceMs?: number;
  readonly wsFanoutQueueUrl?: string;
  /** Defaults to 1. */
  readonly wsFanoutShards?: number;
  /** Defaults to 200. */
  readonly wsFanoutInlineMax?: number;
  /** Defaults to 100. */
  readonly wsReplayInlineMax?: number;
  /** IAM role or user ARNs (see `core/principals.ts`). Defaults to none. */
  readonly trustedPrincipals?: readonly string[];
  readonly logLevel?: LambdaLogLevel;
}

/** A config object from settings (for callers that do not read an environment: the local stack, tests). */
export function lambdaConfig(settings: LambdaSettings): LambdaConfig {
  const concurrency = settings.wsFanoutConcurrency ?? DEFAULT_WS_FANOUT_CONCURRENCY;
  const grace = settings.wsGoneGraceMs ?? DEFAULT_WS_GONE_GRACE_MS;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigError(`Invalid configuration: wsFanoutConcurrency: a whole number of at least 1 (got ${concurrency})`);
  const shards = settings.wsFanoutShards ?? DEFAULT_WS_FANOUT_SHARDS;
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) throw new ConfigError(`Invalid configuration: wsFanoutShards: a whole number from 1 to ${MAX_SHARDS} (got ${shards})`);
  if (!Number.isInteger(grace) || grace < 0) throw new ConfigError(`Invalid configuration: wsGoneGraceMs: a whole number of milliseconds, 0 or more (got ${grace})`);
  return {
    core: settings.core,
    sseUrl: settings.sseUrl,
    wsUrl: settings.wsUrl,
    wsManagementEndpoint: settings.wsManagementEndpoint,
    wsFanoutConcurrency: concurrency,
    wsGoneGraceMs: grace,
    wsFanoutQueueUrl: settings.wsFanoutQueueUrl,
    wsFanoutShards: settings.wsFanoutShards ?? DEFAULT_WS_FANOUT_SHARDS,
    wsFanoutInlineMax: settings.wsFanoutInlineMax ?? DEFAULT_WS_FANOUT_INLINE_MAX,
    wsReplayInlineMax: settings.wsReplayInlineMax ?? DEFAULT_WS_REPLAY_INLINE_MAX,
    trustedPrincipals: parseTrustedPrincipals((settings.trustedPrincipals ?? []).join(',')),
    logLevel: settings.logLevel,
  };
}
