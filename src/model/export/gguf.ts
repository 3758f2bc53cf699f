/**
 * `writeGguf(model, path, {dtype})`: a llama.cpp-loadable GGUF v3 file from a ModelDescription.
 * - llama and mistral are written as llama.cpp's "llama" architecture (what its converter does),
 *   with q/k rows in the interleaved rope layout; qwen2 stays neox, as llama.cpp expects.
 * - 1-D tensors (norms, biases) are always F32. Q8_0/Q4_0/Q4_1 need rows that are whole 32-value blocks;
 *   other matrices (e.g. a 172-wide ffn_down) fall back to F16, as ggml cannot store partial blocks.
 */
import { type ModelDescription, type RopeStyle, type TensorEntry, TensorNames } from "../../format/model.ts";
import { checkWritable } from "./check.ts";
import { encodeBf16, encodeF16, encodeF32, QK, quantizeQ4_0, quantizeQ4_1, quantizeQ8_0 } from "./encode.ts";
import { ModelExportError } from "./errors.ts";
import {
  GgmlType,
  type GgufFile,
  type GgufTensor,
  type GgufValue,
  ggmlByteLength,
  writeGgufFile,
} from "./gguf-file.ts";
import { toRopeLayout } from "./rope.ts";

export const GGUF_DTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"] as const;
export type GgufDType = (typeof GGUF_DTYPES)[number];

export interface WriteGgufOptions {
  dtype?: GgufDType;
  /** general.name; defaults to "shardlm export". */
  name?: string;
}

/** llama.cpp's llama_ftype for general.file_type. */
const FILE_TYPE: Record<GgufDType, number> = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, bf16: 32 };
const GGML_OF: Record<GgufDType, number> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  bf16: GgmlType.BF16,
  q8_0: GgmlType.Q8_0,
  q4_0: GgmlType.Q4_0,
  q4_1: GgmlType.Q4_1,
};

/** The ggml type a tensor of `shape` gets when the file's dtype is `dtype`. */
export function ggmlTypeFor(shape: readonly number[], dtype: GgufDType): number {
  if (shape.length < 2) return GgmlType.F32;
  const inner = shape[shape.length - 1]!;
  if ((dtype === "q8_0" || dtype === "q4_0" || dtype === "q4_1") && inner % QK !== 0) return GgmlType.F16;
  return GGML_OF[dtype];
}

function encode(ggmlType: number, data: Float32Array): Uint8Array {
  switch (ggmlType) {
    case GgmlType.F32:
      return encodeF32(data);
    case GgmlType.F16:
      return encodeF16(data);
    case GgmlType.BF16:
      return encodeBf16(data);
    case GgmlType.Q8_0:
      return quantizeQ8_0(data);
    case GgmlType.Q4_0:
      return quantizeQ4_0(data);
    case GgmlType.Q4_1:
      return quantizeQ4_1(data);
    default:
      throw new Error(`no encoder for ggml type ${ggmlType}`);
  }
}

const u32 = (value: number): GgufValue => ({ type: "u32", value });
const f32 = (value: number): GgufValue => ({ type: "f32", value });

