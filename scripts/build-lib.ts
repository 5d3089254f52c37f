import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

/**
 * `npm run build:lib`: the constructs as a package. `tsc -p tsconfig.lib.json` compiles lib/ (with contract/ and the
 * esbuild settings it imports) to dist-lib/ with declarations (package.json `main`/`types`), and the SSE image's
 * runtime-only Dockerfile is placed next to the prebuilt service bundle (dist/service/Dockerfile). Run after
 * `npm run build`, which writes the bundles; `npm pack` runs both (`prepack`).
 */
const ROOT = join(__dirname, '..');

rmSync(join(ROOT, 'dist-lib'), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.lib.json')], { stdio: 'inherit' });
if (!existsSync(join(ROOT, 'dist', 'service', 'main.js'))) {
  console.error('dist/service/main.js is missing: run `npm run build` first');
  process.exit(1);
}
copyFileSync(join(ROOT, 'service', 'Dockerfile.prebuilt'), join(ROOT, 'dist', 'service', 'Dockerfile'));
console.log('built dist-lib/ (constructs and declarations) and dist/service/Dockerfile');
