/**
 * shardlm-wasm in Node: our engine on the SIMD128 kernels (kernels.wasm; the relaxed-SIMD build needs
 * a flag on Node 20 and is what workerd runs), q8 activations, fp16 and int8 KV caches. Also measures
 * prefill token by token (prefillBlock 1, the engine before batched prefill) against the default
 * blocked prefill, and the per-op profile.
 */

import { TensorNames } from "../format/model.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import type { WasmKernels } from "../kernels/wasm/index.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { WasmEngine, type WasmEngineOptions } from "../runtime/wasm/engine.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import {
  type BenchOptions,
  type BenchRow,
  bestOf,
  blockLinears,
  log,
  type PackedShape,
  promptIds,
} from "./common.ts";
import { type ProfileKey, profileKernels, profileRun } from "./profile.ts";
import { runOnce, timeModel } from "./timing.ts";

/** SmolLM2 runs at the memory target's context (2048); stories at their own (256 / 1024). */
export function contextSizeFor(p: PackedShape): number {
  return Math.min(p.table.config.maxContext, 2048);
}

/**
 * Lets this Node process compile the relaxed-SIMD build (Node 20: --experimental-wasm-relaxed-simd, set
 * here before any module using it compiles; bench-only, the library never flips V8 flags). False when
 * this Node has no such flag or rejects the module.
 */
/** Node 20's relaxed build: the i16 dot (its V8 has no fast, and in Liftoff no exact, i32 dot-add). */
export const NODE_RELAXED = { relaxed: true, i16Dot: true } as const;

export async function enableRelaxedSimd(): Promise<boolean> {
  const { setFlagsFromString } = await import("node:v8");
  setFlagsFromString("--experimental-wasm-relaxed-simd");
  const { readFile } = await import("node:fs/promises");
  return WebAssembly.validate(await readFile(await ensureKernelsWasm(NODE_RELAXED)));
}

export async function loadEngine(
  p: PackedShape,
  opts: WasmEngineOptions,
  relaxed = false,
): Promise<{ engine: WasmEngine; kernels: WasmKernels }> {
  const kernels = await loadKernelsNode(await ensureKernelsWasm(relaxed ? NODE_RELAXED : {}));
  const engine = await WasmEngine.load(kernels, p.table, bytesToStream(p.data), {
    contextSize: contextSizeFor(p),
    ...opts,
  });
  return { engine, kernels };
}

export interface PrefillComparison {
  shape: string;
  tokenByTokenTokS: number;
  blockedTokS: number;
  /** max |logit difference| between the two (0: bit-identical). */
  maxLogitDiff: number;
}

export async function wasmNodeRows(
  p: PackedShape,
  o: BenchOptions,
  relaxedAvailable = false,
): Promise<{ rows: BenchRow[]; prefill: PrefillComparison }> {
  const c = p.table.config;
  const prompt = promptIds(o.promptTokens, c.vocabSize);
  const rows: BenchRow[] = [];
  let blockedLogits: Float32Array | null = null;
  let blockedTokS = 0;
  const variants: { kvCache: "f16" | "q8"; relaxed: boolean }[] = [
    { kvCache: "f16", relaxed: false },
    { kvCache: "q8", relaxed: false },
    ...(relaxedAvailable ? [{ kvCache: "f16" as const, relaxed: true }] : []),
  ];
  for (const { kvCache, relaxed } of variants) {
    const { engine } = await loadEngine(p, { kvCache, activations: "q8" }, relaxed);
    const t = await timeModel(engine, prompt, o.decodeTokens, o.repeats);
    if (kvCache === "f16" && !relaxed) {
      blockedLogits = t.promptLogits;
      blockedTokS = (o.promptTokens * 1000) / t.prefillMs;
    }
    rows.push({
      engine: "shardlm-wasm",
      runtime: relaxed ? "node+relaxed" : "node",
      model_shape: p.shape,
      quant: kvCache === "f16" ? "int4-g32" : "int4-g32/kv8",
      decode_tok_s: (o.decodeTokens * 1000) / t.decodeMs,
      prefill_tok_s: (o.promptTokens * 1000) / t.prefillMs,
      peak_mem_bytes: engine.memoryBytes,
      bytes_per_token: p.bytesPerToken,
      prompt_tokens: o.promptTokens,
      decode_tokens: o.decodeTokens,
      threads: 1,
      cpu_share: t.cpuShare,
      kernels: relaxed
        ? "kernels-relaxed-i16.wasm (relaxed SIMD, --experimental-wasm-relaxed-simd)"
        : "kernels.wasm (SIMD128)",
      activations: "q8",
      kv_cache: kvCache,
      speculative: false,
      context_size: engine.contextSize,
      prefill_block: engine.block,
      embeddings: p.pack.embeddings ?? "int8",
      head: c.tiedEmbeddings ? `tied (${p.pack.embeddings ?? "int8"})` : (p.pack.head ?? "int8"),
      note: "wasm memory = weights + KV cache + activations",
    });
    log(
      `    shardlm-wasm node${relaxed ? "+relaxed" : ""} ${kvCache} KV: ${rows.at(-1)!.decode_tok_s.toFixed(1)} tok/s decode`,
    );
  }

  // Before/after for batched prefill: the same engine run token by token.
  const { engine: single } = await loadEngine(p, { kvCache: "f16", activations: "q8", prefillBlock: 1 });
  await runOnce(single, prompt, 0);
  let best = Number.POSITIVE_INFINITY;
  let logits: Float32Array = new Float32Array(0);
  for (let r = 0; r < o.repeats; r++) {
    const t = await runOnce(single, prompt, 0);
    best = Math.min(best, t.prefillMs);
    logits = t.promptLogits;
  }
  let maxLogitDiff = 0;
  for (let i = 0; i < logits.length; i++)
    maxLogitDiff = Math.max(maxLogitDiff, Math.abs(logits[i]! - blockedLogits![i]!));
  return {
    rows,
    prefill: {
      shape: p.shape,
      tokenByTokenTokS: (o.promptTokens * 1000) / best,
      blockedTokS,
      maxLogitDiff,
    },
  };
}

