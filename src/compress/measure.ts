/**
 * Measured numbers for a variant's manifest, taken with the WASM engine that serves it:
 * quality against the original model (reference fp32 pass) on held-out text, and speed.
 */
import { cpus } from "node:os";
import type { QualityMetrics, SpeedProfile } from "../format/manifest.ts";
import type { ModelDescription } from "../format/model.ts";
import type { WeightTable } from "../format/weights.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { ReferenceModel } from "../model/reference/index.ts";
import { argmax } from "../runtime/sampler.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import { compareLogits, type SyncLogits } from "./evaluate.ts";

export async function engineFor(
  table: WeightTable,
  data: Uint8Array,
  contextSize?: number,
): Promise<WasmEngine> {
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  return WasmEngine.load(kernels, table, bytesToStream(data), {
    contextSize: contextSize ?? Math.min(table.config.maxContext, 2048),
  });
}

/** KL(original || variant), top-1 agreement and both perplexities, teacher-forced on `sequences`. */
export function measureQuality<S>(
  original: ModelDescription | SyncLogits<unknown>,
  engine: SyncLogits<S> & { readonly maxContext: number },
  sequences: readonly (readonly number[])[],
): QualityMetrics {
  const fitting = sequences.map((s) => s.slice(0, engine.maxContext));
  const reference = "tensors" in original ? new ReferenceModel(original) : original;
  const c = compareLogits(reference, engine, fitting);
  if (c.reference.tokens === 0) throw new Error("measureQuality: no evaluation positions");
  return {
    klMean: Math.max(0, c.meanKl),
    top1Agreement: c.top1Agreement,
    perplexity: c.candidate.perplexity,
    referencePerplexity: c.reference.perplexity,
    evalTokens: c.reference.tokens,
  };
}

/** Decode and prefill ms/token (median of `repeats`) and load ms/MB, single thread. */
/** Shortest time one timed section may take: below it, timer resolution and one GC pause decide. */
const MIN_SECTION_MS = 30;

/**
 * Decode and prefill ms/token and load ms/MB, single thread. Each is the best of `repeats` runs
 * (other processes and GC only ever add time), and each run repeats whole sequences until it has
 * lasted MIN_SECTION_MS, so a tiny model's sub-millisecond sequences are still measured.
 */
export async function measureSpeed(table: WeightTable, data: Uint8Array, repeats = 5): Promise<SpeedProfile> {
  const loads: number[] = [];
  let engine: WasmEngine | null = null;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    engine = await engineFor(table, data);
    loads.push(performance.now() - t0);
  }
  const e = engine!;
  const promptLen = Math.min(32, e.maxContext - 33);
  const decodeSteps = Math.min(32, e.maxContext - promptLen - 1);
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 1) % e.vocabSize);
  let prefill = Number.POSITIVE_INFINITY;
  let decode = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeats; r++) {
    let prefillMs = 0;
    let decodeMs = 0;
    let sequences = 0;
    while (prefillMs < MIN_SECTION_MS || decodeMs < MIN_SECTION_MS) {
      const s = e.newState(promptLen + decodeSteps);
      let t0 = performance.now();
      let logits = e.prefill(s, prompt);
      prefillMs += performance.now() - t0;
      t0 = performance.now();
      for (let i = 0; i < decodeSteps; i++) logits = e.forward(s, argmax(logits));
      decodeMs += performance.now() - t0;
      sequences++;
    }
    prefill = Math.min(prefill, prefillMs / (sequences * promptLen));
    decode = Math.min(decode, decodeMs / (sequences * decodeSteps));
  }
  const mb = table.totalBytes / 1e6;
  return {
    decodeMsPerToken: Math.max(decode, 1e-3),
    prefillMsPerToken: Math.max(prefill, 1e-3),
    loadMsPerMB: Math.max(Math.min(...loads) / mb, 1e-3),
    measuredOn: `node ${process.version} wasm-simd128 1 thread, ${cpus()[0]?.model ?? "unknown cpu"}`,
  };
}
