/** Three projects: runtime (real redis-server, real servers and clients), infra (CDK templates), cost (the planner). */
const transform = {
  '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
};
module.exports = {
  projects: [
    {
      displayName: 'runtime',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/runtime/**/*.test.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
    },
    {
      displayName: 'infra',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/infra/**/*.test.ts'],
      snapshotSerializers: ['<rootDir>/test/infra/asset-hash-serializer.ts'],
    },
    {
      displayName: 'cost',
      testEnvironment: 'node',
      transform,
      testMatch: ['<rootDir>/test/cost/**/*.test.ts'],
    },
  ],
  testTimeout: 30000,
  modulePathIgnorePatterns: ['<rootDir>/cdk.out', '<rootDir>/dist', '<rootDir>/dist-lib'],
};
