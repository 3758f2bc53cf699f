/**
 * Builds the kernels if stale, then the playground's engine bundle (src/playground/build.ts).
 *   npx tsx scripts/build-playground.ts      (npm run build:playground)
 */
import { statSync } from "node:fs";
import path from "node:path";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { buildPlayground } from "../src/playground/build.ts";

const t0 = performance.now();
const file = await buildPlayground({
  relaxed: await ensureKernelsWasm({ relaxed: true }),
  simd: await ensureKernelsWasm(),
});
const kib = (statSync(file).size / 1024).toFixed(0);
console.log(`${path.relative(process.cwd(), file)}  ${kib} KiB  ${(performance.now() - t0).toFixed(0)} ms`);
