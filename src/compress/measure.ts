/**
 * Measured numbers for a variant's manifest, taken with the WASM engine that serves it:
 * quality against the original model (reference fp32 pass) on held-out text, and speed.
 */
import { cpus } from "node:os";
import type { QualityMetrics, SpeedProfile } from "../format/manifest.ts";
import type { ModelDescription } from "../format/model.ts";
import type { WeightTable } from "../format/weights.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { ReferenceModel } from "../model/reference/index.ts";
import { servedEngineLayout } from "../runtime/load-engine.ts";
import { argmax } from "../runtime/sampler.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import { compareLogits, type SyncLogits } from "./evaluate.ts";

/** The WASM engine on fresh kernels (Node): fp16 KV cache unless `kvCache` says otherwise. */
export async function engineFor(
  table: WeightTable,
  data: Uint8Array,
  contextSize?: number,
  kvCache: "f16" | "q8" = "f16",
): Promise<WasmEngine> {
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  return WasmEngine.load(kernels, table, bytesToStream(data), {
    contextSize: contextSize ?? Math.min(table.config.maxContext, 2048),
    kvCache,
  });
}

/** KL(original || variant), top-1 agreement and both perplexities, teacher-forced on `sequences`. */
export function measureQuality<S>(
  original: ModelDescription | SyncLogits<unknown>,
  engine: SyncLogits<S> & { readonly maxContext: number },
  sequences: readonly (readonly number[])[],
): QualityMetrics {
  const fitting = sequences.map((s) => s.slice(0, engine.maxContext));
  const reference = "tensors" in original ? new ReferenceModel(original) : original;
  const c = compareLogits(reference, engine, fitting);
  if (c.reference.tokens === 0) throw new Error("measureQuality: no evaluation positions");
  return {
    klMean: Math.max(0, c.meanKl),
    top1Agreement: c.top1Agreement,
    perplexity: c.candidate.perplexity,
    referencePerplexity: c.reference.perplexity,
    evalTokens: c.reference.tokens,
  };
}

/**
 * This process's CPU time in ms (every thread, node-llama-cpp's too): unlike wall time, it does not
 * count time other processes ran.
 */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Shortest time one timed section may take: below it, timer resolution and one GC pause decide. */
const MIN_SECTION_MS = 30;

/** Positions the prefill fit covers (0..PREFILL_FIT_POSITIONS - 1, or the engine's context). */
export const PREFILL_FIT_POSITIONS = 1024;
/** Prompt tokens per timed window of the prefill fit (a multiple of the engine's prefill block). */
const PREFILL_FIT_WINDOW = 64;
/**
 * Windows the prefill fit times, spread evenly over the positions with the first and last among
 * them (of 16 windows of 64: 0, 2, 4, 6, 9, 11, 13, 15). Theil-Sen over 8 points still shrugs off
 * a slowed window or two, and the timed windows cost half what all 16 would.
 */
export const PREFILL_FIT_WINDOWS = 8;
/** Rounds over the windows (best of): with the zigzag order, 2 rounds put every window early once and late once. */
export const PREFILL_FIT_REPEATS = 2;

/** Cost by position: a token at position p costs ~ msPerTokenAt0 x (1 + p / positionTokens). */
export interface CostByPosition {
  /** ms per token at position 0: the fit's intercept. */
  msPerTokenAt0: number;
  /** The position where a token costs twice what it costs at 0 (intercept / slope); null when the fit found no growth. */
  positionTokens: number | null;
  /** Each timed section: the mean position of its tokens and its ms per token (best of the repeats). */
  points: { position: number; msPerToken: number }[];
}
/** Prefill cost by position (measurePrefillByPosition). */
export type PrefillByPosition = CostByPosition;

/** Smallest cost at position 0 the fit reports, ms per token (a manifest's costs are positive). */
const MIN_MS_PER_TOKEN = 1e-3;
/** Decode steps per timed section of the decode fit (more when they take under MIN_SECTION_MS). */
const DECODE_FIT_STEPS = 4;

/**
 * Prefill cost against position on `e`, single thread: a prompt of min(PREFILL_FIT_POSITIONS,
 * context) tokens is prefilled once, then `windowCount` of its windows of PREFILL_FIT_WINDOW
 * tokens (spread evenly, the first and the last among them) are timed again, each on its own (the
 * sequence set back to the window's start, as a prompt following a cached prefix runs; the rows
 * before it hold this prompt's keys and values, and re-running a window rewrites its rows with the
 * same values). Windows are visited interleaved (ends inwards, direction alternating per round),
 * so a machine busy for a while slows early and late positions alike; a window repeats until it
 * has run MIN_SECTION_MS and keeps the best of `repeats` rounds (other processes and GC only ever
 * add time). A line through (mean position, ms per token) by Theil-Sen (fitByPosition) gives the
 * cost at position 0 and the slope. Every window pays one head pass (its last token's logits):
 * that lands in the intercept, not the slope.
 */
