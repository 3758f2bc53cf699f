/**
 * ggml's K-quants: 256-element super-blocks with quantized sub-block scales (ggml-common.h
 * block_q2_K .. block_q6_K; dequantize_row_q*_K in ggml-quants.c). fp16 fields little-endian.
 *
 *   Q2_K  (84 B): scales[16], qs[64], d, dmin          16 x 16: x = d*(sc&15)*q - dmin*(sc>>4), q 2 bits
 *   Q3_K (110 B): hmask[32], qs[64], scales[12], d      16 x 16: x = d*(s-32)*(q-4·!hbit), s 6 bits
 *   Q4_K (144 B): d, dmin, scales[12], qs[128]          8 x 32:  x = d*sc*q - dmin*m, sc/m 6 bits
 *   Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]  8 x 32:  as Q4_K with a 5th bit from qh
 *   Q6_K (210 B): ql[128], qh[64], scales[16] (int8), d 16 x 16: x = d*sc*(q-32), q 6 bits
 *
 * Element order within a super-block follows the dequantize loops: for Q2_K/Q3_K/Q6_K each half
 * (128 elements) takes its bits from one 32-byte (Q6_K: 64-byte) stretch of qs, 2 (4) bits at a time.
 * Every product is exact in fp32 except Q6_K's (d*sc)*q, rounded at the store as in ggml.
 */
import { assertBlockBytes, halfAt } from "./f16.ts";

export const QK_K = 256;
export const Q2_K_BYTES = 84;
export const Q3_K_BYTES = 110;
export const Q4_K_BYTES = 144;
export const Q5_K_BYTES = 176;
export const Q6_K_BYTES = 210;
const HALF = 2;
// ggml-common.h's static_asserts: each block is exactly its fields, no padding.
assertBlockBytes("Q2_K", Q2_K_BYTES, 2 * HALF + QK_K / 16 + QK_K / 4);
assertBlockBytes("Q3_K", Q3_K_BYTES, HALF + QK_K / 4 + QK_K / 8 + 12);
assertBlockBytes("Q4_K", Q4_K_BYTES, 2 * HALF + 12 + QK_K / 2);
assertBlockBytes("Q5_K", Q5_K_BYTES, 2 * HALF + 12 + QK_K / 2 + QK_K / 8);
assertBlockBytes("Q6_K", Q6_K_BYTES, HALF + QK_K / 16 + (3 * QK_K) / 4);

/** Q4_K/Q5_K's 12 scale bytes hold 8 (scale, min) pairs of 6 bits (ggml get_scale_min_k4). */
export function scaleMinK4(j: number, q: Uint8Array, at: number): [scale: number, min: number] {
  if (j < 4) return [q[at + j]! & 63, q[at + j + 4]! & 63];
  const lo = q[at + j + 4]!;
  return [(lo & 0x0f) | ((q[at + j - 4]! >> 6) << 4), (lo >> 4) | ((q[at + j]! >> 6) << 4)];
}

/** Q3_K's 12 scale bytes -> 16 signed 6-bit scales (already minus 32): low 4 bits, then 2 high bits. */
export function scalesQ3K(b: Uint8Array, at: number): Int8Array {
  const out = new Int8Array(16);
  for (let s = 0; s < 16; s++) {
    const low = s < 8 ? b[at + s]! & 0x0f : b[at + s - 8]! >> 4;
    const high = (b[at + 8 + (s % 4)]! >> (2 * Math.floor(s / 4))) & 3;
    out[s] = (low | (high << 4)) - 32;
  }
  return out;
}

export type Dequantize = (b: Uint8Array, nBlocks: number, y: Float32Array) => void;

export const dequantizeQ2_K: Dequantize = (b, nBlocks, y) => {
  let out = 0;
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q2_K_BYTES;
    const d = halfAt(b, o + 80);
    const dmin = halfAt(b, o + 82);
    let is = 0;
    for (let half = 0; half < 2; half++) {
      const q = o + 16 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const sc = b[o + is++]!;
          const dl = d * (sc & 0x0f);
          const ml = dmin * (sc >> 4);
          for (let l = 0; l < 16; l++) y[out++] = dl * ((b[q + part * 16 + l]! >> shift) & 3) - ml;
        }
      }
    }
  }
};

