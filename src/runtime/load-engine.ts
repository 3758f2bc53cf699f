/**
 * What a host (the Worker, a CLI, a browser page) needs to run a packed model, without knowing the
 * kernels: give it the compiled kernels module, the weight table and a stream of the data region.
 */
import type { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { planWasmMemory } from "./memory-plan.ts";
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
): number {
  return planWasmMemory(table, { contextSize, kvCache }).totalBytes;
}

/** Context sizes an engine is shrunk by when the full context does not fit (keeps plans page-friendly). */
const CONTEXT_STEP = 64;

/**
 * The largest context <= maxContext whose engine (int8 KV cache where fp16 does not fit) fits
 * `budgetBytes`: maxContext itself, else a multiple of 64; 0 when not even 64 positions fit. A variant
 * whose weights leave too little room (the SmolLM2 quality tier with the source's own Q4_1 blocks:
 * 82 MB of weights under a 100 MiB budget) then serves a shorter context instead of none.
 */
export function contextThatFits(table: WeightTable, maxContext: number, budgetBytes: number): number {
  const fits = (n: number) => estimateEngineBytes(table, n, "q8") <= budgetBytes;
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
