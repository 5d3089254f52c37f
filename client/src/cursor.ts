/**
 * The connection cursor (`p1.A.d1.d2…`, the server's `core/cursor.ts`; this package depends on nothing, so it keeps
 * its own copy, held equal to the server's by test/runtime/client-cursor.test.ts): one position per channel in the
 * connection's channel order (sorted, deduplicated). `A` is the lowest position above 0 in base 36; each field is
 * `position − A` in base 36, empty when it is `A`, `_` for position 0 (a channel with no event yet).
 */
export function encodeCursor(positions: readonly number[]): string {
  let a = 0;
  for (const p of positions) if (p > 0 && (!a || p < a)) a = p;
  let out = 'p1.' + a.toString(36);
  for (const p of positions) out += '.' + (p === a ? '' : p ? (p - a).toString(36) : '_');
  return out;
}

/** The positions of a `p1.` cursor of `n` channels; undefined for anything else (a server's cursor is otherwise opaque). */
export function decodeCursor(s: unknown, n: number): number[] | undefined {
  const f = typeof s === 'string' ? s.split('.') : [];
  if (f[0] !== 'p1' || f.length !== n + 2 || !f[1]) return undefined;
  const a = parseInt(f[1], 36);
  const p = f.slice(2).map((d) => (d === '' ? a : d === '_' ? 0 : /^[0-9a-z]+$/.test(d) ? a + parseInt(d, 36) : NaN));
  return p.every(Number.isSafeInteger) ? p : undefined;
}
