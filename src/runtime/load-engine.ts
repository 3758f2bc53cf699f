/**
 * What a host (the Worker, a CLI, a browser page) needs to run a packed model, without knowing the
 * kernels: give it the compiled kernels module, the weight table and a stream of the data region.
 */
import type { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { ENGINE_CONTEXT, HEAD_ROWS, planWasmMemory } from "./memory-plan.ts";
import { WasmEngine, type WasmEngineOptions } from "./wasm/engine.ts";

export { ENGINE_CONTEXT, engineContextFor } from "./memory-plan.ts";

export type { WasmEngineOptions };
export { WasmEngine };

export async function loadEngine(
  kernelsModule: WebAssembly.Module | BufferSource,
  table: WeightTable,
  weights: ReadableStream<Uint8Array>,
  opts: WasmEngineOptions = {},
): Promise<WasmEngine> {
  return WasmEngine.load(await WasmKernels.create(kernelsModule), table, weights, opts);
}

/**
 * Bytes of WebAssembly memory an engine for `table` takes once loaded (weights + buffers + KV cache,
 * whole pages): the memory plan WasmEngine allocates by (./memory-plan.ts).
 */
export function estimateEngineBytes(
  table: WeightTable,
  contextSize: number,
  kvCache: "f16" | "q8" = "f16",
  headRows?: number,
): number {
  return planWasmMemory(table, { contextSize, kvCache, ...(headRows ? { headRows } : {}) }).totalBytes;
}

/** Context sizes an engine is shrunk by when the full context does not fit (keeps plans page-friendly). */
const CONTEXT_STEP = 64;

/**
 * The largest context <= maxContext whose engine (int8 KV cache where fp16 does not fit) fits
 * `budgetBytes`: maxContext itself, else a multiple of 64; 0 when not even 64 positions fit. A variant
 * whose weights leave too little room (the SmolLM2 quality tier with the source's own Q4_1 blocks:
 * 82 MB of weights under a 100 MiB budget) then serves a shorter context instead of none.
 */
export function contextThatFits(
  table: WeightTable,
  maxContext: number,
  budgetBytes: number,
  headRows?: number,
): number {
  const fits = (n: number) => estimateEngineBytes(table, n, "q8", headRows) <= budgetBytes;
  if (fits(maxContext)) return maxContext;
  for (
    let n = Math.floor((maxContext - 1) / CONTEXT_STEP) * CONTEXT_STEP;
    n >= CONTEXT_STEP;
    n -= CONTEXT_STEP
  ) {
    if (fits(n)) return n;
  }
  return 0;
}

/** The Worker's engine memory budget when ENGINE_MEMORY_BUDGET is unset: 100 MiB of an isolate's 128 MB. */
export const DEFAULT_ENGINE_BUDGET_BYTES = 100 * 1024 * 1024;

/**
 * The engine the Worker gives `table` under `budgetBytes`: the model's context (at most
 * ENGINE_CONTEXT) shrunk to what fits with a single-row head (contextThatFits; the full one when
 * nothing fits), an fp16 KV cache where that fits, else int8, and as many batched head rows (up to
 * HEAD_ROWS) as fit beside them: context comes first, so a variant whose weights leave little room
 * (8 head rows of SmolLM2 are 1.3 MiB, ~110 positions of an int8 KV cache) keeps its context and
 * batches fewer heads. The build measures prefill on this layout (the KV cache kind sets how
 * attention's cost grows with position).
 */
export function servedEngineLayout(
  table: WeightTable,
  budgetBytes: number = DEFAULT_ENGINE_BUDGET_BYTES,
): { contextSize: number; kvCache: "f16" | "q8"; headRows: number } {
  const full = Math.min(table.config.maxContext, ENGINE_CONTEXT);
  const contextSize = contextThatFits(table, full, budgetBytes, 1) || full;
  const kvCache = estimateEngineBytes(table, contextSize, "f16", 1) <= budgetBytes ? "f16" : "q8";
  const most = Math.min(HEAD_ROWS, planWasmMemory(table, { contextSize }).block);
  let headRows = most;
  while (headRows > 1 && estimateEngineBytes(table, contextSize, kvCache, headRows) > budgetBytes) headRows--;
  return { contextSize, kvCache, headRows };
}
