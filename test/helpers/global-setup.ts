/**
 * Once per test run: build the playground (page, script, style sheet, engine bundle), which the Worker
 * imports (src/worker/playground-routes.ts), so every test that bundles the Worker finds it.
 */
import { ensureKernelsWasm } from "../../src/kernels/wasm/build.ts";
import { buildPlayground } from "../../src/playground/build.ts";

export default async function setup(): Promise<void> {
  await buildPlayground({
    relaxed: await ensureKernelsWasm({ relaxed: true }),
    simd: await ensureKernelsWasm(),
  });
}
