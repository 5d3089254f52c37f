import { ConnectionPositions, decodeCursor, encodeCursor, MAX_CURSOR_LENGTH } from '../../core/cursor';
import { CORE_SETTINGS } from '../../contract/settings';
import { cursorMaxLength, MAX_CHANNELS_PER_CONNECTION } from '../../contract/limits';

/**
 * Issue 23, item 3: the connection's cursor over all its channels, carried by every SSE event's `id:` line and the long
 * poll's `cursor` (docs/DESIGN.md, "Positions per channel").
 */
const NOW = 1_796_557_526_405_903;

test('round trip: one position per channel, in order, whatever their spread', () => {
  const cases = [[NOW], [NOW, NOW], [NOW, NOW - 1, NOW - 3_600_000_000, NOW - 7 * 86_400_000_000, 0], [0], [0, 0], [Number.MAX_SAFE_INTEGER, 1]];
  for (const positions of cases) expect(decodeCursor(encodeCursor(positions), positions.length)).toEqual({ positions, shared: false });
  // Any anchor at or below the positions (a transport keeps one per connection): the same positions.
  expect(decodeCursor(encodeCursor([NOW, NOW - 5], NOW - 3_600_000_000), 2).positions).toEqual([NOW, NOW - 5]);
});

test('compact: a field per channel of at most 4 characters for a second behind, 8 for a week', () => {
  expect(encodeCursor([NOW, NOW])).toBe(`p1.${NOW.toString(36)}..`);
  expect(encodeCursor([NOW, NOW - 1_000_000]).split('.')[2].length).toBeLessThanOrEqual(4);
  expect(encodeCursor([NOW, NOW - 7 * 86_400_000_000]).split('.')[2].length).toBeLessThanOrEqual(8);
  // 16 channels, each silent for a week: about 160 bytes.
  const week = Array.from({ length: 16 }, (_, i) => NOW - 7 * 86_400_000_000 - i);
  expect(encodeCursor([NOW, ...week]).length).toBeLessThan(170);
});

test('a channel with no event yet (position 0) costs one character, whatever the others\' positions', () => {
  expect(encodeCursor([NOW, 0, NOW - 1])).toBe(`p1.${(NOW - 1).toString(36)}.1._.`);
  expect(decodeCursor(`p1.${(NOW - 1).toString(36)}.1._.`, 3).positions).toEqual([NOW, 0, NOW - 1]);
});

test('the longest cursor the most channels can have fits MAX_CURSOR_LENGTH', () => {
  const n = CORE_SETTINGS.maxChannelsPerConnection.max;
  const worst = [Number.MAX_SAFE_INTEGER, ...Array.from({ length: n - 1 }, () => 0)];
  const s = encodeCursor(worst);
  expect(s.length).toBeLessThanOrEqual(MAX_CURSOR_LENGTH);
  expect(decodeCursor(s, n).positions).toEqual(worst);
  // contract/limits.ts sizes the cursor (and the WAF's query bound) for the same most channels.
  expect(MAX_CHANNELS_PER_CONNECTION).toBe(n);
  expect(MAX_CURSOR_LENGTH).toBe(cursorMaxLength(n));
});

test('one channel: the cursor after each event is encodeCursor of its position, whatever the connection\'s start', () => {
  for (const start of [0, NOW - 86_400_000_000, NOW]) {
    const c = new ConnectionPositions(['chat:a'], [start]);
    for (const p of [NOW, NOW + 1, NOW + 5_000_000]) {
      c.set('chat:a', p);
      expect(c.cursor).toBe(encodeCursor([p]));
    }
  }
});

test('a plain decimal (a cursor from before positions were per channel) is that number on every channel, shared', () => {
  expect(decodeCursor(String(NOW), 3)).toEqual({ positions: [NOW, NOW, NOW], shared: true });
});

test('anything else is invalid_cursor: wrong field count, bad digits, a version we do not know, too long, past 2^53', () => {
  const good = encodeCursor([NOW, NOW - 5]);
  for (const bad of [
    good.slice(0, -2), // one field short
    `${good}.`, // one field more
    good.replace('p1', 'p2'),
    `p1.${NOW.toString(36)}.-1.`,
    `p1.${NOW.toString(36)}.ZZ.`,
    `p1..1.`,
    `p1.${(2 ** 60).toString(36)}..`,
    `p1.${NOW.toString(36)}.${Number.MAX_SAFE_INTEGER.toString(36)}.`, // a position past 2^53
    '99999999999999999',
    'x'.repeat(MAX_CURSOR_LENGTH + 1),
    42,
  ]) {
    expect(() => decodeCursor(bad, 2)).toThrow(expect.objectContaining({ code: 'invalid_cursor' }));
  }
});

test('a connection keeps its cursor encoded: each event moves its own channel, the cursor decodes to every position', () => {
  const channels = ['a:1', 'b:2', 'c:3'];
  const start = [NOW - 10, NOW - 3_600_000_000, NOW];
  const conn = new ConnectionPositions(channels, start);
  expect(decodeCursor(conn.cursor, 3).positions).toEqual(start);
  const expected = [...start];
  for (let k = 0; k < 50; k++) {
    const i = (k * 7) % 3;
    expected[i] += 1 + k * 1000;
    expect(conn.set(channels[i], expected[i])).toBe(true);
    expect(decodeCursor(conn.cursor, 3).positions).toEqual(expected);
  }
  // A connection that opened on channels without events: anchored at the first event, moved by an older one.
  const fresh = new ConnectionPositions(channels, [0, 0, 0]);
  expect(fresh.cursor).toBe('p1.0...');
  fresh.set('b:2', NOW);
  fresh.set('c:3', NOW - 9);
  expect(decodeCursor(fresh.cursor, 3).positions).toEqual([0, NOW, NOW - 9]);
  expect(fresh.cursor.length).toBeLessThan(20);
  // A lower position (a duplicate) does not move it back; another channel is not one of the connection's.
  expect(conn.set('a:1', NOW - 20)).toBe(true);
  expect(conn.get('a:1')).toBe(expected[0]);
  expect(conn.set('z:9', NOW)).toBe(false);
});