export const dequantizeQ3_K: Dequantize = (b, nBlocks, y) => {
  let out = 0;
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q3_K_BYTES;
    const d = halfAt(b, o + 108);
    const scales = scalesQ3K(b, o + 96);
    let is = 0;
    let bit = 0; // which hmask bit: one per 32-element group, 8 groups
    for (let half = 0; half < 2; half++) {
      const q = o + 32 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const dl = d * scales[is++]!;
          for (let l = 0; l < 16; l++) {
            const k = part * 16 + l;
            const high = (b[o + k]! >> bit) & 1 ? 0 : 4;
            y[out++] = dl * (((b[q + k]! >> shift) & 3) - high);
          }
        }
        bit++;
      }
    }
  }
};

export const dequantizeQ4_K: Dequantize = (b, nBlocks, y) => {
  let out = 0;
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q4_K_BYTES;
    const d = halfAt(b, o);
    const dmin = halfAt(b, o + 2);
    for (let g = 0; g < 4; g++) {
      const [s1, m1] = scaleMinK4(2 * g, b, o + 4);
      const [s2, m2] = scaleMinK4(2 * g + 1, b, o + 4);
      const d1 = d * s1;
      const n1 = dmin * m1;
      const d2 = d * s2;
      const n2 = dmin * m2;
      const q = o + 16 + g * 32;
      for (let l = 0; l < 32; l++) y[out++] = d1 * (b[q + l]! & 0x0f) - n1;
      for (let l = 0; l < 32; l++) y[out++] = d2 * (b[q + l]! >> 4) - n2;
    }
  }
};

export const dequantizeQ5_K: Dequantize = (b, nBlocks, y) => {
  let out = 0;
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q5_K_BYTES;
    const d = halfAt(b, o);
    const dmin = halfAt(b, o + 2);
    const qh = o + 16;
    for (let g = 0; g < 4; g++) {
      const [s1, m1] = scaleMinK4(2 * g, b, o + 4);
      const [s2, m2] = scaleMinK4(2 * g + 1, b, o + 4);
      const d1 = d * s1;
      const n1 = dmin * m1;
      const d2 = d * s2;
      const n2 = dmin * m2;
      const ql = o + 48 + g * 32;
      const u1 = 1 << (2 * g);
      const u2 = 2 << (2 * g);
      for (let l = 0; l < 32; l++) y[out++] = d1 * ((b[ql + l]! & 0x0f) + (b[qh + l]! & u1 ? 16 : 0)) - n1;
      for (let l = 0; l < 32; l++) y[out++] = d2 * ((b[ql + l]! >> 4) + (b[qh + l]! & u2 ? 16 : 0)) - n2;
    }
  }
};

export const dequantizeQ6_K: Dequantize = (b, nBlocks, y) => {
  for (let i = 0; i < nBlocks; i++) {
    const o = i * Q6_K_BYTES;
    const d = halfAt(b, o + 208);
    for (let half = 0; half < 2; half++) {
      const ql = o + half * 64;
      const qh = o + 128 + half * 32;
      const sc = o + 192 + half * 8;
      const out = i * QK_K + half * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = b[qh + l]!;
        const q1 = ((b[ql + l]! & 0x0f) | ((h & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32]! & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        // ggml: d * sc * q, evaluated left to right in fp32 (d*sc is exact, the second product rounds).
        y[out + l] = Math.fround(d * ((b[sc + is]! << 24) >> 24)) * q1;
        y[out + l + 32] = Math.fround(d * ((b[sc + is + 2]! << 24) >> 24)) * q2;
        y[out + l + 64] = Math.fround(d * ((b[sc + is + 4]! << 24) >> 24)) * q3;
        y[out + l + 96] = Math.fround(d * ((b[sc + is + 6]! << 24) >> 24)) * q4;
      }
    }
  }
};
