/**
 * ggml's original 32-element block quantizations (ggml-common.h block_q4_0 .. block_q8_0;
 * dequantize_row_* in ggml-quants.c). All fields little-endian; `d`/`m` are fp16.
 *
 *   Q4_0 (18 B): d, qs[16]          x = d * (q - 8),   q = 4 bits
 *   Q4_1 (20 B): d, m, qs[16]       x = d * q + m,     q = 4 bits
 *   Q5_0 (22 B): d, qh[4], qs[16]   x = d * (q - 16),  q = 4 low bits | 5th bit from qh
 *   Q5_1 (24 B): d, m, qh[4], qs[16] x = d * q + m,    q = 5 bits as Q5_0
 *   Q8_0 (34 B): d, qs[32] (int8)   x = d * q
 *
 * Nibble order: byte j of qs holds element j in its low nibble and element j + 16 in its high one.
 * The 5th bit of element j is bit j of the 32-bit little-endian qh.
 * Every product below is exact in fp32 (an 11-bit fp16 mantissa times at most 8 bits), so the one
 * rounding left is the final add or the store into the Float32Array, as in ggml's float code.
 */
import { assertBlockBytes, halfAt } from "./f16.ts";

export const QK = 32;
export const Q4_0_BYTES = 18;
export const Q4_1_BYTES = 20;
export const Q5_0_BYTES = 22;
export const Q5_1_BYTES = 24;
export const Q8_0_BYTES = 34;
const HALF = 2;
// ggml-common.h's static_asserts: each block is exactly its fields, no padding.
assertBlockBytes("Q4_0", Q4_0_BYTES, HALF + QK / 2);
assertBlockBytes("Q4_1", Q4_1_BYTES, 2 * HALF + QK / 2);
assertBlockBytes("Q5_0", Q5_0_BYTES, HALF + 4 + QK / 2);
assertBlockBytes("Q5_1", Q5_1_BYTES, 2 * HALF + 4 + QK / 2);
assertBlockBytes("Q8_0", Q8_0_BYTES, HALF + QK);

/** Reads `nBlocks` blocks from `b` and writes nBlocks * 32 floats to `y` from index 0. */
export type Dequantize = (b: Uint8Array, nBlocks: number, y: Float32Array) => void;

export const dequantizeQ4_0: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q4_0_BYTES;
    const d = halfAt(b, o);
    const out = i * QK;
    for (let j = 0; j < 16; j++) {
      const q = b[o + 2 + j]!;
      y[out + j] = ((q & 0x0f) - 8) * d;
      y[out + j + 16] = ((q >> 4) - 8) * d;
    }
  }
};

export const dequantizeQ4_1: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q4_1_BYTES;
    const d = halfAt(b, o);
    const m = halfAt(b, o + 2);
    const out = i * QK;
    for (let j = 0; j < 16; j++) {
      const q = b[o + 4 + j]!;
      y[out + j] = (q & 0x0f) * d + m;
      y[out + j + 16] = (q >> 4) * d + m;
    }
  }
};

function u32At(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export const dequantizeQ5_0: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q5_0_BYTES;
    const d = halfAt(b, o);
    const qh = u32At(b, o + 2);
    const out = i * QK;
    for (let j = 0; j < 16; j++) {
      const q = b[o + 6 + j]!;
      const hi0 = ((qh >>> j) & 1) << 4;
      const hi1 = ((qh >>> (j + 16)) & 1) << 4;
      y[out + j] = (((q & 0x0f) | hi0) - 16) * d;
      y[out + j + 16] = (((q >> 4) | hi1) - 16) * d;
    }
  }
};

export const dequantizeQ5_1: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q5_1_BYTES;
    const d = halfAt(b, o);
    const m = halfAt(b, o + 2);
    const qh = u32At(b, o + 4);
    const out = i * QK;
    for (let j = 0; j < 16; j++) {
      const q = b[o + 8 + j]!;
      const hi0 = ((qh >>> j) & 1) << 4;
      const hi1 = ((qh >>> (j + 16)) & 1) << 4;
      y[out + j] = ((q & 0x0f) | hi0) * d + m;
      y[out + j + 16] = ((q >> 4) | hi1) * d + m;
    }
  }
};

export const dequantizeQ8_0: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q8_0_BYTES;
    const d = halfAt(b, o);
    const out = i * QK;
    for (let j = 0; j < QK; j++) y[out + j] = ((b[o + 2 + j]! << 24) >> 24) * d;
  }
};
