// Builds dist/index.js (ESM) and dist/index.cjs (CommonJS) with esbuild, the AWS SDK packages left as
// dependencies, and the declarations under dist/types/ with tsc (the channel types it shares with the
// client are declared there too, so the package needs no other). Run from server-sdk/ or the repo root.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
rmSync(join(here, 'dist'), { recursive: true, force: true });
const common = {
  entryPoints: [join(here, 'src/index.ts')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['@aws-sdk/*', '@smithy/*'],
  sourcemap: true,
};
await build({ ...common, format: 'esm', outfile: join(here, 'dist/index.js') });
await build({ ...common, format: 'cjs', outfile: join(here, 'dist/index.cjs') });
execFileSync(process.execPath, [join(here, '../node_modules/typescript/bin/tsc'), '-p', join(here, 'tsconfig.build.json')], { stdio: 'inherit' });

// Relative imports in the declarations get their `.js`, so apps resolving with node16/nodenext (ESM) find them too.
for (const f of readdirSync(join(here, 'dist/types'), { recursive: true })) {
  if (!String(f).endsWith('.d.ts')) continue;
  const file = join(join(here, 'dist/types'), String(f));
  writeFileSync(file, readFileSync(file, 'utf8').replace(/(from '\.{1,2}\/[^']+?)(?<!\.js)'/g, "$1.js'"));
}
