/**
 * llama.cpp's Q4_0 rounding, for comparison rows only (never packed): reimplemented from the public
 * definition of ggml's quantize_row_q4_0_ref. Per block of 32 values: d = x_maxabs / -8 (the signed
 * value of largest magnitude), id = 1/d in fp32, q = min(15, trunc(x·id + 8.5)), d stored as fp16;
 * dequantized x̂ = (q − 8)·fp16(d).
 *
 * Differences from our symmetric RTN (src/format/int4.ts), which uses the same scale rule: llama.cpp
 * rounds against the fp32 d (ours against the stored fp16 scale) and rounds halves up (ours away from
 * zero). llama.cpp requires rows that are a multiple of 32; a ragged last block here is treated as
 * zero-padded, which is what padding the row would give.
 */
import { f16ToF32, f32ToF16 } from "../format/int4.ts";

const QK4_0 = 32;

/** Q4_0-quantizes then dequantizes a row-major [N, K] tensor; returns the fp32 values. */
export function llamaCppQ4_0(weights: Float32Array, N: number, K: number): Float32Array {
  if (weights.length !== N * K) throw new Error(`q4_0: ${weights.length} values for [${N}, ${K}]`);
  const f = Math.fround;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k0 = 0; k0 < K; k0 += QK4_0) {
      const k1 = Math.min(k0 + QK4_0, K);
      let amax = 0;
      let max = 0;
      for (let k = k0; k < k1; k++) {
        const v = weights[n * K + k]!;
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const d = f(max / -8);
      const id = d !== 0 ? f(1 / d) : 0;
      const stored = f16ToF32(f32ToF16(d));
      for (let k = k0; k < k1; k++) {
        // fp32 arithmetic as in C: x·id, then + 8.5f, then the (int8_t) cast truncates toward zero.
        const q = Math.min(15, Math.trunc(f(f(weights[n * K + k]! * id) + 8.5)));
        out[n * K + k] = (q - 8) * stored;
      }
    }
  }
  return out;
}
