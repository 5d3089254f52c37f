/**
 * The size budget of the client: the whole package (every transport) bundled and minified by
 * esbuild, then gzip level 9, stays within 6 kB.
 */
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const BUDGET = 6 * 1024;

it('the client is at most 6 kB min+gz', async () => {
  const out = await build({
    entryPoints: [join(__dirname, '../../client/src/index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2020',
    minify: true,
    write: false,
  });
  const code = out.outputFiles[0].contents;
  const gz = gzipSync(code, { level: 9 }).length;
  // Printed so a change's cost shows in the test output.
  process.stdout.write(`client: ${code.length} B minified, ${gz} B min+gz (budget ${BUDGET} B)\n`);
  expect(gz).toBeLessThanOrEqual(BUDGET);
  // Dependency-free: nothing imported at run time.
  expect(new TextDecoder().decode(code)).not.toMatch(/\bimport\b|\brequire\(/);
});
