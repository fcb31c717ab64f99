import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Native tests load LibTorch (~0.6 s, ~200 MB) per worker: keep the pool small on 2 cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
