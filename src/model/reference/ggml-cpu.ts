/**
 * llama.cpp's CPU matrix-vector arithmetic for quantized weights, emulated value for value, so the
 * reference pass can be compared with llama.cpp on the arithmetic llama.cpp actually does.
 *
 * Source: ggml at the commit node-llama-cpp 3.22.1 bundles (llama/gitRelease.bundle, de3ff815),
 * ggml/src/ggml-cpu/arch/x86/quants.c, AVX2 paths (this machine and every x86-64 build variant
 * node-llama-cpp ships from haswell up):
 * - a Q4_1 weight row is dotted with the activation vector quantized to q8_1 (type_traits_cpu
 *   vec_dot_type), a Q8_0 row with it quantized to q8_0. quantize_row_q8_1 / quantize_row_q8_0 per
 *   block of 32: amax = max|x|, d = amax/127 (stored fp16), id = 127/amax (fp32, not 1/fp16(d)),
 *   q = round-half-even(x * id) (`_mm256_round_ps(_MM_ROUND_NEAREST)`), and for q8_1 also
 *   s = fp16(d * sum(q)).
 * - ggml_vec_dot_q4_1_q8_1: per block, 8 fp32 lanes each take the integer dot of 4 consecutive
 *   elements times fp32(d_w * d_x) with one fused multiply-add; the min term sums m_w * s_x in a
 *   separate fp32 scalar; result = hsum_float_8(lanes) + that scalar.
 * - ggml_vec_dot_q8_0_q8_0: the same lanes with scale fp32(d_w * d_x) and no min term.
 * hsum_float_8 adds lanes (k, k+4), then (k, k+2), then (0, 1), each in fp32.
 * Every fp32 rounding above is reproduced with Math.fround (a fused multiply-add is computed in
 * float64, where the product is exact, then rounded once). Batched prompts in llama.cpp may run
 * these rows through other kernels (llamafile sgemm for Q8_0) with another fp32 summation order;
 * the quantization of the activations, which is what moves the logits, is the same there.
 */

import { f16ToF32, f32ToF16 } from "../../format/int4.ts";
import type { SourceDType, TensorEntry } from "../../format/model.ts";
import { halfAt } from "../import/ggml/f16.ts";
import { Q4_1_BYTES, Q8_0_BYTES, QK } from "../import/ggml/legacy.ts";
import { matVec } from "./ops.ts";

const fr = Math.fround;
/** fp32 -> the nearest fp16 value (round to nearest even: F16C's `_cvtss_sh(x, 0)`), as a number. */
const roundToF16 = (x: number) => f16ToF32(f32ToF16(x));

/** An activation vector as ggml's q8_0/q8_1 blocks (fp16 scales already rounded to their fp32 values). */
export interface Q8Activations {
  /** One int8 per element. */
  readonly qs: Int8Array;
  /** Per block: fp16(d), as fp32. */
  readonly d: Float32Array;
  /** Per block: fp16(d * sum(qs)) (q8_1's `s`), as fp32. */
  readonly s: Float32Array;
}

/** Rounds half to even, as `_mm256_round_ps(v, _MM_ROUND_NEAREST)` in the default rounding mode. */
function roundHalfEven(v: number): number {
  const r = Math.round(v); // halves go up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** quantize_row_q8_1 (and, ignoring `s`, quantize_row_q8_0) of the AVX2 build; x.length % 32 == 0. */
export function quantizeQ8(x: Float32Array): Q8Activations {
  if (x.length % QK !== 0)
    throw new RangeError(`q8 quantization needs a multiple of ${QK} values, got ${x.length}`);
  const nb = x.length / QK;
  const qs = new Int8Array(x.length);
  const d = new Float32Array(nb);
  const s = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const o = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[o + j]!));
    const scale = fr(amax / 127);
    const id = amax !== 0 ? fr(127 / amax) : 0;
    let sum = 0;
    for (let j = 0; j < QK; j++) {
      const q = roundHalfEven(fr(x[o + j]! * id));
      qs[o + j] = q;
      sum += q;
    }
    d[b] = roundToF16(scale);
    s[b] = roundToF16(fr(scale * sum));
  }
  return { qs, d, s };
}

/** hsum_float_8 of 8 fp32 lanes. */
function hsum8(a: Float64Array): number {
  const s0 = fr(a[4]! + a[0]!);
  const s1 = fr(a[5]! + a[1]!);
  const s2 = fr(a[6]! + a[2]!);
  const s3 = fr(a[7]! + a[3]!);
  return fr(fr(s0 + s2) + fr(s1 + s3));
}

/**
 * out[r] = row r of Q4_1 `blocks` (rows x cols) dotted with `x` as ggml_vec_dot_q4_1_q8_1 does.
 * Nibble order as dequantize_row_q4_1: byte j holds element j (low) and j + 16 (high).
 */
