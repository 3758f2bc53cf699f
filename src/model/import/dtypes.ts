/**
 * Conversions from the storage types we read (f32, f16, bf16 and ggml's block quantizations) to
 * fp32. The per-type layouts and dequantizers live in ./ggml/ (one file per family).
 */
import type { SourceDType } from "../../format/model.ts";
import { GGML_TYPE_INFO } from "./ggml/types.ts";

/** Round-to-nearest-even fp32 -> fp16 bits (one implementation, shared with the int4 format). */
export { f32ToF16 } from "../../format/int4.ts";
export { f16ToF32 } from "./ggml/f16.ts";

export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

/** Elements per block of `dtype` (1 for plain floats); a row's length must be a multiple of it. */
export function blockSize(dtype: SourceDType): number {
  return GGML_TYPE_INFO[dtype].blockSize;
}

/** Bytes a tensor of `count` elements takes in `dtype` (`count` a multiple of the block size). */
export function storageBytes(dtype: SourceDType, count: number): number {
  const t = GGML_TYPE_INFO[dtype];
  if (count % t.blockSize !== 0) throw new Error(`${count} elements is not whole ${t.name} blocks`);
  return (count / t.blockSize) * t.bytesPerBlock;
}

/** Decodes `count` little-endian values of `dtype` from `bytes` into fp32, exactly as ggml does. */
export function decodeToF32(dtype: SourceDType, bytes: Uint8Array, count: number): Float32Array {
  const t = GGML_TYPE_INFO[dtype];
  const out = new Float32Array(count);
  const blocks = count / t.blockSize;
  if (!Number.isInteger(blocks) || bytes.byteLength < blocks * t.bytesPerBlock) {
    throw new Error(`${t.name}: ${bytes.byteLength} bytes cannot hold ${count} values`);
  }
  t.dequantize(bytes, blocks, out);
  return out;
}
