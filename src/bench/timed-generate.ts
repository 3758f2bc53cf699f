/**
 * One greedy generation timed the way the speculative bench compares runs (src/bench/speculative.ts),
 * in Node and inside workerd (src/bench/engine-worker.ts): time to the first token, then decode time
 * after it (the first token comes from prefill). Runtime-neutral: no Node APIs, so the engine worker
 * bundles it.
 */
import { type GenerateOptionsInput, generate } from "../runtime/generate.ts";
import { PrefixCache } from "../runtime/prefix-cache.ts";
import type { SpeculationStats } from "../runtime/speculative.ts";
import type { WasmEngine } from "../runtime/wasm/engine.ts";

export interface TimedGeneration {
  tokens: number[];
  /** ms from the first token to the last (wall clock). */
  decodeMs: number;
  /** ms until the first token. */
  ttftMs: number;
  stats: SpeculationStats;
  /** Prompt tokens served from a prefix cache. */
  cached: number;
  /** decodeMs by `cpu`, when a CPU clock was given. */
  decodeCpuMs?: number;
}

/** Greedy `generate` over `prompt`, timed by performance.now() (and `cpu`, ms, when given). */
export async function timedGenerate(
  engine: WasmEngine,
  prompt: number[],
  opts: Omit<GenerateOptionsInput, "stats" | "temperature">,
  cpu?: () => number,
): Promise<TimedGeneration> {
  const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
  const tokens: number[] = [];
  const t0 = performance.now();
  let first = t0;
  let firstCpu = cpu?.() ?? 0;
  const gen = generate(engine, prompt, { ...opts, temperature: 0, stats });
  let r = await gen.next();
  for (; !r.done; r = await gen.next()) {
    if (tokens.length === 0) {
      first = performance.now();
      firstCpu = cpu?.() ?? 0;
    }
    tokens.push(r.value);
  }
  const end = performance.now();
  return {
    tokens,
    decodeMs: end - first,
    ttftMs: first - t0,
    stats,
    cached: r.value.cachedTokens,
    ...(cpu ? { decodeCpuMs: cpu() - firstCpu } : {}),
  };
}

/** The prefix cache of a benchmarked conversation: "new" starts one, "keep" continues it. */
export class ConversationCache {
  private cache: PrefixCache | null = null;

  for(mode: "new" | "keep" | undefined): PrefixCache | undefined {
    if (!mode) return undefined;
    if (mode === "new" || !this.cache) this.cache = new PrefixCache(32 << 20);
    return this.cache;
  }
}
