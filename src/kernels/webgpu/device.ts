/// <reference types="@webgpu/types" />
/**
 * A small wrapper over one GPUDevice for the WGSL kernels (./wgsl.ts): picks the optional features
 * the kernels can use (`shader-f16`, `subgroups`, each only after a feature check, with plain
 * fallbacks), caches compiled pipelines by source, and holds buffer helpers.
 *
 * Works with any `GPU` object: a browser's / worker's `navigator.gpu`, or Dawn for Node (./node.ts).
 * Nothing here touches WebGPU globals at module load (`GPUBufferUsage` and friends are spelled as
 * numbers below), so importing this module where WebGPU does not exist (workerd, Node without Dawn)
 * is harmless.
 *
 * Lifetime: `destroy()` destroys the device and drops every reference this wrapper holds (adapter,
 * GPU object); Dawn for Node keeps the process alive while any of them is reachable.
 */

/** GPUBufferUsage / GPUMapMode bits (same values as the WebGPU globals, usable without them). */
export const BufferUsage = {
  MAP_READ: 0x1,
  MAP_WRITE: 0x2,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
} as const;
export const MAP_READ = 0x1;

export interface WebGpuDeviceOptions {
  /** Use `shader-f16` when the adapter has it (default true; false forces the plain path). */
  f16?: boolean;
  /** Use `subgroups` when the adapter has it and it passes the layout probe (default true). */
  subgroups?: boolean;
  powerPreference?: GPUPowerPreference;
  /**
   * Workgroups a matvec is folded into on a CPU adapter (lavapipe, SwiftShader: a workgroup per thread,
   * with a fixed cost each); default 64 there, 0 (one workgroup per row block) on GPUs.
   */
  cpuWorkgroups?: number;
  /** Ask for a compatibility-mode adapter (OpenGL ES backends); default core. */
  featureLevel?: "core" | "compatibility";
  /** Label for error messages (e.g. "vulkan", "opengles"). */
  backend?: string;
}

/** What the kernels may use on this device. */
export interface KernelFeatures {
  /** Native f16 storage (KV cache) via `enable f16;`. */
  readonly f16: boolean;
  /**
   * Subgroup reductions via `enable subgroups;`. `subgroupMinSize` lanes at a time (the reductions only
   * combine aligned runs of that many consecutive invocations, so any actual size >= it works).
   */
  readonly subgroups: boolean;
  readonly subgroupMinSize: number;
}

export class WebGpuError extends Error {
  override readonly name = "WebGpuError";
}

const PLAIN: KernelFeatures = { f16: false, subgroups: false, subgroupMinSize: 0 };

export class WebGpuDevice {
  readonly features: KernelFeatures;
  /** Adapter description ("llvmpipe ...", GPU name), for logs and bench rows. */
  readonly adapterName: string;
  /** "vulkan" / "opengles" / ... when known (Node), else "". */
  readonly backend: string;
  readonly featureLevel: "core" | "compatibility";
  /** See WebGpuDeviceOptions.cpuWorkgroups (0 on GPUs). */
  readonly cpuWorkgroups: number;
  private dev: GPUDevice | null;
  private adapterRef: GPUAdapter | null;
  private gpuRef: GPU | null;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private lostInfo: string | null = null;

  private constructor(
    gpu: GPU,
    adapter: GPUAdapter,
    device: GPUDevice,
    features: KernelFeatures,
    backend: string,
    featureLevel: "core" | "compatibility",
    cpuWorkgroups: number,
  ) {
    this.gpuRef = gpu;
    this.adapterRef = adapter;
    this.dev = device;
    this.features = features;
    this.backend = backend;
    this.featureLevel = featureLevel;
    const info = adapter.info;
    this.adapterName = [info?.description, info?.vendor, info?.architecture].filter(Boolean).join(" / ");
    this.cpuWorkgroups = /llvmpipe|lavapipe|swiftshader|software/i.test(this.adapterName) ? cpuWorkgroups : 0;
    device.lost.then((l) => {
      this.lostInfo = `${l.reason}: ${l.message}`;
    });
  }

