/**
 * Closed-form healing after structured pruning: re-fit the projection that follows the pruned
 * channels so each block's output matches the original model's on calibration activations.
 *
 * Removing FFN channels (or whole heads) leaves the kept channels' activations unchanged for the same
 * block input, so with H the full input of ffn_down (or attn_output) and P the kept channels:
 *   W' = argmin ‖H_P W'ᵀ − H Wᵀ‖² + λ‖W'‖²   ⇒   (G_PP + λI) W'ᵀ = G_P,: Wᵀ,   G = HᵀH,
 * solved by Cholesky in float64 from the calibration Gram matrix alone. λ (ridge) is relative to
 * mean(diag G_PP). Errors are relative Frobenius norms of the projection's output vs the original,
 * before (kept columns unchanged) and after the re-fit.
 */
import { z } from "zod";
import { type ModelDescription, TensorNames } from "../format/model.ts";
import type { CalibrationStats, Log } from "./calibration.ts";
import { meanDiagonal, solveSpd } from "./linalg.ts";
import { replaceTensors } from "./model-edit.ts";
import { OUTPUT_ERROR_MAX_ROWS, outputError } from "./output-error.ts";
import type { PruneResult } from "./prune.ts";

export const HealOptions = z.strictObject({
  /** Ridge λ relative to mean(diag G_PP); keeps the solve well-posed for correlated channels. */
  ridge: z.number().min(0).default(1e-3),
  /** Re-fit ffn_down of layers whose FFN was pruned. */
  ffn: z.boolean().default(true),
  /** Re-fit attn_output of layers whose heads were pruned. */
  attention: z.boolean().default(true),
  /** Rows of each projection the reported before/after errors are estimated on (outputError). */
  errorRows: z.number().int().min(1).default(OUTPUT_ERROR_MAX_ROWS),
});
export type HealOptionsInput = z.input<typeof HealOptions>;

export interface HealedProjection {
  /** Layer index in the pruned model, and in the original. */
  readonly layer: number;
  readonly source: number;
  readonly tensor: string;
  /** Relative output error of the projection before and after healing. */
  readonly before: number;
  readonly after: number;
}

export interface HealResult {
  readonly model: ModelDescription;
  readonly report: HealedProjection[];
}

export interface RefitResult {
  /** Re-fitted weights [N, |P|]. */
  readonly weights: Float32Array;
  readonly before: number;
  readonly after: number;
}

/**
 * G_P,: Wᵀ ([P, N]) for the Gram G [K, K], kept rows P of it and W [N, K]: four Gram rows at a time
 * against each row of W, so W (12 MB in float64 for a 768x2048 ffn_down) streams from memory P/4
 * times instead of P times (one row at a time took ~9 s of a synthetic stories110M layer's ~18 s heal).
 */
function gramRowsTimesWeights(
  gram: Float64Array,
  K: number,
  kept: readonly number[],
  weights: Float32Array,
  N: number,
): Float64Array {
  const P = kept.length;
  const w = Float64Array.from(weights);
  const b = new Float64Array(P * N);
  for (let i = 0; i < P; i += 4) {
    // Rows past P repeat the last one (computed, not stored).
    const g0 = kept[i]! * K;
    const g1 = kept[Math.min(i + 1, P - 1)]! * K;
    const g2 = kept[Math.min(i + 2, P - 1)]! * K;
    const g3 = kept[Math.min(i + 3, P - 1)]! * K;
    for (let n = 0; n < N; n++) {
      const wn = n * K;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < K; k++) {
        const x = w[wn + k]!;
        s0 += gram[g0 + k]! * x;
        s1 += gram[g1 + k]! * x;
        s2 += gram[g2 + k]! * x;
        s3 += gram[g3 + k]! * x;
      }
      b[i * N + n] = s0;
      if (i + 1 < P) b[(i + 1) * N + n] = s1;
      if (i + 2 < P) b[(i + 2) * N + n] = s2;
      if (i + 3 < P) b[(i + 3) * N + n] = s3;
    }
  }
  return b;
}

/**
 * Least-squares re-fit of a projection W [N, K] restricted to input channels `kept`, given the full
 * input Gram G [K, K] of the original model.
 */
