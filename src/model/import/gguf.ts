/**
 * GGUF (v2/v3) import: metadata through @huggingface/gguf, tensor bytes read lazily from the file.
 * llama-architecture GGUF files carry q/k rows permuted for llama.cpp's interleaved rope, so the
 * description says ropeStyle "interleaved"; qwen2 GGUF files are not permuted (neox rope).
 */
import { type GGUFParseOutput, gguf } from "@huggingface/gguf";
import { z } from "zod";
import {
  type Architecture,
  ModelConfig,
  type ModelDescription,
  ModelImportError,
  type TensorEntry,
  TensorNames,
  type TokenizerSpec,
} from "../../format/model.ts";
import { decodeToF32, storageBytes } from "./dtypes.ts";
import { fileSize, readRange } from "./file-bytes.ts";
import { GGML_DTYPE_BY_ID, GGML_DTYPES, GGML_TYPE_INFO, UNSUPPORTED_GGML_TYPES } from "./ggml/types.ts";

const GGUF_ARCHITECTURES: Record<string, Architecture> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
};
const NO_TOKEN = 0xffffffff;

type Metadata = Record<string, unknown>;

function num(meta: Metadata, key: string): number | undefined {
  const v = meta[key];
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}

function tokenId(meta: Metadata, key: string): number | null {
  const v = num(meta, key);
  return v === undefined || v === NO_TOKEN || v < 0 ? null : v;
}

async function parseHeader(path: string): Promise<GGUFParseOutput<{ strict: false }>> {
  try {
    return (await gguf(path, { allowLocalFile: true })) as unknown as GGUFParseOutput<{ strict: false }>;
  } catch (e) {
    if (e instanceof ModelImportError) throw e;
    const msg = (e as Error).message;
    if (/magic/i.test(msg)) throw new ModelImportError(path, "not a GGUF file (wrong magic bytes)");
    throw new ModelImportError(path, `cannot parse GGUF header (${msg})`);
  }
}

const LlamaVocab = z.object({
  "tokenizer.ggml.tokens": z.array(z.string()).min(1),
  "tokenizer.ggml.scores": z.array(z.number()).optional(),
  "tokenizer.ggml.token_type": z.array(z.number()).optional(),
});
const Gpt2Vocab = z.object({
  "tokenizer.ggml.tokens": z.array(z.string()).min(1),
  "tokenizer.ggml.merges": z.array(z.string()),
  "tokenizer.ggml.token_type": z.array(z.number()).optional(),
});

function tokenizerSpec(path: string, meta: Metadata): TokenizerSpec {
  const model = meta["tokenizer.ggml.model"];
  const bool = (key: string, dflt: boolean) =>
    typeof meta[key] === "boolean" ? (meta[key] as boolean) : dflt;
  if (model === "llama") {
    const v = LlamaVocab.safeParse(meta);
    if (!v.success) throw new ModelImportError(path, `bad llama vocabulary metadata: ${v.error.message}`);
    const tokens = v.data["tokenizer.ggml.tokens"];
    const scores = v.data["tokenizer.ggml.scores"] ?? tokens.map(() => 0);
    const tokenTypes = v.data["tokenizer.ggml.token_type"] ?? tokens.map(() => 1);
    if (scores.length !== tokens.length || tokenTypes.length !== tokens.length) {
      throw new ModelImportError(path, "vocabulary arrays (tokens, scores, token_type) differ in length");
    }
    return {
      kind: "llama-spm",
      tokens,
      scores,
      tokenTypes,
      bosId: tokenId(meta, "tokenizer.ggml.bos_token_id"),
      eosId: tokenId(meta, "tokenizer.ggml.eos_token_id"),
      unkId: tokenId(meta, "tokenizer.ggml.unknown_token_id"),
      padId: tokenId(meta, "tokenizer.ggml.padding_token_id"),
      addBos: bool("tokenizer.ggml.add_bos_token", true),
      addEos: bool("tokenizer.ggml.add_eos_token", false),
      addSpacePrefix: bool("tokenizer.ggml.add_space_prefix", true),
    };
  }
  if (model === "gpt2") {
    const v = Gpt2Vocab.safeParse(meta);
    if (!v.success) throw new ModelImportError(path, `bad gpt2 vocabulary metadata: ${v.error.message}`);
    const tokens = v.data["tokenizer.ggml.tokens"];
    return {
      kind: "gguf-bpe",
      tokens,
      merges: v.data["tokenizer.ggml.merges"],
      tokenTypes: v.data["tokenizer.ggml.token_type"] ?? tokens.map(() => 1),
      pre: typeof meta["tokenizer.ggml.pre"] === "string" ? (meta["tokenizer.ggml.pre"] as string) : null,
      bosId: tokenId(meta, "tokenizer.ggml.bos_token_id"),
      eosId: tokenId(meta, "tokenizer.ggml.eos_token_id"),
      padId: tokenId(meta, "tokenizer.ggml.padding_token_id"),
      addBos: bool("tokenizer.ggml.add_bos_token", false),
    };
  }
  throw new ModelImportError(
    path,
    `unsupported tokenizer model ${JSON.stringify(model ?? null)} (want llama or gpt2)`,
  );
}

