/**
 * The client README's quick start compiles under strict TypeScript as written: every ```ts block of its Node setup,
 * "For app teams" and "Typed channels" sections is taken from client/README.md as it is today (not a copy), with the
 * app's own names declared around it (the ticket, the stack outputs, the page's functions) and the package name
 * resolved to client/src. Lines the README marks `// compile error` must be errors, and nothing else may be.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const README = readFileSync(join(ROOT, 'client', 'README.md'), 'utf8');

/** The ```ts blocks of the section whose heading starts with `heading` (the text before the first heading for ''). */
function blocks(heading: string): string[] {
  const sections = README.split(/^## /m);
  const section = heading === '' ? sections[0] : sections.find((s) => s.startsWith(heading));
  if (!section) throw new Error(`client/README.md has no section "## ${heading}"`);
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** What the app around a snippet supplies: declared, so the snippet itself is compiled exactly as written. */
const APP = `
declare const ticket: import('@realtime-blueprint/client').ClientOptions['ticket'];
declare const outputs: { TicketUrl: string };
declare function getJwt(): Promise<string>;
declare const badge: { textContent: string | null };
declare function show(...args: unknown[]): void;
declare function reloadRoom(): void;
`;

/** A README line marked `// compile error` becomes a line tsc must refuse; `…` (an elided argument) becomes `{} as never`. */
function fixture(code: string): string {
  return code
    .split('\n')
    .map((line) => (/\/\/ compile error/.test(line) ? `// @ts-expect-error the README says this does not compile\n${line.replace('…', '{} as never')}` : line))
    .join('\n');
}

function compile(files: Record<string, string>): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'readme-quickstart-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const tsconfig = {
    compilerOptions: {
      target: 'ES2022',
      module: 'ES2022',
      moduleResolution: 'bundler',
      lib: ['ES2022', 'DOM'],
      strict: true,
      noEmit: true,
      skipLibCheck: false,
      types: ['node'],
      typeRoots: [join(ROOT, 'node_modules', '@types')],
      baseUrl: dir,
      paths: { '@realtime-blueprint/client': [join(ROOT, 'client', 'src', 'index.ts')], ws: [join(ROOT, 'node_modules', '@types', 'ws')] },
    },
    files: Object.keys(files).map((f) => join(dir, f)),
  };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('client README: the Node setup, "For app teams" and "Typed channels" blocks compile under strict TypeScript', () => {
  const [node] = blocks('');
  const [forApps] = blocks('For app teams');
  const [typed] = blocks('Typed channels');
  expect(node).toContain('WebSocket');
  expect(forApps).toContain('createClient<Events>');
  expect(typed).toContain('createTypedClient<Schema>');
  // The Node block uses createClient without importing it: the README shows only the lines that differ in Node.
  const files = {
    'node.ts': `import { createClient } from '@realtime-blueprint/client';\n${APP}\n${fixture(node)}\nexport {};\n`,
    'for-apps.ts': `${fixture(forApps)}\n${APP}\nexport {};\n`,
    'typed.ts': `${fixture(typed)}\n${APP}\nexport {};\n`,
  };
  // The typed block really carries refusals (two `// compile error` lines), or this would prove only what compiles.
  expect(files['typed.ts'].match(/@ts-expect-error/g)).toHaveLength(2);
  const r = compile(files);
  expect(r.out).toBe('');
  expect(r.status).toBe(0);
}, 120_000);

test('the harness fails on a README line that does not compile', () => {
  const r = compile({ 'bad.ts': `import { createClient } from '@realtime-blueprint/client';\n${APP}\ncreateClient({ tikket: ticket });\nexport {};\n` });
  expect(r.status).not.toBe(0);
  expect(r.out).toMatch(/bad\.ts\(\d+,\d+\): error TS2353|error TS2561/);
}, 120_000);
