import { spawnSync } from 'node:child_process';
import { ConfigError, coreConfigFromEnv } from '../../core/config';
import { serviceConfigFromEnv } from '../../service/config';

const SECRET = 'x'.repeat(32);

describe('runtime configuration from the environment', () => {
  test('defaults: every documented default applies', () => {
    const c = serviceConfigFromEnv({ SESSION_SECRET: SECRET });
    expect(c).toMatchObject({
      port: 8080,
      heartbeatMs: 15000,
      retryMs: 3000,
      pollTimeoutMs: 25000,
      sessionTtlSeconds: 900,
      allowedOrigins: [],
      cookieSecure: true,
      cookieSameSite: 'Lax',
      streamFraming: 'close',
      writeDelayMs: 0,
      maxWriteDelayMs: 100,
      latencyBudgetMs: 100,
      maxQueuedBytes: 1048576,
      maxConnections: 20000,
      drainTimeoutMs: 20000,
      metricsIntervalMs: 60000,
    });
    expect(c.core).toMatchObject({ redisUrl: 'redis://127.0.0.1:6379', keyPrefix: 'rt:', ticketTtlSeconds: 30, maxPayloadBytes: 32768, maxChannelsPerConnection: 16 });
  });

  test('bad values: one line naming every bad key', () => {
    let err: unknown;
    try {
      serviceConfigFromEnv({ SESSION_SECRET: 'short', REDIS_URL: 'http://x', HEARTBEAT_MS: 'soon', PORT: '70000' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    for (const key of ['SESSION_SECRET', 'REDIS_URL', 'HEARTBEAT_MS', 'PORT']) expect(msg).toContain(key);
  });

  test('historySize bounded by one replay and one channel\'s memory: at most 10000 events and 64 MiB with MAX_PAYLOAD_BYTES (issue 20, item 2)', () => {
    const ns = (historySize: number) => JSON.stringify({ feed: { subscribe: 'public', historySize } });
    expect(() => coreConfigFromEnv({ NAMESPACES_JSON: ns(20_000) })).toThrow(/NAMESPACES_JSON\.feed\.historySize: Too big: expected number to be <=10000/);
    expect(() => coreConfigFromEnv({ NAMESPACES_JSON: ns(4000) })).toThrow('Invalid configuration: NAMESPACES_JSON.feed.historySize: 4000 events of up to 32768 bytes (MAX_PAYLOAD_BYTES) is over 67108864 bytes per channel; keep at most 2048');
    expect(coreConfigFromEnv({ NAMESPACES_JSON: ns(4000), MAX_PAYLOAD_BYTES: '16384' }).namespaces.feed.historySize).toBe(4000);
  });

  test('REDIS_MODE: single (the default) or cluster (set by the construct for redis.shards >= 2); anything else is refused with one line', () => {
    expect(coreConfigFromEnv({ REDIS_MODE: 'cluster' }).redisMode).toBe('cluster');
    expect(coreConfigFromEnv({}).redisMode).toBe('single');
    expect(() => coreConfigFromEnv({ REDIS_MODE: 'sentinel' })).toThrow(/^Invalid configuration: REDIS_MODE: /);
  });

  test('missing SESSION_SECRET and SameSite=None without Secure are refused', () => {
    expect(() => serviceConfigFromEnv({})).toThrow(/SESSION_SECRET: is required/);
    expect(() => serviceConfigFromEnv({ SESSION_SECRET: SECRET, COOKIE_SECURE: 'false', COOKIE_SAMESITE: 'None' })).toThrow(/COOKIE_SAMESITE: None requires COOKIE_SECURE=true/);
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, COOKIE_SECURE: 'false' }).cookieSameSite).toBe('Lax');
    expect(() => coreConfigFromEnv({ MAX_PAYLOAD_BYTES: '65536' })).toThrow(/MAX_PAYLOAD_BYTES/);
  });

  test('the service process: exits 78 with the one line on stderr, no stack trace', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'service/main.ts'], { env: { ...process.env, SESSION_SECRET: 'short' }, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(78);
    expect(r.stderr.trim()).toBe('Invalid configuration: SESSION_SECRET: each secret must be at least 32 characters');
  });
});
