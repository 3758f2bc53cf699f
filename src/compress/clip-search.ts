/**
 * Round-to-nearest int4 with a per-group clip search: for every group try a few clip ratios and keep
 * the scale with the least activation-weighted squared error Σ_k E[x_k²](w_k − ŵ_k)². Each group is
 * independent, so this is as cheap as RTN times the number of ratios, and never worse than RTN on the
 * weighted error (ratio 1 is RTN itself and wins ties).
 */
import type { Int4GroupSize, PackedInt4 } from "../format/int4.ts";
import { DEFAULT_CLIP_RATIOS, Int4Builder, quantizeCode, searchGroupParams } from "./int4-groups.ts";

export interface ClipSearchOptions {
  groupSize?: Int4GroupSize;
  zeroPoint?: boolean;
  clipRatios?: readonly number[];
}

/**
 * `importance` has one weight per input channel (length K), e.g. the calibration Gram diagonal;
 * all-ones gives plain least squares on the weights.
 */
export function quantizeClipSearch(
  weights: Float32Array,
  N: number,
  K: number,
  importance: ArrayLike<number>,
  opts: ClipSearchOptions = {},
): PackedInt4 {
  if (weights.length !== N * K) throw new Error(`clip search: ${weights.length} values for [${N}, ${K}]`);
  if (importance.length !== K) throw new Error(`clip search: ${importance.length} importances for K = ${K}`);
  const b = new Int4Builder(N, K, opts.groupSize ?? 32, opts.zeroPoint ?? false);
  const ratios = opts.clipRatios ?? DEFAULT_CLIP_RATIOS;
  for (let n = 0; n < N; n++) {
    const row = weights.subarray(n * K, (n + 1) * K);
    for (let g = 0; g < b.nGroups; g++) {
      const k0 = g * b.groupSize;
      const k1 = Math.min(k0 + b.groupSize, K);
      const p = searchGroupParams(row, k0, k1, b.zeroPoint, importance, ratios);
      b.setGroup(n, g, p);
      for (let k = k0; k < k1; k++) b.setCode(n, k, quantizeCode(row[k]!, p));
    }
  }
  return b.toPacked();
}