export function matVecQ4_1(out: Float32Array, blocks: Uint8Array, x: Q8Activations, cols: number): void {
  const nb = cols / QK;
  const lanes = new Float64Array(8);
  const { qs, d, s } = x;
  for (let r = 0; r < out.length; r++) {
    lanes.fill(0);
    let summs = 0;
    for (let ib = 0; ib < nb; ib++) {
      const o = (r * nb + ib) * Q4_1_BYTES;
      const dw = halfAt(blocks, o);
      const mw = halfAt(blocks, o + 2);
      summs = fr(summs + fr(mw * s[ib]!));
      const dd = fr(dw * d[ib]!);
      const y = ib * QK;
      for (let lane = 0; lane < 8; lane++) {
        // Lane k covers elements 4k..4k+3: low nibbles for k < 4, high nibbles of the same bytes after.
        const j0 = (lane & 3) * 4;
        const shift = lane < 4 ? 0 : 4;
        const e0 = y + lane * 4;
        let dot = 0;
        for (let t = 0; t < 4; t++) dot += ((blocks[o + 4 + j0 + t]! >> shift) & 0x0f) * qs[e0 + t]!;
        lanes[lane] = fr(dd * dot + lanes[lane]!);
      }
    }
    out[r] = fr(hsum8(lanes) + summs);
  }
}

/** out[r] = row r of Q8_0 `blocks` (rows x cols) dotted with `x` as ggml_vec_dot_q8_0_q8_0 does. */
export function matVecQ8_0(out: Float32Array, blocks: Uint8Array, x: Q8Activations, cols: number): void {
  const nb = cols / QK;
  const lanes = new Float64Array(8);
  const signed = new Int8Array(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const { qs, d } = x;
  for (let r = 0; r < out.length; r++) {
    lanes.fill(0);
    for (let ib = 0; ib < nb; ib++) {
      const o = (r * nb + ib) * Q8_0_BYTES;
      const dd = fr(halfAt(blocks, o) * d[ib]!);
      const y = ib * QK;
      for (let lane = 0; lane < 8; lane++) {
        const w = o + 2 + lane * 4;
        const e = y + lane * 4;
        const dot =
          signed[w]! * qs[e]! +
          signed[w + 1]! * qs[e + 1]! +
          signed[w + 2]! * qs[e + 2]! +
          signed[w + 3]! * qs[e + 3]!;
        lanes[lane] = fr(dd * dot + lanes[lane]!);
      }
    }
    out[r] = hsum8(lanes);
  }
}

/**
 * ggml_compute_forward_rms_norm_f32 (fused with the weight multiply, ops.cpp): sum of fp32 squares
 * in double, mean and scale = 1/sqrtf(mean + eps) in fp32, y = (x * scale) * w in fp32.
 */
export function rmsNormGgml(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += fr(x[i]! * x[i]!);
  const mean = fr(sum / x.length);
  const scale = fr(1 / fr(Math.sqrt(fr(mean + fr(eps)))));
  for (let i = 0; i < x.length; i++) out[i] = fr(x[i]! * scale) * weight[i]!;
}

/** A linear layer y = W x as llama.cpp's CPU backend computes it for W's storage type. */
export type GgmlLinear = (out: Float32Array, x: Float32Array) => void;

const EMULATED: readonly SourceDType[] = ["f32", "f16", "q4_1", "q8_0"];

/**
 * The ggml-CPU linear for `tensor` ([rows, cols], row-major). Emulated: Q4_1 and Q8_0 (what the
 * default model stores), F16 (activations rounded to fp16) and F32 (vec_dot_type F32: no activation
 * rounding); F32/F16 sums run in float64 here; any other type throws, naming it, rather than silently using fp32.
 */
export function ggmlLinear(tensor: TensorEntry): GgmlLinear {
  const [rows, cols] = tensor.shape as [number, number];
  if (tensor.dtype === "f32") {
    const w = tensor.f32();
    return (out, x) => matVec(out, w, x);
  }
  if (tensor.dtype === "f16") {
    // vec_dot_type F16: the activations are converted to fp16 (ggml_cpu_fp32_to_fp16) first.
    const w = tensor.f32();
    return (out, x) => matVec(out, w, x.map(roundToF16));
  }
  if (!EMULATED.includes(tensor.dtype)) {
    throw new Error(
      `ggml-cpu arithmetic: ${tensor.name} is ${tensor.dtype}; emulated types are ${EMULATED.join(", ")}`,
    );
  }
  if (!tensor.stored) throw new Error(`ggml-cpu arithmetic: ${tensor.name} has no stored ggml blocks`);
  const blocks = tensor.stored();
  const dot = tensor.dtype === "q4_1" ? matVecQ4_1 : matVecQ8_0;
  return (out, x) => {
    if (out.length !== rows || x.length !== cols) {
      throw new Error(`${tensor.name}: [${rows}, ${cols}] cannot map ${x.length} values to ${out.length}`);
    }
    dot(out, blocks, quantizeQ8(x), cols);
  };
}
