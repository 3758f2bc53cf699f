/// <reference types="@webgpu/types" />
/**
 * Streams a packed model's data region into one GPU storage buffer, chunk by chunk as it arrives
 * (queue.writeBuffer; no full copy of the weights is ever held in JS memory), and keeps the 32-byte
 * header of every int4 / int8 blob so the engine can validate them against the weight table.
 */

import { BLOB_HEADER_BYTES } from "../../format/int4.ts";
import type { WeightTable } from "../../format/weights.ts";
import { BufferUsage, type WebGpuDevice, WebGpuError } from "../../kernels/webgpu/device.ts";
import { type LoadProgress, readRegion } from "../engine-core.ts";

export interface GpuWeights {
  readonly buffer: GPUBuffer;
  /** First 32 bytes of each int4 / int8 tensor, by name. */
  readonly headers: ReadonlyMap<string, Uint8Array>;
}

export async function loadWeightsToGpu(
  gpu: WebGpuDevice,
  table: WeightTable,
  stream: ReadableStream<Uint8Array>,
  onProgress?: (p: LoadProgress) => void,
): Promise<GpuWeights> {
  const size = Math.ceil(table.totalBytes / 4) * 4;
  if (size > gpu.limits.maxBufferSize) {
    throw new WebGpuError(
      `the ${table.totalBytes}-byte data region exceeds this device's buffer limit (${gpu.limits.maxBufferSize})`,
    );
  }
  const buffer = gpu.buffer(
    size,
    BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC,
    "weights",
  );
  const queue = gpu.device.queue;
  const blobs = table.tensors.filter((t) => t.encoding.kind !== "f32");
  const headers = new Map(blobs.map((t) => [t.name, new Uint8Array(BLOB_HEADER_BYTES)]));
  let nextHeader = 0;
  // writeBuffer wants 4-byte multiples: up to 3 bytes wait in `carry` for the next chunk.
  const carry = new Uint8Array(4);
  let carried = 0;
  const sink = (value: Uint8Array, pos: number) => {
    const end = pos + value.byteLength;
    while (nextHeader < blobs.length) {
      const t = blobs[nextHeader]!;
      if (t.offset >= end) break;
      const from = Math.max(t.offset, pos);
      const to = Math.min(t.offset + BLOB_HEADER_BYTES, end);
      if (to > from) headers.get(t.name)!.set(value.subarray(from - pos, to - pos), from - t.offset);
      if (t.offset + BLOB_HEADER_BYTES > end) break;
      nextHeader++;
    }
    let i = 0;
    if (carried > 0) {
      const take = Math.min(4 - carried, value.byteLength);
      carry.set(value.subarray(0, take), carried);
      carried += take;
      i = take;
      if (carried === 4) {
        queue.writeBuffer(buffer, pos - (carried - take), carry);
        carried = 0;
      }
    }
    const body = (value.byteLength - i) & ~3;
    if (body > 0) queue.writeBuffer(buffer, pos + i, value.subarray(i, i + body) as Uint8Array<ArrayBuffer>);
    const rest = value.byteLength - i - body;
    if (rest > 0) {
      carry.set(value.subarray(i + body), 0);
      carried = rest;
    }
  };
  try {
    await readRegion(table, stream, sink, onProgress);
  } catch (e) {
    buffer.destroy();
    throw e;
  }
  if (carried > 0) {
    carry.fill(0, carried);
    queue.writeBuffer(buffer, table.totalBytes - carried, carry);
  }
  return { buffer, headers };
}
