import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * One meaning per name (issue 22): `Transport` is the session-to-transport seam (service/transport.ts) and `Session`
 * one connection's delivery state (service/session.ts). No other module of the server side declares either name.
 * The client package's public `Transport` ('ws' | 'sse' | 'poll', what an app picks) is its own API, not checked.
 */
const ROOT = join(__dirname, '..', '..');
const TREES = ['contract', 'core', 'lambda', 'service', 'local', 'lib', 'cost', 'scripts', 'server-sdk/src'];
const CENTRAL: Record<string, string> = { Transport: 'service/transport.ts', Session: 'service/session.ts' };

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === 'node_modules' ? [] : files(join(dir, e.name))) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test.each(Object.entries(CENTRAL))('only %s declares the name it is central for: %s', (name, home) => {
  const all = TREES.flatMap(files);
  expect(all).toContain(home);
  const declaring = all.filter((f) => new RegExp(`^\\s*(export\\s+)?(type|interface|class|enum)\\s+${name}\\b`, 'm').test(readFileSync(join(ROOT, f), 'utf8')));
  expect(declaring.map((f) => relative('.', f))).toEqual([home]);
});
