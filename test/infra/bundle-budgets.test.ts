import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAMBDA_BUNDLE_BUDGETS } from '../../scripts/bundle-budgets';
import { buildLambdaBundles, lambdaEntries, type BundleFigures } from '../../scripts/bundle-report';

/**
 * Every Lambda bundle, built with the real build options (`scripts/build.ts`) into a temporary directory, stays within
 * its budget (`scripts/bundle-budgets.ts`; `npm run bundles` prints the same figures with init times). A cold ticket
 * issuer or authorizer is on every connection's path, and module load grows with bundle size.
 */

let dir: string;
let bundles: BundleFigures[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bundle-budgets-'));
  bundles = await buildLambdaBundles(dir);
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Output bytes per package (`node_modules/<pkg>`), largest first: what to look at when a budget fails. */
function packages(b: BundleFigures): string {
  const by = new Map<string, number>();
  for (const out of Object.values(b.metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(out.inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      by.set(m ? m[1] : '(own code)', (by.get(m ? m[1] : '(own code)') ?? 0) + bytesInOutput);
    }
  }
  return [...by.entries()]
    .sort((x, y) => y[1] - x[1])
    .slice(0, 6)
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(0)} KB`)
    .join(', ');
}

describe('Lambda bundle budgets (minified bytes)', () => {
  test('every Lambda entry has a budget, and every budget an entry', () => {
    expect(Object.keys(LAMBDA_BUNDLE_BUDGETS).sort()).toEqual(lambdaEntries());
  });

  test('the ticket issuer and the $connect authorizer, on every connection path: 250 KB at most', () => {
    expect(LAMBDA_BUNDLE_BUDGETS['ticket-issuer']).toBeLessThanOrEqual(250_000);
    expect(LAMBDA_BUNDLE_BUDGETS['ws-authorizer']).toBeLessThanOrEqual(250_000);
  });

  test.each(Object.entries(LAMBDA_BUNDLE_BUDGETS))('%s stays within its budget of %d bytes', (name, budget) => {
    const b = bundles.find((x) => x.name === name);
    expect(b).toBeDefined();
    const verdict = b!.bytes <= budget ? 'within budget' : `${b!.bytes} bytes, over its budget of ${budget} (largest: ${packages(b!)})`;
    expect(verdict).toBe('within budget');
  });
});