  /**
   * Requests an adapter and a device; null when `gpu` gives no adapter (or the device request fails).
   * The device gets the adapter's limits (storage buffers per stage, binding sizes, workgroup storage).
   */
  static async create(gpu: GPU, opts: WebGpuDeviceOptions = {}): Promise<WebGpuDevice | null> {
    let featureLevel = opts.featureLevel ?? "core";
    const request = async (level: "core" | "compatibility") => {
      try {
        return await gpu.requestAdapter({
          ...(opts.powerPreference ? { powerPreference: opts.powerPreference } : {}),
          ...(level === "compatibility" ? { featureLevel: "compatibility" } : {}),
        });
      } catch {
        return null;
      }
    };
    let adapter = await request(featureLevel);
    if (!adapter && featureLevel === "core") {
      // the kernels stay within compatibility-mode limits, so a compat-only adapter (GL ES) will do
      featureLevel = "compatibility";
      adapter = await request(featureLevel);
    }
    if (!adapter) return null;
    const wantF16 = (opts.f16 ?? true) && adapter.features.has("shader-f16");
    const minSg = adapter.info?.subgroupMinSize ?? 0;
    const wantSg =
      (opts.subgroups ?? true) &&
      adapter.features.has("subgroups") &&
      minSg >= 4 &&
      (minSg & (minSg - 1)) === 0;
    const requiredFeatures: GPUFeatureName[] = [];
    if (wantF16) requiredFeatures.push("shader-f16");
    if (wantSg) requiredFeatures.push("subgroups" as GPUFeatureName);
    const l = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    };
    // Compatibility mode has its own per-stage storage limit name in newer implementations.
    const compatLimit = (l as unknown as Record<string, number | undefined>).maxStorageBuffersInComputeStage;
    if (typeof compatLimit === "number") requiredLimits.maxStorageBuffersInComputeStage = compatLimit;
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    } catch {
      return null;
    }
    let features: KernelFeatures = { f16: wantF16, subgroups: wantSg, subgroupMinSize: wantSg ? minSg : 0 };
    const self = new WebGpuDevice(
      gpu,
      adapter,
      device,
      features,
      opts.backend ?? "",
      featureLevel,
      opts.cpuWorkgroups ?? 64,
    );
    if (wantSg && !(await self.subgroupLayoutIsLinear(minSg))) {
      features = { ...features, subgroups: false, subgroupMinSize: 0 };
      (self as { features: KernelFeatures }).features = features;
    }
    return self;
  }

  get device(): GPUDevice {
    if (!this.dev) throw new WebGpuError("the WebGPU device was destroyed");
    if (this.lostInfo) throw new WebGpuError(`the WebGPU device was lost (${this.lostInfo})`);
    return this.dev;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  get destroyed(): boolean {
    return this.dev === null;
  }

  /** Kernel features with f16 / subgroups switched off (to test the plain paths on any device). */
  static plain(): KernelFeatures {
    return PLAIN;
  }

  /** Destroys the device and drops the adapter and GPU references (so Node can exit). Idempotent. */
  destroy(): void {
    this.pipelines.clear();
    this.dev?.destroy();
    this.dev = null;
    this.adapterRef = null;
    this.gpuRef = null;
  }

  /** The adapter (kept reachable for as long as the device is: see the module doc). */
  get adapter(): GPUAdapter {
    if (!this.adapterRef || !this.gpuRef) throw new WebGpuError("the WebGPU device was destroyed");
    return this.adapterRef;
  }

  // ---- buffers ---------------------------------------------------------------------------------

  buffer(size: number, usage: number, label?: string): GPUBuffer {
    return this.device.createBuffer({ size: Math.max(16, Math.ceil(size / 16) * 16), usage, label });
  }

  /** A storage buffer (read/write by kernels, copy in and out) holding `data`, zero-padded to `size`. */
  storage(data: ArrayBufferView | number, label?: string): GPUBuffer {
    const size = typeof data === "number" ? data : data.byteLength;
    const b = this.buffer(size, BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC, label);
    if (typeof data !== "number") this.write(b, 0, data);
    return b;
  }

  uniform(data: ArrayBufferView, label?: string): GPUBuffer {
    const b = this.buffer(data.byteLength, BufferUsage.UNIFORM | BufferUsage.COPY_DST, label);
    this.write(b, 0, data);
    return b;
  }

  /** queue.writeBuffer of a typed array's bytes (byteLength rounded up to 4 with zeros). */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    if (bytes.byteLength > 0) this.device.queue.writeBuffer(buffer, offset, bytes as Uint8Array<ArrayBuffer>);
  }

  /** Copies `size` bytes at `offset` of a COPY_SRC buffer back to the CPU. */
  async read(src: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    const dev = this.device;
    const rounded = Math.ceil(size / 4) * 4;
    const staging = dev.createBuffer({ size: rounded, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = dev.createCommandEncoder();
    enc.copyBufferToBuffer(src, offset, staging, 0, rounded);
    dev.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = staging.getMappedRange().slice(0, size);
    staging.unmap();
    staging.destroy();
    return out;
  }

  // ---- pipelines -------------------------------------------------------------------------------

  /**
   * A compute pipeline for WGSL `code` (entry point `main`) with an explicit bind group layout, cached
   * by source + layout key. WGSL errors throw with the compiler's messages and the offending lines.
   */
  async pipeline(code: string, layout: GPUBindGroupLayout, layoutKey: string): Promise<GPUComputePipeline> {
    const key = `${layoutKey}\n${code}`;
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    const dev = this.device;
    const module = dev.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length > 0) {
      const lines = code.split("\n");
      const msg = errors
        .map((m) => `${m.lineNum}:${m.linePos} ${m.message}\n    ${lines[m.lineNum - 1] ?? ""}`)
        .join("\n");
      throw new WebGpuError(`WGSL compilation failed:\n${msg}`);
    }
    dev.pushErrorScope("validation");
    const pipeline = await dev.createComputePipelineAsync({
      layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const err = await dev.popErrorScope();
    if (err) throw new WebGpuError(`pipeline creation failed: ${err.message}`);
    this.pipelines.set(key, pipeline);
    return pipeline;
  }

  /**
   * A bind group layout for kernels whose bindings are, in order, the given kinds (all compute-visible):
   * "uniform", "read" (read-only storage), "rw" (read-write storage).
   */
  layout(kinds: readonly ("uniform" | "read" | "rw")[]): GPUBindGroupLayout {
    return this.device.createBindGroupLayout({
      entries: kinds.map((k, binding) => ({
        binding,
        visibility: 4, // GPUShaderStage.COMPUTE
        buffer: { type: k === "uniform" ? "uniform" : k === "read" ? "read-only-storage" : "storage" },
      })),
    });
  }

  /** Runs `fn` in a validation error scope; throws the first validation error it produced. */
  async validated<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    const dev = this.device;
    dev.pushErrorScope("validation");
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await fn() };
    } catch (error) {
      outcome = { ok: false, error };
    }
    const err = await dev.popErrorScope();
    if (err) throw new WebGpuError(`${what}: ${err.message}`);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /**
   * Checks that subgroup lanes are laid out linearly (invocation i of a 64-wide workgroup is lane
   * i % size of subgroup floor(i / size), size a power of two >= the adapter's minimum): the
   * reductions in ./wgsl.ts rely on it. Runs once per device.
   */
  private async subgroupLayoutIsLinear(minSize: number): Promise<boolean> {
    try {
      const dev = this.device;
      const code = /* wgsl */ `enable subgroups;
@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sz: u32) {
  let x = subgroupShuffleXor(lid, 1u);
  let first = subgroupBroadcastFirst(lid);
  let ok = sid == lid % sz && sz >= ${minSize}u && (sz & (sz - 1u)) == 0u && first == lid - sid && x == (lid ^ 1u);
  o[lid] = select(0u, 1u, ok);
}`;
      const layout = this.layout(["rw"]);
      const pipeline = await this.pipeline(code, layout, "probe");
      const out = this.storage(256);
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(
        0,
        dev.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: out } }] }),
      );
      pass.dispatchWorkgroups(1);
      pass.end();
      dev.queue.submit([enc.finish()]);
      const flags = new Uint32Array(await this.read(out, 0, 256));
      out.destroy();
      return flags.every((f) => f === 1);
    } catch {
      return false;
    }
  }
}
