import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { build, type BuildOptions } from 'esbuild';
import { ESBUILD_OPTIONS, SERVICE_BUNDLE, SERVICE_ESBUILD_OPTIONS } from '../contract/bundling';

/**
 * `npm run build`: one esbuild bundle per Lambda entry (lambda/*.ts → dist/lambda/NAME/index.js) and the SSE service
 * (dist/service/main.js), with the settings of `contract/bundling.ts`, the same the CDK bundling wrapper and the
 * SSE image use. `npm run build -- service` builds the service only (the Dockerfile does; lambda/ is not in its
 * context), `npm run build -- lambda` the Lambdas only.
 */

/** What to build: every bundle, or one kind. */
export type BuildTarget = 'all' | 'lambda' | 'service';

const shared: BuildOptions = { ...ESBUILD_OPTIONS, external: [...ESBUILD_OPTIONS.external], logLevel: 'warning' };

/** esbuild options of the Lambda bundle of `lambda/<file>`. */
export function lambdaBuildOptions(file: string): BuildOptions {
  return { ...shared, entryPoints: [join('lambda', file)], outfile: join('dist', 'lambda', file.replace(/\.ts$/, ''), 'index.js') };
}

/** esbuild options of the SSE service bundle. */
export function serviceBuildOptions(): BuildOptions {
  return { ...shared, minify: SERVICE_ESBUILD_OPTIONS.minify, entryPoints: [SERVICE_BUNDLE.entry], outfile: SERVICE_BUNDLE.outfile };
}

/** Reads the target from the command line: no argument, `all`, `lambda` or `service`. */
export function parseTarget(args: readonly string[]): BuildTarget {
  const [target = 'all', ...rest] = args;
  if (rest.length > 0 || (target !== 'all' && target !== 'lambda' && target !== 'service')) {
    throw new Error(`usage: npm run build [-- all|lambda|service] (got "${args.join(' ')}")`);
  }
  return target;
}

async function main(target: BuildTarget): Promise<void> {
  const entries = target === 'service' ? [] : readdirSync('lambda').filter((f) => f.endsWith('.ts'));
  const started = Date.now();
  await Promise.all([
    ...entries.map((f) => build(lambdaBuildOptions(f))),
    ...(target === 'lambda' ? [] : [build(serviceBuildOptions())]),
  ]);
  const built = [entries.length > 0 ? `${entries.length} Lambda bundles` : '', target !== 'lambda' ? 'the SSE service' : ''].filter(Boolean).join(' and ');
  console.log(`built ${built} into dist/ in ${Date.now() - started} ms`);
}

if (require.main === module) {
  Promise.resolve()
    .then(() => main(parseTarget(process.argv.slice(2))))
    .catch((err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
