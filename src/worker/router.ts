/**
 * Which variant serves a request.
 *
 * - `X-Quality-Tier: quality|balanced|speed` (or a tier name as the request's `model`) caps quality
 *   from above: the chosen variant is that tier's or, with a budget, any variant of equal or lower
 *   quality.
 * - `X-Latency-Budget-Ms: n` picks the best-quality variant (lowest measured KL) whose predicted
 *   latency fits: prompt tokens x prefill cost + max tokens x decode cost + the load cost when the
 *   variant is not resident in this isolate. If none fits, the fastest is chosen (and the budget
 *   still ends the answer early).
 * - Neither: the best-quality variant. A `model` naming a variant pins it.
 *
 * Costs start from each manifest's measured speed profile and are corrected by timings observed in
 * this isolate (an exponential moving average of observed / predicted, per variant and phase).
 */
import type { Manifest } from "../format/manifest.ts";

export type Phase = "prefill" | "decode" | "load";

export interface Prediction {
  totalMs: number;
  loadMs: number;
  prefillMs: number;
  decodeMsPerToken: number;
}

const ALPHA = 0.3;

export class CostModel {
  private readonly factors = new Map<string, Record<Phase, number>>();

  private factor(variant: string): Record<Phase, number> {
    let f = this.factors.get(variant);
    if (!f) {
      f = { prefill: 1, decode: 1, load: 1 };
      this.factors.set(variant, f);
    }
    return f;
  }

  predict(m: Manifest, promptTokens: number, maxTokens: number, resident: boolean): Prediction {
    const f = this.factor(m.variant);
    const mb = m.weights.totalBytes / 1e6;
    const loadMs = resident ? 0 : m.speed.loadMsPerMB * mb * f.load;
    const prefillMs = promptTokens * m.speed.prefillMsPerToken * f.prefill;
    const decodeMsPerToken = m.speed.decodeMsPerToken * f.decode;
    return {
      totalMs: loadMs + prefillMs + maxTokens * decodeMsPerToken,
      loadMs,
      prefillMs,
      decodeMsPerToken,
    };
  }

  /** Feeds back an observation: `observedMs` for `units` (tokens, or MB for load). */
  observe(m: Manifest, phase: Phase, observedMs: number, units: number): void {
    if (units <= 0 || !Number.isFinite(observedMs)) return;
    const base =
      phase === "load"
        ? m.speed.loadMsPerMB
        : phase === "prefill"
          ? m.speed.prefillMsPerToken
          : m.speed.decodeMsPerToken;
    const ratio = Math.min(50, Math.max(0.02, observedMs / units / base));
    const f = this.factor(m.variant);
    f[phase] = (1 - ALPHA) * f[phase] + ALPHA * ratio;
  }

  correction(variant: string): Record<Phase, number> {
    return { ...this.factor(variant) };
  }
}

export const TIERS = ["quality", "balanced", "speed"] as const;
export type Tier = (typeof TIERS)[number];

export interface RouteRequest {
  tier: Tier | null;
  budgetMs: number | null;
  pinned: string | null;
  promptTokens: number;
  maxTokens: number;
}

/**
 * Candidates in order of preference. `variants` are best quality first; `usable` excludes ones marked
 * bad. The caller tries them in order, so a variant that fails to load falls back to the next.
 */
export function rankVariants(
  variants: Manifest[],
  req: RouteRequest,
  cost: CostModel,
  isResident: (m: Manifest) => boolean,
): { manifest: Manifest; prediction: Prediction }[] {
  const predict = (m: Manifest) => cost.predict(m, req.promptTokens, req.maxTokens, isResident(m));
  if (req.pinned) {
    const m = variants.find((v) => v.variant === req.pinned);
    return m ? [{ manifest: m, prediction: predict(m) }] : [];
  }
  let pool = variants;
  if (req.tier) {
    const cap = variants.findIndex((v) => v.tier === req.tier);
    // The tier's own variant first, then (with a budget, or as fallback) lower-quality ones.
    pool =
      cap >= 0
        ? variants.slice(cap)
        : variants.filter((v) => TIERS.indexOf(v.tier) >= TIERS.indexOf(req.tier!));
  }
  const scored = pool.map((m) => ({ manifest: m, prediction: predict(m) }));
  if (req.budgetMs === null) return scored;
  const fits = scored.filter((s) => s.prediction.totalMs <= req.budgetMs!);
  const rest = scored
    .filter((s) => s.prediction.totalMs > req.budgetMs!)
    .sort((a, b) => a.prediction.totalMs - b.prediction.totalMs);
  return [...fits, ...rest];
}
