/**
 * Vector kernels for the reference forward pass. Plain loops on purpose: this is the oracle that
 * faster kernels are checked against, so every line should be obviously right.
 * Values live in Float32Arrays; sums accumulate in JS numbers (float64), so the reference is at least
 * as precise as any fp32 kernel it judges.
 */

/** out = x / rms(x) * weight, rms over the whole vector (llama.cpp's ggml_rms_norm + mul). */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  let sumSq = 0;
  for (let i = 0; i < x.length; i++) sumSq += x[i]! * x[i]!;
  const scale = 1 / Math.sqrt(sumSq / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * scale * weight[i]!;
}

/**
 * out = W x (+ bias). W is row-major [out.length, x.length], i.e. PyTorch's [out, in] linear weight.
 */
export function matVec(
  out: Float32Array,
  w: Float32Array,
  x: Float32Array,
  bias: Float32Array | null = null,
): void {
  const cols = x.length;
  if (w.length !== out.length * cols) {
    throw new Error(`matVec: weight has ${w.length} values, expected ${out.length}x${cols}`);
  }
  for (let r = 0; r < out.length; r++) {
    let sum = bias ? bias[r]! : 0;
    const row = r * cols;
    for (let c = 0; c < cols; c++) sum += w[row + c]! * x[c]!;
    out[r] = sum;
  }
}

/** Numerically stable softmax over the first `n` entries, in place. */
export function softmaxInPlace(x: Float64Array | Float32Array, n = x.length): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(x[i]! - max);
    x[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! / sum;
}

/** x += y */
export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
}

/** SwiGLU: gate = silu(gate) * up, in place (silu(g) = g * sigmoid(g)). */
export function swiGluInPlace(gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}