function tokenizerMetadata(path: string, model: ModelDescription, meta: Map<string, GgufValue>): void {
  const tok = model.tokenizer;
  const id = (key: string, v: number | null) => {
    if (v !== null) meta.set(`tokenizer.ggml.${key}`, u32(v));
  };
  if (tok.kind === "llama-spm") {
    meta.set("tokenizer.ggml.model", { type: "string", value: "llama" });
    meta.set("tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tok.tokens });
    meta.set("tokenizer.ggml.scores", { type: "array", itemType: "f32", value: tok.scores });
    meta.set("tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: tok.tokenTypes });
    id("bos_token_id", tok.bosId);
    id("eos_token_id", tok.eosId);
    id("unknown_token_id", tok.unkId);
    id("padding_token_id", tok.padId);
    meta.set("tokenizer.ggml.add_bos_token", { type: "bool", value: tok.addBos });
    meta.set("tokenizer.ggml.add_eos_token", { type: "bool", value: tok.addEos });
    meta.set("tokenizer.ggml.add_space_prefix", { type: "bool", value: tok.addSpacePrefix });
  } else if (tok.kind === "gguf-bpe") {
    meta.set("tokenizer.ggml.model", { type: "string", value: "gpt2" });
    if (tok.pre !== null) meta.set("tokenizer.ggml.pre", { type: "string", value: tok.pre });
    meta.set("tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tok.tokens });
    meta.set("tokenizer.ggml.merges", { type: "array", itemType: "string", value: tok.merges });
    meta.set("tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: tok.tokenTypes });
    id("bos_token_id", tok.bosId);
    id("eos_token_id", tok.eosId);
    id("padding_token_id", tok.padId);
    meta.set("tokenizer.ggml.add_bos_token", { type: "bool", value: tok.addBos });
  } else {
    throw new ModelExportError(
      path,
      "cannot write a Hugging Face tokenizer.json vocabulary into GGUF metadata (llama-spm and gguf-bpe only)",
    );
  }
  // llama.cpp knows one extra end-of-generation id besides eos: carry the first other one as eot.
  const eot = model.eosTokenIds.find((t) => t !== tok.eosId);
  if (eot !== undefined) id("eot_token_id", eot);
  if (model.chatTemplate !== null)
    meta.set("tokenizer.chat_template", { type: "string", value: model.chatTemplate });
}

/** The metadata and tensors `writeGguf` would write (tests patch these to craft odd files). */
export function ggufParts(model: ModelDescription, path: string, opts: WriteGgufOptions = {}): GgufFile {
  checkWritable(model, path);
  const dtype = opts.dtype ?? "f32";
  const c = model.config;
  const arch = c.architecture === "qwen2" ? "qwen2" : "llama";
  const rope: RopeStyle = arch === "llama" ? "interleaved" : "neox";
  const meta = new Map<string, GgufValue>();
  meta.set("general.architecture", { type: "string", value: arch });
  meta.set("general.name", { type: "string", value: opts.name ?? "shardlm export" });
  meta.set("general.file_type", u32(FILE_TYPE[dtype]));
  if (dtype === "q8_0" || dtype === "q4_0") meta.set("general.quantization_version", u32(2));
  meta.set(`${arch}.vocab_size`, u32(c.vocabSize));
  meta.set(`${arch}.context_length`, u32(c.maxContext));
  meta.set(`${arch}.embedding_length`, u32(c.hiddenSize));
  meta.set(`${arch}.feed_forward_length`, u32(c.intermediateSize));
  meta.set(`${arch}.block_count`, u32(c.numLayers));
  meta.set(`${arch}.attention.head_count`, u32(c.numHeads));
  meta.set(`${arch}.attention.head_count_kv`, u32(c.numKvHeads));
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    meta.set(`${arch}.attention.key_length`, u32(c.headDim));
    meta.set(`${arch}.attention.value_length`, u32(c.headDim));
  }
  meta.set(`${arch}.rope.dimension_count`, u32(c.ropeDim));
  meta.set(`${arch}.rope.freq_base`, f32(c.ropeTheta));
  meta.set(`${arch}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps));
  if (c.slidingWindow !== null) meta.set(`${arch}.attention.sliding_window`, u32(c.slidingWindow));
  tokenizerMetadata(path, model, meta);

  const tensors: GgufTensor[] = [];
  for (const [name, t] of model.tensors) {
    if (name === TensorNames.output && c.tiedEmbeddings) continue;
    tensors.push(ggufTensor(model, name, t, dtype, rope));
  }
  return { metadata: meta, tensors };
}

function ggufTensor(
  model: ModelDescription,
  name: string,
  t: TensorEntry,
  dtype: GgufDType,
  rope: RopeStyle,
): GgufTensor {
  const ggmlType = ggmlTypeFor(t.shape, dtype);
  return {
    name,
    shape: t.shape,
    ggmlType,
    byteLength: ggmlByteLength(ggmlType, t.shape),
    bytes: () => encode(ggmlType, toRopeLayout(model.config, name, t.f32(), rope)),
  };
}

export async function writeGguf(
  model: ModelDescription,
  path: string,
  opts: WriteGgufOptions = {},
): Promise<void> {
  await writeGgufFile(path, ggufParts(model, path, opts));
}
