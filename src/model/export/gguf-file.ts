/**
 * Low-level GGUF v3 writer: header, typed metadata KV pairs, tensor infos and aligned tensor data.
 * Knows nothing about models (see gguf.ts); tests also use it to hand-craft odd files.
 * Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 KV count, KVs,
 * tensor infos (name, u32 n_dims, u64 dims fastest-first, u32 ggml type, u64 offset into the data
 * section), padding to the alignment, then each tensor's bytes padded to the alignment.
 */
import { open } from "node:fs/promises";
import { writeFileAtomically } from "./atomic.ts";
import { ModelExportError } from "./errors.ts";

export const GGUF_ALIGNMENT = 32;

/** ggml_type ids (ggml.h) and the bytes one block takes / how many elements a block holds. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 8, Q4_K: 12, BF16: 30 } as const;
const BLOCK: Record<number, { elements: number; bytes: number }> = {
  0: { elements: 1, bytes: 4 },
  1: { elements: 1, bytes: 2 },
  2: { elements: 32, bytes: 18 },
  3: { elements: 32, bytes: 20 },
  8: { elements: 32, bytes: 34 },
  12: { elements: 256, bytes: 144 },
  30: { elements: 1, bytes: 2 },
};

export function ggmlByteLength(ggmlType: number, shape: readonly number[]): number {
  const block = BLOCK[ggmlType];
  if (!block) throw new Error(`unknown ggml type ${ggmlType}`);
  const inner = shape[shape.length - 1] ?? 1;
  if (inner % block.elements !== 0) {
    throw new Error(`row length ${inner} is not a multiple of the ggml type ${ggmlType} block`);
  }
  return (shape.reduce((a, b) => a * b, 1) / block.elements) * block.bytes;
}

type NumType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64";
export type GgufValue =
  | { type: NumType; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: NumType; value: readonly number[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] }
  | { type: "array"; itemType: "string"; value: readonly string[] };

const TYPE_IDS = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export interface GgufTensor {
  name: string;
  /** Row-major PyTorch order; written reversed (GGUF lists dims fastest-first). */
  shape: readonly number[];
  ggmlType: number;
  byteLength: number;
  /** Produced while writing, one tensor at a time, so the whole model never sits in memory encoded. */
  bytes(): Uint8Array;
}

export interface GgufFile {
  metadata: ReadonlyMap<string, GgufValue>;
  tensors: readonly GgufTensor[];
}

const utf8 = new TextEncoder();

/** Little-endian byte builder for the header. */
class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): DataView {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    return this.view;
  }

  num(type: NumType | "bool", v: number): void {
    const size = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 }[
      type
    ];
    const view = this.reserve(size);
    const at = this.length;
    switch (type) {
      case "u8":
      case "bool":
        view.setUint8(at, v);
        break;
      case "i8":
        view.setInt8(at, v);
        break;
      case "u16":
        view.setUint16(at, v, true);
        break;
      case "i16":
        view.setInt16(at, v, true);
        break;
      case "u32":
        view.setUint32(at, v, true);
        break;
      case "i32":
        view.setInt32(at, v, true);
        break;
      case "f32":
        view.setFloat32(at, v, true);
        break;
      case "u64":
        view.setBigUint64(at, BigInt(v), true);
        break;
      case "i64":
        view.setBigInt64(at, BigInt(v), true);
        break;
      case "f64":
        view.setFloat64(at, v, true);
        break;
    }
    this.length += size;
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  string(s: string): void {
    const b = utf8.encode(s);
    this.num("u64", b.length);
    this.raw(b);
  }

  done(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(out: Bytes, v: GgufValue): void {
  switch (v.type) {
    case "string":
      out.string(v.value);
      return;
    case "bool":
      out.num("bool", v.value ? 1 : 0);
      return;
    case "array":
      out.num("u32", TYPE_IDS[v.itemType]);
      out.num("u64", v.value.length);
      for (const item of v.value) {
        if (typeof item === "string") out.string(item);
        else if (typeof item === "boolean") out.num("bool", item ? 1 : 0);
        else out.num(v.itemType as NumType, item);
      }
      return;
    default:
      out.num(v.type, v.value);
  }
}

function padding(n: number): number {
  return (GGUF_ALIGNMENT - (n % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
}

/** Everything before the tensor data: header, KVs, tensor infos, padding to the alignment. */
export function encodeGgufHeader(file: GgufFile): Uint8Array {
  const out = new Bytes();
  out.raw(utf8.encode("GGUF"));
  out.num("u32", 3);
  out.num("u64", file.tensors.length);
  out.num("u64", file.metadata.size);
  for (const [key, value] of file.metadata) {
    out.string(key);
    out.num("u32", TYPE_IDS[value.type]);
    writeValue(out, value);
  }
  let offset = 0;
  for (const t of file.tensors) {
    out.string(t.name);
    out.num("u32", t.shape.length);
    for (const d of [...t.shape].reverse()) out.num("u64", d);
    out.num("u32", t.ggmlType);
    out.num("u64", offset);
    offset += t.byteLength + padding(t.byteLength);
  }
  out.raw(new Uint8Array(padding(out.length)));
  return out.done();
}

/** Writes a GGUF file atomically (temp file + rename), encoding one tensor at a time. */
export async function writeGgufFile(path: string, file: GgufFile): Promise<void> {
  if (file.metadata.has("general.alignment")) {
    throw new ModelExportError(path, "general.alignment is fixed at 32 by this writer");
  }
  const header = encodeGgufHeader(file);
  await writeFileAtomically(path, async (tmp) => {
    const fh = await open(tmp, "wx");
    try {
      await fh.write(header);
      for (const t of file.tensors) {
        const bytes = t.bytes();
        if (bytes.length !== t.byteLength) {
          throw new ModelExportError(
            path,
            `tensor ${t.name}: encoded ${bytes.length} bytes, expected ${t.byteLength}`,
          );
        }
        await fh.write(bytes);
        await fh.write(new Uint8Array(padding(bytes.length)));
      }
    } finally {
      await fh.close();
    }
  });
}
