/**
 * Which variant serves a request.
 *
 * - `X-Quality-Tier: quality|balanced|speed` caps quality from above: the chosen variant is that
 *   tier's or, with a budget, any variant of equal or lower quality. A tier the deployment has no
 *   variant for (SmolLM2 builds only quality and speed) is served by the best variant below it
 *   (balanced -> speed), else the nearest above (tierTarget). With the header, `model` only
 *   has to name the deployment (a variant or tier name, the source model's name, "shardlm", "auto").
 * - Without the header, a `model` naming a live variant pins it, also when the name is a tier's too
 *   (deployments name their variants after their tiers, so `model: "quality"` is the quality
 *   variant, exactly what a client naming a model asks for); a tier name that is no variant's acts
 *   like the header. A pinned variant is never swapped: a budget can only cut its answer short, and
 *   if it cannot load the request is a 503 (no fallback). For fallback, send the tier header.
 * - `X-Latency-Budget-Ms: n` picks the best-quality variant (lowest measured KL) whose predicted
 *   latency fits: the prompt's prefill + max tokens x decode cost + the load cost when the variant
 *   is not resident in this isolate. Prefill and decode are position-aware (a prompt token at
 *   position p costs prefill x (1 + p / prefill_position_tokens), a decode step at p decode x
 *   (1 + p / decode_position_tokens): ../runtime/cost-model.ts, prefillWorkTokens,
 *   decodeWorkTokens); prefill counts only what the variant's prefix cache does not hold (a
 *   resident variant's cached prefix). If none fits, the lowest declared tier is chosen
 *   (speed, then balanced, then quality; within a tier the fastest by the manifests' measured speed,
 *   `manifestCostMs`, ties to the lower-quality variant): build-time timings are too noisy to rank
 *   tiers by, and an impossible budget routes the same way in every isolate whatever it has loaded
 *   or observed; ./plan.ts cuts its answer to the decode tokens that fit
 *   (finish_reason "length", X-Budget-Exhausted: true). Only a variant predicted faster than every
 *   better one can be forced by a budget. The budget is planned in tokens, never enforced by
 *   reading a clock (see ./plan.ts).
 * - Neither: the best-quality variant.
 *
 * The result is a preference list; the caller serves the first variant that loads. A variant that
 * fails to load (a corrupt or missing shard) falls back to the next: with a tier, to the next one
 * below the cap and, only when every variant at or below the cap is unavailable, to the ones above
 * it, nearest first (an answer of better quality than asked beats a 503).
 *
 * Costs start from each manifest's measured speed profile and are corrected by timings observed in
 * this isolate where its clock can measure them (../runtime/cost-model.ts, ../runtime/clock.ts). The
 * corrected costs are public (GET /v1/models, `cost`), so a client can size a budget: for a variant
 * with cost {load_ms, prefill_ms_per_token, prefill_position_tokens (L, or null), decode_ms_per_token,
 * decode_position_tokens (D, or null)}, a prompt of P tokens (none cached) and M max tokens the
 * prediction is load_ms + prefill_ms_per_token x (P + P (P - 1) / (2 L)) (just P when L is null) +
 * decode_ms_per_token x (M + M (2P + M - 1) / (2 D)) (just M when D is null). X-Predicted-Ms
 * (rounded) sends back the prediction of the plan (./plan.ts): with X-Planned-Tokens decode steps,
 * fewer than max tokens when a budget or the CPU limit cut the answer.
 */
import type { Manifest } from "../format/manifest.ts";
import {
  type CostModel,
  decodeWorkTokens,
  type Prediction,
  prefillWorkTokens,
} from "../runtime/cost-model.ts";

export { CostModel, type Phase, type Prediction, type VariantCosts } from "../runtime/cost-model.ts";

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
 * A request's cost on `m` by its manifest's build-time speed alone: the prompt's prefill from
 * position 0 + max tokens of decode after it (both position-aware: prefillWorkTokens,
 * decodeWorkTokens), ms. Ranks the variants
 * when no budget fits (see above): no cache hit counted, so every isolate ranks alike.
 */
export function manifestCostMs(m: Manifest, promptTokens: number, maxTokens: number): number {
  return (
    prefillWorkTokens(m.speed, promptTokens) * m.speed.prefillMsPerToken +
    decodeWorkTokens(m.speed, promptTokens, maxTokens) * m.speed.decodeMsPerToken
  );
}