export function measurePrefillByPosition(
  e: WasmEngine,
  repeats = PREFILL_FIT_REPEATS,
  windowCount = PREFILL_FIT_WINDOWS,
): PrefillByPosition {
  return measureCostByPosition(e, { repeats, windowCount, decode: false }).prefill;
}

/**
 * measurePrefillByPosition and, with `decode` (default), decode cost against position from the
 * same prefilled sequence: after each timed window, DECODE_FIT_STEPS single-token steps from the
 * window's start (state set back there; each step rewrites its row with the prompt's own token, as
 * a step of generation at that position runs, head included), repeated until MIN_SECTION_MS, best
 * of the rounds, fitted the same way. Costs about DECODE_FIT_STEPS x windowCount x repeats decode
 * steps (SmolLM2-135M: ~1-2 s).
 */
export function measureCostByPosition(
  e: WasmEngine,
  opts: { repeats?: number; windowCount?: number; decode?: boolean } = {},
): { prefill: CostByPosition; decode: CostByPosition | null } {
  const repeats = opts.repeats ?? PREFILL_FIT_REPEATS;
  const length = Math.min(PREFILL_FIT_POSITIONS, e.maxContext);
  const window = Math.min(PREFILL_FIT_WINDOW, length);
  const windows = Math.floor(length / window);
  if (windows < 2)
    throw new RangeError(`measurePrefillByPosition: context ${e.maxContext} holds < 2 windows`);
  const timed = spreadIndices(windows, Math.max(2, opts.windowCount ?? PREFILL_FIT_WINDOWS));
  const steps = opts.decode === false ? 0 : Math.min(DECODE_FIT_STEPS, window);
  const prompt = Array.from({ length: windows * window }, (_, i) => (i * 7919 + 1) % e.vocabSize);
  const state = e.newState(prompt.length);
  e.prefill(state, prompt);
  // First, last, second, last but one, ...: early and late positions side by side in time.
  const n = timed.length;
  const zigzag = Array.from({ length: n }, (_, i) => timed[i % 2 === 0 ? i / 2 : n - 1 - (i - 1) / 2]!);
  const bestPrefill = new Map<number, number>(timed.map((w) => [w, Number.POSITIVE_INFINITY]));
  const bestDecode = new Map<number, number>(timed.map((w) => [w, Number.POSITIVE_INFINITY]));
  /** ms per token of `run` (which handles `tokens` tokens), repeated until MIN_SECTION_MS. */
  const timePerToken = (tokens: number, run: () => void): number => {
    let ms = 0;
    let runs = 0;
    while (ms < MIN_SECTION_MS) {
      const t0 = ownCpuMs();
      run();
      ms += ownCpuMs() - t0;
      runs++;
    }
    return ms / (runs * tokens);
  };
  for (let r = 0; r < repeats; r++) {
    for (const w of r % 2 === 0 ? zigzag : [...zigzag].reverse()) {
      const start = w * window;
      const tokens = prompt.slice(start, start + window);
      const prefillMs = timePerToken(window, () => {
        state.length = start;
        e.prefill(state, tokens);
      });
      bestPrefill.set(w, Math.min(bestPrefill.get(w)!, prefillMs));
      if (steps === 0) continue;
      const decodeMs = timePerToken(steps, () => {
        state.length = start;
        for (let i = 0; i < steps; i++) e.forward(state, prompt[start + i]!);
      });
      bestDecode.set(w, Math.min(bestDecode.get(w)!, decodeMs));
    }
  }
  const prefill = fitByPosition(
    timed.map((w) => ({ position: w * window + (window - 1) / 2, msPerToken: bestPrefill.get(w)! })),
  );
  const decode =
    steps === 0
      ? null
      : fitByPosition(
          timed.map((w) => ({ position: w * window + (steps - 1) / 2, msPerToken: bestDecode.get(w)! })),
        );
  return { prefill, decode };
}

/**
 * A line through `points` by Theil-Sen (median of the pairwise slopes, then the median intercept:
 * one slowed section does not tilt it). Where attention is nearly all the cost (a toy model) the
 * intercept can come out <= 0: it is floored at MIN_MS_PER_TOKEN and the slope refit through that
 * point. No growth (slope <= 0): positionTokens null, the median cost at position 0.
 */
