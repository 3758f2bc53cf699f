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
