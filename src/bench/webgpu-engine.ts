/// <reference types="@webgpu/types" />
/**
 * Benchmark hook for `shardlm-webgpu` rows: loads a packed model into a WebGPU engine, then times a
 * prefill of the prompt and greedy decoding (argmax on the GPU, 4 bytes read back per token), after
 * one untimed warm-up run of the same length (pipelines JIT-compile lazily on some drivers).
 *
 * The device: `opts.device`, else `navigator.gpu`, else Dawn for Node (the `webgpu` package, loaded
 * only then). A device made here is destroyed before returning.
 */
import type { WeightTable } from "../format/weights.ts";
import { WebGpuDevice } from "../kernels/webgpu/device.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import { WebGpuEngine, type WebGpuEngineOptions } from "../runtime/webgpu/engine.ts";

export interface WebgpuBenchOptions {
  /** Prompt length (deterministic synthetic ids) or the prompt itself. */
  promptTokens: number | readonly number[];
  decodeTokens: number;
  device?: WebGpuDevice;
  engine?: WebGpuEngineOptions;
  /** Timed repetitions; the best is kept (default 1). */
  repeats?: number;
}

export interface WebgpuBenchResult {
  decode_tok_s: number;
  prefill_tok_s: number;
  /** Adapter description (e.g. "llvmpipe ..." on lavapipe) and Dawn backend when known. */
  adapter: string;
  backend: string;
  features: string;
  dispatches_per_token: number;
  load_ms: number;
  gpu_bytes: number;
  prompt_tokens: number;
  decode_tokens: number;
}

/** Prompt ids past the special and byte tokens, like the wasm bench's. */
function syntheticPrompt(n: number, vocab: number): number[] {
  const out = [Math.min(1, vocab - 1)];
  const lo = Math.min(300, vocab - 1);
  for (let i = 1; i < n; i++) out.push(lo + ((i * 7919) % (vocab - lo)));
  return out;
}

async function defaultDevice(): Promise<WebGpuDevice> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const dev = nav?.gpu
    ? await WebGpuDevice.create(nav.gpu)
    : await (await import("../kernels/webgpu/node.ts")).requestNodeDevice();
  if (!dev) throw new Error("benchWebgpuDecode: no WebGPU adapter");
  return dev;
}

export async function benchWebgpuDecode(
  table: WeightTable,
  data: Uint8Array,
  opts: WebgpuBenchOptions,
): Promise<WebgpuBenchResult> {
  const prompt =
    typeof opts.promptTokens === "number"
      ? syntheticPrompt(opts.promptTokens, table.config.vocabSize)
      : [...opts.promptTokens];
  const decode = opts.decodeTokens;
  if (prompt.length < 1 || !Number.isInteger(decode) || decode < 1) {
    throw new RangeError("benchWebgpuDecode: needs at least one prompt token and one decode token");
  }
  const device = opts.device ?? (await defaultDevice());
  let engine: WebGpuEngine | null = null;
  try {
    const need = prompt.length + decode;
    const t0 = performance.now();
    engine = await WebGpuEngine.load(device, table, bytesToStream(data), {
      contextSize: Math.min(table.config.maxContext, Math.max(need, 64)),
      ...opts.engine,
    });
    const loadMs = performance.now() - t0;
    const e = engine;
    const once = async () => {
      const s = e.newState(need);
      const a = performance.now();
      let tok = await e.prefillGreedy(s, prompt);
      const b = performance.now();
      for (let i = 1; i < decode; i++) tok = await e.forwardGreedy(s, tok);
      const c = performance.now();
      return { prefillMs: b - a, decodeMs: c - b };
    };
    await once(); // warm-up
    let best = { prefill: 0, decode: 0 };
    for (let r = 0; r < (opts.repeats ?? 1); r++) {
      const t = await once();
      best = {
        prefill: Math.max(best.prefill, prompt.length / (t.prefillMs / 1000)),
        // decode steps after the first token (which prefill produced)
        decode: decode > 1 ? Math.max(best.decode, (decode - 1) / (t.decodeMs / 1000)) : 0,
      };
    }
    const f = device.features;
    return {
      decode_tok_s: best.decode,
      prefill_tok_s: best.prefill,
      adapter: device.adapterName,
      backend: device.backend,
      features:
        [f.f16 ? "shader-f16" : "", f.subgroups ? `subgroups(${f.subgroupMinSize})` : ""]
          .filter(Boolean)
          .join(",") || "plain",
      dispatches_per_token: e.dispatchesPerToken,
      load_ms: loadMs,
      gpu_bytes: e.gpuBytes,
      prompt_tokens: prompt.length,
      decode_tokens: decode,
    };
  } finally {
    engine?.destroy();
    if (!opts.device) device.destroy();
  }
}