export interface OpProfile {
  shape: string;
  /** node, node+relaxed or workerd (relaxed build). */
  runtime: string;
  /** ms per token by category, decode and prefill; "engine JS" = wall time no kernel accounts for. */
  decode: Record<ProfileKey, number>;
  prefill: Record<ProfileKey, number>;
  decodeWallMs: number;
  prefillWallMs: number;
  /** int4 layer matrix bytes a token reads, and their matvec time with each matrix cache-resident. */
  layerBytes: number;
  hotLayerMs: number;
  headBytes: number;
}

/**
 * The int4 matvecs of one token with every matrix cache-resident: each layer-0 matrix timed alone,
 * repeated (the kernels' arithmetic ceiling), times the layer count.
 */
async function hotLayerMatvecMs(p: PackedShape, repeats: number): Promise<number> {
  const c = p.table.config;
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  const names = blockLinears(0);
  let total = 0;
  for (const name of names) {
    const v = p.packed.find((t) => t.name === name)!.value;
    if (v instanceof Float32Array || v.format !== "int4") throw new Error(`${name} is not int4`);
    const w = kernels.uploadInt4(v);
    const x = kernels.uploadF32(new Float32Array(w.kPadded).map((_, i) => Math.sin(i)));
    const q8 = kernels.quantizeQ8(x, kernels.allocQ8(w.kPadded));
    const y = kernels.alloc(w.N * 4);
    const iters = 50;
    for (let i = 0; i < 5; i++) kernels.matvecInt4Q8(w, q8, y);
    const ms = await bestOf(repeats + 2, () => {
      const t0 = performance.now();
      for (let i = 0; i < iters; i++) kernels.matvecInt4Q8(w, q8, y);
      return (performance.now() - t0) / iters;
    });
    total += ms * c.numLayers;
  }
  return total;
}

/** int4 layer matrix bytes and head bytes one token reads (for the profile's GB/s). */
export function profileBytes(p: PackedShape): { layerBytes: number; headBytes: number } {
  const c = p.table.config;
  const headName = c.tiedEmbeddings ? TensorNames.tokenEmbedding : TensorNames.output;
  let layerBytes = 0;
  let headBytes = 0;
  for (const t of p.table.tensors) {
    if (t.name === headName) headBytes = t.bytes;
    else if (t.encoding.kind === "int4" && t.name !== TensorNames.tokenEmbedding) layerBytes += t.bytes;
  }
  return { layerBytes, headBytes };
}

/**
 * Per-op profile of decode and prefill (fp16 KV), kernels timed through profileKernels (profileRun,
 * the same code the workerd engine worker profiles with). `relaxed`: the relaxed-SIMD build (needs
 * enableRelaxedSimd first). The cache-resident ceiling needs the synthetic shapes' packed tensors
 * (hotLayerMs 0 without them).
 */
export async function wasmProfile(p: PackedShape, o: BenchOptions, relaxed = false): Promise<OpProfile> {
  const c = p.table.config;
  const { engine, kernels } = await loadEngine(p, { kvCache: "f16", activations: "q8" }, relaxed);
  const prompt = promptIds(o.promptTokens, c.vocabSize);
  await runOnce(engine, prompt, 8);
  const prof = profileKernels(kernels, c.vocabSize);
  const { layerBytes, headBytes } = profileBytes(p);
  let best: OpProfile | null = null;
  try {
    for (let r = 0; r < o.repeats; r++) {
      const run = profileRun(engine, prof, prompt, o.decodeTokens);
      if (!best || run.decodeWallMs < best.decodeWallMs)
        best = {
          shape: p.shape,
          runtime: relaxed ? "node+relaxed" : "node",
          ...run,
          layerBytes,
          hotLayerMs: 0,
          headBytes,
        };
    }
  } finally {
    prof.detach();
  }
  if (p.packed.length > 0) best!.hotLayerMs = await hotLayerMatvecMs(p, o.repeats);
  return best!;
}
