/**
 * Per-token costs of each variant, for planning requests in units of work.
 *
 * Start: the manifest's speed profile, measured at build time (src/format/manifest.ts,
 * `speed`: ms per prefill token, per decode token, per MB loaded, and how prefill and decode costs
 * grow with position); decode at its effective cost when the variant speculates
 * (manifestDecodeMsPerToken). Corrections: for prefill and decode a factor per variant, an
 * exponential moving average of observed / manifest cost; for loads one isolate-wide speed in ms
 * per MB (every variant streams through the same storage path), from its first load on. Both are fed only with intervals
 * the caller could measure (see ./clock.ts, ClockTrust): an observation of 0 ms or less, or a
 * non-finite one, is ignored (it is a frozen clock's reading, not a speed-up), and every factor stays
 * within [MIN_CORRECTION, MAX_CORRECTION] so no run of odd readings can make a variant look free
 * or unusable.
 */
import type { Manifest, SpeedProfile } from "../format/manifest.ts";
import { effectiveDecodeMsPerToken } from "../format/speculative.ts";

/**
 * Prefill work of a prompt, in position-0 token equivalents: the prompt's first `cachedTokens`
 * come from a prefix cache, the other P = promptTokens - cachedTokens run at positions C..C+P-1,
 * and a token at position p costs (1 + p / L) times one at position 0 (L =
 * speed.prefillPositionTokens, the build's measured fit: src/format/manifest.ts). The sum is
 * P + P (2C + P - 1) / (2L); without L (older manifests), P. Times speed.prefillMsPerToken: ms.
 */
export function prefillWorkTokens(
  speed: Pick<SpeedProfile, "prefillPositionTokens">,
  promptTokens: number,
  cachedTokens = 0,
): number {
  const c = Math.min(Math.max(0, cachedTokens), promptTokens);
  return positionWork(promptTokens - c, c, speed.prefillPositionTokens);
}

/**
 * Decode work of `steps` tokens generated after a prompt of `promptTokens`, in position-0 step
 * equivalents: the steps run at positions P..P+steps-1 (counting the first token's step too, as the
 * planner always has: an upper bound by one step), and a step at position p costs (1 + p / L)
 * times one at 0 (L = speed.decodePositionTokens: src/format/manifest.ts). The sum is
 * steps + steps (2P + steps - 1) / (2L); without L (older manifests), steps. Times the decode cost
 * per token: ms.
 */
export function decodeWorkTokens(
  speed: Pick<SpeedProfile, "decodePositionTokens">,
  promptTokens: number,
  steps: number,
): number {
  return positionWork(Math.max(0, steps), Math.max(0, promptTokens), speed.decodePositionTokens);
}

/**
 * The most decode steps after a prompt of `promptTokens` whose cost fits `ms`: each step costs
 * `msPerToken` at position 0 times (1 + p / speed.decodePositionTokens), plus a flat
 * `extraMsPerStep`. 0 when not even one fits (or `ms` is not positive).
 */
export function decodeStepsWithin(
  speed: Pick<SpeedProfile, "decodePositionTokens">,
  promptTokens: number,
  ms: number,
  msPerToken: number,
  extraMsPerStep = 0,
): number {
  if (!(ms > 0)) return 0;
  const cost = (k: number) => msPerToken * decodeWorkTokens(speed, promptTokens, k) + extraMsPerStep * k;
  const l = speed.decodePositionTokens;
  // cost(k) = a k + b k^2: a = d (1 + (2P - 1) / (2L)) + extra, b = d / (2L) (b = 0 when flat).
  const a = msPerToken * (1 + (l === undefined ? 0 : (2 * promptTokens - 1) / (2 * l))) + extraMsPerStep;
  const b = l === undefined ? 0 : msPerToken / (2 * l);
  let k = Math.max(0, Math.floor(b > 0 ? (-a + Math.sqrt(a * a + 4 * b * ms)) / (2 * b) : ms / a));
  if (!Number.isFinite(k)) return Number.MAX_SAFE_INTEGER;
  // Rounding in the closed form: settle on the exact boundary.
  while (k > 0 && cost(k) > ms) k--;
  while (cost(k + 1) <= ms) k++;
  return k;
}

/** Σ (1 + p / l) over `count` positions from `start`: count + count (2 start + count - 1) / (2 l); flat without l. */
function positionWork(count: number, start: number, l: number | undefined): number {
  return l === undefined ? count : count + (count * (2 * start + count - 1)) / (2 * l);
}

/**
 * The manifest's decode cost per token as served: with speculation on (the build measured a gain),
 * the plain decode cost divided by the build's estimated speedup, so the router plans with what a
 * token actually costs.
 */
export function manifestDecodeMsPerToken(m: Manifest): number {
  return effectiveDecodeMsPerToken(m.speed.decodeMsPerToken, m.speculative);
}

export type Phase = "prefill" | "decode" | "load";

export interface Prediction {
  totalMs: number;
  loadMs: number;
  prefillMs: number;
  /** The asked-for decode steps after the prompt, position-aware (decodeWorkTokens), ms. */
  decodeMs: number;
  /** A decode step at position 0 (see decodeWorkTokens for later positions), ms. */
  decodeMsPerToken: number;
}

