import { ConfigError } from '../../core/config';
import { shardOf } from '../../core/shard';
import { lambdaConfig, lambdaConfigFromEnv } from '../../lambda/shared/config';
import { coreConfig } from '../support/harness';

describe('fan-out queue settings (WS_FANOUT_*), parsed once at cold start', () => {
  test('defaults: no queue (every fan-out inline), 1 shard, 200 inline, 100 replayed inline', () => {
    expect(lambdaConfigFromEnv({})).toMatchObject({ wsFanoutQueueUrl: undefined, wsFanoutShards: 1, wsFanoutInlineMax: 200, wsReplayInlineMax: 100 });
  });

  test('values: a FIFO queue URL and the numbers', () => {
    const url = 'https://sqs.eu-west-1.amazonaws.com/123456789012/Realtime-WebSocketFanoutQueue-abc.fifo';
    expect(lambdaConfigFromEnv({ WS_FANOUT_QUEUE_URL: url, WS_FANOUT_SHARDS: '8', WS_FANOUT_INLINE_MAX: '0', WS_REPLAY_INLINE_MAX: '50' })).toMatchObject({
      wsFanoutQueueUrl: url,
      wsFanoutShards: 8,
      wsFanoutInlineMax: 0,
      wsReplayInlineMax: 50,
    });
  });

  test('bad values: one line naming each key (a standard queue is refused: order needs FIFO)', () => {
    const parse = () => lambdaConfigFromEnv({ WS_FANOUT_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/q', WS_FANOUT_SHARDS: '0', WS_FANOUT_INLINE_MAX: '-1', WS_REPLAY_INLINE_MAX: 'all' });
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/WS_FANOUT_QUEUE_URL: must be the http\(s\) URL of a FIFO queue/);
    for (const key of ['WS_FANOUT_SHARDS', 'WS_FANOUT_INLINE_MAX', 'WS_REPLAY_INLINE_MAX']) expect(parse).toThrow(key);
    expect(() => lambdaConfigFromEnv({ WS_FANOUT_SHARDS: '257' })).toThrow(/WS_FANOUT_SHARDS/);
  });

  test('config objects: shards checked the same way', () => {
    expect(() => lambdaConfig({ core: coreConfig(), wsFanoutShards: 0 })).toThrow(/wsFanoutShards: a whole number from 1 to 256/);
    expect(lambdaConfig({ core: coreConfig(), wsFanoutShards: 4 }).wsFanoutShards).toBe(4);
  });
});

describe('shardOf', () => {
  test('stable, within range, one shard for a count of 1, and spread over API Gateway-like ids', () => {
    expect(shardOf('L0SM9cOFvHcCIhw=', 1)).toBe(0);
    expect(shardOf('L0SM9cOFvHcCIhw=', 8)).toBe(shardOf('L0SM9cOFvHcCIhw=', 8));
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[shardOf(`C${i.toString(36)}Ab=`, 8)]++;
    // Deterministic ids, so a fixed outcome: every shard within 15 % of the mean.
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });
});
