/**
 * Streams a packed model's data region straight into WebAssembly memory: each chunk is copied once,
 * from the network/file buffer to its final place, so no second full copy of the weights ever lives
 * in JS memory. Memory grows once, up front, so views stay valid while chunks arrive.
 */
import type { WeightTable } from "../../format/weights.ts";
import { WEIGHT_ALIGNMENT } from "../../format/weights.ts";
import type { WasmKernels } from "../../kernels/wasm/index.ts";
import { type LoadProgress, readRegion } from "../engine-core.ts";

/** Copies the stream into fresh wasm memory; returns the address of the data region. */
export async function loadWeights(
  kernels: WasmKernels,
  table: WeightTable,
  stream: ReadableStream<Uint8Array>,
  onProgress?: (p: LoadProgress) => void,
): Promise<number> {
  const base = kernels.allocZeroed(table.totalBytes, WEIGHT_ALIGNMENT);
  await readRegion(
    table,
    stream,
    (chunk, offset) => kernels.u8(base + offset, chunk.byteLength).set(chunk),
    onProgress,
  );
  return base;
}

/** A ReadableStream over bytes already in memory, in chunks (tests, Node file loads). */
export function bytesToStream(bytes: Uint8Array, chunkSize = 1 << 20): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pos >= bytes.byteLength) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.subarray(pos, pos + chunkSize));
      pos += chunkSize;
    },
  });
}
