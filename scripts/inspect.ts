/**
 * `npm run inspect -- <model path>`: what a model file holds — architecture, parameter count,
 * a tensor table and a tokenizer summary. Reads metadata and tensor headers only; no weights.
 */

import {
  type ModelDescription,
  ModelImportError,
  parameterCount,
  type TokenizerSpec,
} from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import { table } from "./lib/table.ts";

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function tokenizerSummary(spec: TokenizerSpec): string[] {
  if (spec.kind === "hf") {
    const json = spec.tokenizerJson as {
      model?: { type?: string; vocab?: object };
      added_tokens?: unknown[];
    };
    return [
      "kind: Hugging Face tokenizer.json",
      `model: ${json.model?.type ?? "?"}, vocab ${Object.keys(json.model?.vocab ?? {}).length}`,
      `added tokens: ${json.added_tokens?.length ?? 0}`,
    ];
  }
  const special = spec.tokenTypes.filter((t) => t === 3 || t === 4).length;
  const name = (id: number | null) => (id === null ? "none" : `${id} ${JSON.stringify(spec.tokens[id])}`);
  const lines = [
    `kind: ${spec.kind === "llama-spm" ? "llama sentencepiece (GGUF)" : "byte-level BPE (GGUF gpt2)"}`,
    `vocab: ${spec.tokens.length}, special/control: ${special}`,
    `bos: ${name(spec.bosId)}, eos: ${name(spec.eosId)}, add bos: ${spec.addBos}`,
  ];
  if (spec.kind === "llama-spm") {
    lines.push(`byte-fallback tokens: ${spec.tokenTypes.filter((t) => t === 6).length}`);
    lines.push(`add space prefix: ${spec.addSpacePrefix}`);
  } else lines.push(`merges: ${spec.merges.length}, pre-tokenizer: ${spec.pre ?? "default"}`);
  return lines;
}

export function describe(model: ModelDescription): string {
  const c = model.config;
  const out: string[] = [];
  out.push(`source: ${model.source.format} ${model.source.path}`);
  out.push(`architecture: ${c.architecture}`);
  out.push(`parameters: ${parameterCount(model).toLocaleString("en-US")}`);
  out.push(
    `layers ${c.numLayers}, hidden ${c.hiddenSize}, ffn ${c.intermediateSize}, heads ${c.numHeads} (kv ${c.numKvHeads}, head dim ${c.headDim}), vocab ${c.vocabSize}`,
  );
  out.push(
    `rope: theta ${c.ropeTheta}, ${c.ropeStyle} layout; rms eps ${c.rmsNormEps}; context ${c.maxContext}; tied embeddings ${c.tiedEmbeddings}; qkv bias ${c.attentionBias}`,
  );
  out.push(`chat template: ${model.chatTemplate ? `${model.chatTemplate.length} chars` : "none"}`);
  out.push("");
  const rows = [["tensor", "shape", "dtype", "bytes"]];
  let total = 0;
  for (const t of model.tensors.values()) {
    rows.push([t.name, `[${t.shape.join(", ")}]`, t.dtype, formatBytes(t.byteLength)]);
    total += t.byteLength;
  }
  rows.push(["total", "", "", formatBytes(total)]);
  out.push(table(rows[0]!, rows.slice(1)));
  out.push("");
  out.push("tokenizer:");
  for (const line of tokenizerSummary(model.tokenizer)) out.push(`  ${line}`);
  return out.join("\n");
}

async function main(): Promise<void> {
  const path = process.argv[2];
  if (!path) {
    console.error("usage: npm run inspect -- <model.gguf | hugging-face-folder>");
    process.exit(2);
  }
  try {
    console.log(describe(await loadModel(path)));
  } catch (e) {
    if (e instanceof ModelImportError) {
      console.error(`error: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
