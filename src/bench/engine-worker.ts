/**
 * A test worker: loads a packed model from R2 into the WASM engine (weights streamed from the R2
 * object body straight into wasm memory) and returns greedy tokens, so tests and benchmarks can run
 * the engine inside workerd exactly as the API will.
 * POST / {prompt: number[], maxTokens, kvCache?, activations?, relaxed?} -> {tokens, memoryBytes}
 * POST /decode-loop {prompt, steps} -> prefills `prompt` (none when empty) on a fresh state, then
 *   `steps` greedy forward passes on the loaded engine -> {prefillMs, decodeMs}: the worker's own
 *   clock around each part, which runs under Miniflare but reads 0 in production (time only advances
 *   on I/O there), so the bench also times the requests from outside.
 * POST /profile {prompt, steps} -> the same run with every kernel call timed by category (profileRun).
 * POST /generate-timed {prompt, maxTokens, speculative?, stopTokenIds?, prefixCache?} -> greedy
 *   generate() timed by the worker's clock: {tokens, ttftMs, decodeMs (after the first token), stats,
 *   cached}. prefixCache: "keep" uses one PrefixCache kept by this isolate, "new" replaces it first.
 * POST /row-cost -> {rowCost, rowCosts, headShare, headCosts}: measureWarmEngineCosts on the loaded
 *   engine (warm-up, then per verified row / decode step), by the worker's clock: the build's
 *   verify-cost worker's numbers, measured the same way.
 * The engine is cached across requests (keyed by prefix and options): a request rebuilds nothing.
 */

import { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { type GenerateOptionsInput, generate } from "../runtime/generate.ts";
import { measureWarmEngineCosts } from "../runtime/verify-costs.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
// Provided by the test as CompiledWasm modules (workerd cannot compile wasm from bytes at run time).
import simdModule from "./kernels.wasm";
import relaxedModule from "./kernels-relaxed.wasm";
import { profileKernels, profileRun } from "./profile.ts";
import { ConversationCache, timedGenerate } from "./timed-generate.ts";

interface Env {
  SHARDS: { get(key: string): Promise<{ body: ReadableStream<Uint8Array>; json<T>(): Promise<T> } | null> };
}

interface RunRequest {
  prompt: number[];
  maxTokens: number;
  kvCache?: "f16" | "q8";
  activations?: "q8" | "f32";
  relaxed?: boolean;
  prefix?: string;
}

interface TimedRequest {
  speculative?: GenerateOptionsInput["speculative"];
  stopTokenIds?: number[];
  prefixCache?: "keep" | "new";
}

let cached: { key: string; engine: WasmEngine; kernels: WasmKernels } | null = null;
const conversation = new ConversationCache();

async function engineFor(env: Env, r: RunRequest): Promise<{ engine: WasmEngine; kernels: WasmKernels }> {
  const prefix = r.prefix ?? "";
  const key = JSON.stringify([prefix, r.kvCache, r.activations, r.relaxed]);
  if (cached?.key === key) return cached;
  cached = null;
  const tableObject = await env.SHARDS.get(`${prefix}table.json`);
  const weights = await env.SHARDS.get(`${prefix}weights.bin`);
  if (!tableObject || !weights) throw new Error("model not in R2");
  const table = WeightTable.parse(await tableObject.json());
  const kernels = await WasmKernels.create(r.relaxed ? relaxedModule : simdModule);
  const engine = await WasmEngine.load(kernels, table, weights.body, {
    kvCache: r.kvCache,
    activations: r.activations,
    contextSize: Math.min(table.config.maxContext, 2048),
  });
  cached = { key, engine, kernels };
  return cached;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let j = 1; j < x.length; j++) if (x[j]! > x[best]!) best = j;
  return best;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const r = (await request.json()) as RunRequest & TimedRequest & { steps?: number };
    const { engine, kernels } = await engineFor(env, r);
    const steps = r.steps ?? 0;
    if (url.pathname === "/decode-loop") {
      if (r.prompt.length === 0) return Response.json({ prefillMs: 0, decodeMs: 0 });
      const state = engine.newState(r.prompt.length + steps);
      const t0 = performance.now();
      let logits = engine.prefill(state, r.prompt);
      const t1 = performance.now();
      for (let i = 0; i < steps; i++) logits = engine.forward(state, argmax(logits));
      return Response.json({ prefillMs: t1 - t0, decodeMs: performance.now() - t1 });
    }
    if (url.pathname === "/generate-timed") {
      const prefixCache = conversation.for(r.prefixCache);
      const timed = await timedGenerate(engine, r.prompt, {
        maxTokens: r.maxTokens,
        ...(r.speculative ? { speculative: r.speculative } : {}),
        ...(r.stopTokenIds ? { stopTokenIds: r.stopTokenIds } : {}),
        ...(prefixCache ? { prefixCache } : {}),
      });
      return Response.json(timed);
    }
    if (url.pathname === "/row-cost") return Response.json(measureWarmEngineCosts(engine));
    if (url.pathname === "/profile") {
      const prof = profileKernels(kernels, engine.vocabSize);
      try {
        return Response.json(profileRun(engine, prof, r.prompt, steps));
      } finally {
        prof.detach();
      }
    }
    const tokens: number[] = [];
    for await (const t of generate(engine, r.prompt, { maxTokens: r.maxTokens, temperature: 0 }))
      tokens.push(t);
    return Response.json({ tokens, memoryBytes: engine.memoryBytes });
  },
};
