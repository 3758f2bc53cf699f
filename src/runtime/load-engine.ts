/**
 * What a host (the Worker, a CLI, a browser page) needs to run a packed model, without knowing the
 * kernels: give it the compiled kernels module, the weight table and a stream of the data region.
 */
import type { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { PREFILL_BLOCK, WasmEngine, type WasmEngineOptions } from "./wasm/engine.ts";

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

/** Bytes of WebAssembly memory an engine for `table` will take (weights + KV cache + buffers), roughly. */
export function estimateEngineBytes(
  table: WeightTable,
  contextSize: number,
  kvCache: "f16" | "q8" = "f16",
): number {
  const c = table.config;
  const kvDim = c.numKvHeads * c.headDim;
  const kv = kvCache === "f16" ? contextSize * kvDim * 2 * 2 : contextSize * (kvDim + c.numKvHeads * 4) * 2;
  // Activation rows for a prefill block of PREFILL_BLOCK tokens, logits, kernel scratch.
  const perRow = 6 * c.hiddenSize + 2 * c.numHeads * c.headDim + 3 * c.intermediateSize;
  const buffers = 4 * (PREFILL_BLOCK * perRow + c.vocabSize) + 512 * 1024;
  return table.totalBytes + kv * c.numLayers + buffers;
}
