/**
 * Shared pieces of `npm run bench` (scripts/bench.ts): the result row, options, timing, and the
 * synthetic models packed once per shape.
 */

import type { ModelDescription } from "../format/model.ts";
import { TensorNames } from "../format/model.ts";
import { type PackedTensor, type PackOptions, packWeights, quantizeModelRtn } from "../format/pack.ts";
import type { WeightTable } from "../format/weights.ts";
import { type ModelShape, syntheticModel } from "../model/synthetic.ts";

export const ENGINES = [
  "shardlm-wasm",
  "shardlm-webgpu",
  "shardlm-ref",
  "onnxruntime-web",
  "node-llama-cpp",
] as const;
export type EngineName = (typeof ENGINES)[number];

/** One line of the benchmark (also the `--json` object). */
/** A synthetic shape, or the real default model (`npm run bench -- --real`). */
export type BenchShape = ModelShape | "SmolLM2-135M-Instruct";

export interface BenchRow {
  engine: EngineName;
  runtime: string;
  model_shape: BenchShape;
  quant: string;
  decode_tok_s: number;
  prefill_tok_s: number;
  /** Peak memory of the engine (wasm memory for ours and ORT's session; see `note`). null: not measured. */
  peak_mem_bytes: number | null;
  /** Weight bytes read per decoded token (every linear layer + the head; one embedding row is ignored). */
  bytes_per_token: number;
  prompt_tokens: number;
  decode_tokens: number;
  threads: number;
  /**
   * CPU time this process used / wall time, over the timed runs (single-threaded engines: ~1.0 on an
   * idle machine; lower means other processes took the core and the numbers are pessimistic).
   * null where the engine runs in another process (workerd).
   */
  cpu_share: number | null;
  note: string;
  [extra: string]: unknown;
}

export interface BenchOptions {
  shapes: ModelShape[];
  quick: boolean;
  json: boolean;
  /** Fixed prompt length and number of greedy steps. */
  promptTokens: number;
  decodeTokens: number;
  /** Timed repetitions (best is kept: the 2-core boxes are shared). */
  repeats: number;
  engines: Set<EngineName | "workerd">;
  profile: boolean;
  /** The kernel table (GB/s, instructions per 32 weights, batched per-row cost). */
  kernels: boolean;
  /** Also run the relaxed-SIMD build in Node (sets V8's --experimental-wasm-relaxed-simd). */
  relaxed: boolean;
}

/** Progress and notes: stderr, so `--json` output on stdout stays machine-readable. */
export function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** The fixed prompt: deterministic ids past the special and byte tokens. */
export function promptIds(n: number, vocab: number, salt = 0): number[] {
  const out: number[] = [1];
  for (let i = 1; i < n; i++) out.push(300 + ((i * 7919 + salt * 104729) % (vocab - 300)));
  return out;
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Wall and CPU time of this process over measured sections. */
export class CpuMeter {
  wallMs = 0;
  cpuMs = 0;

  async measure<T>(fn: () => Promise<T> | T): Promise<T> {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.wallMs += performance.now() - t0;
      const c = process.cpuUsage(c0);
      this.cpuMs += (c.user + c.system) / 1000;
    }
  }

  get share(): number | null {
    return this.wallMs > 0 ? this.cpuMs / this.wallMs : null;
  }
}

/** Minimum of `repeats` runs of fn (ms). */
export async function bestOf(repeats: number, fn: () => Promise<number> | number): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < repeats; i++) best = Math.min(best, await fn());
  return best;
}

export interface PackedShape {
  shape: BenchShape;
  model: ModelDescription;
  /** The packing our engine rows use. */
  table: WeightTable;
  data: Uint8Array;
  packed: PackedTensor[];
  pack: PackOptions;
  bytesPerToken: number;
}

/**
 * Weight bytes a decode step reads from a packed model: every tensor but the token embedding (one
 * row of it is read), plus the embedding again when it doubles as the head.
 */
export function bytesPerToken(table: WeightTable): number {
  let sum = 0;
  for (const t of table.tensors) {
    if (t.name === TensorNames.tokenEmbedding && !table.config.tiedEmbeddings) continue;
    sum += t.bytes;
  }
  return sum;
}

/** SmolLM2-135M runs as the memory target asks: int4 embeddings (tied head). */
export function packOptionsFor(shape: ModelShape): PackOptions {
  return shape === "SmolLM2-135M" ? { groupSize: 32, embeddings: "int4" } : { groupSize: 32 };
}

const packedCache = new Map<ModelShape, PackedShape>();

export function packedShape(shape: ModelShape): PackedShape {
  const hit = packedCache.get(shape);
  if (hit) return hit;
  const t0 = performance.now();
  const model = syntheticModel(shape);
  const pack = packOptionsFor(shape);
  const packed = quantizeModelRtn(model, pack);
  const { table, data } = packWeights(model, packed);
  const p = { shape, model, table, data, packed, pack, bytesPerToken: bytesPerToken(table) };
  log(
    `  ${shape}: synthetic weights packed (${(data.byteLength / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  packedCache.set(shape, p);
  return p;
}

/** Drops a shape's models (the next shape gets the memory). */
export function forgetShape(shape: ModelShape): void {
  packedCache.delete(shape);
}

/** The seven linear weights of block `l`, in forward order (what one token reads per block). */
export function blockLinears(l: number): string[] {
  return [
    TensorNames.attnQ(l),
    TensorNames.attnK(l),
    TensorNames.attnV(l),
    TensorNames.attnOutput(l),
    TensorNames.ffnGate(l),
    TensorNames.ffnUp(l),
    TensorNames.ffnDown(l),
  ];
}
