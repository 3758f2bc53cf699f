/// <reference types="@webgpu/types" />
/**
 * Node-only: a WebGPU device from Dawn (the `webgpu` package, a devDependency). Tries Dawn's default
 * backend (Vulkan on Linux: lavapipe on GPU-less machines once scripts/ci-gpu-setup.sh ran), then
 * Dawn's OpenGL ES backend on Mesa's EGL without a display (EGL_PLATFORM=surfaceless, a
 * compatibility-mode adapter: no f16, no subgroups). Browsers and workers use `navigator.gpu` with
 * `WebGpuDevice.create` directly and never load this module.
 */
import { WebGpuDevice, type WebGpuDeviceOptions } from "./device.ts";

interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

let dawn: Promise<DawnModule | null> | null = null;

/** The `webgpu` package with its globals (GPUBufferUsage, ...) installed, or null if it won't load. */
export function loadDawn(): Promise<DawnModule | null> {
  dawn ??= import("webgpu")
    .then((m: DawnModule) => {
      for (const [k, v] of Object.entries(m.globals)) {
        if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
      }
      return m;
    })
    .catch(() => null);
  return dawn;
}

/** Dawn's default backend on this platform. */
const DEFAULT_BACKEND =
  process.platform === "darwin" ? "metal" : process.platform === "win32" ? "d3d12" : "vulkan";

export type NodeGpuBackend = "default" | "opengles";

export interface NodeDeviceOptions extends WebGpuDeviceOptions {
  /** Backends to try in order (default: Dawn's default, then OpenGL ES). */
  backends?: readonly NodeGpuBackend[];
}

/** A Dawn `GPU` object for one backend (a fresh Dawn instance each call). */
export async function nodeGpu(backend: NodeGpuBackend = "default"): Promise<GPU | null> {
  const m = await loadDawn();
  if (!m) return null;
  if (backend === "opengles") {
    // Mesa EGL without X/Wayland; must be set before Dawn opens EGL.
    process.env.EGL_PLATFORM ??= "surfaceless";
    return m.create(["backend=opengles"]);
  }
  return m.create([]);
}

/** The Dawn `GPU` object of the first backend that gives an adapter (default, then OpenGL ES), or null. */
export async function nodeGpuWithAdapter(): Promise<GPU | null> {
  for (const backend of ["default", "opengles"] as const) {
    const gpu = await nodeGpu(backend);
    if (!gpu) return null;
    const adapter =
      (await gpu.requestAdapter()) ?? (await gpu.requestAdapter({ featureLevel: "compatibility" }));
    if (adapter) return gpu;
  }
  return null;
}

/**
 * A device from the first backend that gives an adapter; null when none does (no driver installed,
 * or the `webgpu` package is missing). Call `destroy()` on it when done, or Node will not exit.
 */
export async function requestNodeDevice(opts: NodeDeviceOptions = {}): Promise<WebGpuDevice | null> {
  for (const backend of opts.backends ?? (["default", "opengles"] as const)) {
    let gpu: GPU | null = await nodeGpu(backend);
    if (!gpu) return null;
    const dev = await WebGpuDevice.create(gpu, {
      ...opts,
      backend: backend === "opengles" ? "opengles" : DEFAULT_BACKEND,
      ...(backend === "opengles" ? { featureLevel: "compatibility" } : {}),
    });
    gpu = null;
    if (dev) return dev;
  }
  return null;
}
