import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Engines and the trainer are CPU-heavy; files run one at a time on the 2-core machines.
    fileParallelism: false,
    pool: "forks",
    globalSetup: ["test/global-setup.ts"],
  },
});
