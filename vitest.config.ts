import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Builds what the Worker imports besides the kernels (the playground engine bundle).
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // 2-core machines: keep test files from starving each other.
    maxWorkers: 2,
  },
});
