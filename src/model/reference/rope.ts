/**
 * Rotary position embeddings in both q/k row layouts (see `ropeStyle` in ../model.ts).
 * Pair i of a head (0 <= i < headDim/2) rotates by theta_i = pos * base^(-2i/headDim), as llama.cpp
 * and Hugging Face both define it; the layouts differ only in which two rows form pair i:
 *   "interleaved": rows (2i, 2i+1)         — llama.cpp's normal rope, permuted llama GGUF rows
 *   "neox":        rows (i, i + headDim/2) — Hugging Face rotate_half
 */
import type { RopeStyle } from "../../format/model.ts";

/** cos/sin of every pair's angle at `pos`. Angles in float64 (llama.cpp builds them in fp32). */
export interface RopeAngles {
  readonly cos: Float64Array;
  readonly sin: Float64Array;
}

export function ropeAngles(pos: number, headDim: number, base: number): RopeAngles {
  const half = headDim / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const theta = pos * base ** ((-2 * i) / headDim);
    cos[i] = Math.cos(theta);
    sin[i] = Math.sin(theta);
  }
  return { cos, sin };
}

/** Rotates each of the `nHeads` heads packed in `x` (nHeads * headDim values), in place. */
export function applyRope(
  x: Float32Array,
  nHeads: number,
  headDim: number,
  angles: RopeAngles,
  style: RopeStyle,
): void {
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    const head = h * headDim;
    for (let i = 0; i < half; i++) {
      const a = style === "interleaved" ? head + 2 * i : head + i;
      const b = style === "interleaved" ? a + 1 : a + half;
      const x0 = x[a]!;
      const x1 = x[b]!;
      const c = angles.cos[i]!;
      const s = angles.sin[i]!;
      x[a] = x0 * c - x1 * s;
      x[b] = x0 * s + x1 * c;
    }
  }
}
