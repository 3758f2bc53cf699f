/**
 * How far a compressed linear layer's output is from the original's on calibration inputs, from the
 * input Gram matrix alone: ‖XŴᵀ − XWᵀ‖²_F = Σ_n (ŵ_n − w_n) G (ŵ_n − w_n)ᵀ with G = XᵀX, so no
 * activations need to be kept.
 */
import { quadraticFormSum } from "./linalg.ts";

export interface OutputError {
  /** ‖X(Ŵ − W)ᵀ‖²_F. */
  readonly squared: number;
  /** ‖XWᵀ‖²_F (the reference output energy). */
  readonly reference: number;
  /** sqrt(squared / reference): relative Frobenius error of the layer output. */
  readonly relative: number;
}

/**
 * Rows summed exactly up to this many; past it, an evenly spaced subset of this many rows estimates
 * the ratio (each row costs K² multiply-adds: a 32000-row head or a 2048-wide FFN at full size would
 * dominate a 100M-parameter build for a number that is only reported or compared to a bound).
 */
export const OUTPUT_ERROR_MAX_ROWS = 64;

/** ‖XWᵀ‖² of the sampled rows, memoized: callers compare several approximations of one W. */
const energyMemo = new WeakMap<object, WeakMap<Float64Array, Map<number, number>>>();
function referenceEnergy(
  original: ArrayLike<number>,
  sampled: Float64Array,
  rows: number,
  gram: Float64Array,
  K: number,
): number {
  const key = original as object;
  let byGram = energyMemo.get(key);
  if (!byGram) energyMemo.set(key, (byGram = new WeakMap()));
  let byRows = byGram.get(gram);
  if (!byRows) byGram.set(gram, (byRows = new Map()));
  let e = byRows.get(rows);
  if (e === undefined) byRows.set(rows, (e = quadraticFormSum(sampled, rows, gram, K)));
  return e;
}

export function outputError(
  original: ArrayLike<number>,
  approx: ArrayLike<number>,
  N: number,
  K: number,
  gram: Float64Array,
  maxRows: number = OUTPUT_ERROR_MAX_ROWS,
): OutputError {
  if (original.length !== N * K || approx.length !== N * K) throw new Error("outputError: size mismatch");
  const rows = Math.min(N, maxRows);
  const diff = new Float64Array(rows * K);
  const ref = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++) {
    const n = rows === N ? r : Math.floor((r * N) / rows);
    for (let k = 0; k < K; k++) {
      ref[r * K + k] = original[n * K + k]!;
      diff[r * K + k] = approx[n * K + k]! - original[n * K + k]!;
    }
  }
  // Scaled back to all N rows so `squared`/`reference` keep their meaning (exact when rows === N).
  const scale = N / rows;
  const squared = quadraticFormSum(diff, rows, gram, K) * scale;
  const reference = referenceEnergy(original, ref, rows, gram, K) * scale;
  return {
    squared,
    reference,
    relative: reference > 0 ? Math.sqrt(squared / reference) : Math.sqrt(squared),
  };
}