/**
 * The variant a tier is served by (no budget, every variant loading): its own tier's variant, else
 * (the tier caps quality from above) the best one below it, else the nearest above it. This is
 * rankVariants' first choice; GET /v1/models/{tier} answers with it.
 */
export function tierTarget(variants: Manifest[], tier: Tier): Manifest | undefined {
  const rank = TIERS.indexOf(tier);
  return (
    variants.find((v) => v.tier === tier) ??
    variants.find((v) => TIERS.indexOf(v.tier) >= rank) ??
    variants.at(-1)
  );
}

/** A candidate variant with its prediction and the wait before its work could start. */
export interface Ranked {
  manifest: Manifest;
  prediction: Prediction;
  /**
   * Predicted ms of other requests' admitted work this one would wait for (on the variant, or on
   * busy variants a load must evict): ./work-ledger.ts. Its own load is prediction.loadMs.
   */
  waitMs: number;
  /**
   * A variant of better quality than the tier cap: tried only when every variant at or below the
   * cap fails to load, so no budget decision counts on it.
   */
  aboveCap?: true;
}

/** Predicted ms before a candidate could start: the work it waits behind, then its load. */
export const startsInMs = (r: Ranked): number => r.waitMs + r.prediction.loadMs;

/**
 * Whether a candidate can start its work within `budgetMs`: no wait behind other requests, or the
 * wait plus its load fit. A request waiting for no one always starts (its plan cuts the answer, at
 * least one token, as for any budget that fits nothing); one that would wait past its budget cannot
 * be served in time.
 */
export const startsInTime = (r: Ranked, budgetMs: number): boolean =>
  r.waitMs <= 0 || startsInMs(r) <= budgetMs;

/**
 * Candidates in order of preference (`variants` are best quality first). The caller tries them in
 * order, so a variant that fails to load falls back to the next. `cachedTokens(m)`: prompt tokens
 * m's prefix cache holds now (their prefill is not predicted; default none). `waitMs(m)`: the
 * predicted wait behind other requests' work (default none); a budget must hold it too.
 */
export function rankVariants(
  variants: Manifest[],
  req: RouteRequest,
  cost: CostModel,
  isResident: (m: Manifest) => boolean,
  cachedTokens: (m: Manifest) => number = () => 0,
  waitMs: (m: Manifest) => number = () => 0,
): Ranked[] {
  const score = (m: Manifest): Ranked => ({
    manifest: m,
    prediction: cost.predict(m, req.promptTokens, req.maxTokens, isResident(m), cachedTokens(m)),
    waitMs: waitMs(m),
  });
  if (req.pinned) {
    const m = variants.find((v) => v.variant === req.pinned);
    return m ? [score(m)] : [];
  }
  let pool = variants;
  let above: Manifest[] = [];
  if (req.tier) {
    const cap = variants.findIndex((v) => v.tier === req.tier);
    // The tier's own variant first, then (with a budget, or as fallback) lower-quality ones.
    pool =
      cap >= 0
        ? variants.slice(cap)
        : variants.filter((v) => TIERS.indexOf(v.tier) >= TIERS.indexOf(req.tier!));
    // Last resort, when nothing at or below the cap loads: better ones, nearest the cap first.
    above = variants.filter((v) => !pool.includes(v)).reverse();
  }
  const scored = pool.map(score);
  const lastResort = above.map((m): Ranked => ({ ...score(m), aboveCap: true }));
  if (req.budgetMs === null) return [...scored, ...lastResort];
  const fits = scored.filter((s) => s.waitMs + s.prediction.totalMs <= req.budgetMs!);
  // Over budget: first those that can start within it (startsInTime), then by declared tier (speed,
  // balanced, quality), then by the manifests' speed within a tier, then lower quality first. Not by
  // measured speed across tiers: build-time timings are noisy (SmolLM2's speed once measured slower
  // than quality, which has 6 more layers).
  const tierRank = (s: Ranked) => -TIERS.indexOf(s.manifest.tier);
  const late = (s: Ranked) => (startsInTime(s, req.budgetMs!) ? 0 : 1);
  const rest = scored
    .map((s, i) => ({ s, i, cost: manifestCostMs(s.manifest, req.promptTokens, req.maxTokens) }))
    .filter(({ s }) => s.waitMs + s.prediction.totalMs > req.budgetMs!)
    .sort((a, b) => late(a.s) - late(b.s) || tierRank(a.s) - tierRank(b.s) || a.cost - b.cost || b.i - a.i)
    .map(({ s }) => s);
  return [...fits, ...rest, ...lastResort];
}
