/**
 * The client SDK's copy of the connection cursor (client/src/cursor.ts; the package depends on nothing) against the
 * server's (core/cursor.ts): what the client sends as `lastEventId` / poll `cursor` decodes on the server to exactly
 * the positions it encoded, and what the server sends (`ready`, the poll answer, any anchor a connection kept) decodes
 * in the client to the server's positions.
 */
import { ConnectionPositions, decodeCursor as serverDecode, encodeCursor as serverEncode, MAX_CURSOR_LENGTH } from '../../core/cursor';
import { decodeCursor, encodeCursor } from '../../client/src/cursor';
import { prng } from '../support/prng';

const NOW = 1_796_000_000_000_000; // Redis time in microseconds, late 2026
const DAY = 86_400_000_000;

/** `n` positions from a seeded generator: spread over a week, some at 0, one exactly at the lowest. */
function positions(n: number, seed: number, zeros = 0): number[] {
  const r = prng(seed);
  const p = Array.from({ length: n }, () => NOW - Math.floor(r() * 7 * DAY));
  for (let i = 0; i < zeros && i < n; i++) p[Math.floor(r() * n)] = 0;
  return p;
}

const cases: [string, number[]][] = [
  ['1 channel', positions(1, 1)],
  ['16 channels a week apart', positions(16, 2)],
  ['64 channels (the most a connection may name)', positions(64, 3)],
  ['64 channels, some at 0', positions(64, 4, 9)],
  ['one channel at 0', [0]],
  ['every channel at 0', [0, 0, 0]],
  ['channels at 0 around the lowest', [0, NOW, 0, NOW + 1, NOW + DAY]],
  ['equal positions', [NOW, NOW, NOW]],
  ['the largest safe integer', [Number.MAX_SAFE_INTEGER, 1]],
];

describe('the client encodes what the server decodes', () => {
  test.each(cases)('%s: the same string as core/cursor.ts, decoded there to the same positions, within MAX_CURSOR_LENGTH', (_name, p) => {
    const c = encodeCursor(p);
    expect(c).toBe(serverEncode(p));
    expect(serverDecode(c, p.length)).toEqual({ positions: p, shared: false });
    expect(c.length).toBeLessThanOrEqual(MAX_CURSOR_LENGTH);
    expect(decodeCursor(c, p.length)).toEqual(p);
  });
});

describe('the client reads what the server sends', () => {
  test.each(cases)('%s: a cursor of the server (its own anchor, or a connection kept at an older one) decodes to its positions', (_name, p) => {
    expect(decodeCursor(serverEncode(p), p.length)).toEqual(p);
    // A connection keeps its anchor (ConnectionPositions): a later event on a channel re-encodes that field only.
    const conn = new ConnectionPositions(p.map((_, i) => `c:${String(i).padStart(3, '0')}`), p);
    const up = Math.min(Number.MAX_SAFE_INTEGER, (p[0] || NOW) + 12345);
    conn.set('c:000', up);
    const moved = [...p];
    moved[0] = up;
    expect(decodeCursor(conn.cursor, p.length)).toEqual(moved);
  });

  test.each([
    ['a plain decimal (a server on the sequence)', '1796000000000000', 1],
    ['another number of channels', 'p1.a..', 1],
    ['another version', 'p2.a.', 1],
    ['no anchor', 'p1..', 1],
    ['a field that is not base 36', 'p1.a.-1', 1],
    ['past 2^53', `p1.${Number.MAX_SAFE_INTEGER.toString(36)}.1`, 1],
    ['not a string', 42, 1],
  ])('%s: not positions (undefined), so the client keeps what it holds', (_name, c, n) => {
    expect(decodeCursor(c, n)).toBeUndefined();
  });
});
