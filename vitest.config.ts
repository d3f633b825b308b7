import { defineConfig } from 'vitest/config'

// Two tiers: unit tests need no services; integration tests talk to real chDB,
// PostgreSQL, HTTP (and Kafka). chDB binds one data directory per process, so
// integration files run in forked workers, one file at a time per worker.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['**/*.int.test.ts', 'node_modules/**', 'dist/**'],
          pool: 'threads',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['**/*.int.test.ts'],
          exclude: ['node_modules/**', 'dist/**'],
          pool: 'forks',
          globalSetup: ['infra/test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
})
