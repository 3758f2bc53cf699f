/**
 * shardlm-wasm in workerd (Miniflare, as wrangler runs it): the engine worker of the tests
 * (src/bench/engine-worker.ts) loads the packed model from a local R2 bucket into the relaxed-SIMD
 * kernels (kernels-relaxed.wasm, the production build) and caches the engine across requests.
 *
 * Timed like Node's rows: prefill of the P-token prompt and the S decode steps after it (positions
 * P..P+S, as in Node), best of the repeats, by the worker's own clock, which runs under Miniflare
 * (1 ms resolution; in production it only advances on I/O). Cross-checks from outside, as
 * differences of request times at the same positions:
 *   decode  = S / (T(prompt, S steps) - T(prompt, 0 steps))
 *   prefill = P / (T(prompt, 0 steps) - T(empty request))
 * and the CPU time workerd spent (cpu_share), since a Worker has no CPU clock. An earlier version
 * timed S steps at positions P+S..P+2S (attention over twice the context) and 2P vs P prompts,
 * each as the difference of separately minimised request times: it read workerd's prefill at 0.48x
 * Node's where workerd's CPU time per prefill token equals Node's (README, "workerd vs Node").
 */
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import { ownCpuMs } from "../compress/measure.ts";
import { processCpuMs, startWorkerd, workerdPids } from "../compress/workerd-host.ts";
import type { WeightTable } from "../format/weights.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { bridgeBucket, r2BridgeWorker } from "../publish/buckets.ts";
import { type BenchOptions, type BenchRow, log, type PackedShape, promptIds } from "./common.ts";
import type { AbRow } from "./kernel-ab.ts";
import type { KernelRow, KernelShape } from "./kernel-table.ts";
import type { RunProfile } from "./profile.ts";
import { contextSizeFor, loadEngine, type OpProfile, profileBytes } from "./wasm-node.ts";

/** Kernel table options that cross into the worker (JSON). */
export interface KernelTableRequest {
  batches?: number;
  batchMs?: number;
  shapes?: KernelShape[];
}

const WORKER = fileURLToPath(new URL("./engine-worker.ts", import.meta.url));
const KERNEL_WORKER = fileURLToPath(new URL("./kernel-worker.ts", import.meta.url));

/** tok/s by CPU time, medians of alternating rounds (WorkerdBench.pairedByCpu). */
export interface CpuPair {
  rounds: number;
  node: { decode: number; prefill: number };
  workerd: { decode: number; prefill: number };
}

interface Timed {
  ms: number;
  /** workerd's CPU time over the request (null without /proc). */
  cpuMs: number | null;
  json: unknown;
}

export class WorkerdBench {
  private readonly uploaded = new Set<string>();

  private constructor(
    private readonly mf: Miniflare,
    /** The workerd process this bench started (null where it cannot be told apart). */
    private readonly pid: number | null,
  ) {}

  static async start(): Promise<WorkerdBench> {
    const wasm = {
      "/kernels.wasm": await ensureKernelsWasm(),
      "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }),
    };
    const before = new Set(workerdPids());
    // Weights go in through the R2 bridge (dispatchFetch), not getR2Bucket's synchronous proxy, which
    // lost replies under CI load (src/publish/buckets.ts).
    const mf = await startWorkerd(WORKER, { wasm, workers: [r2BridgeWorker("SHARDS")] });
    const ours = workerdPids().filter((p) => !before.has(p));
    return new WorkerdBench(mf, ours.length === 1 ? ours[0]! : null);
  }

  async dispose(): Promise<void> {
    await this.mf.dispose();
  }