export async function importGguf(path: string): Promise<ModelDescription> {
  const header = await parseHeader(path);
  const meta = header.metadata as Metadata;
  const size = fileSize(path);
  const dataOffset = Number(header.tensorDataOffset);
  if (dataOffset > size) {
    throw new ModelImportError(path, `truncated: header needs ${dataOffset} bytes, file has ${size}`);
  }
  const version = num(meta, "version");
  if (version !== 2 && version !== 3) throw new ModelImportError(path, `unsupported GGUF version ${version}`);

  const archName = String(meta["general.architecture"] ?? "");
  const architecture = GGUF_ARCHITECTURES[archName];
  if (!architecture) {
    throw new ModelImportError(
      path,
      `unsupported architecture "${archName}" (supported: ${Object.keys(GGUF_ARCHITECTURES).join(", ")})`,
    );
  }
  const key = (k: string) => num(meta, `${archName}.${k}`);
  const required = (k: string): number => {
    const v = key(k);
    if (v === undefined) throw new ModelImportError(path, `missing metadata ${archName}.${k}`);
    return v;
  };
  const scaling = meta[`${archName}.rope.scaling.type`];
  if (scaling !== undefined && scaling !== "none") {
    throw new ModelImportError(path, `unsupported rope scaling "${String(scaling)}"`);
  }

  const tokenizer = tokenizerSpec(path, meta);
  const tensors = new Map<string, TensorEntry>();
  for (const info of header.tensorInfos) {
    const dtype = GGML_DTYPE_BY_ID.get(info.dtype);
    if (!dtype) {
      const name = UNSUPPORTED_GGML_TYPES[info.dtype] ?? `ggml type ${info.dtype}`;
      const supported = GGML_DTYPES.map((t) => GGML_TYPE_INFO[t].name).join(", ");
      throw new ModelImportError(
        path,
        `tensor ${info.name}: unsupported dtype ${name} (supported: ${supported})`,
      );
    }
    // GGUF lists dims fastest-first; we use row-major PyTorch order.
    const shape = info.shape.map(Number).reverse();
    const count = shape.reduce((a, b) => a * b, 1);
    const inner = shape[shape.length - 1] ?? 1;
    const { blockSize, name: typeName } = GGML_TYPE_INFO[dtype];
    if (inner % blockSize !== 0) {
      throw new ModelImportError(
        path,
        `tensor ${info.name}: ${typeName} row length ${inner} is not a multiple of ${blockSize}`,
      );
    }
    const byteLength = storageBytes(dtype, count);
    const start = dataOffset + Number(info.offset);
    if (start + byteLength > size) {
      throw new ModelImportError(
        path,
        `truncated: tensor ${info.name} needs bytes ${start}..${start + byteLength}, file has ${size}`,
      );
    }
    let cached: Float32Array | null = null;
    tensors.set(info.name, {
      name: info.name,
      shape,
      dtype,
      byteLength,
      f32: () => {
        cached ??= decodeToF32(dtype, readRange(path, start, byteLength), count);
        return cached;
      },
      stored: () => readRange(path, start, byteLength),
    });
  }

  const hiddenSize = required("embedding_length");
  const numHeads = required("attention.head_count");
  const headDim = key("attention.key_length") ?? hiddenSize / numHeads;
  const embd = tensors.get(TensorNames.tokenEmbedding);
  if (!embd) throw new ModelImportError(path, `missing tensor ${TensorNames.tokenEmbedding}`);
  const parsed = ModelConfig.safeParse({
    architecture,
    vocabSize: embd.shape[0],
    hiddenSize,
    intermediateSize: required("feed_forward_length"),
    numLayers: required("block_count"),
    numHeads,
    numKvHeads: key("attention.head_count_kv") ?? numHeads,
    headDim,
    ropeDim: key("rope.dimension_count") ?? headDim,
    ropeTheta: key("rope.freq_base") ?? 10000,
    ropeStyle: archName === "llama" || archName === "mistral" ? "interleaved" : "neox",
    rmsNormEps: required("attention.layer_norm_rms_epsilon"),
    maxContext: key("context_length") ?? 2048,
    tiedEmbeddings: !tensors.has(TensorNames.output),
    attentionBias: tensors.has(TensorNames.attnQBias(0)),
    slidingWindow: key("attention.sliding_window") ?? null,
  });
  if (!parsed.success) throw new ModelImportError(path, `bad model metadata: ${parsed.error.message}`);
  const config = parsed.data;
  if (config.ropeDim !== config.headDim) {
    throw new ModelImportError(
      path,
      `partial rotary (rope dim ${config.ropeDim} of head dim ${headDim}) is unsupported`,
    );
  }

  const eos = tokenizer.kind === "hf" ? null : tokenizer.eosId;
  const eot = tokenId(meta, "tokenizer.ggml.eot_token_id");
  const chatTemplate = meta["tokenizer.chat_template"];
  return {
    config,
    tensors,
    tokenizer,
    chatTemplate: typeof chatTemplate === "string" ? chatTemplate : null,
    eosTokenIds: [...new Set([eos, eot].filter((t): t is number => t !== null))],
    bosTokenId: tokenizer.kind === "hf" ? null : tokenizer.bosId,
    source: { format: "gguf", path, files: [path] },
  };
}
