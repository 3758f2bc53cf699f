/**
 * The ggml tensor types we read, by ggml_type id (ggml.h enum ggml_type): block size in elements,
 * bytes per block and the dequantizer. One table for the importer, byte counts and tests.
 */
import { f16ToF32 } from "./f16.ts";
import {
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_K,
  dequantizeQ5_K,
  dequantizeQ6_K,
  Q2_K_BYTES,
  Q3_K_BYTES,
  Q4_K_BYTES,
  Q5_K_BYTES,
  Q6_K_BYTES,
  QK_K,
} from "./k-quants.ts";
import {
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ8_0,
  Q4_0_BYTES,
  Q4_1_BYTES,
  Q5_0_BYTES,
  Q5_1_BYTES,
  Q8_0_BYTES,
  QK,
} from "./legacy.ts";

export const GGML_DTYPES = [
  "f32",
  "f16",
  "bf16",
  "q4_0",
  "q4_1",
  "q5_0",
  "q5_1",
  "q8_0",
  "q2_k",
  "q3_k",
  "q4_k",
  "q5_k",
  "q6_k",
] as const;
export type GgmlDType = (typeof GGML_DTYPES)[number];

export interface GgmlTypeInfo {
  /** ggml_type id in GGUF tensor infos. */
  id: number;
  /** ggml's name (ggml_type_name). */
  name: string;
  /** Elements per block; a row's length must be a multiple of it. */
  blockSize: number;
  bytesPerBlock: number;
  /** Decodes `nBlocks` blocks of `bytes` into `y` (nBlocks * blockSize floats from index 0). */
  dequantize(bytes: Uint8Array, nBlocks: number, y: Float32Array): void;
}

function f32(b: Uint8Array, n: number, y: Float32Array): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < n; i++) y[i] = v.getFloat32(i * 4, true);
}
function f16(b: Uint8Array, n: number, y: Float32Array): void {
  for (let i = 0; i < n; i++) y[i] = f16ToF32(b[2 * i]! | (b[2 * i + 1]! << 8));
}
function bf16(b: Uint8Array, n: number, y: Float32Array): void {
  const u = new Uint32Array(y.buffer, y.byteOffset, n);
  for (let i = 0; i < n; i++) u[i] = ((b[2 * i]! | (b[2 * i + 1]! << 8)) << 16) >>> 0;
}

export const GGML_TYPE_INFO: Record<GgmlDType, GgmlTypeInfo> = {
  f32: { id: 0, name: "F32", blockSize: 1, bytesPerBlock: 4, dequantize: f32 },
  f16: { id: 1, name: "F16", blockSize: 1, bytesPerBlock: 2, dequantize: f16 },
  q4_0: { id: 2, name: "Q4_0", blockSize: QK, bytesPerBlock: Q4_0_BYTES, dequantize: dequantizeQ4_0 },
  q4_1: { id: 3, name: "Q4_1", blockSize: QK, bytesPerBlock: Q4_1_BYTES, dequantize: dequantizeQ4_1 },
  q5_0: { id: 6, name: "Q5_0", blockSize: QK, bytesPerBlock: Q5_0_BYTES, dequantize: dequantizeQ5_0 },
  q5_1: { id: 7, name: "Q5_1", blockSize: QK, bytesPerBlock: Q5_1_BYTES, dequantize: dequantizeQ5_1 },
  q8_0: { id: 8, name: "Q8_0", blockSize: QK, bytesPerBlock: Q8_0_BYTES, dequantize: dequantizeQ8_0 },
  q2_k: { id: 10, name: "Q2_K", blockSize: QK_K, bytesPerBlock: Q2_K_BYTES, dequantize: dequantizeQ2_K },
  q3_k: { id: 11, name: "Q3_K", blockSize: QK_K, bytesPerBlock: Q3_K_BYTES, dequantize: dequantizeQ3_K },
  q4_k: { id: 12, name: "Q4_K", blockSize: QK_K, bytesPerBlock: Q4_K_BYTES, dequantize: dequantizeQ4_K },
  q5_k: { id: 13, name: "Q5_K", blockSize: QK_K, bytesPerBlock: Q5_K_BYTES, dequantize: dequantizeQ5_K },
  q6_k: { id: 14, name: "Q6_K", blockSize: QK_K, bytesPerBlock: Q6_K_BYTES, dequantize: dequantizeQ6_K },
  bf16: { id: 30, name: "BF16", blockSize: 1, bytesPerBlock: 2, dequantize: bf16 },
};

/** ggml_type id -> our dtype name, for the types above. */
export const GGML_DTYPE_BY_ID: ReadonlyMap<number, GgmlDType> = new Map(
  GGML_DTYPES.map((t) => [GGML_TYPE_INFO[t].id, t]),
);

/** ggml names of types we know of but cannot read (for error messages). */
export const UNSUPPORTED_GGML_TYPES: Record<number, string> = {
  15: "Q8_K",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  20: "IQ4_NL",
  21: "IQ3_S",
  22: "IQ2_S",
  23: "IQ4_XS",
  29: "IQ1_M",
  34: "TQ1_0",
  35: "TQ2_0",
  39: "MXFP4",
};
