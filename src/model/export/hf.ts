/**
 * `writeHfFolder(model, dir, {dtype})`: a Hugging Face checkpoint folder (config.json,
 * model.safetensors or shards + index, tokenizer.json, tokenizer_config.json, generation_config.json)
 * that transformers and our own importer load. HF checkpoints use the neox rope layout, so q/k rows
 * of an interleaved (llama GGUF) model are un-permuted on the way out. The folder is built under a
 * temporary name and renamed into place, so a failure leaves nothing behind.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ModelDescription, TensorNames } from "../../format/model.ts";
import { hfConfigJson, hfName } from "../import/hf-config.ts";
import { writeFolderAtomically } from "./atomic.ts";
import { checkWritable } from "./check.ts";
import { encodeBf16, encodeF16, encodeF32 } from "./encode.ts";
import { ModelExportError } from "./errors.ts";
import { hfTokenizerFiles } from "./hf-tokenizer.ts";
import { toRopeLayout } from "./rope.ts";
import { type SafetensorsDType, type SafetensorsTensorOut, writeSafetensors } from "./safetensors.ts";

export const HF_DTYPES = ["f32", "f16", "bf16"] as const;
export type HfDType = (typeof HF_DTYPES)[number];

export interface WriteHfOptions {
  dtype?: HfDType;
  /** Split the weights into model-0000i-of-0000n.safetensors shards of at most this many bytes. */
  maxShardBytes?: number;
  /** Replace an existing folder (only once the new one is complete). */
  overwrite?: boolean;
}

const DTYPE: Record<
  HfDType,
  { st: SafetensorsDType; torch: string; size: number; encode(d: Float32Array): Uint8Array }
> = {
  f32: { st: "F32", torch: "float32", size: 4, encode: encodeF32 },
  f16: { st: "F16", torch: "float16", size: 2, encode: encodeF16 },
  bf16: { st: "BF16", torch: "bfloat16", size: 2, encode: encodeBf16 },
};

function plannedTensors(model: ModelDescription, dir: string, dtype: HfDType): SafetensorsTensorOut[] {
  const c = model.config;
  const enc = DTYPE[dtype];
  const out: SafetensorsTensorOut[] = [];
  const add = (canonical: string, shape: readonly number[], data: () => Float32Array) => {
    const count = shape.reduce((a, b) => a * b, 1);
    out.push({
      name: hfName(canonical),
      shape,
      dtype: enc.st,
      byteLength: count * enc.size,
      bytes: () => enc.encode(toRopeLayout(c, canonical, data(), "neox")),
    });
  };
  if (c.attentionBias && c.architecture !== "qwen2") {
    // HF llama's attention_bias also adds an o_proj bias, which our description does not carry.
    throw new ModelExportError(dir, `${c.architecture} with q/k/v biases has no Hugging Face equivalent`);
  }
  for (const [name, t] of model.tensors) {
    if (name === TensorNames.output && c.tiedEmbeddings) continue;
    add(name, t.shape, () => t.f32());
    const layer = /^blk\.(\d+)\.attn_v\.weight$/.exec(name)?.[1];
    if (layer !== undefined && c.architecture === "qwen2" && !c.attentionBias) {
      // HF Qwen2 always has q/k/v biases: zeros say "no bias" exactly.
      const l = Number(layer);
      const kv = c.numKvHeads * c.headDim;
      add(TensorNames.attnQBias(l), [c.numHeads * c.headDim], () => new Float32Array(c.numHeads * c.headDim));
      add(TensorNames.attnKBias(l), [kv], () => new Float32Array(kv));
      add(TensorNames.attnVBias(l), [kv], () => new Float32Array(kv));
    }
  }
  return out;
}

/** Greedy split in tensor order; a tensor bigger than the limit gets a shard of its own. */
function shardTensors(tensors: SafetensorsTensorOut[], maxBytes: number): SafetensorsTensorOut[][] {
  const shards: SafetensorsTensorOut[][] = [];
  let current: SafetensorsTensorOut[] = [];
  let size = 0;
  for (const t of tensors) {
    if (current.length > 0 && size + t.byteLength > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += t.byteLength;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export async function writeHfFolder(
  model: ModelDescription,
  dir: string,
  opts: WriteHfOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? "f32";
  if (opts.maxShardBytes !== undefined && !(opts.maxShardBytes > 0)) {
    throw new ModelExportError(dir, `maxShardBytes must be positive, got ${opts.maxShardBytes}`);
  }
  // Everything that can be refused is refused before the folder exists.
  checkWritable(model, dir);
  const tensors = plannedTensors(model, dir, dtype);
  const tokenizer = hfTokenizerFiles(model, dir);
  const ids = { bos: model.bosTokenId, eos: model.eosTokenIds };
  const config = hfConfigJson(model.config, ids, DTYPE[dtype].torch);
  const generation = { bos_token_id: ids.bos, eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos };
  const shards = shardTensors(tensors, opts.maxShardBytes ?? Number.POSITIVE_INFINITY);

  await writeFolderAtomically(dir, opts.overwrite ?? false, async (tmp) => {
    await writeFile(join(tmp, "config.json"), json(config));
    await writeFile(join(tmp, "generation_config.json"), json(generation));
    await writeFile(join(tmp, "tokenizer.json"), json(tokenizer.tokenizerJson));
    await writeFile(join(tmp, "tokenizer_config.json"), json(tokenizer.tokenizerConfig));
    if (shards.length <= 1) {
      await writeSafetensors(join(tmp, "model.safetensors"), shards[0] ?? []);
      return;
    }
    const pad = (i: number) => String(i).padStart(5, "0");
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
      await writeSafetensors(join(tmp, file), shard);
      for (const t of shard) weightMap[t.name] = file;
    }
    const totalSize = tensors.reduce((a, t) => a + t.byteLength, 0);
    await writeFile(
      join(tmp, "model.safetensors.index.json"),
      json({ metadata: { total_size: totalSize }, weight_map: weightMap }),
    );
  });
}
