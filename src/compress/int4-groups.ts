/**
 * Int4 group primitives shared by every quantizer of the pipeline: choosing a group's scale (and zero
 * point), rounding a value to a code, and packing codes into the engine's `PackedInt4` layout
 * (src/format/int4.ts) — so GPTQ, clip search and AWQ output run on the engine unchanged.
 *
 * With clip ratio 1 the rules are exactly `quantizeRtn`'s (same fp16 scale, same rounding), which the
 * tests check byte for byte: every method starts from the same baseline.
 */
import { f16ToF32, f32ToF16, type Int4GroupSize, int4Geometry, type PackedInt4 } from "../format/int4.ts";

export interface GroupParams {
  /** fp16 bits of the stored scale. */
  readonly scaleBits: number;
  /** The stored scale as a number (what dequantization multiplies by). */
  readonly scale: number;
  /** 1 / scale, or 0 for an all-zero group. */
  readonly inverse: number;
  /** Zero point: 8 when symmetric. */
  readonly zero: number;
}

function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/**
 * Scale (and zero point) of values[start..end) as quantizeRtn picks them, with the range shrunk by
 * `clip` (≤ 1): clipping the outliers trades their error for a finer step on everything else.
 */
export function groupParams(
  values: ArrayLike<number>,
  start: number,
  end: number,
  zeroPoint: boolean,
  clip = 1,
): GroupParams {
  if (zeroPoint) {
    let lo = 0;
    let hi = 0;
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    lo *= clip;
    hi *= clip;
    const scaleBits = f32ToF16((hi - lo) / 15);
    const scale = f16ToF32(scaleBits);
    const zero = scale > 0 ? Math.min(15, Math.max(0, roundHalfAway(-lo / scale))) : 0;
    return { scaleBits, scale, inverse: scale !== 0 ? 1 / scale : 0, zero };
  }
  let amax = 0;
  let vmax = 0;
  for (let i = start; i < end; i++) {
    const v = values[i]!;
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      vmax = v;
    }
  }
  const scaleBits = f32ToF16((vmax * clip) / -8);
  const scale = f16ToF32(scaleBits);
  return { scaleBits, scale, inverse: scale !== 0 ? 1 / scale : 0, zero: 8 };
}

/** The 4-bit code of v (clamped to 0..15). */
export function quantizeCode(v: number, p: GroupParams): number {
  return Math.min(15, Math.max(0, roundHalfAway(v * p.inverse) + p.zero));
}

/** The value a code dequantizes to. */
export function dequantizeCode(q: number, p: GroupParams): number {
  return (q - p.zero) * p.scale;
}

/** Default clip ratios tried per group by the searching quantizers. */
export const DEFAULT_CLIP_RATIOS: readonly number[] = [1, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7];

/**
 * The group parameters (over `clipRatios`) with the least importance-weighted squared error
 * Σ_i importance_i (w_i − ŵ_i)² over values[start..end); `importance` is indexed like `values`
 * (e.g. E[x_k²], the Gram diagonal: error on a channel that is often large costs more output error).
 */
export function searchGroupParams(
  values: ArrayLike<number>,
  start: number,
  end: number,
  zeroPoint: boolean,
  importance: ArrayLike<number>,
  clipRatios: readonly number[] = DEFAULT_CLIP_RATIOS,
): GroupParams {
  let best: GroupParams | null = null;
  let bestErr = Number.POSITIVE_INFINITY;
  for (const clip of clipRatios) {
    const p = groupParams(values, start, end, zeroPoint, clip);
    let err = 0;
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      const d = v - dequantizeCode(quantizeCode(v, p), p);
      err += importance[i]! * d * d;
    }
    // Strict "<": ties keep the earlier (larger) clip, so ratio 1 wins when nothing helps.
    if (err < bestErr) {
      bestErr = err;
      best = p;
    }
  }
  if (!best) throw new Error("searchGroupParams: no clip ratios given");
  return best;
}

/**
 * Codes and group parameters of an [N, K] tensor under construction: the quantizers write codes row by
 * row (in any order), then `toPacked` lays them out as the engine expects.
 */
export class Int4Builder {
  readonly nGroups: number;
  readonly kPadded: number;
  /** Code per (n, k), row-major [N, kPadded]; padding keeps the group's zero point (dequantizes to 0). */
  readonly codes: Uint8Array;
  readonly scaleBits: Uint16Array;
  /** Zero point per (n, g), unpacked. */
  readonly zeros: Uint8Array;

  constructor(
    readonly N: number,
    readonly K: number,
    readonly groupSize: Int4GroupSize,
    readonly zeroPoint: boolean,
  ) {
    const geo = int4Geometry(K, groupSize);
    this.nGroups = geo.nGroups;
    this.kPadded = geo.kPadded;
    this.codes = new Uint8Array(N * geo.kPadded).fill(8);
    this.scaleBits = new Uint16Array(N * geo.nGroups);
    this.zeros = new Uint8Array(N * geo.nGroups).fill(8);
  }

  setGroup(n: number, g: number, p: GroupParams): void {
    this.scaleBits[n * this.nGroups + g] = p.scaleBits;
    this.zeros[n * this.nGroups + g] = p.zero;
    // Padding codes of a ragged last group must equal its zero point.
    const k0 = g * this.groupSize;
    for (let k = Math.max(k0, this.K); k < k0 + this.groupSize; k++)
      this.codes[n * this.kPadded + k] = p.zero;
  }

  setCode(n: number, k: number, q: number): void {
    this.codes[n * this.kPadded + k] = q;
  }

  /** The engine's layout (nibble order and planar arrays per src/format/int4.ts). */
  toPacked(): PackedInt4 {
    const { N, K, groupSize, nGroups, kPadded } = this;
    const rowBytes = kPadded / 2;
    const qweight = new Uint8Array(N * rowBytes);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < kPadded; k++) {
        // 16-byte chunk per 32 codes: low nibbles k..k+15, high nibbles k+16..k+31.
        const j = k & 31;
        const byte = n * rowBytes + (k >> 5) * 16 + (j & 15);
        qweight[byte]! |= this.codes[n * kPadded + k]! << (j < 16 ? 0 : 4);
      }
    }
    let zeros: Uint8Array | null = null;
    if (this.zeroPoint) {
      const perRow = Math.ceil(nGroups / 2);
      zeros = new Uint8Array(N * perRow);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < nGroups; g++) {
          zeros[n * perRow + (g >> 1)]! |= this.zeros[n * nGroups + g]! << ((g & 1) * 4);
        }
      }
    }
    return {
      format: "int4",
      N,
      K,
      groupSize,
      nGroups,
      kPadded,
      qweight,
      scales: this.scaleBits.slice(),
      zeros,
    };
  }
}
