/**
 * Type tests of the client, compiled with the TypeScript compiler API under the strict settings an
 * app team uses (strict, ESM, bundler resolution, @types/ws as installed): zero diagnostics, and the
 * fixture's `@ts-expect-error` lines must still be errors (TypeScript reports an unused one).
 */
import { join } from 'node:path';
import ts from 'typescript';

const compile = (file: string): string[] => {
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    esModuleInterop: true,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: ['node'],
    skipLibCheck: true,
  });
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? `${d.file.fileName.split('/').slice(-2).join('/')}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1} ` : ''}TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
};

test("createClient({ ticket, WebSocket }) with `import WebSocket from 'ws'` compiles under strict TypeScript", () => {
  expect(compile(join(__dirname, '../types/ws-option.ts'))).toEqual([]);
}, 60_000);
