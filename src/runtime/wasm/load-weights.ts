/**
 * Streams a packed model's data region straight into WebAssembly memory: each chunk is copied once,
 * from the network/file buffer to its final place, so no second full copy of the weights ever lives
 * in JS memory. Memory grows once, up front, so views stay valid while chunks arrive.
 */
import type { WeightTable } from "../../format/weights.ts";
import { WEIGHT_ALIGNMENT } from "../../format/weights.ts";
import type { WasmKernels } from "../../kernels/wasm/index.ts";

export interface LoadProgress {
  bytes: number;
  totalBytes: number;
  /** Tensors whose bytes have all arrived (in table order). */
  tensorsReady: number;
}

export class WeightStreamError extends Error {
  override readonly name = "WeightStreamError";
}

/**
 * Reads a data region's stream, handing each chunk to `sink` with its offset in the region, and
 * checks it is exactly as long as the table declares. Shared by every engine's loader.
 */
export async function readRegion(
  table: WeightTable,
  stream: ReadableStream<Uint8Array>,
  sink: (chunk: Uint8Array, offset: number) => void,
  onProgress?: (p: LoadProgress) => void,
): Promise<void> {
  const reader = stream.getReader();
  let pos = 0;
  let ready = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (pos + value.byteLength > table.totalBytes) {
        throw new WeightStreamError(
          `weight stream is longer than the ${table.totalBytes} bytes its table declares`,
        );
      }
      sink(value, pos);
      pos += value.byteLength;
      while (ready < table.tensors.length) {
        const t = table.tensors[ready]!;
        if (t.offset + t.bytes > pos) break;
        ready++;
      }
      onProgress?.({ bytes: pos, totalBytes: table.totalBytes, tensorsReady: ready });
    }
  } finally {
    reader.releaseLock();
  }
  if (pos !== table.totalBytes) {
    throw new WeightStreamError(`weight stream ended after ${pos} of ${table.totalBytes} bytes`);
  }
}

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
