import { spawnSync } from 'node:child_process';
import { ConfigError } from '../../core/config';
import { lambdaConfig, lambdaConfigFromEnv } from '../../lambda/shared/config';

describe('Lambda configuration from the environment (parsed once at cold start)', () => {
  test('defaults: no endpoints, 32 posts in flight, 10 s grace for a 410, no trusted backend', () => {
    const c = lambdaConfigFromEnv({});
    expect(c).toMatchObject({ sseUrl: undefined, wsUrl: undefined, wsManagementEndpoint: undefined, wsFanoutConcurrency: 32, wsGoneGraceMs: 10_000, logLevel: undefined });
    expect(c.trustedPrincipals.entries).toEqual([]);
    expect(c.core).toMatchObject({ redisUrl: 'redis://127.0.0.1:6379', keyPrefix: 'rt:' });
  });

  test('values: parsed into the config object (LOG_LEVEL takes pino names too)', () => {
    const c = lambdaConfigFromEnv({
      SSE_URL: 'https://sse.example/events',
      WS_URL: 'wss://ws.example/live',
      WS_MANAGEMENT_ENDPOINT: 'https://abc.execute-api.eu-west-1.amazonaws.com/live',
      WS_FANOUT_CONCURRENCY: '8',
      WS_GONE_GRACE_MS: '0',
      TRUSTED_PRINCIPALS: 'arn:aws:iam::123456789012:role/backend',
      LOG_LEVEL: 'fatal',
      KEY_PREFIX: 'x:',
    });
    expect(c).toMatchObject({ sseUrl: 'https://sse.example/events', wsUrl: 'wss://ws.example/live', wsFanoutConcurrency: 8, wsGoneGraceMs: 0, logLevel: 'CRITICAL' });
    expect(c.trustedPrincipals.trusts('arn:aws:sts::123456789012:assumed-role/backend/s1')).toBe(true);
    expect(c.core.keyPrefix).toBe('x:');
  });

  test('bad values are errors, not silently ignored: one line naming every bad key, core and Lambda alike', () => {
    let err: unknown;
    try {
      lambdaConfigFromEnv({ WS_FANOUT_CONCURRENCY: 'many', WS_GONE_GRACE_MS: '-1', SSE_URL: 'sse.example', TRUSTED_PRINCIPALS: 'arn:aws:iam::1:root', REDIS_URL: 'http://x', LOG_LEVEL: 'loud' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    expect(msg.startsWith('Invalid configuration: ')).toBe(true);
    for (const key of ['WS_FANOUT_CONCURRENCY', 'WS_GONE_GRACE_MS', 'SSE_URL', 'TRUSTED_PRINCIPALS', 'REDIS_URL', 'LOG_LEVEL']) expect(msg).toContain(key);
  });

  test('LOG_LEVEL in Powertools\' spelling (CRITICAL, upper case) is the handlers\' to read: the core settings do not refuse it', () => {
    expect(lambdaConfigFromEnv({ LOG_LEVEL: 'CRITICAL' }).logLevel).toBe('CRITICAL');
    expect(lambdaConfigFromEnv({ LOG_LEVEL: 'Info' }).logLevel).toBe('INFO');
    expect(() => lambdaConfigFromEnv({ LOG_LEVEL: 'loud' })).toThrow(/^Invalid configuration: LOG_LEVEL: [^;]*$/);
  });

  test('WS_FANOUT_CONCURRENCY of 0 is refused (it used to mean the default)', () => {
    expect(() => lambdaConfigFromEnv({ WS_FANOUT_CONCURRENCY: '0' })).toThrow(/WS_FANOUT_CONCURRENCY/);
  });

  test('config objects: lambdaConfig() applies the same defaults and refuses what the schema refuses', () => {
    const core = lambdaConfigFromEnv({}).core;
    expect(lambdaConfig({ core })).toMatchObject({ wsFanoutConcurrency: 32, wsGoneGraceMs: 10_000 });
    expect(() => lambdaConfig({ core, wsFanoutConcurrency: 0 })).toThrow(ConfigError);
    expect(() => lambdaConfig({ core, trustedPrincipals: ['*'] })).toThrow(/TRUSTED_PRINCIPALS/);
  });

  test('a Lambda entry: a bad variable fails the module load (the cold start) with the one line', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', "require('./lambda/publish')"], {
      env: { ...process.env, WS_FANOUT_CONCURRENCY: 'lots' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('Invalid configuration: WS_FANOUT_CONCURRENCY:');
  });
});
