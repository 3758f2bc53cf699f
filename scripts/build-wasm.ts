/**
 * Builds both kernel binaries (src/kernels/wasm/build.ts) and prints their sizes.
 *   npx tsx scripts/build-wasm.ts [--wat]      (npm run build:wasm)
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { buildKernelsWasm } from "../src/kernels/wasm/build.ts";

for (const relaxed of [false, true]) {
  const t0 = performance.now();
  const file = await buildKernelsWasm({ wat: process.argv.includes("--wat"), relaxed });
  const size = (await stat(file)).size;
  console.log(
    `${path.relative(process.cwd(), file)}: ${size} bytes in ${(performance.now() - t0).toFixed(0)} ms`,
  );
}
