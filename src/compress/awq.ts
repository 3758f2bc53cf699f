/**
 * AWQ-style activation-aware scaling (Lin et al., 2023, "AWQ: Activation-aware Weight Quantization").
 *
 * For linear layers reading the same input x, pick per-input-channel scales s and quantize W·diag(s)
 * instead of W; the input is divided by s upstream, where it costs nothing (folded into the previous
 * RMSNorm weight or the rows of the producing projection), so the float model is unchanged while
 * channels with large activations get relatively finer quantization steps.
 * s = mean|x|^α (normalized to geometric-mean-ish 1), α searched on a grid in [0, 1] to minimize the
 * summed output error ‖XWᵀ − X diag(1/s) Q(W diag(s))ᵀ‖² over the layers, measured with the
 * calibration Gram matrix. α = 0 (s = 1) is plain quantization, so the search never does worse on
 * calibration data.
 */
import { dequantize, type Int4GroupSize, quantizeRtn } from "../format/int4.ts";
import { quantizeClipSearch } from "./clip-search.ts";
import { outputError } from "./output-error.ts";

export interface ScaledLinear {
  readonly name: string;
  /** Row-major [N, K]. */
  readonly weights: Float32Array;
  readonly N: number;
  readonly K: number;
}

export interface AwqSearchOptions {
  groupSize?: Int4GroupSize;
  zeroPoint?: boolean;
  /** Quantizer used inside the search: "rtn" or per-group clip search ("search", default). */
  quantizer?: "rtn" | "search";
  clipRatios?: readonly number[];
  /** Grid points: α = i / grid for i = 0..grid (default 20). */
  grid?: number;
  /** Rows per layer the error is measured on (evenly spaced; all when N is smaller). Default 512. */
  maxRows?: number;
}

export interface AwqScales {
  readonly alpha: number;
  /** Per input channel; multiply W's columns by it, divide the input by it. */
  readonly scales: Float64Array;
  /** Summed squared output error at the chosen α and at α = 0 (no scaling). */
  readonly error: number;
  readonly unscaledError: number;
}

/** W·diag(s) as a new array. */
export function scaleColumns(
  weights: Float32Array,
  N: number,
  K: number,
  s: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = weights[n * K + k]! * s[k]!;
  return out;
}

/** The Gram matrix of x / s: diag(1/s) G diag(1/s). */
export function scaleGram(gram: Float64Array, K: number, s: ArrayLike<number>): Float64Array {
  const out = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) out[i * K + j] = gram[i * K + j]! / (s[i]! * s[j]!);
  return out;
}

/** s = mean|x|^α, normalized so that max(s)·min(s) = 1 (AWQ's normalization). */
export function awqScales(meanAbs: ArrayLike<number>, alpha: number): Float64Array {
  const s = new Float64Array(meanAbs.length);
  let lo = Number.POSITIVE_INFINITY;
  let hi = 0;
  for (let k = 0; k < s.length; k++) {
    // Dead channels would get scale 0: keep them finite.
    s[k] = Math.max(meanAbs[k]!, 1e-4) ** alpha;
    lo = Math.min(lo, s[k]!);
    hi = Math.max(hi, s[k]!);
  }
  const norm = Math.sqrt(lo * hi);
  for (let k = 0; k < s.length; k++) s[k] = s[k]! / norm;
  return s;
}

function rowSubset(w: ScaledLinear, maxRows: number): ScaledLinear {
  if (w.N <= maxRows) return w;
  const weights = new Float32Array(maxRows * w.K);
  for (let i = 0; i < maxRows; i++) {
    const n = Math.floor((i * w.N) / maxRows);
    weights.set(w.weights.subarray(n * w.K, (n + 1) * w.K), i * w.K);
  }
  return { name: w.name, weights, N: maxRows, K: w.K };
}

/**
 * Searches α for linear layers sharing one input with Gram `gram` and per-channel mean |x| `meanAbs`
 * (length K; for inputs whose scale must be shared between channels, pass already-tied values).
 */
export function searchAwqScales(
  layers: readonly ScaledLinear[],
  gram: Float64Array,
  meanAbs: ArrayLike<number>,
  opts: AwqSearchOptions = {},
): AwqScales {
  const first = layers[0];
  if (!first) throw new Error("awq: no layers to scale");
  const K = first.K;
  if (layers.some((l) => l.K !== K) || meanAbs.length !== K || gram.length !== K * K) {
    throw new Error("awq: layers, Gram matrix and channel statistics disagree on K");
  }
  const grid = opts.grid ?? 20;
  const qOpts = { groupSize: opts.groupSize ?? 32, zeroPoint: opts.zeroPoint ?? false } as const;
  const sample = layers.map((l) => rowSubset(l, opts.maxRows ?? 512));

  const errorAt = (s: Float64Array): number => {
    const importance = new Float64Array(K);
    for (let k = 0; k < K; k++) importance[k] = gram[k * K + k]! / (s[k]! * s[k]!);
    let total = 0;
    for (const l of sample) {
      const scaled = scaleColumns(l.weights, l.N, K, s);
      const packed =
        opts.quantizer === "rtn"
          ? quantizeRtn(scaled, l.N, K, qOpts)
          : quantizeClipSearch(scaled, l.N, K, importance, { ...qOpts, clipRatios: opts.clipRatios });
      const deq = dequantize(packed);
      const effective = new Float64Array(deq.length);
      for (let n = 0; n < l.N; n++)
        for (let k = 0; k < K; k++) effective[n * K + k] = deq[n * K + k]! / s[k]!;
      total += outputError(l.weights, effective, l.N, K, gram).squared;
    }
    return total;
  };

  const ones = new Float64Array(K).fill(1);
  const unscaledError = errorAt(ones);
  let best: AwqScales = { alpha: 0, scales: ones, error: unscaledError, unscaledError };
  for (let i = 1; i <= grid; i++) {
    const alpha = i / grid;
    const s = awqScales(meanAbs, alpha);
    const error = errorAt(s);
    if (error < best.error) best = { alpha, scales: s, error, unscaledError };
  }
  return best;
}
