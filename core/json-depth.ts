import { RealtimeError } from './errors';

/**
 * Deepest nesting of arrays and objects an event's `data` may have. JSON.parse takes thousands of
 * levels, but JSON.stringify (and every consumer that recurses) runs out of stack a few thousand
 * levels down, where the exact depth depends on what is on the stack: a fixed bound refuses the same
 * input every time. 64 is far beyond what an event needs.
 */
export const MAX_DATA_DEPTH = 64;

/**
 * Throws `bad_request` when `value` nests arrays or objects deeper than {@link MAX_DATA_DEPTH}.
 * Iterative, so the check itself cannot overflow the stack; it stops at the first level too deep.
 */
export function assertDataDepth(value: unknown, what = '`data`'): void {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_DATA_DEPTH) throw new RealtimeError('bad_request', `${what} nests arrays or objects more than ${MAX_DATA_DEPTH} levels deep; flatten it.`);
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
}