function fitByPosition(points: CostByPosition["points"]): CostByPosition {
  const fit = theilSen(points.map((p) => [p.position, p.msPerToken]));
  if (!(fit.slope > 0))
    return {
      msPerTokenAt0: Math.max(median(points.map((p) => p.msPerToken)), MIN_MS_PER_TOKEN),
      positionTokens: null,
      points,
    };
  let { intercept, slope } = fit;
  if (intercept < MIN_MS_PER_TOKEN) {
    intercept = MIN_MS_PER_TOKEN;
    slope = median(points.map((p) => (p.msPerToken - intercept) / p.position));
  }
  return { msPerTokenAt0: intercept, positionTokens: intercept / slope, points };
}

/** `count` indices spread evenly over 0..n-1, first and last included (all n when count >= n). */
function spreadIndices(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.round((i * (n - 1)) / (count - 1)));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Theil-Sen line y = intercept + slope x: the median pairwise slope, then the median intercept. */
function theilSen(xy: [number, number][]): { intercept: number; slope: number } {
  const slopes: number[] = [];
  for (let i = 0; i < xy.length; i++)
    for (let j = i + 1; j < xy.length; j++) {
      const [xi, yi] = xy[i]!;
      const [xj, yj] = xy[j]!;
      if (xj !== xi) slopes.push((yj - yi) / (xj - xi));
    }
  const slope = median(slopes);
  return { slope, intercept: median(xy.map(([x, y]) => y - slope * x)) };
}

/**
 * Decode ms/token (positions 32..63), prefill and decode cost by position (measureCostByPosition,
 * on the engine layout the Worker serves the variant with) and load ms/MB, single thread. Compute is
 * timed by this process's CPU time (ownCpuMs): a build on a busy machine (load 8-13 on 2 cores in a
 * review) otherwise recorded 2-4x the cost, and the Worker refused prompts its CPU limit allows.
 * Loads are timed by the wall clock (compiling uses helper threads). Decode and load are the best of
 * `repeats` runs (other processes and GC only ever add time); a decode run repeats whole sequences
 * until it has lasted MIN_SECTION_MS, so a tiny model's sub-millisecond sequences are still measured.
 */
export async function measureSpeed(
  table: WeightTable,
  data: Uint8Array,
  repeats = 5,
  log: (m: string) => void = () => {},
): Promise<SpeedProfile> {
  const tLoad = performance.now();
  const loads: number[] = [];
  let engine: WasmEngine | null = null;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    engine = await engineFor(table, data);
    loads.push(performance.now() - t0);
  }
  const e = engine!;
  const tDecode = performance.now();
  const promptLen = Math.min(32, e.maxContext - 33);
  const decodeSteps = Math.min(32, e.maxContext - promptLen - 1);
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 1) % e.vocabSize);
  let decode = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeats; r++) {
    let decodeMs = 0;
    let sequences = 0;
    while (decodeMs < MIN_SECTION_MS) {
      const s = e.newState(promptLen + decodeSteps);
      let logits = e.prefill(s, prompt);
      const t0 = ownCpuMs();
      for (let i = 0; i < decodeSteps; i++) logits = e.forward(s, argmax(logits));
      decodeMs += ownCpuMs() - t0;
      sequences++;
    }
    decode = Math.min(decode, decodeMs / (sequences * decodeSteps));
  }
  // On the engine the Worker serves this variant with: its KV cache kind sets attention's cost.
  const tPrefill = performance.now();
  const layout = servedEngineLayout(table);
  const byPosition = measureCostByPosition(await engineFor(table, data, layout.contextSize, layout.kvCache));
  const prefill = byPosition.prefill;
  const decodePositionTokens = byPosition.decode?.positionTokens ?? null;
  const tEnd = performance.now();
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  log(
    `speed measured in ${s(tEnd - tLoad)}: load ${s(tDecode - tLoad)}, decode ${s(tPrefill - tDecode)}, prefill and decode by position ${s(tEnd - tPrefill)}`,
  );
  const mb = table.totalBytes / 1e6;
  return {
    decodeMsPerToken: Math.max(decode, 1e-3),
    prefillMsPerToken: Math.max(prefill.msPerTokenAt0, 1e-3),
    ...(prefill.positionTokens === null ? {} : { prefillPositionTokens: prefill.positionTokens }),
    ...(decodePositionTokens === null ? {} : { decodePositionTokens }),
    loadMsPerMB: Math.max(Math.min(...loads) / mb, 1e-3),
    measuredOn: `node ${process.version} wasm-simd128 1 thread, by CPU time, ${cpus()[0]?.model ?? "unknown cpu"}; prefill and decode by position on a ${layout.kvCache} KV cache`,
  };
}
