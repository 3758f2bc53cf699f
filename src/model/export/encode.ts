/**
 * fp32 -> storage encoders for the writers: f32/f16/bf16 bytes and ggml's Q8_0/Q4_0 blocks.
 * The quantizers follow ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref step for step,
 * in float32 arithmetic (Math.fround at every C float operation), so our files are byte-identical
 * to what llama.cpp's reference quantizer writes.
 */
import { f32ToF16 } from "../import/dtypes.ts";

export const QK = 32;
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;
export const Q4_1_BLOCK_BYTES = 20;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function encodeF32(data: Float32Array): Uint8Array {
  if (littleEndian)
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  return out;
}

export function encodeF16(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setUint16(i * 2, f32ToF16(data[i]!), true);
  return out;
}

/** fp32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN (ggml's GGML_FP32_TO_BF16). */
export function f32ToBf16(value: number): number {
  const u = new Uint32Array(new Float32Array([value]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function encodeBf16(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  const view = new DataView(out.buffer);
  const u32 = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < data.length; i++) {
    const u = u32[i]!;
    const h = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 64 : (u + (0x7fff + ((u >>> 16) & 1))) >>> 16;
    view.setUint16(i * 2, h & 0xffff, true);
  }
  return out;
}

const f = Math.fround;

/** C roundf: halfway cases away from zero (Math.round rounds -2.5 to -2). */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

function checkBlocks(data: Float32Array, what: string): void {
  if (data.length % QK !== 0) throw new Error(`${what}: ${data.length} values are not whole blocks of ${QK}`);
}

/** ggml block_q8_0: fp16 d = amax/127, then 32 int8 q = roundf(x/d). */
export function quantizeQ8_0(data: Float32Array): Uint8Array {
  checkBlocks(data, "Q8_0");
  const nb = data.length / QK;
  const out = new Uint8Array(nb * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = data.subarray(b * QK, (b + 1) * QK);
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[j]!));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    const base = b * Q8_0_BLOCK_BYTES;
    view.setUint16(base, f32ToF16(d), true);
    for (let j = 0; j < QK; j++) view.setInt8(base + 2 + j, roundf(f(x[j]! * id)));
  }
  return out;
}

/**
 * ggml block_q4_0: d = (signed value of largest magnitude) / -8, nibbles q = min(15, trunc(x/d + 8.5)).
 * Byte j holds element j (low nibble) and element j + 16 (high nibble).
 */
export function quantizeQ4_0(data: Float32Array): Uint8Array {
  checkBlocks(data, "Q4_0");
  const nb = data.length / QK;
  const half = QK / 2;
  const out = new Uint8Array(nb * Q4_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = data.subarray(b * QK, (b + 1) * QK);
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    const base = b * Q4_0_BLOCK_BYTES;
    view.setUint16(base, f32ToF16(d), true);
    for (let j = 0; j < half; j++) {
      const q0 = Math.min(15, Math.trunc(f(f(x[j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(f(f(x[half + j]! * id) + 8.5)));
      out[base + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/**
 * ggml block_q4_1 (quantize_row_q4_1_ref): d = (max - min) / 15 and m = min, both fp16;
 * q = min(15, trunc((x - min) / d + 0.5)) with 1/d in fp32. Nibble order as Q4_0.
 */
export function quantizeQ4_1(data: Float32Array): Uint8Array {
  checkBlocks(data, "Q4_1");
  const nb = data.length / QK;
  const half = QK / 2;
  const out = new Uint8Array(nb * Q4_1_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = data.subarray(b * QK, (b + 1) * QK);
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (const v of x) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    const d = f(f(max - min) / 15);
    const id = d ? f(1 / d) : 0;
    const base = b * Q4_1_BLOCK_BYTES;
    view.setUint16(base, f32ToF16(d), true);
    view.setUint16(base + 2, f32ToF16(min), true);
    for (let j = 0; j < half; j++) {
      const q0 = Math.min(15, Math.trunc(f(f(f(x[j]! - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(f(f(f(x[half + j]! - min) * id) + 0.5)));
      out[base + 4 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}
