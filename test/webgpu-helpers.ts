/// <reference types="@webgpu/types" />
/**
 * Shared by test/webgpu-*.test.ts: a Dawn device (or null, and then the suites skip with NO_ADAPTER),
 * and array-in / array-out wrappers around the kernels for kernel-vs-reference tests.
 */
import { WebGpuDevice, type WebGpuDeviceOptions } from "../src/kernels/webgpu/device.ts";
import { type Dispatch, type StepValues, WebGpuKernels } from "../src/kernels/webgpu/kernels.ts";
import { requestNodeDevice } from "../src/kernels/webgpu/node.ts";

export const NO_ADAPTER =
  "SKIPPED: no WebGPU adapter (Dawn found no Vulkan or OpenGL ES driver; run scripts/ci-gpu-setup.sh, as .ci/run does)";

/** A device from Dawn (Vulkan, else OpenGL ES); null when this machine has no usable driver. */
export async function openTestDevice(opts: WebGpuDeviceOptions = {}): Promise<WebGpuDevice | null> {
  const dev = await requestNodeDevice(opts);
  // In CI (.ci/run installs the driver) a missing adapter is a failure, never a silent skip.
  if (!dev && process.env.CI) throw new Error(`CI=${process.env.CI}: ${NO_ADAPTER}`);
  if (!dev) console.warn(`webgpu tests: ${NO_ADAPTER}`);
  return dev;
}

/** Array conveniences over WebGpuKernels: upload, run one pass, read back. */
export class KernelHarness {
  readonly k: WebGpuKernels;
  private readonly owned: GPUBuffer[] = [];

  constructor(readonly gpu: WebGpuDevice) {
    this.k = new WebGpuKernels(gpu);
  }

  /** A storage buffer with `data` at byte `at` (zeros before it and `pad` bytes of zeros after). */
  buffer(data: ArrayBufferView | number, at = 0, pad = 64): GPUBuffer {
    const len = typeof data === "number" ? data : data.byteLength;
    const b = this.gpu.storage(at + len + pad);
    if (typeof data !== "number") this.gpu.write(b, at, data);
    this.owned.push(b);
    return b;
  }

  f32(data: Float32Array, padTo = data.length): GPUBuffer {
    const out = new Float32Array(Math.max(padTo, data.length));
    out.set(data);
    return this.buffer(out);
  }

  async run(dispatches: Dispatch[], step: StepValues): Promise<void> {
    this.k.run(dispatches, step);
    await this.gpu.device.queue.onSubmittedWorkDone();
  }

  async readF32(b: GPUBuffer, n: number, offsetFloats = 0): Promise<Float32Array> {
    return new Float32Array(await this.gpu.read(b, offsetFloats * 4, n * 4));
  }

  async readU32(b: GPUBuffer, n: number): Promise<Uint32Array> {
    return new Uint32Array(await this.gpu.read(b, 0, n * 4));
  }

  release(): void {
    for (const b of this.owned.splice(0)) b.destroy();
    this.k.destroy();
  }
}

export { WebGpuDevice };
