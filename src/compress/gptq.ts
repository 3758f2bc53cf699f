/**
 * GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
 * Transformers") into the engine's int4 group format.
 *
 * Minimizes the layer output error ‖XWᵀ − XŴᵀ‖² with H = XᵀX (the factor 2 of the paper only rescales
 * H, and damping is relative to its diagonal): columns are quantized one at a time in K order and each
 * column's rounding error, divided by the pivot of the upper Cholesky factor U of H⁻¹, is pushed onto
 * the not-yet-quantized columns (w_j −= err · U[i, j]). Updates to columns beyond the current block are
 * batched ("lazy batch") for cache locality; the arithmetic is the same.
 *
 * Groups run along K exactly as in src/format/int4.ts. Without act-order a group's scale is chosen when
 * its first column comes up, from the already error-corrected weights (as the reference
 * implementation does). With act-order, columns go in order of decreasing H diagonal, so a group's
 * columns are no longer consecutive: scales are then fixed up front from the original weights
 * ("static groups"), which keeps the layout contiguous.
 */
import { z } from "zod";
import type { PackedInt4 } from "../format/int4.ts";
import {
  DEFAULT_CLIP_RATIOS,
  dequantizeCode,
  type GroupParams,
  groupParams,
  Int4Builder,
  quantizeCode,
  searchGroupParams,
} from "./int4-groups.ts";
import { inverseCholeskyUpper as invCholU, meanDiagonal, NotPositiveDefiniteError } from "./linalg.ts";

export const Int4GroupSizeSchema = z.union([z.literal(32), z.literal(64), z.literal(128)]);

export const GptqOptions = z.strictObject({
  groupSize: Int4GroupSizeSchema.default(32),
  zeroPoint: z.boolean().default(false),
  /** λ in H + λ·mean(diag H)·I (the paper's 1%). Raised ×10 (up to 4 times) if H stays singular. */
  dampening: z.number().positive().default(0.01),
  /** Columns per lazy-batch block (speed only). */
  blockSize: z.number().int().positive().default(128),
  /** Quantize columns in order of decreasing H diagonal (static group scales). */
  actOrder: z.boolean().default(false),
  /** Choose each group's scale by clip search weighted by diag H instead of RTN's max-abs rule. */
  clipSearch: z.boolean().default(false),
  clipRatios: z
    .array(z.number().gt(0).max(1))
    .min(1)
    .default([...DEFAULT_CLIP_RATIOS]),
});
export type GptqOptionsInput = z.input<typeof GptqOptions>;

/** U with H⁻¹ = UᵀU for the damped H; damping grows until H is positive definite. */
function dampedInverseCholeskyUpper(h: Float64Array, K: number, dampening: number): Float64Array {
  const base = meanDiagonal(h, K);
  let lambda = dampening;
  for (let attempt = 0; ; attempt++) {
    const damped = Float64Array.from(h);
    for (let k = 0; k < K; k++) damped[k * K + k]! += lambda * base;
    try {
      return invCholU(damped, K);
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError) || attempt >= 4) throw e;
      lambda *= 10;
    }
  }
}

/** Per Gram matrix (by identity; callers never mutate a Gram after calibration): its factor U. */
const factorCache = new WeakMap<Float64Array, { key: string; u: Float64Array }>();

/**
 * GPTQ-quantizes a row-major [N, K] weight given its input Gram matrix XᵀX ([K, K], e.g.
 * `InputStats.gram` from calibration). Deterministic: same inputs, same bytes.
 */
