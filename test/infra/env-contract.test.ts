/**
 * One environment contract (STYLE 9c): every runtime variable the infrastructure sets is spelled in contract/env.ts and
 * imported from there; lib/ never writes one of those names itself, not even inside a message.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { CANARY_ENV, CORE_ENV, LAMBDA_ENV, SERVICE_ENV } from '../../contract/env';
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

  test.each(files)('%s: no runtime variable name spelled outside contract/env.ts (and PLATFORM_ENV)', (file) => {
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
