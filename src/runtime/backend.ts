/// <reference types="@webgpu/types" />
/**
 * Engine selection: WebGPU (our WGSL kernels) where `navigator.gpu` gives an adapter and a device,
 * else the WASM-SIMD engine. Both take the same inputs: a weight table and the data region as a
 * stream (read once: the choice is made before the first byte is consumed).
 *
 *   const { engine, backend } = await createEngine({ table, weights, wasmModule });
 *
 * backend "auto" (default) picks WebGPU when a GPU is given (`gpu`, else `navigator.gpu`) and yields
 * a device, WASM otherwise; "webgpu" insists (throws without an adapter); "wasm" never touches WebGPU.
 * Node has no `navigator.gpu`: pass `gpu` (e.g. from src/kernels/webgpu/node.ts) or a ready `device`.
 */
import type { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { WebGpuDevice, type WebGpuDeviceOptions } from "../kernels/webgpu/device.ts";
import type { LoadProgress } from "./engine-core.ts";
import { WasmEngine, type WasmEngineOptions } from "./wasm/engine.ts";
import { WebGpuEngine, type WebGpuEngineOptions } from "./webgpu/engine.ts";

export type BackendChoice = "auto" | "webgpu" | "wasm";

export interface CreateEngineOptions {
  table: WeightTable;
  weights: ReadableStream<Uint8Array>;
  /** Default "auto". */
  backend?: BackendChoice;
  /**
   * The WASM kernels (kernels.wasm as a compiled module in Workers, its bytes in Node, or a factory);
   * needed only when the WASM engine is chosen.
   */
  wasmModule?: WebAssembly.Module | BufferSource | (() => Promise<WasmKernels>);
  /** The WebGPU entry point; default `navigator.gpu` (absent in Node and workerd). null: none. */
  gpu?: GPU | null;
  /** A device to use instead of requesting one (not destroyed by `dispose`). */
  device?: WebGpuDevice;
  deviceOptions?: WebGpuDeviceOptions;
  wasm?: WasmEngineOptions;
  webgpu?: WebGpuEngineOptions;
  onProgress?: (p: LoadProgress) => void;
}

export type CreatedEngine =
  | { backend: "webgpu"; engine: WebGpuEngine; device: WebGpuDevice; reason: string; dispose(): void }
  | { backend: "wasm"; engine: WasmEngine; reason: string; dispose(): void };

/** The default WebGPU entry point of this runtime, if any. */
export function defaultGpu(): GPU | null {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? null;
}

/**
 * The first kernel build this runtime can run exactly, in order of preference: one that fails
 * WebAssembly.validate (e.g. relaxed SIMD missing) or its load-time exactness check (an inexact relaxed
 * dot-add) is skipped. Throws the last build's error when none loads.
 */
export async function firstUsableKernels(builds: readonly BufferSource[]): Promise<WasmKernels> {
  let last: unknown = new Error("no kernel build given");
  for (const b of builds) {
    if (!WebAssembly.validate(b)) {
      last = new Error("this runtime cannot compile the kernel build (WebAssembly.validate failed)");
      continue;
    }
    try {
      return await WasmKernels.create(b);
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

export async function createEngine(opts: CreateEngineOptions): Promise<CreatedEngine> {
  const choice = opts.backend ?? "auto";
  if (choice !== "auto" && choice !== "webgpu" && choice !== "wasm") {
    throw new RangeError(`backend must be "auto", "webgpu" or "wasm", got ${String(choice)}`);
  }
  let reason = "backend: wasm requested";
  if (choice !== "wasm") {
    let device = opts.device ?? null;
    const owned = !device;
    if (!device) {
      const gpu = opts.gpu === undefined ? defaultGpu() : opts.gpu;
      if (gpu) {
        device = await WebGpuDevice.create(gpu, opts.deviceOptions);
        reason = device ? "" : "navigator.gpu gave no adapter or device";
      } else reason = "navigator.gpu is absent";
    }
    if (device) {
      const webgpu = { ...opts.webgpu, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
      let engine: WebGpuEngine;
      try {
        engine = await WebGpuEngine.load(device, opts.table, opts.weights, webgpu);
      } catch (e) {
        if (owned) device.destroy();
        throw e;
      }
      const dev = device;
      return {
        backend: "webgpu",
        engine,
        device: dev,
        reason: `WebGPU adapter ${dev.adapterName || "(unnamed)"}`,
        dispose() {
          engine.destroy();
          if (owned) dev.destroy();
        },
      };
    }
    if (choice === "webgpu") throw new Error(`WebGPU backend requested, but ${reason}`);
  }
  const src = opts.wasmModule;
  if (!src) throw new Error(`the WASM engine needs wasmModule (${reason})`);
  const kernels = typeof src === "function" ? await src() : await WasmKernels.create(src);
  const wasm = { ...opts.wasm, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
  const engine = await WasmEngine.load(kernels, opts.table, opts.weights, wasm);
  return { backend: "wasm", engine, reason, dispose() {} };
}
