/**
 * shardlm-wasm in workerd (Miniflare, as wrangler runs it): the engine worker of the tests
 * (src/bench/engine-worker.ts) loads the packed model from a local R2 bucket into the relaxed-SIMD
 * kernels (kernels-relaxed.wasm, the production build) and caches the engine across requests.
 * Time inside a request does not advance in workerd, so requests are timed from outside:
 *   decode  = steps / (T(prompt, 2S steps) - T(prompt, S steps))
 *   prefill = P / (T(2P-token prompt, 0 steps) - T(P-token prompt, 0 steps))
 * (the differences cancel the request overhead).
 */
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { type BenchOptions, type BenchRow, log, type PackedShape, promptIds } from "./common.ts";
import type { KernelRow } from "./kernel-table.ts";
import { contextSizeFor } from "./wasm-node.ts";
import { startWorkerd } from "./workerd-host.ts";

type R2Put = { put(key: string, value: string | Uint8Array): Promise<unknown> };

const WORKER = fileURLToPath(new URL("./engine-worker.ts", import.meta.url));
const KERNEL_WORKER = fileURLToPath(new URL("./kernel-worker.ts", import.meta.url));

export class WorkerdBench {
  private constructor(private readonly mf: Miniflare) {}

  static async start(): Promise<WorkerdBench> {
    const wasm = {
      "/kernels.wasm": await ensureKernelsWasm(),
      "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }),
    };
    return new WorkerdBench(await startWorkerd(WORKER, { wasm }));
  }

  async dispose(): Promise<void> {
    await this.mf.dispose();
  }

  private async post(path: string, body: object): Promise<{ ms: number; json: unknown }> {
    const t0 = performance.now();
    const res = await this.mf.dispatchFetch(`http://engine${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    if (res.status !== 200) throw new Error(`workerd ${path}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    return { ms, json: JSON.parse(text) };
  }

  async row(p: PackedShape, o: BenchOptions, kvCache: "f16" | "q8" = "f16"): Promise<BenchRow> {
    const c = p.table.config;
    const prefix = `${p.shape}/`;
    const bucket = (await this.mf.getR2Bucket("SHARDS")) as unknown as R2Put;
    await bucket.put(`${prefix}table.json`, JSON.stringify(p.table));
    await bucket.put(`${prefix}weights.bin`, p.data);
    const key = { prefix, kvCache, activations: "q8", relaxed: true, maxTokens: 1 };
    const P = o.promptTokens;
    const S = o.decodeTokens;
    const prompt = promptIds(P, c.vocabSize);
    const prompt2 = promptIds(2 * P, c.vocabSize);
    // The worker sizes its KV cache as we do in Node; check the request fits.
    if (Math.max(P + 2 * S, 2 * P) > contextSizeFor(p))
      throw new Error(`workerd: ${P} + ${2 * S} tokens exceed ${p.shape}'s context`);

    const t0 = performance.now();
    const first = await this.post("/", { ...key, prompt });
    const memoryBytes = (first.json as { memoryBytes: number }).memoryBytes;
    log(`    workerd: engine loaded from R2 in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const loop = async (tokens: number[], steps: number) =>
      (await this.post("/decode-loop", { ...key, prompt: tokens, steps })).ms;
    await loop(prompt, S); // warm-up
    const best = { s: Infinity, s2: Infinity, p: Infinity, p2: Infinity };
    for (let r = 0; r < o.repeats; r++) {
      best.s = Math.min(best.s, await loop(prompt, S));
      best.s2 = Math.min(best.s2, await loop(prompt, 2 * S));
      best.p = Math.min(best.p, await loop(prompt, 0));
      best.p2 = Math.min(best.p2, await loop(prompt2, 0));
    }
    return {
      engine: "shardlm-wasm",
      runtime: "workerd",
      model_shape: p.shape,
      quant: kvCache === "f16" ? "int4-g32" : "int4-g32/kv8",
      decode_tok_s: (S * 1000) / (best.s2 - best.s),
      prefill_tok_s: (P * 1000) / (best.p2 - best.p),
      peak_mem_bytes: memoryBytes,
      bytes_per_token: p.bytesPerToken,
      prompt_tokens: P,
      decode_tokens: S,
      threads: 1,
      cpu_share: null,
      kernels: "kernels-relaxed.wasm (relaxed SIMD)",
      activations: "q8",
      kv_cache: kvCache,
      speculative: false,
      context_size: contextSizeFor(p),
      note: "timed from outside: differences of request times (S vs 2S steps, P vs 2P prompt)",
    };
  }
}

/** The kernel table (scripts/bench/kernel-table.ts) run inside workerd, on both kernel builds. */
export async function workerdKernelTables(): Promise<{ simd: KernelRow[]; relaxed: KernelRow[] }> {
  const wasm = {
    "/kernels.wasm": await ensureKernelsWasm(),
    "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }),
  };
  const mf = await startWorkerd(KERNEL_WORKER, { wasm });
  try {
    const table = async (relaxed: boolean) => {
      const res = await mf.dispatchFetch("http://kernels/", {
        method: "POST",
        body: JSON.stringify({ relaxed }),
      });
      const text = await res.text();
      if (res.status !== 200)
        throw new Error(`workerd kernel table: HTTP ${res.status}: ${text.slice(0, 500)}`);
      const got = JSON.parse(text) as { relaxed: boolean; rows: KernelRow[] };
      if (got.relaxed !== relaxed) throw new Error("workerd kernel table: wrong build loaded");
      return got.rows;
    };
    return { simd: await table(false), relaxed: await table(true) };
  } finally {
    await mf.dispose();
  }
}
