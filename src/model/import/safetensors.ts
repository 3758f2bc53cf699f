/**
 * Our own small safetensors reader: an 8-byte little-endian header length, a JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}}, plus an optional "__metadata__"), then the
 * data section the offsets point into. The header is checked against the file before any tensor is
 * handed out, so a file that lies about its offsets fails at import, not in the middle of a forward
 * pass. Tensor bytes are read lazily.
 */
import { z } from "zod";
import { ModelImportError, type SourceDType, type TensorEntry } from "../../format/model.ts";
import { decodeToF32 } from "./dtypes.ts";
import { fileSize, readRange } from "./file-bytes.ts";

/** safetensors dtype names we read, and the bytes per element of every dtype the format defines. */
const SUPPORTED: Record<string, SourceDType> = { F32: "f32", F16: "f16", BF16: "bf16" };
const ELEMENT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
/** The format caps headers at 100 MB; a bigger length is a corrupt file, not a big model. */
const MAX_HEADER_BYTES = 100_000_000;

const TensorHeader = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});
const Header = z.record(z.string(), z.unknown());
const Metadata = z.record(z.string(), z.string());

export interface SafetensorsTensor {
  name: string;
  dtype: SourceDType;
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string> | null;
  /** In header order. */
  tensors: Map<string, SafetensorsTensor>;
}

function parseJson(path: string, bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ModelImportError(path, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
}

/** Reads and checks the header; throws a ModelImportError naming the file (and tensor) on any lie. */
export function readSafetensorsHeader(path: string): SafetensorsFile {
  const size = fileSize(path);
  if (size < 8)
    throw new ModelImportError(path, `truncated: ${size} bytes, too short for a safetensors header`);
  const headerLength = Number(new DataView(readRange(path, 0, 8).buffer).getBigUint64(0, true));
  if (headerLength > size - 8) {
    throw new ModelImportError(
      path,
      `safetensors header length ${headerLength} exceeds the file (${size} bytes): truncated or not safetensors`,
    );
  }
  if (headerLength > MAX_HEADER_BYTES) {
    throw new ModelImportError(path, `safetensors header length ${headerLength} is over the 100 MB limit`);
  }
  const header = Header.safeParse(parseJson(path, readRange(path, 8, headerLength)));
  if (!header.success) throw new ModelImportError(path, "safetensors header is not a JSON object");
  const dataStart = 8 + headerLength;
  const dataSize = size - dataStart;

  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, SafetensorsTensor>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header.data)) {
    if (name === "__metadata__") {
      const m = Metadata.safeParse(raw);
      if (!m.success)
        throw new ModelImportError(path, "safetensors __metadata__ must map strings to strings");
      metadata = m.data;
      continue;
    }
    const parsed = TensorHeader.safeParse(raw);
    if (!parsed.success) {
      throw new ModelImportError(path, `tensor ${name}: bad header entry (${z.prettifyError(parsed.error)})`);
    }
    const {
      dtype: dtypeName,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    const dtype = SUPPORTED[dtypeName];
    if (!dtype) {
      throw new ModelImportError(
        path,
        `tensor ${name}: unsupported dtype ${dtypeName} (supported: ${Object.keys(SUPPORTED).join(", ")})`,
      );
    }
    if (begin > end)
      throw new ModelImportError(path, `tensor ${name}: data_offsets [${begin}, ${end}] run backwards`);
    if (end > dataSize) {
      throw new ModelImportError(
        path,
        `tensor ${name}: data_offsets [${begin}, ${end}] reach past the data section (${dataSize} bytes): truncated or corrupt`,
      );
    }
    const need = shape.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[dtypeName]!;
    if (end - begin !== need) {
      throw new ModelImportError(
        path,
        `tensor ${name}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtypeName} [${shape}] needs ${need}`,
      );
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { name, dtype, shape, offset: dataStart + begin, byteLength: need });
  }
  const nonEmpty = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < nonEmpty.length; i++) {
    const prev = nonEmpty[i - 1]!;
    const cur = nonEmpty[i]!;
    if (cur.begin < prev.end) {
      throw new ModelImportError(
        path,
        `tensors ${prev.name} [${prev.begin}, ${prev.end}] and ${cur.name} [${cur.begin}, ${cur.end}] overlap`,
      );
    }
  }
  return { path, metadata, tensors };
}

/** A lazy TensorEntry (under a possibly different, canonical name) for a checked safetensors tensor. */
export function safetensorsEntry(file: string, t: SafetensorsTensor, name: string): TensorEntry {
  const count = t.shape.reduce((a, b) => a * b, 1);
  let cached: Float32Array | null = null;
  return {
    name,
    shape: t.shape,
    dtype: t.dtype,
    byteLength: t.byteLength,
    f32: () => {
      cached ??= decodeToF32(t.dtype, readRange(file, t.offset, t.byteLength), count);
      return cached;
    },
  };
}
