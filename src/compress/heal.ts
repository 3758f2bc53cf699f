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
import { outputError } from "./output-error.ts";
import type { PruneResult } from "./prune.ts";

export const HealOptions = z.strictObject({
  /** Ridge λ relative to mean(diag G_PP); keeps the solve well-posed for correlated channels. */
  ridge: z.number().min(0).default(1e-3),
  /** Re-fit ffn_down of layers whose FFN was pruned. */
  ffn: z.boolean().default(true),
  /** Re-fit attn_output of layers whose heads were pruned. */
  attention: z.boolean().default(true),
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
): RefitResult {
  const P = kept.length;
  if (weights.length !== N * K || gram.length !== K * K) throw new Error("refitProjection: size mismatch");
  // A = G_PP + λI;  B = G_P,: Wᵀ  ([P, N]).
  const a = new Float64Array(P * P);
  for (let i = 0; i < P; i++) for (let j = 0; j < P; j++) a[i * P + j] = gram[kept[i]! * K + kept[j]!]!;
  const lambda = ridge * meanDiagonal(a, P);
  for (let i = 0; i < P; i++) a[i * P + i]! += lambda > 0 ? lambda : ridge;
  const b = new Float64Array(P * N);
  for (let i = 0; i < P; i++) {
    const gi = kept[i]! * K;
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += gram[gi + k]! * weights[n * K + k]!;
      b[i * N + n] = s;
    }
  }
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
  ).relative;
  const after = outputError(
    weights,
    expand((n, i) => refit[n * P + i]!),
    N,
    K,
    gram,
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
      const r = refitProjection(w, c.hiddenSize, job.K, job.gram, job.kept, o.ridge);
      replacements.set(job.target, r.weights);
      report.push({ layer: i, source: l, tensor: job.target, before: r.before, after: r.after });
      log(
        `heal: ${job.target} (was layer ${l}): rel. output error ${r.before.toFixed(4)} -> ${r.after.toFixed(4)}`,
      );
    }
  });
  return { model: replacements.size > 0 ? replaceTensors(pruned.model, replacements) : pruned.model, report };
}
