/**
 * safetensors writer: 8-byte LE header length, JSON header padded with spaces so the data section
 * starts 8-byte aligned (as the reference implementation does), then the tensors back to back.
 */
import { open } from "node:fs/promises";
import { ModelExportError } from "./errors.ts";

export type SafetensorsDType = "F32" | "F16" | "BF16";

export interface SafetensorsTensorOut {
  name: string;
  shape: readonly number[];
  dtype: SafetensorsDType;
  byteLength: number;
  /** Encoded while writing, one tensor at a time. */
  bytes(): Uint8Array;
}

export function safetensorsHeader(
  tensors: readonly SafetensorsTensorOut[],
  metadata: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Space-pad (valid JSON whitespace) so the data section starts 8-byte aligned.
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** Writes one .safetensors file (callers make it atomic by writing into a temp folder). */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorOut[],
  metadata: Record<string, string> = { format: "pt" },
): Promise<void> {
  const fh = await open(path, "wx");
  try {
    await fh.write(safetensorsHeader(tensors, metadata));
    for (const t of tensors) {
      const bytes = t.bytes();
      if (bytes.length !== t.byteLength) {
        throw new ModelExportError(
          path,
          `tensor ${t.name}: encoded ${bytes.length} bytes, expected ${t.byteLength}`,
        );
      }
      await fh.write(bytes);
    }
  } finally {
    await fh.close();
  }
}
