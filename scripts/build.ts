import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { build, type BuildOptions } from 'esbuild';

/**
 * `npm run build`: one esbuild bundle per Lambda entry (lambda/*.ts → dist/lambda/NAME/index.js)
 * and the SSE service (dist/service/main.js). The same settings the CDK bundling wrapper uses:
 * Node 22, CommonJS, minified, with source maps. The AWS SDK v3 is bundled (not taken from the
 * runtime) so the deployed code runs exactly the version the tests ran.
 */
const common: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'cjs',
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
};

async function main(): Promise<void> {
  const entries = readdirSync('lambda').filter((f) => f.endsWith('.ts'));
  const started = Date.now();
  await Promise.all([
    ...entries.map((f) => build({ ...common, entryPoints: [join('lambda', f)], outfile: join('dist', 'lambda', f.replace(/\.ts$/, ''), 'index.js') })),
    build({ ...common, minify: false, entryPoints: ['service/main.ts'], outfile: 'dist/service/main.js' }),
  ]);
  console.log(`built ${entries.length} Lambda bundles and the SSE service into dist/ in ${Date.now() - started} ms`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
