/**
 * Shared by test/kernels-*.test.ts: wasm loading (builds on demand), deterministic data and the
 * onnxruntime-web peer (both from src/bench), plain-TS references.
 */

import { mulberry32, randn, relErr } from "../src/bench/data.ts";
import type { PackedInt4 } from "../src/format/int4.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadKernelsNode } from "../src/kernels/wasm/node.ts";
import { quantizeQ4_1 } from "../src/model/export/encode.ts";
import { repackGgml } from "../src/model/import/ggml/repack.ts";

export async function loadTestKernels(): Promise<WasmKernels> {
  return loadKernelsNode(await ensureKernelsWasm());
}

/** Deterministic PRNG (mulberry32). */
export const rng = mulberry32;
export { loadOrt, type OrtMatMul, ortMatMulNBits } from "../src/bench/ort-matmul.ts";
export { randn, relErr };

/** y = W x in float64, W row-major [N][K]. */
export function refMatvec(w: Float32Array, x: Float32Array, N: number, K: number): Float32Array {
  const y = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += w[n * K + k]! * x[k]!;
    y[n] = s;
  }
  return y;
}

function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** TS model of quantize_q8: per 32-block d = amax/127, codes = roundEven(x * 127/amax), in f32; k order. */
export function emulateQ8(x: Float32Array, kPadded: number): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(kPadded);
  const d = new Float32Array(kPadded / 32);
  for (let b = 0; b < kPadded / 32; b++) {
    let amax = 0;
    for (let k = b * 32; k < b * 32 + 32; k++) amax = Math.max(amax, Math.abs(x[k] ?? 0));
    d[b] = Math.fround(amax / 127);
    const id = amax > 0 ? Math.fround(127 / amax) : 0;
    for (let k = b * 32; k < b * 32 + 32; k++) q[k] = roundEven(Math.fround((x[k] ?? 0) * id));
  }
  return { q, d };
}

/** A Q4_1 tensor as ggml's quantize_row_q4_1 writes it, repacked: weights with an offset and outliers. */
export function q4_1Tensor(N: number, K: number, seed: number): PackedInt4 {
  const w = randn(N * K, seed, 0.05);
  for (let i = 0; i < w.length; i++) w[i] = w[i]! + 0.02 * Math.sin(i / 7);
  for (let i = 0; i < w.length; i += 97) w[i] = w[i]! * 6;
  const r = repackGgml("q4_1", quantizeQ4_1(w), N, K);
  if (!r.ok || r.value.format !== "int4") throw new Error("q4_1Tensor: not repacked");
  return r.value;
}
