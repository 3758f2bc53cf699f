/**
 * Measured numbers for a variant's manifest, taken with the WASM engine that serves it:
 * quality against the original model (reference fp32 pass) on held-out text, and speed.
 */
import { cpus } from "node:os";
import type { ModelDescription } from "../../src/engine/model.ts";
import { ReferenceModel } from "../../src/engine/reference/index.ts";
import { WasmEngine } from "../../src/engine/wasm/engine.ts";
import { bytesToStream } from "../../src/engine/wasm/load-weights.ts";
import type { QualityMetrics, SpeedProfile } from "../../src/format/manifest.ts";
import type { WeightTable } from "../../src/format/weights.ts";
import { loadKernelsNode } from "../../src/kernels/wasm/node.ts";
import { ensureKernelsWasm } from "../build-wasm.ts";

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

function logSoftmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/** Anything that turns tokens into logits synchronously: the WASM engine, the reference pass. */
export interface SyncLogits<S> {
  readonly maxContext: number;
  newState(maxTokens: number): S;
  forward(state: S, tokenId: number): Float32Array;
}

/** KL(original || variant), top-1 agreement and both perplexities, teacher-forced on `sequences`. */
export function measureQuality<S>(
  original: ModelDescription,
  engine: SyncLogits<S>,
  sequences: readonly (readonly number[])[],
): QualityMetrics {
  const ref = new ReferenceModel(original);
  let kl = 0;
  let agree = 0;
  let nllRef = 0;
  let nllVar = 0;
  let n = 0;
  for (const seq of sequences) {
    const len = Math.min(seq.length, engine.maxContext);
    const rs = ref.newState(len);
    const es = engine.newState(len);
    for (let t = 0; t + 1 < len; t++) {
      const p = logSoftmax(ref.forward(rs, seq[t]!));
      const q = logSoftmax(engine.forward(es, seq[t]!));
      let d = 0;
      for (let i = 0; i < p.length; i++) d += Math.exp(p[i]!) * (p[i]! - q[i]!);
      kl += Math.max(0, d);
      if (argmax(p) === argmax(q)) agree++;
      nllRef -= p[seq[t + 1]!]!;
      nllVar -= q[seq[t + 1]!]!;
      n++;
    }
  }
  if (n === 0) throw new Error("measureQuality: no evaluation positions");
  return {
    klMean: kl / n,
    top1Agreement: agree / n,
    perplexity: Math.exp(nllVar / n),
    referencePerplexity: Math.exp(nllRef / n),
    evalTokens: n,
  };
}

/** Decode and prefill ms/token (median of `repeats`) and load ms/MB, single thread. */
export async function measureSpeed(table: WeightTable, data: Uint8Array, repeats = 3): Promise<SpeedProfile> {
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
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const s = e.newState(promptLen + decodeSteps);
    let t0 = performance.now();
    let logits = e.prefill(s, prompt);
    prefill.push((performance.now() - t0) / promptLen);
    t0 = performance.now();
    for (let i = 0; i < decodeSteps; i++) logits = e.forward(s, argmax(logits));
    decode.push((performance.now() - t0) / decodeSteps);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const mb = table.totalBytes / 1e6;
  return {
    decodeMsPerToken: Math.max(median(decode), 1e-3),
    prefillMsPerToken: Math.max(median(prefill), 1e-3),
    loadMsPerMB: Math.max(median(loads) / mb, 1e-3),
    measuredOn: `node ${process.version} wasm-simd128 1 thread, ${cpus()[0]?.model ?? "unknown cpu"}`,
  };
}
