/**
 * A test worker: loads a packed model from R2 into the WASM engine (weights streamed from the R2
 * object body straight into wasm memory) and returns greedy tokens, so tests and benchmarks can run
 * the engine inside workerd exactly as the API will.
 * POST / {prompt: number[], maxTokens, kvCache?, activations?, relaxed?} -> {tokens, memoryBytes, relaxedSimd}
 * POST /decode-loop {steps} -> runs `steps` forward passes on the loaded engine (for timing from outside).
 */

import { WeightTable } from "../format/weights.ts";
import { WasmKernels } from "../kernels/wasm/index.ts";
import { generate } from "../runtime/generate.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
// Provided by the test as CompiledWasm modules (workerd cannot compile wasm from bytes at run time).
import simdModule from "./kernels.wasm";
import relaxedModule from "./kernels-relaxed.wasm";

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

let cached: { key: string; engine: WasmEngine } | null = null;

async function engineFor(env: Env, r: RunRequest): Promise<WasmEngine> {
  const prefix = r.prefix ?? "";
  const key = JSON.stringify([prefix, r.kvCache, r.activations, r.relaxed]);
  if (cached?.key === key) return cached.engine;
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
  cached = { key, engine };
  return engine;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const r = (await request.json()) as RunRequest & { steps?: number };
    const engine = await engineFor(env, r);
    if (url.pathname === "/decode-loop") {
      // Prefill the prompt, then `steps` greedy forward passes: timed from outside by the caller.
      const state = engine.newState(r.prompt.length + (r.steps ?? 0));
      let logits = engine.prefill(state, r.prompt);
      for (let i = 0; i < (r.steps ?? 0); i++) {
        let best = 0;
        for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
        logits = engine.forward(state, best);
      }
      return Response.json({ ok: true });
    }
    const tokens: number[] = [];
    for await (const t of generate(engine, r.prompt, { maxTokens: r.maxTokens, temperature: 0 }))
      tokens.push(t);
    return Response.json({ tokens, memoryBytes: engine.memoryBytes });
  },
};
