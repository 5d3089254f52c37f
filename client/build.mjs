// Builds dist/index.js and dist/react.js (ESM, minified, with source maps; React left to the app) and their
// declarations (dist/*.d.ts). Run from client/ or the repo root; `npm pack` runs it (prepack).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
rmSync(join(here, 'dist'), { recursive: true, force: true });
await build({
  entryPoints: [join(here, 'src/index.ts'), join(here, 'src/react.ts')],
  outdir: join(here, 'dist'),
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2020',
  external: ['react'],
  minify: true,
  sourcemap: true,
});
execFileSync(process.execPath, [join(here, '../node_modules/typescript/bin/tsc'), '-p', join(here, 'tsconfig.build.json')], { stdio: 'inherit' });

// Relative imports in the declarations get their `.js`, so apps resolving with node16/nodenext (ESM) find them too.
for (const f of readdirSync(join(here, 'dist'), { recursive: true })) {
  if (!String(f).endsWith('.d.ts')) continue;
  const file = join(join(here, 'dist'), String(f));
  writeFileSync(file, readFileSync(file, 'utf8').replace(/(from '\.{1,2}\/[^']+?)(?<!\.js)'/g, "$1.js'"));
}
