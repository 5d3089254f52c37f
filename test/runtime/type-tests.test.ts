/**
 * Type tests, compiled as part of `npm test`: tsc in strict mode (bundler resolution, as an app's build) over
 * test/types/*.ts. Each fixture marks what must NOT compile with `// @ts-expect-error`; when the types let such
 * a line through, tsc reports the directive as unused (TS2578) and this test fails with tsc's output.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const TYPES = join(ROOT, 'test', 'types');
const tsc = (project: string) => spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { encoding: 'utf8', timeout: 120_000 });

test('test/types/*.ts compile under strict TypeScript, every @ts-expect-error line an error', () => {
  const r = tsc(join(TYPES, 'tsconfig.json'));
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
  // The fixtures really assert refusals (a fixture without any would prove only that good code compiles).
  const fixtures = readdirSync(TYPES).filter((f) => f.endsWith('.ts'));
  expect(fixtures.every((f) => readFileSync(join(TYPES, f), 'utf8').includes('@ts-expect-error'))).toBe(true);
}, 120_000);

test('the harness sees a directive the types let through: TS2578, non-zero exit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'type-test-'));
  writeFileSync(join(dir, 'fixture.ts'), `import { createTypedClient, type ClientOptions } from '${join(ROOT, 'client', 'src', 'index')}';\ndeclare const o: ClientOptions;\nconst c = createTypedClient<{ 'chat:*': { m: { t: string } } }>(o);\n// @ts-expect-error\nc.subscribe('chat:ok', { onEvent: () => undefined });\n`);
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: join(TYPES, 'tsconfig.json'), include: [join(dir, 'fixture.ts')] }));
  const r = tsc(join(dir, 'tsconfig.json'));
  expect(r.status).not.toBe(0);
  expect(r.stdout).toMatch(/fixture\.ts\(4,1\): error TS2578: Unused '@ts-expect-error' directive/);
}, 120_000);
