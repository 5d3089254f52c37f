import { z } from 'zod';
import { ConfigError, CoreEnvSchema, coreConfigFromEnv, envBoolean, parseEnv, type CoreConfig } from '../core/config';

const ServiceEnvSchema = CoreEnvSchema.extend({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  /** Comma-separated HMAC secrets for the reconnect cookie; the first signs, all verify (rotation). */
  SESSION_SECRET: z
    .string({ error: 'is required (32+ random characters; on AWS it comes from Secrets Manager)' })
    .refine((v) => v.split(',').every((s) => s.length >= 32), 'each secret must be at least 32 characters'),
  SESSION_TTL_SECONDS: z.coerce.number().int().min(60).max(86400).default(900),
  HEARTBEAT_MS: z.coerce.number().int().min(1000).max(300_000).default(15_000),
  RETRY_MS: z.coerce.number().int().min(100).max(60_000).default(3000),
  POLL_TIMEOUT_MS: z.coerce.number().int().min(1000).max(120_000).default(25_000),
  ALLOWED_ORIGINS: z.string().default(''),
  COOKIE_SECURE: envBoolean.default(true),
  COOKIE_SAMESITE: z.enum(['None', 'Lax', 'Strict']).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface ServiceConfig {
  readonly core: CoreConfig;
  readonly port: number;
  readonly host: string;
  readonly sessionSecrets: readonly string[];
  /** Lifetime of the reconnect cookie in seconds; streams are recycled before it ends. Defaults to 900. */
  readonly sessionTtlSeconds: number;
  /** Heartbeat comment interval in milliseconds. Defaults to 15000 (the ALB idle timeout defaults to 60 s). */
  readonly heartbeatMs: number;
  /** Reconnect delay sent as `retry:` in milliseconds. Defaults to 3000. */
  readonly retryMs: number;
  /** Longest wait of a long-poll request in milliseconds. Defaults to 25000. */
  readonly pollTimeoutMs: number;
  /** Origins allowed to read streams (CORS with credentials). Empty: same-origin and non-browser clients only. `*`: any (local development). */
  readonly allowedOrigins: readonly string[];
  readonly cookieSecure: boolean;
  /** Defaults to `None` when the cookie is Secure (cross-site pages), `Lax` otherwise. */
  readonly cookieSameSite: 'None' | 'Lax' | 'Strict';
  readonly logLevel: string;
}

/** Reads and validates the service configuration; throws ConfigError with one line naming the bad keys. */
export function serviceConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const e = parseEnv(ServiceEnvSchema, env);
  const secure = e.COOKIE_SECURE;
  const sameSite = e.COOKIE_SAMESITE ?? (secure ? 'None' : 'Lax');
  if (sameSite === 'None' && !secure) throw new ConfigError('Invalid configuration: COOKIE_SAMESITE: None requires COOKIE_SECURE=true');
  return {
    core: coreConfigFromEnv(env),
    port: e.PORT,
    host: e.HOST,
    sessionSecrets: e.SESSION_SECRET.split(','),
    sessionTtlSeconds: e.SESSION_TTL_SECONDS,
    heartbeatMs: e.HEARTBEAT_MS,
    retryMs: e.RETRY_MS,
    pollTimeoutMs: e.POLL_TIMEOUT_MS,
    allowedOrigins: e.ALLOWED_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean),
    cookieSecure: secure,
    cookieSameSite: sameSite,
    logLevel: e.LOG_LEVEL,
  };
}
