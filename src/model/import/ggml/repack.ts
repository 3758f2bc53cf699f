/**
 * Lossless repacking of ggml's 32-element blocks into our int4 / int8 formats (src/format/int4.ts):
 * the source file's own codes and fp16 factors, no dequantize + re-quantize.
 *
 *   Q4_1 (fp16 d, fp16 m, qs[16])  ->  int4 g32 with fp16 mins:  w = q * d + m
 *   Q4_0 (fp16 d, qs[16])          ->  int4 g32 symmetric:       w = (q - 8) * d
 *   Q8_0 (fp16 d, qs[32] int8)     ->  int8 g32:                 w = q * d
 *
 * The nibble order of a block's qs (element j low, j + 16 high) is our chunk order, so qs is copied
 * verbatim; d and m are copied as fp16 bits. Our dequantization then equals ggml's dequantize_row_*
 * (ggml-quants.c) bit for bit (see dequantizeInt4Row). Blocks our kernels cannot run are reported,
 * not repacked: a non-finite fp16 d or m, or a Q8_0 code of -128 (our int8 codes are in [-127, 127];
 * ggml's own quantize_row_q8_0 never writes -128).
 */
import { int4Geometry, int8Geometry, type PackedInt4, type PackedInt8 } from "../../../format/int4.ts";
import type { SourceDType } from "../../../format/model.ts";
import { Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK } from "./legacy.ts";

/** Source dtypes that repack losslessly. */
export const REPACKABLE_DTYPES: readonly SourceDType[] = ["q4_0", "q4_1", "q8_0"];

export type RepackResult =
  | { readonly ok: true; readonly value: PackedInt4 | PackedInt8 }
  | { readonly ok: false; readonly reason: string };

function u16At(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

/** fp16 bits with exponent 31 (inf / NaN): the kernels' fp16 widening assumes finite values. */
function nonFinite(h: number): boolean {
  return (h & 0x7c00) === 0x7c00;
}

/**
 * Repacks a row-major [N, K] ggml tensor of `dtype` stored as `blocks` (N * K / 32 blocks, row by
 * row, as in a GGUF file). Throws on a byte count that does not match the shape; returns
 * { ok: false, reason } for a dtype or block that has no exact form in our formats.
 */
export function repackGgml(dtype: SourceDType, blocks: Uint8Array, N: number, K: number): RepackResult {
  if (!Number.isInteger(N) || !Number.isInteger(K) || N <= 0 || K <= 0)
    throw new Error(`repackGgml: bad shape [${N}, ${K}]`);
  if (!REPACKABLE_DTYPES.includes(dtype)) return { ok: false, reason: `${dtype} has no lossless form` };
  if (K % QK !== 0) return { ok: false, reason: `row length ${K} is not a multiple of ${QK}` };
  const nb = (N * K) / QK;
  const bpb = dtype === "q4_1" ? Q4_1_BYTES : dtype === "q4_0" ? Q4_0_BYTES : Q8_0_BYTES;
  if (blocks.byteLength !== nb * bpb)
    throw new Error(`repackGgml: ${blocks.byteLength} bytes for ${nb} ${dtype} blocks of ${bpb}`);
  const scales = new Uint16Array(nb);
  if (dtype === "q8_0") {
    const { groupSize, perRow, nGroups, kPadded } = int8Geometry(K, 32);
    const data = new Int8Array(N * kPadded);
    for (let i = 0; i < nb; i++) {
      const o = i * bpb;
      const d = u16At(blocks, o);
      if (nonFinite(d)) return { ok: false, reason: `block ${i}: non-finite scale` };
      scales[i] = d;
      for (let j = 0; j < QK; j++) {
        const q = (blocks[o + 2 + j]! << 24) >> 24;
        if (q === -128) return { ok: false, reason: `block ${i}: code -128` };
        data[i * QK + j] = q;
      }
    }
    return { ok: true, value: { format: "int8", N, K, groupSize, perRow, nGroups, kPadded, data, scales } };
  }
  const { nGroups, kPadded } = int4Geometry(K, 32);
  const qweight = new Uint8Array(nb * 16);
  const mins = dtype === "q4_1" ? new Uint16Array(nb) : null;
  const qsAt = dtype === "q4_1" ? 4 : 2;
  for (let i = 0; i < nb; i++) {
    const o = i * bpb;
    const d = u16At(blocks, o);
    if (nonFinite(d)) return { ok: false, reason: `block ${i}: non-finite scale` };
    scales[i] = d;
    if (mins) {
      const m = u16At(blocks, o + 2);
      if (nonFinite(m)) return { ok: false, reason: `block ${i}: non-finite min` };
      mins[i] = m;
    }
    qweight.set(blocks.subarray(o + qsAt, o + qsAt + 16), i * 16);
  }
  const base = {
    format: "int4",
    N,
    K,
    groupSize: 32,
    nGroups,
    kPadded,
    qweight,
    scales,
    zeros: null,
  } as const;
  return { ok: true, value: mins ? { ...base, mins } : base };
}