export function quantizeGptq(
  weights: Float32Array,
  N: number,
  K: number,
  gram: Float64Array,
  options: GptqOptionsInput = {},
): PackedInt4 {
  const o = GptqOptions.parse(options);
  if (weights.length !== N * K) throw new Error(`gptq: ${weights.length} values for [${N}, ${K}]`);
  if (gram.length !== K * K)
    throw new Error(`gptq: Gram matrix has ${gram.length} values, expected ${K}x${K}`);
  const G = o.groupSize;
  const b = new Int4Builder(N, K, G, o.zeroPoint);

  // Column k of W is row k of wt: the error feedback then updates contiguous memory.
  const wt = new Float64Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = weights[n * K + k]!;
  const h = Float64Array.from(gram);
  const diag = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    diag[k] = h[k * K + k]!;
    // A channel that was always 0 cannot affect the output: any weight works, 0 keeps H invertible.
    if (diag[k] === 0) {
      h[k * K + k] = 1;
      wt.fill(0, k * N, (k + 1) * N);
    }
  }

  const perm = Array.from({ length: K }, (_, k) => k);
  if (o.actOrder) perm.sort((a, c) => diag[c]! - diag[a]! || a - c);
  const wp = new Float64Array(K * N);
  for (let i = 0; i < K; i++) wp.set(wt.subarray(perm[i]! * N, (perm[i]! + 1) * N), i * N);
  // q/k/v (and gate/up) share one Gram matrix: factor it once (U depends on H, damping, order only).
  const cacheKey = `${o.dampening}/${o.actOrder}`;
  let cached = factorCache.get(gram);
  if (cached?.key !== cacheKey) {
    const hp = new Float64Array(K * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) hp[i * K + j] = h[perm[i]! * K + perm[j]!]!;
    cached = { key: cacheKey, u: dampedInverseCholeskyUpper(hp, K, o.dampening) };
    factorCache.set(gram, cached);
  }
  const u = cached.u;

  const params: GroupParams[] = new Array(N * b.nGroups);
  const groupValues = new Float64Array(G);
  const groupImportance = new Float64Array(G);
  /** Sets group g's parameters for every row from `source` (column-major, column index = orig k). */
  const fixGroup = (g: number, source: Float64Array, columnOf: (k: number) => number) => {
    const k0 = g * G;
    const len = Math.min(G, K - k0);
    for (let i = 0; i < len; i++) groupImportance[i] = diag[k0 + i]!;
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < len; i++) groupValues[i] = source[columnOf(k0 + i) * N + n]!;
      const p = o.clipSearch
        ? searchGroupParams(groupValues, 0, len, o.zeroPoint, groupImportance, o.clipRatios)
        : groupParams(groupValues, 0, len, o.zeroPoint);
      params[n * b.nGroups + g] = p;
      b.setGroup(n, g, p);
    }
  };
  if (o.actOrder) for (let g = 0; g < b.nGroups; g++) fixGroup(g, wt, (k) => k);

  for (let i1 = 0; i1 < K; i1 += o.blockSize) {
    const i2 = Math.min(i1 + o.blockSize, K);
    const err = new Float64Array((i2 - i1) * N);
    for (let i = i1; i < i2; i++) {
      const k = perm[i]!;
      const g = Math.floor(k / G);
      if (!o.actOrder && k % G === 0) fixGroup(g, wp, (c) => c);
      const pivot = u[i * K + i]!;
      const col = i * N;
      const e = (i - i1) * N;
      for (let n = 0; n < N; n++) {
        const p = params[n * b.nGroups + g]!;
        const w = wp[col + n]!;
        const q = quantizeCode(w, p);
        b.setCode(n, k, q);
        err[e + n] = (w - dequantizeCode(q, p)) / pivot;
      }
      for (let j = i + 1; j < i2; j++) {
        const f = u[i * K + j]!;
        if (f === 0) continue;
        const cj = j * N;
        for (let n = 0; n < N; n++) wp[cj + n]! -= err[e + n]! * f;
      }
    }
    // Lazy batch: the block's accumulated errors reach the remaining columns in one pass.
    for (let j = i2; j < K; j++) {
      const cj = j * N;
      for (let i = i1; i < i2; i++) {
        const f = u[i * K + j]!;
        if (f === 0) continue;
        const e = (i - i1) * N;
        for (let n = 0; n < N; n++) wp[cj + n]! -= err[e + n]! * f;
      }
    }
  }
  return b.toPacked();
}
