/**
 * The one in-memory model description that every later stage consumes
 * (reference forward pass, quantizer, pruner, packer, inspect CLI).
 *
 * Conventions:
 * - Tensor shapes are row-major in PyTorch order: a linear layer's weight is [out, in],
 *   the last dimension is contiguous. (GGUF lists dims fastest-first; importers reverse them.)
 * - Tensor names are canonical and format-independent; see `TensorNames`.
 * - `ropeStyle` says how the q/k rows of *these* tensors pair up for rotary embeddings:
 *   "interleaved" pairs (2i, 2i+1) — what llama.cpp expects of llama GGUF files, whose q/k rows
 *   the converter permuted; "neox" pairs (i, i + d/2) — Hugging Face checkpoints (rotate_half).
 *   Importers never silently re-order rows; they record the layout they found, and the forward pass
 *   implements both. `permuteQK`/`unpermuteQK` convert between them explicitly.
 */
import { z } from "zod";

export const ARCHITECTURES = ["llama", "mistral", "qwen2"] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export const RopeStyle = z.enum(["interleaved", "neox"]);
export type RopeStyle = z.infer<typeof RopeStyle>;

export const ModelConfig = z.object({
  architecture: z.enum(ARCHITECTURES),
  vocabSize: z.number().int().positive(),
  hiddenSize: z.number().int().positive(),
  intermediateSize: z.number().int().positive(),
  numLayers: z.number().int().positive(),
  numHeads: z.number().int().positive(),
  numKvHeads: z.number().int().positive(),
  headDim: z.number().int().positive(),
  /** Rotary dims per head (== headDim for every supported architecture). */
  ropeDim: z.number().int().positive(),
  ropeTheta: z.number().positive(),
  ropeStyle: RopeStyle,
  rmsNormEps: z.number().positive(),
  maxContext: z.number().int().positive(),
  /** Output head shares the token embedding matrix (SmolLM-style); no `output.weight` tensor then. */
  tiedEmbeddings: z.boolean(),
  /** q/k/v projections carry biases (qwen2). */
  attentionBias: z.boolean(),
  /** Mistral-style sliding window; null = full attention. */
  slidingWindow: z.number().int().positive().nullable(),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

/**
 * Storage types we can read from model files: plain floats and ggml's block quantizations
 * (Q4_0..Q8_0, K-quants Q2_K..Q6_K). Everything is dequantized to fp32 on read.
 */
export const SOURCE_DTYPES = [
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
export type SourceDType = (typeof SOURCE_DTYPES)[number];

export interface TensorEntry {
  readonly name: string;
  /** Row-major, PyTorch order ([out, in] for linear weights). */
  readonly shape: readonly number[];
  /** How the tensor is stored in the source file. */
  readonly dtype: SourceDType;
  /** Bytes the tensor occupies in the source file. */
  readonly byteLength: number;
  /** Dequantized fp32 values, row-major. Materialized on first call and cached. */
  f32(): Float32Array;
  /**
   * The tensor's bytes exactly as stored in the source file (ggml blocks for quantized GGUF
   * tensors), read on each call and not cached; absent where the source has no such bytes.
   * For arithmetic that emulates a runtime working on the blocks themselves.
   */
  stored?(): Uint8Array;
}

/** Canonical tensor names (format-independent). */
export const TensorNames = {
  tokenEmbedding: "token_embd.weight",
  outputNorm: "output_norm.weight",
  output: "output.weight",
  attnNorm: (l: number) => `blk.${l}.attn_norm.weight`,
  attnQ: (l: number) => `blk.${l}.attn_q.weight`,
  attnK: (l: number) => `blk.${l}.attn_k.weight`,
  attnV: (l: number) => `blk.${l}.attn_v.weight`,
  attnQBias: (l: number) => `blk.${l}.attn_q.bias`,
  attnKBias: (l: number) => `blk.${l}.attn_k.bias`,
  attnVBias: (l: number) => `blk.${l}.attn_v.bias`,
  attnOutput: (l: number) => `blk.${l}.attn_output.weight`,
  ffnNorm: (l: number) => `blk.${l}.ffn_norm.weight`,
  ffnGate: (l: number) => `blk.${l}.ffn_gate.weight`,
  ffnUp: (l: number) => `blk.${l}.ffn_up.weight`,
  ffnDown: (l: number) => `blk.${l}.ffn_down.weight`,
} as const;

/** Everything needed to build a tokenizer, as found in the source files. */
export type TokenizerSpec =
  | {
      /** llama.cpp "llama" vocabulary: sentencepiece pieces with scores, byte-fallback tokens. */
      kind: "llama-spm";
      tokens: string[];
      scores: number[];
      /** llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
      tokenTypes: number[];
      bosId: number | null;
      eosId: number | null;
      unkId: number | null;
      padId: number | null;
      addBos: boolean;
      addEos: boolean;
      /** Prepend "▁" (a space) to the text before tokenizing, as sentencepiece does. */
      addSpacePrefix: boolean;
    }
  | {
      /** GGUF "gpt2" vocabulary: byte-level BPE with merges (SmolLM, Qwen GGUF files). */
      kind: "gguf-bpe";
      tokens: string[];
      merges: string[];
      tokenTypes: number[];
      pre: string | null;
      bosId: number | null;
      eosId: number | null;
      padId: number | null;
      addBos: boolean;
    }
  | {
      /** Hugging Face tokenizer.json (+ tokenizer_config.json), kept as parsed JSON. */
      kind: "hf";
      tokenizerJson: unknown;
      tokenizerConfig: Record<string, unknown> | null;
    };

export interface ModelSource {
  format: "gguf" | "hf";
  /** File or folder the model came from. */
  path: string;
  /** Files read (for error messages and manifests). */
  files: string[];
}

export interface ModelDescription {
  config: ModelConfig;
  /** Canonical name -> tensor. Insertion order follows the layer order. */
  tensors: Map<string, TensorEntry>;
  tokenizer: TokenizerSpec;
  /** Jinja chat template from the model files, if any (GGUF tokenizer.chat_template or tokenizer_config.json). */
  chatTemplate: string | null;
  /** Token ids that end generation (eos and friends). */
  eosTokenIds: number[];
  bosTokenId: number | null;
  source: ModelSource;
}

/** Thrown for any model file problem. The message always names the file and the problem. */
export class ModelImportError extends Error {
  override readonly name = "ModelImportError";
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

export function tensorOrThrow(model: ModelDescription, name: string): TensorEntry {
  const t = model.tensors.get(name);
  if (!t) throw new ModelImportError(model.source.path, `missing tensor ${name}`);
  return t;
}

/** Total scalar parameters (tied embeddings counted once). */
export function parameterCount(model: ModelDescription): number {
  let n = 0;
  for (const t of model.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Re-orders the rows of a q or k projection between rope layouts, per head of `headDim` rows.
 * neox -> interleaved is llama.cpp's convert_hf_to_gguf `permute`: row (j*2 + p) of a head in the
 * interleaved layout is row (p * headDim/2 + j) of the neox layout.
 * Works on weights [nHeads*headDim, cols] and on biases (cols = 1).
 */
export function permuteQK(
  data: Float32Array,
  nHeads: number,
  headDim: number,
  cols: number,
  to: RopeStyle,
): Float32Array {
  if (data.length !== nHeads * headDim * cols) throw new Error("permuteQK: size mismatch");
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      for (let p = 0; p < 2; p++) {
        const interleavedRow = h * headDim + j * 2 + p;
        const neoxRow = h * headDim + p * half + j;
        const [src, dst] = to === "interleaved" ? [neoxRow, interleavedRow] : [interleavedRow, neoxRow];
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** A tensor backed by values already in memory. */
export function memoryTensor(
  name: string,
  shape: readonly number[],
  data: Float32Array,
  dtype: SourceDType = "f32",
): TensorEntry {
  const expected = shape.reduce((a, b) => a * b, 1);
  if (data.length !== expected) throw new Error(`tensor ${name}: ${data.length} values for shape [${shape}]`);
  return { name, shape, dtype, byteLength: data.byteLength, f32: () => data };
}
