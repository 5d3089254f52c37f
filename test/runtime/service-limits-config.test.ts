import { ConfigError } from '../../core/config';
import { serviceConfigFromEnv } from '../../service/config';

const SECRET = 'x'.repeat(32);

describe('configuration of the drain, abuse limits and catch-up', () => {
  test('defaults: every documented default applies', () => {
    const c = serviceConfigFromEnv({ SESSION_SECRET: SECRET });
    expect(c).toMatchObject({
      ecsMetadataUri: undefined,
      stopPollMs: 2000,
      targetHealthPollMs: 10_000,
      anonRequestsPerMinute: 120,
      trustProxyHops: 0,
      replayMaxEvents: 1000,
      maxChannelsPerTask: 50000,
      catchupConcurrency: 16,
      maxHeldEvents: 1000,
      ticketBatchMs: 5,
      targetGroupArn: undefined,
      wsFanoutQueueUrl: undefined,
      wsFanoutShards: 1,
    });
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, ECS_CONTAINER_METADATA_URI_V4: 'http://169.254.170.2/v4/0123-abcd' }).ecsMetadataUri).toBe('http://169.254.170.2/v4/0123-abcd');
  });

  test('bad values: one line naming every bad key', () => {
    const env = {
      SESSION_SECRET: SECRET,
      ECS_CONTAINER_METADATA_URI_V4: 'file:///etc/passwd',
      STOP_POLL_MS: '0',
      TARGET_HEALTH_POLL_MS: '10',
      ANON_REQUESTS_PER_MINUTE: '-1',
      TRUST_PROXY_HOPS: 'one',
      REPLAY_MAX_EVENTS: '0',
      MAX_CHANNELS_PER_TASK: '0',
      CATCHUP_CONCURRENCY: '0',
      MAX_HELD_EVENTS: '1.5',
      TICKET_BATCH_MS: '51',
      TARGET_GROUP_ARN: 'arn:aws:ecs:eu-west-1:123456789012:service/x',
      WS_FANOUT_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/123456789012/not-fifo',
      WS_FANOUT_SHARDS: '0',
    };
    expect(() => serviceConfigFromEnv(env)).toThrow(ConfigError);
    let msg = '';
    try {
      serviceConfigFromEnv(env);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).not.toContain('\n');
    for (const key of Object.keys(env).filter((k) => k !== 'SESSION_SECRET')) expect(msg).toContain(key);
  });

  test('the target group and the fan-out queue the stack sets are read as given', () => {
    const arn = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/Realt-SseTa-1A2B3C/0123456789abcdef';
    const queue = 'https://sqs.eu-west-1.amazonaws.com/123456789012/Realtime-Queue.fifo';
    expect(serviceConfigFromEnv({ SESSION_SECRET: SECRET, TARGET_GROUP_ARN: arn, WS_FANOUT_QUEUE_URL: queue, WS_FANOUT_SHARDS: '4' })).toMatchObject({ targetGroupArn: arn, wsFanoutQueueUrl: queue, wsFanoutShards: 4 });
  });
});