  private async post(path: string, body: object): Promise<Timed> {
    const c0 = this.pid === null ? null : processCpuMs(this.pid);
    const t0 = performance.now();
    const res = await this.mf.dispatchFetch(`http://engine${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    const c1 = this.pid === null ? null : processCpuMs(this.pid);
    if (res.status !== 200) throw new Error(`workerd ${path}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    return { ms, cpuMs: c0 === null || c1 === null ? null : c1 - c0, json: JSON.parse(text) };
  }

  /** Puts the shape's weights into R2 and loads the engine (fp16 or int8 KV, q8 activations, relaxed). */
  private load(p: PackedShape, kvCache: "f16" | "q8") {
    return this.loadWeights(p.shape, p.table, p.data, kvCache);
  }

  /**
   * Puts packed weights into R2 under `name/` and loads the engine (q8 activations, the relaxed
   * build); returns the request fields that select this engine.
   */
  async loadWeights(name: string, table: WeightTable, data: Uint8Array, kvCache: "f16" | "q8" = "f16") {
    const prefix = `${name}/`;
    if (!this.uploaded.has(prefix)) {
      const bucket = bridgeBucket(this.mf, "the bench's R2 bucket SHARDS", async () => {});
      await bucket.put(`${prefix}table.json`, new TextEncoder().encode(JSON.stringify(table)));
      await bucket.put(`${prefix}weights.bin`, data);
      this.uploaded.add(prefix);
    }
    const key = { prefix, kvCache, activations: "q8", relaxed: true, maxTokens: 1 };
    const prompt = promptIds(1, table.config.vocabSize);
    const first = await this.post("/", { ...key, prompt });
    return { key, memoryBytes: (first.json as { memoryBytes: number }).memoryBytes };
  }

  /** POST `path` with `body` to the engine worker; its JSON answer. */
  async call<T>(path: string, body: object): Promise<T> {
    return (await this.post(path, body)).json as T;
  }

  /** call(), with the request's wall time and workerd's CPU time over it (null without /proc). */
  async callTimed<T>(path: string, body: object): Promise<{ json: T; ms: number; cpuMs: number | null }> {
    const r = await this.post(path, body);
    return { json: r.json as T, ms: r.ms, cpuMs: r.cpuMs };
  }

  async row(p: PackedShape, o: BenchOptions, kvCache: "f16" | "q8" = "f16"): Promise<BenchRow> {
    const c = p.table.config;
    const P = o.promptTokens;
    const S = o.decodeTokens;
    const prompt = promptIds(P, c.vocabSize);
    // The worker sizes its KV cache as we do in Node; check the request fits.
    if (P + S > contextSizeFor(p)) throw new Error(`workerd: ${P} + ${S} tokens exceed ${p.shape}'s context`);

    const t0 = performance.now();
    const { key, memoryBytes } = await this.load(p, kvCache);
    log(`    workerd: engine loaded from R2 in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const loop = (tokens: number[], steps: number) =>
      this.post("/decode-loop", { ...key, prompt: tokens, steps });
    await loop(prompt, Math.min(S, 8)); // warm-up (tier-up), as Node's timeModel
    const best = { s: Infinity, z: Infinity, n: Infinity, prefill: Infinity, decode: Infinity };
    let cpu: number | null = 0;
    let wall = 0;
    for (let r = 0; r < o.repeats; r++) {
      const s = await loop(prompt, S);
      const z = await loop(prompt, 0);
      const n = await loop([], 0);
      const inside = s.json as { prefillMs: number; decodeMs: number };
      best.s = Math.min(best.s, s.ms);
      best.z = Math.min(best.z, z.ms);
      best.n = Math.min(best.n, n.ms);
      best.prefill = Math.min(best.prefill, inside.prefillMs);
      best.decode = Math.min(best.decode, inside.decodeMs);
      cpu = cpu === null || s.cpuMs === null ? null : cpu + s.cpuMs;
      wall += s.ms;
    }
    const outsideDecode = (S * 1000) / (best.s - best.z);
    const outsidePrefill = (P * 1000) / (best.z - best.n);
    // The worker's clock ran (Miniflare): time it as Node is timed; else the outside differences.
    const clockRan = best.decode > 0 && best.prefill > 0;
    return {
      engine: "shardlm-wasm",
      runtime: "workerd",
      model_shape: p.shape,
      quant: kvCache === "f16" ? "int4-g32" : "int4-g32/kv8",
      decode_tok_s: clockRan ? (S * 1000) / best.decode : outsideDecode,
      prefill_tok_s: clockRan ? (P * 1000) / best.prefill : outsidePrefill,
      peak_mem_bytes: memoryBytes,
      bytes_per_token: p.bytesPerToken,
      prompt_tokens: P,
      decode_tokens: S,
      threads: 1,
      cpu_share: cpu === null ? null : cpu / wall,
      kernels: "kernels-relaxed.wasm (relaxed SIMD, i32 dot-add)",
      activations: "q8",
      kv_cache: kvCache,
      speculative: false,
      context_size: contextSizeFor(p),
      outside_decode_tok_s: outsideDecode,
      outside_prefill_tok_s: outsidePrefill,
      note: clockRan
        ? "timed by the worker's clock (Miniflare); outside_*: differences of request times, same positions"
        : "timed from outside: differences of request times (S vs 0 steps, P-token prompt vs empty request)",
    };
  }

  /**
   * Node and workerd in alternating rounds on the same build (relaxed SIMD; Node needs
   * enableRelaxedSimd first), both by CPU time: Node's from process.cpuUsage around its prefill and
   * its S steps, workerd's from its /proc schedstat over requests, as differences at the same
   * positions (T(prompt, S) − T(prompt, 0) and T(prompt, 0) − T(empty)). Medians of `rounds`; null
   * where workerd's CPU time cannot be read (no /proc).
   */
  async pairedByCpu(p: PackedShape, o: BenchOptions, rounds = 5): Promise<CpuPair | null> {
    if (this.pid === null) return null;
    const P = o.promptTokens;
    const S = o.decodeTokens;
    const { key } = await this.load(p, "f16");
    const { engine } = await loadEngine(p, { kvCache: "f16", activations: "q8" }, true);
    const prompt = promptIds(P, p.table.config.vocabSize);
    const nodeRun = () => {
      const state = engine.newState(P + S);
      const c0 = ownCpuMs();
      let logits = engine.prefill(state, prompt);
      const c1 = ownCpuMs();
      for (let i = 0; i < S; i++) {
        let best = 0;
        for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
        logits = engine.forward(state, best);
      }
      return { prefill: c1 - c0, decode: ownCpuMs() - c1 };
    };
    const loop = async (tokens: number[], steps: number) =>
      (await this.post("/decode-loop", { ...key, prompt: tokens, steps })).cpuMs!;
    nodeRun(); // warm-up (tier-up) in both
    await loop(prompt, Math.min(S, 8));
    const got = {
      nodeDecode: [] as number[],
      nodePrefill: [] as number[],
      decode: [] as number[],
      prefill: [] as number[],
    };
    for (let r = 0; r < rounds; r++) {
      const n = nodeRun();
      got.nodeDecode.push((S * 1000) / n.decode);
      got.nodePrefill.push((P * 1000) / n.prefill);
      const s = await loop(prompt, S);
      const z = await loop(prompt, 0);
      const e = await loop([], 0);
      got.decode.push((S * 1000) / (s - z));
      got.prefill.push((P * 1000) / (z - e));
    }
    const median = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1]!;
    return {
      rounds,
      node: { decode: median(got.nodeDecode), prefill: median(got.nodePrefill) },
      workerd: { decode: median(got.decode), prefill: median(got.prefill) },
    };
  }

  /** Per-op profile inside workerd (same profileRun as Node's), best decode of `repeats` runs. */
  async profile(p: PackedShape, o: BenchOptions): Promise<OpProfile> {
    const { key } = await this.load(p, "f16");
    const prompt = promptIds(o.promptTokens, p.table.config.vocabSize);
    await this.post("/decode-loop", { ...key, prompt, steps: 8 });
    let best: RunProfile | null = null;
    for (let r = 0; r < o.repeats; r++) {
      const run = (await this.post("/profile", { ...key, prompt, steps: o.decodeTokens })).json as RunProfile;
      if (run.decodeWallMs <= 0) throw new Error("workerd profile: the worker's clock did not run");
      if (!best || run.decodeWallMs < best.decodeWallMs) best = run;
    }
    return { shape: p.shape, runtime: "workerd", ...best!, ...profileBytes(p), hotLayerMs: 0 };
  }
}

/**
 * The kernel table (src/bench/kernel-table.ts) run inside workerd on the bench builds of both kernel
 * flavors (production kernels + the floor kernel); `builds` picks which (default both).
 */
export async function workerdKernelTables(
  opts: KernelTableRequest = {},
  builds: readonly ("simd" | "relaxed")[] = ["simd", "relaxed"],
): Promise<{ simd: KernelRow[]; relaxed: KernelRow[] }> {
  const wasm = {
    "/kernels.wasm": await ensureKernelsWasm({ bench: true }),
    "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true, bench: true }),
  };
  const mf = await startWorkerd(KERNEL_WORKER, { wasm });
  try {
    const table = async (relaxed: boolean) => {
      const res = await mf.dispatchFetch("http://kernels/", {
        method: "POST",
        body: JSON.stringify({ relaxed, ...opts }),
      });
      const text = await res.text();
      if (res.status !== 200)
        throw new Error(`workerd kernel table: HTTP ${res.status}: ${text.slice(0, 500)}`);
      const got = JSON.parse(text) as { relaxed: boolean; rows: KernelRow[] };
      if (got.relaxed !== relaxed) throw new Error("workerd kernel table: wrong build loaded");
      return got.rows;
    };
    return {
      simd: builds.includes("simd") ? await table(false) : [],
      relaxed: builds.includes("relaxed") ? await table(true) : [],
    };
  } finally {
    await mf.dispose();
  }
}

const KERNEL_AB_WORKER = fileURLToPath(new URL("./kernel-ab-worker.ts", import.meta.url));

/** The kernel A/B (src/bench/kernel-ab.ts) inside workerd on two kernel binaries (files). */
export async function workerdKernelAb(
  a: string,
  b: string,
  opts: { shapes: KernelShape[]; rounds?: number; batchMs?: number },
): Promise<AbRow[]> {
  const mf = await startWorkerd(KERNEL_AB_WORKER, { wasm: { "/a.wasm": a, "/b.wasm": b } });
  try {
    const res = await mf.dispatchFetch("http://kernels/", { method: "POST", body: JSON.stringify(opts) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`workerd kernel A/B: HTTP ${res.status}: ${text.slice(0, 500)}`);
    return (JSON.parse(text) as { rows: AbRow[] }).rows;
  } finally {
    await mf.dispose();
  }
}
