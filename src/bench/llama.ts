/**
 * node-llama-cpp (native llama.cpp, CPU prebuilt binary, 1 thread): a Q4_0 GGUF export of the same
 * synthetic weights (every matrix Q4_0, the head included) or, for the real model, its own GGUF file;
 * prompt in one batch, then greedy decode.
 * Prefill = time to the first generated token (prompt batch + sampling it), decode = the rest.
 */
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { TensorNames } from "../format/model.ts";
import { ggmlTypeFor } from "../model/export/gguf.ts";
import { ggmlByteLength } from "../model/export/gguf-file.ts";
import { writeGguf } from "../model/export/index.ts";
import { type BenchOptions, type BenchRow, CpuMeter, log, type PackedShape, promptIds } from "./common.ts";
import { contextSizeFor } from "./wasm-node.ts";

/** Bytes of the GGUF tensors a decode step reads (all but the token embedding, unless it is the head). */
function ggufBytesPerToken(p: PackedShape): number {
  let sum = 0;
  for (const [name, t] of p.model.tensors) {
    if (name === TensorNames.tokenEmbedding && !p.model.config.tiedEmbeddings) continue;
    if (name === TensorNames.output && p.model.config.tiedEmbeddings) continue; // not written
    sum += ggmlByteLength(ggmlTypeFor(t.shape, "q4_0"), t.shape);
  }
  return sum;
}

/** A loaded Q4_0 model + 1-thread context: `run(steps)` times one prompt + greedy decode. */
export interface LlamaRunner {
  /** decodeCpuMs: this process's CPU time over the decode part (llama.cpp computes on its 1 thread here). */
  run(steps: number): Promise<{ prefillMs: number; decodeMs: number; decodeCpuMs: number }>;
  row(o: BenchOptions, prefillMs: number, decodeMs: number, cpuShare: number | null): BenchRow;
  dispose(): Promise<void>;
}

/**
 * An existing GGUF for llama.cpp to run as is (the real model's own file, its native quant types)
 * instead of a Q4_0 export of `p`'s weights.
 */
export interface LlamaSource {
  file: string;
  /** How the file stores its weights, for the row ("q4_1 (q8_0 head)"). */
  quant: string;
}

/** Weight bytes a decode step reads from `p.model` as its source file stores it (GGUF tensors). */
function sourceBytesPerToken(p: PackedShape): number {
  let sum = 0;
  for (const [name, t] of p.model.tensors) {
    if (name === TensorNames.tokenEmbedding && !p.model.config.tiedEmbeddings) continue;
    sum += t.byteLength;
  }
  return sum;
}

export async function startLlama(
  p: PackedShape,
  o: BenchOptions,
  source?: LlamaSource,
): Promise<LlamaRunner> {
  const file = source?.file ?? path.join(os.tmpdir(), `shardlm-bench-${p.shape}-${process.pid}-q4_0.gguf`);
  if (!source) {
    const t0 = performance.now();
    await writeGguf(p.model, file, { dtype: "q4_0", name: `synthetic ${p.shape}` });
    log(`    node-llama-cpp: Q4_0 GGUF written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file });
  const batchSize = 512;
  const context = await model.createContext({ contextSize: contextSizeFor(p), threads: 1, batchSize });
  const sequence = context.getSequence();
  const prompt = promptIds(o.promptTokens, p.table.config.vocabSize) as Token[];
  const run = async (steps: number) => {
    await sequence.clearHistory();
    const start = performance.now();
    let first = start;
    let cpu0 = process.cpuUsage();
    let n = 0;
    for await (const _ of sequence.evaluate(prompt, { temperature: 0 })) {
      if (n === 0) {
        first = performance.now();
        cpu0 = process.cpuUsage();
      }
      if (++n > steps) break;
    }
    const c = process.cpuUsage(cpu0);
    return {
      prefillMs: first - start,
      decodeMs: performance.now() - first,
      decodeCpuMs: (c.user + c.system) / 1000,
    };
  };
  await run(8);
  return {
    run,
    row: (o, prefillMs, decodeMs, cpuShare) => ({
      engine: "node-llama-cpp",
      runtime: "native",
      model_shape: p.shape,
      quant: source?.quant ?? "q4_0",
      decode_tok_s: (o.decodeTokens * 1000) / decodeMs,
      prefill_tok_s: (o.promptTokens * 1000) / prefillMs,
      peak_mem_bytes: model.size + context.stateSize,
      bytes_per_token: source ? sourceBytesPerToken(p) : ggufBytesPerToken(p),
      prompt_tokens: o.promptTokens,
      decode_tokens: o.decodeTokens,
      threads: context.currentThreads,
      cpu_share: cpuShare,
      batch_size: context.batchSize,
      context_size: context.contextSize,
      flash_attention: context.flashAttention,
      kv_cache: "f16",
      speculative: false,
      note: `llama.cpp CPU build, ${context.currentThreads} thread, batch ${context.batchSize} (prompt in one batch); memory = model + context state (compute buffers not counted)`,
    }),
    async dispose() {
      await context.dispose();
      await model.dispose();
      if (!source) await rm(file, { force: true });
    },
  };
}

export async function llamaRow(p: PackedShape, o: BenchOptions, source?: LlamaSource): Promise<BenchRow> {
  const runner = await startLlama(p, o, source);
  try {
    let prefillMs = Number.POSITIVE_INFINITY;
    let decodeMs = Number.POSITIVE_INFINITY;
    const meter = new CpuMeter();
    for (let r = 0; r < o.repeats; r++) {
      const t = await meter.measure(() => runner.run(o.decodeTokens));
      prefillMs = Math.min(prefillMs, t.prefillMs);
      decodeMs = Math.min(decodeMs, t.decodeMs);
    }
    return runner.row(o, prefillMs, decodeMs, meter.share);
  } finally {
    await runner.dispose();
  }
}