export interface VariantCosts {
  /** Loading it into this isolate (0 when resident), ms. */
  loadMs: number;
  /** A prompt token at position 0, ms (see prefillWorkTokens for later positions). */
  prefillMsPerToken: number;
  /** The position where a prompt token costs twice that (manifest speed.prefillPositionTokens); null: flat. */
  prefillPositionTokens: number | null;
  /** A decode step at position 0, ms (see decodeWorkTokens for later positions). */
  decodeMsPerToken: number;
  /** The position where a decode step costs twice that (manifest speed.decodePositionTokens); null: flat. */
  decodePositionTokens: number | null;
}

/** Weight of the newest observation in the moving average. */
export const CORRECTION_ALPHA = 0.3;
/** Bounds of a correction factor: at most 10x faster or slower than the manifest measured. */
export const MIN_CORRECTION = 0.1;
export const MAX_CORRECTION = 10;

/** Weight of the newest load reading in the isolate's load speed (loads are rare: trust them fast). */
export const LOAD_ALPHA = 0.5;
/**
 * Load speed assumed before an isolate's first load, ms per MB, when the manifest's is faster: the
 * build times its load from memory (no storage), ~2.6 ms/MB for SmolLM2, while loads from local R2
 * under `wrangler dev` took 1.0-1.4 s for 78-98 MB (~11-18 ms/MB; a review, 2026-11-30). Production
 * R2's speed is unmeasured; a first prediction that is too high only makes a budget prefer a resident
 * variant until this isolate has timed a load.
 */
export const LOAD_PRIOR_MS_PER_MB = 12;

export class CostModel {
  private readonly factors = new Map<string, Record<"prefill" | "decode", number>>();
  /**
   * Load speed of this isolate's storage path (R2 into engine memory), ms per MB, from its own loads
   * of any variant: every variant streams through the same path, so one variant's load predicts the
   * next one's. null until the first load (then LOAD_PRIOR_MS_PER_MB or the manifest's figure, the
   * slower: the build measures from memory, without R2, and a review saw 203 ms predicted for a
   * 1.0-1.4 s load).
   */
  private loadMsPerMB: number | null = null;

  private factor(variant: string): Record<"prefill" | "decode", number> {
    let f = this.factors.get(variant);
    if (!f) {
      f = { prefill: 1, decode: 1 };
      this.factors.set(variant, f);
    }
    return f;
  }

  /** A variant's current costs: its manifest's measured speed times this isolate's corrections. */
  costs(m: Manifest, resident: boolean): VariantCosts {
    const f = this.factor(m.variant);
    const mb = m.weights.totalBytes / 1e6;
    return {
      loadMs: resident ? 0 : (this.loadMsPerMB ?? Math.max(m.speed.loadMsPerMB, LOAD_PRIOR_MS_PER_MB)) * mb,
      prefillMsPerToken: m.speed.prefillMsPerToken * f.prefill,
      prefillPositionTokens: m.speed.prefillPositionTokens ?? null,
      decodeMsPerToken: manifestDecodeMsPerToken(m) * f.decode,
      decodePositionTokens: m.speed.decodePositionTokens ?? null,
    };
  }

  /**
   * Predicted ms: load (unless resident) + prefill of the prompt after its `cachedTokens` (those a
   * prefix cache serves; prefillWorkTokens, position-aware) + max tokens of decode after the prompt
   * (decodeWorkTokens, position-aware).
   */
  predict(
    m: Manifest,
    promptTokens: number,
    maxTokens: number,
    resident: boolean,
    cachedTokens = 0,
  ): Prediction {
    const c = this.costs(m, resident);
    const prefillMs = prefillWorkTokens(m.speed, promptTokens, cachedTokens) * c.prefillMsPerToken;
    const decodeMs = decodeWorkTokens(m.speed, promptTokens, maxTokens) * c.decodeMsPerToken;
    return {
      totalMs: c.loadMs + prefillMs + decodeMs,
      loadMs: c.loadMs,
      prefillMs,
      decodeMs,
      decodeMsPerToken: c.decodeMsPerToken,
    };
  }

  /**
   * Feeds back a measured interval: `observedMs` for `units` (decode: position-0 step
   * equivalents, decodeWorkTokens; prefill: position-0 token equivalents, prefillWorkTokens; load: MB). Returns whether it was used: zero, negative
   * or non-finite readings and empty intervals are not.
   */
  observe(m: Manifest, phase: Phase, observedMs: number, units: number): boolean {
    if (!(units > 0) || !Number.isFinite(observedMs) || observedMs <= 0) return false;
    if (phase === "load") {
      const msPerMB = observedMs / units;
      this.loadMsPerMB =
        this.loadMsPerMB === null ? msPerMB : (1 - LOAD_ALPHA) * this.loadMsPerMB + LOAD_ALPHA * msPerMB;
      return true;
    }
    const base = phase === "prefill" ? m.speed.prefillMsPerToken : manifestDecodeMsPerToken(m);
    const ratio = clamp(observedMs / units / base);
    const f = this.factor(m.variant);
    f[phase] = clamp((1 - CORRECTION_ALPHA) * f[phase] + CORRECTION_ALPHA * ratio);
    return true;
  }

  /** The variant's prefill and decode corrections (observed / manifest; 1 = as the build measured). */
  correction(variant: string): Record<"prefill" | "decode", number> {
    return { ...this.factor(variant) };
  }

  /** This isolate's observed load speed, ms per MB (null before its first load). */
  observedLoadMsPerMB(): number | null {
    return this.loadMsPerMB;
  }
}

function clamp(x: number): number {
  return Math.min(MAX_CORRECTION, Math.max(MIN_CORRECTION, x));
}