export function refitProjection(
  weights: Float32Array,
  N: number,
  K: number,
  gram: Float64Array,
  kept: readonly number[],
  ridge = 1e-3,
  /** Rows the before/after errors are estimated on (outputError's maxRows). */
  errorRows = OUTPUT_ERROR_MAX_ROWS,
): RefitResult {
  const P = kept.length;
  if (weights.length !== N * K || gram.length !== K * K) throw new Error("refitProjection: size mismatch");
  // A = G_PP + λI;  B = G_P,: Wᵀ  ([P, N]).
  const a = new Float64Array(P * P);
  for (let i = 0; i < P; i++) for (let j = 0; j < P; j++) a[i * P + j] = gram[kept[i]! * K + kept[j]!]!;
  const lambda = ridge * meanDiagonal(a, P);
  for (let i = 0; i < P; i++) a[i * P + i]! += lambda > 0 ? lambda : ridge;
  const b = gramRowsTimesWeights(gram, K, kept, weights, N);
  const x = solveSpd(a, P, b, N); // W'ᵀ
  const refit = new Float32Array(N * P);
  for (let n = 0; n < N; n++) for (let i = 0; i < P; i++) refit[n * P + i] = x[i * N + n]!;

  // Errors in the original K-channel space: pruned columns are zero.
  const expand = (w: (n: number, i: number) => number) => {
    const full = new Float64Array(N * K);
    for (let n = 0; n < N; n++) for (let i = 0; i < P; i++) full[n * K + kept[i]!] = w(n, i);
    return full;
  };
  const before = outputError(
    weights,
    expand((n, i) => weights[n * K + kept[i]!]!),
    N,
    K,
    gram,
    errorRows,
  ).relative;
  const after = outputError(
    weights,
    expand((n, i) => refit[n * P + i]!),
    N,
    K,
    gram,
    errorRows,
  ).relative;
  return { weights: refit, before, after };
}

/**
 * Heals a pruned model (from `pruneModel`) with calibration statistics of the *original* model.
 * Layers whose FFN / heads were not pruned are left as they are.
 */
export function healPrunedModel(
  original: ModelDescription,
  pruned: PruneResult,
  stats: CalibrationStats,
  options: HealOptionsInput = {},
  log: Log = () => {},
): HealResult {
  const o = HealOptions.parse(options);
  const c = original.config;
  const { plan } = pruned;
  if (stats.layers.length !== c.numLayers) {
    throw new Error(`calibration has ${stats.layers.length} layers, the original model ${c.numLayers}`);
  }
  const replacements = new Map<string, Float32Array>();
  const report: HealedProjection[] = [];
  const group = c.numHeads / c.numKvHeads;
  plan.layers.forEach((pl, i) => {
    const l = pl.source;
    const ls = stats.layers[l]!;
    const jobs: { tensor: string; target: string; K: number; gram: Float64Array; kept: number[] }[] = [];
    if (o.ffn && pl.ffnChannels.length < c.intermediateSize) {
      jobs.push({
        tensor: TensorNames.ffnDown(l),
        target: TensorNames.ffnDown(i),
        K: c.intermediateSize,
        gram: ls.ffnDownIn.gram,
        kept: [...pl.ffnChannels],
      });
    }
    if (o.attention && pl.kvHeads.length < c.numKvHeads) {
      const width = group * c.headDim;
      jobs.push({
        tensor: TensorNames.attnOutput(l),
        target: TensorNames.attnOutput(i),
        K: c.numHeads * c.headDim,
        gram: ls.attnOutIn.gram,
        kept: pl.kvHeads.flatMap((g) => Array.from({ length: width }, (_, j) => g * width + j)),
      });
    }
    for (const job of jobs) {
      const w = original.tensors.get(job.tensor)!.f32();
      const r = refitProjection(w, c.hiddenSize, job.K, job.gram, job.kept, o.ridge, o.errorRows);
      replacements.set(job.target, r.weights);
      report.push({ layer: i, source: l, tensor: job.target, before: r.before, after: r.after });
      log(
        `heal: ${job.target} (was layer ${l}): rel. output error ${r.before.toFixed(4)} -> ${r.after.toFixed(4)}`,
      );
    }
  });
  return { model: replacements.size > 0 ? replaceTensors(pruned.model, replacements) : pruned.model, report };
}
