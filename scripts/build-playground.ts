/**
 * Builds the kernels if stale, then the playground (src/playground/build.ts) into build/playground/.
 *   npx tsx scripts/build-playground.ts      (npm run build:playground)
 */
import { statSync } from "node:fs";
import path from "node:path";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { buildPlayground } from "../src/playground/build.ts";

const t0 = performance.now();
const files = await buildPlayground({
  relaxed: await ensureKernelsWasm({ relaxed: true }),
  simd: await ensureKernelsWasm(),
});
for (const file of files) {
  console.log(`${path.relative(process.cwd(), file)}  ${(statSync(file).size / 1024).toFixed(1)} KiB`);
}
console.log(`built in ${(performance.now() - t0).toFixed(0)} ms`);
