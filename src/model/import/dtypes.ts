/** Conversions from the storage types we read (f16, bf16, q8_0) to fp32. */
import type { SourceDType } from "../../format/model.ts";

const f16Table = buildF16Table();

function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
}

export function f16ToF32(h: number): number {
  return f16Table[h & 0xffff]!;
}

/** Round-to-nearest-even fp32 -> fp16 bits (one implementation, shared with the int4 format). */
export { f32ToF16 } from "../../format/int4.ts";

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

/** Bytes a tensor of `count` elements takes in `dtype`. */
export function storageBytes(dtype: SourceDType, count: number): number {
  switch (dtype) {
    case "f32":
      return count * 4;
    case "f16":
    case "bf16":
      return count * 2;
    case "q8_0":
      return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  }
}

/** Decodes `count` little-endian values of `dtype` from `bytes` into fp32. */
export function decodeToF32(dtype: SourceDType, bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (dtype) {
    case "f32":
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "f16":
      for (let i = 0; i < count; i++) out[i] = f16Table[view.getUint16(i * 2, true)]!;
      break;
    case "bf16": {
      const u32 = new Uint32Array(1);
      const f32 = new Float32Array(u32.buffer);
      for (let i = 0; i < count; i++) {
        u32[0] = view.getUint16(i * 2, true) << 16;
        out[i] = f32[0]!;
      }
      break;
    }
    case "q8_0":
      // llama.cpp block_q8_0: fp16 scale d, then 32 int8 quants; x = d * q.
      for (let b = 0; b < count / Q8_0_BLOCK; b++) {
        const base = b * Q8_0_BLOCK_BYTES;
        const d = f16Table[view.getUint16(base, true)]!;
        for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * view.getInt8(base + 2 + j);
      }
      break;
  }
  return out;
}
