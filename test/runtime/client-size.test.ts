/**
 * The size budget of the client: the whole package (every transport) bundled and minified by
 * esbuild, then gzip level 9, stays within 7 kB. It was 6 kB until presence (issue 24: `client.presence(channel)`,
 * the snapshot/position rule on every transport), which took the client from 6,102 to 6,818 B; presence is part of the
 * one entry point rather than a separate one (docs/DESIGN.md, "Presence", Size).
 */
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const BUDGET = 7 * 1024;

it('the client is at most 7 kB min+gz', async () => {
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
