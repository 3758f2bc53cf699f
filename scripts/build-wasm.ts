/**
 * Builds the three kernel binaries (src/kernels/wasm/build.ts), prints their sizes, and writes the
 * exports' TypeScript declarations (src/kernels/wasm/kernels.generated.d.ts) from the SIMD build.
 *   npx tsx scripts/build-wasm.ts [--wat]      (npm run build:wasm)
 */
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { buildKernelsWasm, KERNELS_DTS_PATH } from "../src/kernels/wasm/build.ts";

for (const flavor of [{}, { relaxed: true }, { relaxed: true, i16Dot: true }]) {
  const t0 = performance.now();
  const { path: file, dts } = await buildKernelsWasm({ wat: process.argv.includes("--wat"), ...flavor });
  const size = (await stat(file)).size;
  console.log(
    `${path.relative(process.cwd(), file)}: ${size} bytes in ${(performance.now() - t0).toFixed(0)} ms`,
  );
  if (!("relaxed" in flavor)) {
    await writeFile(KERNELS_DTS_PATH, dts);
    console.log(`${path.relative(process.cwd(), KERNELS_DTS_PATH)}: export signatures`);
  }
}
