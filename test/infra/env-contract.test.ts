/**
 * One environment contract (STYLE 9c): every runtime variable the infrastructure sets is spelled in contract/settings.ts and
 * imported from there; lib/ never writes one of those names itself, not even inside a message.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { CANARY_ENV, CORE_ENV, LAMBDA_ENV, SERVICE_ENV, CANARY_SETTINGS, CORE_SETTINGS, LAMBDA_SETTINGS, SERVICE_SETTINGS, type Setting } from '../../contract/settings';
import { PLATFORM_ENV } from '../../lib/realtime-function';
import { REPO_ROOT } from './support';

const LIB = path.join(REPO_ROOT, 'lib');
const NAMES = [...new Set([...Object.values(CORE_ENV), ...Object.values(LAMBDA_ENV), ...Object.values(SERVICE_ENV), ...Object.values(CANARY_ENV), ...Object.values(PLATFORM_ENV)])];

/**
 * The text of every string literal, template literal part and object literal key of a source file: where a variable
 * name would be spelled. Comments (which may name variables) and identifiers (like the constant `STOP_POLL_MS`) are not.
 */
function spelledStrings(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) {
      out.push(node.text);
    } else if ((ts.isPropertyAssignment(node) || ts.isShorthandPropertyAssignment(node)) && ts.isIdentifier(node.name)) {
      out.push(node.name.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

describe('environment variable names in lib/', () => {
  const files = fs.readdirSync(LIB).filter((f) => f.endsWith('.ts'));

  test.each(files)('%s: no runtime variable name spelled outside contract/settings.ts (and PLATFORM_ENV)', (file) => {
    const strings = spelledStrings(path.join(LIB, file));
    const spelled = NAMES.filter((name) => strings.some((s) => new RegExp(`\\b${name}\\b`).test(s)));
    // realtime-function.ts is where the platform names (NODE_OPTIONS, POWERTOOLS_*) are spelled, once.
    const allowed = file === 'realtime-function.ts' ? Object.values(PLATFORM_ENV) : [];
    expect(spelled.filter((n) => !(allowed as string[]).includes(n))).toEqual([]);
  });

  test('the check sees a name spelled in a string, a template or an object key', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'env-contract-')), 'x.ts');
    fs.writeFileSync(file, "// REDIS_URL in a comment\nconst KEY_PREFIX = 1;\nf('PORT'); g(`a ${KEY_PREFIX} (HOST)`); h({ WS_URL: 1 });\n");
    expect(spelledStrings(file).flatMap((s) => NAMES.filter((n) => new RegExp(`\\b${n}\\b`).test(s)))).toEqual(['PORT', 'HOST', 'WS_URL']);
  });

  test('the platform names are not runtime names (the runtime never parses them)', () => {
    const runtime = new Set<string>([...Object.values(CORE_ENV), ...Object.values(LAMBDA_ENV), ...Object.values(SERVICE_ENV)]);
    expect(Object.values(PLATFORM_ENV).filter((n) => runtime.has(n))).toEqual([]);
  });
});

/**
 * README's configuration table, read back: variable → its default and range cells. A row may name several variables
 * (`` `PORT`, `HOST` ``) with their defaults and ranges side by side (`` `8080`, `0.0.0.0` ``).
 */
function readmeTable(markdown: string): Map<string, { default: string; range: string }[]> {
  const lines = markdown.split('\n');
  const header = lines.indexOf('| variable | used by | default | range | meaning |');
  if (header < 0) throw new Error('README.md has no configuration table (| variable | used by | default | range | meaning |)');
  const rows = new Map<string, { default: string; range: string }[]>();
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [names, , dflt, range] = line.replace(/^\|\s*|\s*\|$/g, '').split(/\s+\|\s+/);
    const vars = [...names.matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]);
    const side = (cell: string) => (vars.length > 1 && cell.split(', ').length === vars.length ? cell.split(', ') : vars.map(() => cell));
    vars.forEach((v, i) => rows.set(v, [...(rows.get(v) ?? []), { default: side(dflt)[i], range: side(range)[i] }]));
  }
  return rows;
}

/** Every disagreement between README's configuration table and the rows of contract/settings.ts, one line each. */
function readmeProblems(markdown: string): string[] {
  const table = readmeTable(markdown);
  const rows = new Map<string, Setting>([...Object.values(CORE_SETTINGS), ...Object.values(LAMBDA_SETTINGS), ...Object.values(SERVICE_SETTINGS), ...Object.values(CANARY_SETTINGS)].map((r) => [r.env, r]));
  const problems = [
    ...[...rows.keys()].filter((env) => !table.has(env)).map((env) => `${env}: no row in README`),
    ...[...table.keys()].filter((env) => !rows.has(env)).map((env) => `${env}: in README, but no row in contract/settings.ts`),
  ];
  for (const [env, cells] of table) {
    const row = rows.get(env);
    if (!row) continue;
    for (const cell of cells) {
      const documented = /^`([^`]*)`/.exec(cell.default)?.[1];
      if (row.default === '' ? !cell.default.startsWith('empty') : documented !== (row.default === undefined ? undefined : String(row.default))) {
        problems.push(`${env}: README's default "${cell.default}", the row's ${JSON.stringify(row.default)}`);
      }
      const range = row.kind === 'int' ? `${row.min}–${row.max}` : '—';
      if (cell.range !== range) problems.push(`${env}: README's range "${cell.range}", the row's ${range}`);
    }
  }
  return problems;
}

describe('README\'s configuration table is contract/settings.ts', () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

  test('every variable has a row, every row a variable, and each default and range is the row\'s', () => {
    expect(readme).toContain('| variable | used by | default | range | meaning |');
    expect(readmeProblems(readme)).toEqual([]);
  });

  test('the check bites: a wrong default, a wrong range, a missing and an unknown variable are reported', () => {
    const doctored = readme
      .replace('| `TICKET_TTL_SECONDS` | ticket issuer | `30` | 5–300 |', '| `TICKET_TTL_SECONDS` | ticket issuer | `60` | 5–600 |')
      .replace(/^\| `CATCHUP_CONCURRENCY` .*\n/m, '')
      .replace('| `LOG_LEVEL` |', '| `LOGLEVEL` |');
    expect(readmeProblems(doctored)).toEqual([
      'LOG_LEVEL: no row in README',
      'CATCHUP_CONCURRENCY: no row in README',
      'LOGLEVEL: in README, but no row in contract/settings.ts',
      'TICKET_TTL_SECONDS: README\'s default "`60`", the row\'s 30',
      'TICKET_TTL_SECONDS: README\'s range "5–600", the row\'s 5–300',
    ]);
  });
});
