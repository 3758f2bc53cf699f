/**
 * Where the time goes: wraps a WasmKernels instance's op methods with timers, so the engine itself
 * carries no profiling code (and pays nothing when the bench does not profile). Each call is
 * attributed to a category; the rest of a step's wall time is JS overhead in the engine.
 */
import type { Int4Tensor, WasmKernels } from "../kernels/wasm/index.ts";
import type { WasmEngine } from "../runtime/wasm/engine.ts";

export const CATEGORIES = [
  "int4 matvec (layers)",
  "int4 matmul (prefill)",
  "head",
  "attention",
  "kv store",
  "q8 quantize",
  "norms/rope/other",
] as const;
export type Category = (typeof CATEGORIES)[number];

export interface KernelProfile {
  ms: Record<Category, number>;
  calls: Record<Category, number>;
  reset(): void;
  /** Restores the kernels' own methods. */
  detach(): void;
}

const OPS: Record<string, Category | ((args: unknown[], vocab: number) => Category)> = {
  matvecInt4Q8: (a, vocab) => ((a[0] as Int4Tensor).N === vocab ? "head" : "int4 matvec (layers)"),
  matvecInt4: (a, vocab) => ((a[0] as Int4Tensor).N === vocab ? "head" : "int4 matvec (layers)"),
  matmulInt4: (a, vocab) => ((a[0] as Int4Tensor).N === vocab ? "head" : "int4 matmul (prefill)"),
  matmulInt4Q8: (a, vocab) => ((a[0] as Int4Tensor).N === vocab ? "head" : "int4 matmul (prefill)"),
  matvecInt8Q8: "head",
  matvecInt8: "head",
  attentionF16: "attention",
  attentionQ8: "attention",
  attentionRowsF16: "attention",
  attentionRowsQ8: "attention",
  kvStoreF16: "kv store",
  kvStoreQ8: "kv store",
  quantizeQ8: "q8 quantize",
  rmsnorm: "norms/rope/other",
  rope: "norms/rope/other",
  ropeTable: "norms/rope/other",
  addF32: "norms/rope/other",
  siluGate: "norms/rope/other",
  embedRowInt4: "norms/rope/other",
  embedRowInt8: "norms/rope/other",
  copyF32: "norms/rope/other",
};

/** Times every op `kernels` runs from now on; `vocab` tells the head's matvec from the layers'. */
export function profileKernels(kernels: WasmKernels, vocab: number): KernelProfile {
  const zero = () => Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
  const prof: KernelProfile = {
    ms: zero(),
    calls: zero(),
    reset() {
      prof.ms = zero();
      prof.calls = zero();
    },
    detach() {
      for (const name of Object.keys(OPS)) delete (kernels as unknown as Record<string, unknown>)[name];
    },
  };
  const target = kernels as unknown as Record<string, (...args: unknown[]) => unknown>;
  // Only the outermost op is timed: matmulInt4Q8 with one row calls matvecInt4Q8, which would
  // otherwise count the head twice (once as a matmul, once as the head).
  let depth = 0;
  for (const [name, cat] of Object.entries(OPS)) {
    const orig = target[name]!;
    target[name] = function timed(this: unknown, ...args: unknown[]) {
      if (depth > 0) return orig.apply(this, args);
      const c = typeof cat === "string" ? cat : cat(args, vocab);
      depth++;
      const t0 = performance.now();
      try {
        return orig.apply(this, args);
      } finally {
        prof.ms[c] += performance.now() - t0;
        prof.calls[c]++;
        depth--;
      }
    };
  }
  return prof;
}

export type ProfileKey = Category | "engine JS (untimed)";

/** One profiled prefill + greedy decode: ms per token by category, and the wall time of each part. */
export interface RunProfile {
  decode: Record<ProfileKey, number>;
  prefill: Record<ProfileKey, number>;
  decodeWallMs: number;
  prefillWallMs: number;
}

/**
 * Prefill `prompt` on a fresh state, then `steps` greedy forwards, with `prof` (profileKernels on the
 * engine's kernels) attributing kernel time; "engine JS (untimed)" is the wall time no kernel call
 * accounts for (the engine's JS between calls, logits copy-out, the argmax). Runtime-neutral: the
 * Node bench and the workerd engine worker run this same code. `now` must advance inside a call
 * (workerd in production only advances it on I/O: profile there under Miniflare, where it runs).
 */
export function profileRun(
  engine: WasmEngine,
  prof: KernelProfile,
  prompt: number[],
  steps: number,
  now: () => number = () => performance.now(),
): RunProfile {
  const perToken = (n: number, wallMs: number): Record<ProfileKey, number> => {
    const r = Object.fromEntries(CATEGORIES.map((k) => [k, prof.ms[k] / n])) as Record<ProfileKey, number>;
    const timed = CATEGORIES.reduce((a, k) => a + r[k], 0);
    r["engine JS (untimed)"] = Math.max(0, wallMs / n - timed);
    return r;
  };
  const state = engine.newState(prompt.length + steps);
  prof.reset();
  let t0 = now();
  let logits = engine.prefill(state, prompt);
  const prefillWallMs = now() - t0;
  const prefill = perToken(prompt.length, prefillWallMs);
  prof.reset();
  t0 = now();
  for (let i = 0; i < steps; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
    logits = engine.forward(state, best);
  }
  const decodeWallMs = now() - t0;
  return { decode: perToken(Math.max(1, steps), decodeWallMs), prefill, decodeWallMs, prefillWallMs };
}
