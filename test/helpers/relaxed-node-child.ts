/**
 * Child process of test/kernels-relaxed.test.ts, run as
 *   node --experimental-wasm-relaxed-simd [V8 tier flags] --import tsx relaxed-node-child.ts <probe.wasm> <kernels.wasm> <kernels-relaxed-i16.wasm> <kernels-relaxed.wasm>
 * (relaxed SIMD needs the flag before any module compiles, so it cannot run inside the test worker).
 * Prints one JSON line: the probe's raw results and the kernel builds' outputs on the same inputs; the
 * dot-add build (kernels-relaxed.wasm) either refuses to load (its exactness check failed) or runs too.
 */
import { readFile } from "node:fs/promises";
import { matmulInt4Q8Array, matvecInt4Array } from "../../src/bench/kernel-arrays.ts";
import { quantizeRtn } from "../../src/format/int4.ts";
import { loadKernelsNode } from "../../src/kernels/wasm/node.ts";
import { q4_1Tensor, randn } from "../kernels-helpers.ts";
import { probeVectors, runProbe } from "./relaxed-probe.ts";

const [probePath, simdPath, relaxedPath, dotAddPath] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
];
const { instance } = await WebAssembly.instantiate(await readFile(probePath), {});
const v = probeVectors();
// the first call runs in Liftoff unless tier flags say otherwise; call twice more after warming up
const first = runProbe(instance.exports, v);
for (let i = 0; i < 300; i++) runProbe(instance.exports, v);
const warm = runProbe(instance.exports, v);

const simd = await loadKernelsNode(simdPath);
const relaxed = await loadKernelsNode(relaxedPath);
let dotAdd: typeof simd | null = null;
let dotAddRefused: string | null = null;
try {
  dotAdd = await loadKernelsNode(dotAddPath);
} catch (e) {
  dotAddRefused = (e as Error).message;
}
const kernels: {
  shape: string;
  relaxed: boolean;
  simd: number[];
  relaxedOut: number[];
  dotAddOut: number[] | null;
}[] = [];
for (const [N, K, groupSize, zeroPoint, M] of [
  [13, 172, 32, true, 1],
  [64, 768, 32, false, 1],
  [9, 288, 64, true, 5],
  [21, 2048, 128, false, 16],
  [13, 576, 32, "mins", 1],
  [9, 1536, 32, "mins", 5],
] as const) {
  // "mins": fp16 per-group mins (ggml Q4_1) instead of zero points
  const p =
    zeroPoint === "mins"
      ? q4_1Tensor(N, K, N + K)
      : quantizeRtn(randn(N * K, N + K, 0.02), N, K, { groupSize, zeroPoint });
  const x = randn(M * K, K + M);
  const run = (k: typeof simd) => {
    const t = k.uploadInt4(p);
    return Array.from(M === 1 ? matvecInt4Array(k, t, x, "q8") : matmulInt4Q8Array(k, t, x, M));
  };
  for (let rep = 0; rep < 30; rep++) run(relaxed); // reach the optimizing tier too
  kernels.push({
    shape: `${N}x${K} g${groupSize}${zeroPoint === "mins" ? " mins" : ""} M=${M}`,
    relaxed: relaxed.relaxedSimd,
    simd: run(simd),
    relaxedOut: run(relaxed),
    dotAddOut: dotAdd ? run(dotAdd) : null,
  });
}
process.stdout.write(
  `${JSON.stringify({ first, warm, kernels, dotAddRefused, dotAddFlag: dotAdd?.relaxedDotAdd ?? null })}\n`,
);
