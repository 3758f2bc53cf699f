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

export function outputError(
  original: ArrayLike<number>,
  approx: ArrayLike<number>,
  N: number,
  K: number,
  gram: Float64Array,
): OutputError {
  if (original.length !== N * K || approx.length !== N * K) throw new Error("outputError: size mismatch");
  const diff = new Float64Array(N * K);
  for (let i = 0; i < diff.length; i++) diff[i] = approx[i]! - original[i]!;
  const squared = quadraticFormSum(diff, N, gram, K);
  const reference = quadraticFormSum(original, N, gram, K);
  return {
    squared,
    reference,
    relative: reference > 0 ? Math.sqrt(squared / reference) : Math.sqrt(squared),
  };
}
