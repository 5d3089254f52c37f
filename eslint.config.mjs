// @ts-check
import tseslint from 'typescript-eslint';

const cdkImports = {
  patterns: [
    { group: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs'], message: 'Runtime code never imports CDK (see DESIGN.md, Layout).' },
    { group: ['../lib', '../lib/*', '../../lib/*'], message: 'Runtime code never imports infrastructure code.' },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'cdk.out/**', 'dist/**', '**/dist/**', 'dist-lib/**', 'coverage/**', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['core/**/*.ts', 'lambda/**/*.ts', 'service/**/*.ts', 'client/**/*.ts', 'server-sdk/**/*.ts', 'local/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', cdkImports] },
  },
  {
    // The domain (core/*.ts) talks to AWS only through its ports (ManagementApi, WorkQueue): the signed calls are wired
    // in by the Lambdas and the task, never imported here.
    files: ['core/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [...cdkImports.patterns, { group: ['./aws/*', '@aws-sdk/*', '@smithy/*'], message: 'core/ domain code talks to AWS through its ports; the signed calls live in core/aws/ and are wired in by lambda/ and service/.' }],
      }],
    },
  },
  {
    // The contract between infrastructure and runtime (variable names): depends on nothing.
    files: ['contract/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['*'], message: 'contract/ depends on nothing: infrastructure and runtime both import it.' }] }] },
  },
  {
    files: ['lib/**/*.ts', 'bin/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../core/*', '../lambda/*', '../service/*', '../local/*', '../client/*'], message: 'Infrastructure code points at runtime entry files by path; it never imports them.' },
          { group: ['../scripts/*', '../cost/*'], message: 'scripts/ and cost/ import lib/; lib/ importing them back closes a cycle (shared settings live in contract/).' },
        ],
      }],
    },
  },
);
