import { Logger } from '@aws-lambda-powertools/logger';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type Redis from 'ioredis';
import { coreConfigFromEnv, type CoreConfig } from '../../core/config';
import { createRedis, waitReady } from '../../core/redis';

export interface Runtime {
  readonly config: CoreConfig;
  readonly redis: Redis;
}

export const logger = new Logger({ serviceName: 'realtime' });

let runtime: Promise<Runtime> | undefined;

/** Reads the Redis AUTH token from Secrets Manager: a plain string or JSON with `password`/`authToken`. */
async function secretPassword(arn: string): Promise<string> {
  const out = await new SecretsManagerClient({}).send(new GetSecretValueCommand({ SecretId: arn }));
  const raw = out.SecretString ?? '';
  try {
    const obj = JSON.parse(raw) as Record<string, unknown>;
    const v = obj.password ?? obj.authToken ?? obj.token;
    if (typeof v === 'string') return v;
  } catch {
    // a plain-string secret
  }
  return raw;
}

/**
 * The clients of this Lambda container, created on first use and reused across invocations.
 * A failed start is not cached, so the next invocation tries again.
 */
export function getRuntime(): Promise<Runtime> {
  runtime ??= (async () => {
    const config = coreConfigFromEnv();
    const password = config.redisPassword ?? (config.redisSecretArn ? await secretPassword(config.redisSecretArn) : undefined);
    const redis = createRedis({ url: config.redisUrl, password, name: `lambda-${process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'local'}` });
    try {
      await waitReady(redis, 5000);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    return { config, redis };
  })().catch((err) => {
    runtime = undefined;
    throw err;
  });
  return runtime;
}

/** Closes this container's clients and forgets them (the local stack calls it when it stops; Lambda never does). */
export async function closeRuntime(): Promise<void> {
  const current = runtime;
  runtime = undefined;
  const rt = await current?.catch(() => undefined);
  rt?.redis.disconnect();
}
