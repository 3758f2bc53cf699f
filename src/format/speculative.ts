/**
 * How a variant speculates (issue 13): the self-speculative draft (the variant's own weights with some
 * layers skipped, as in Draft & Verify, Zhang et al. 2023) and prompt-lookup n-gram drafting, verified
 * by the full variant so the output is exactly the full variant's. The build searches `skipLayers` on
 * calibration chat data and records what it measured; the runtime only reads this.
 */
import { z } from "zod";
import type { ModelConfig } from "./model.ts";

export const DraftSettings = z.strictObject({
  /** Layers the self-speculative draft leaves out ([] = no layer-skip draft, n-gram only). */
  skipLayers: z.array(z.number().int().min(0)).default([]),
  /** Most tokens drafted per verification pass (the engine verifies them plus one in one batch). */
  maxDraft: z.number().int().min(1).max(15).default(6),
  /** The layer-skip draft stops when its top probability falls below this. */
  minConfidence: z.number().min(0).max(1).default(0.6),
  /** Prompt-lookup: longest and shortest suffix n-gram searched in the prompt and answer so far. */
  ngramMax: z.number().int().min(1).max(8).default(3),
  ngramMin: z.number().int().min(1).max(8).default(2),
  /**
   * Non-adaptive drafting only: a source pauses while its running acceptance rate is below this.
   * (The adaptive policy decides from `rowCost` and measured acceptance instead.)
   */
  minAcceptance: z.number().min(0).max(1).default(0.35),
  /**
   * Adaptive (default): per step, draft the length whose expected tokens per unit of cost is best
   * (expectedSpeedup below), and decode plainly when no draft is expected to beat a plain step.
   * false: draft whatever a source offers (tests that must exercise every path; raw acceptance).
   */
  adaptive: z.boolean().default(true),
  /**
   * Per-row cost of a verify pass of 8 rows (layers and head) relative to one decode step, as the
   * build measured it on the engine (src/compress/speculative-search.ts, measureRowCost).
   */
  rowCost: z.number().positive().max(4).default(0.75),
  /**
   * Measured verify costs, finer than rowCost (the build measures them; src/compress/speculative-search.ts,
   * measureVerifyCosts): entry m - 1 is the per-row cost of a verify pass's layers alone (no head) at m
   * rows, relative to one decode step (layers and head). A batched kernel's saving is far from
   * a + b / m at small m (2 rows cost nearly 2 steps' layers), so the draft length is chosen from
   * these when present; rows past the table cost its last entry.
   */
  rowCosts: z.array(z.number().positive().max(4)).min(2).max(16).optional(),
  /** Acceptance the adaptive policy assumes for the layer-skip draft until it has seen its own (the build's measurement). */
  skipAcceptance: z.number().min(0).max(1).default(0.5),
  /** Share of a decode step spent in the final norm and head (default: from the model's shape). */
  headShare: z.number().min(0).max(1).optional(),
  /**
   * Measured batched heads (src/runtime/verify-costs.ts, measureVerifyCosts): entry m - 1 is the
   * per-row cost of the final norm and head computed for m verified rows in one pass, relative to one
   * decode step (entry 0 is about headShare). The engine batches a verify pass's heads
   * (WasmEngine.verifyRows), so a row's head costs far less than headShare at m > 1; rows past the
   * table cost its last entry. Absent (manifests built before batched heads): headShare per row.
   */
  headCosts: z.array(z.number().positive().max(4)).min(1).max(16).optional(),
  /**
   * Model-output n-gram datastore (./ngram-datastore.ts; generate's `draftStore`): acceptance the
   * adaptive policy assumes for its first draft token and for each later one (given the ones before
   * it were accepted) until a request has shown its own; measured on calibration answers the table
   * was not counted from (src/compress/ngram-datastore.ts, draftDatastore). Absent: low defaults.
   */
  storeAcceptance: z.number().min(0).max(1).optional(),
  storeNextAcceptance: z.number().min(0).max(1).optional(),
});
export type DraftSettings = z.output<typeof DraftSettings>;
export type DraftSettingsInput = z.input<typeof DraftSettings>;

/** Share of a decode step's weights in the head (vocab x hidden) versus all layers' matrices. */
export function headShareOf(
  c: Pick<
    ModelConfig,
    "vocabSize" | "hiddenSize" | "intermediateSize" | "numLayers" | "numHeads" | "numKvHeads" | "headDim"
  >,
): number {
  const layer =
    c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim +
    c.numHeads * c.headDim * c.hiddenSize +
    3 * c.hiddenSize * c.intermediateSize;
  const head = c.vocabSize * c.hiddenSize;
  return head / (head + c.numLayers * layer);
}

/**
 * Costs in units of one plain decode step, for choosing draft lengths: `head` = the head's share of a
 * step, `body(m)` = per-row cost of a verify pass's layers at m rows relative to one step's layers
 * (1 at m = 1; the measured `rowCosts` table when given, else fitted as a + (1 - a) / m through the
 * measured 8-row cost), `draft` = one draft step.
 */
export interface SpeculationCosts {
  head: number;
  body: (rows: number) => number;
  draft: number;
  /**
   * Batched heads: per-row cost (decode steps) of the heads of m rows computed in one pass, and how
   * the engine groups a verify pass's rows into head passes. Absent: each needed row pays `head`.
   */
  heads?: { perRow: (rows: number) => number; batch: HeadBatchShape };
}

/**
 * How an engine groups a verify pass's heads (WasmEngine.headBatch): the first head pass covers
 * `first` rows (computed whether or not they are needed), later ones up to `rows`, each run only when
 * its first row is needed.
 */
export interface HeadBatchShape {
  first: number;
  rows: number;
}

/**
 * SpeculationCosts from the settings' measured 8-row cost and head share, or from the measured per-row
 * table `rowCosts` (DraftSettings.rowCosts: layers only, in decode steps) when given.
 */
export function speculationCosts(
  rowCost: number,
  headShare: number,
  draftCost = 0,
  rowCosts?: readonly number[],
  heads?: { costs: readonly number[]; batch: HeadBatchShape },
): SpeculationCosts {
  const h = Math.min(0.95, Math.max(0, headShare));
  const batched =
    heads && heads.costs.length > 0
      ? {
          heads: {
            perRow: (m: number) => heads.costs[Math.min(Math.max(1, Math.round(m)), heads.costs.length) - 1]!,
            batch: heads.batch,
          },
        }
      : {};
  if (rowCosts && rowCosts.length > 0) {
    const last = rowCosts.length - 1;
    // Entry m - 1 is m rows' per-row cost, linear between entries (a mean row count is fractional),
    // in decode steps; body() is relative to one step's layers (1 - h).
    const at = (i: number) => rowCosts[Math.min(i, last)]!;
    const body = (m: number) => {
      if (m <= 1) return 1;
      const i = Math.floor(m - 1);
      const f = m - 1 - i;
      return ((1 - f) * at(i) + f * at(i + 1)) / (1 - h);
    };
    return { head: h, body, draft: draftCost, ...batched };
  }
  // rowCost covers layers and head; the head runs per needed row, so only the layers batch.
  const body8 = Math.max(0.01, (rowCost - h) / (1 - h));
  const a = Math.min(1, Math.max(0.01, (8 * body8 - 1) / 7));
  return { head: h, body: (m) => (m <= 1 ? 1 : a + (1 - a) / m), draft: draftCost, ...batched };
}

/**
 * Expected cost (decode steps) of the heads of a verify pass of `needed.length` rows, where row j's
 * logits are asked for with probability needed[j] (needed[0] = 1): with batched heads, each head pass
 * of the engine's grouping (costs.heads.batch) runs when its first row is needed and costs its rows
 * times the per-row cost at that many rows; without, each needed row costs `head`.
 */
export function expectedHeadCost(needed: readonly number[], costs: SpeculationCosts): number {
  const R = needed.length;
  if (!costs.heads) return costs.head * needed.reduce((a, p) => a + p, 0);
  const { perRow, batch } = costs.heads;
  let cost = 0;
  for (let start = 0; start < R; ) {
    const n = Math.min(start === 0 ? batch.first : batch.rows, R - start);
    cost += needed[start]! * n * perRow(n);
    start += n;
  }
  return cost;
}

/**
 * Expected speedup over plain decoding of one verify pass with `k` drafts: the first accepted with
 * probability `q`, each later one with probability `qNext` given the ones before it were (default q;
 * drafts come in runs: a copied span that starts matching tends to go on matching). Tokens
 * T = 1 + q + q qNext + ... + q qNext^(k-1) (the accepted drafts and the token sampled after them),
 * cost = layers for k + 1 rows + the heads (expectedHeadCost: batched passes, or a head per needed
 * row, T of them: rows after the first rejection are never looked at) + k draft steps. A plain step is 1.
 */
export function expectedSpeedup(k: number, q: number, costs: SpeculationCosts, qNext = q): number {
  if (k <= 0) return 1;
  const needed = [1];
  for (let j = 1; j <= k; j++) needed.push(needed[j - 1]! * (j === 1 ? q : qNext));
  const tokens = needed.reduce((a, p) => a + p, 0);
  const cost =
    (k + 1) * costs.body(k + 1) * (1 - costs.head) + expectedHeadCost(needed, costs) + k * costs.draft;
  return tokens / cost;
}

/** The draft length in 1..maxK with the best expected speedup (q, qNext as in expectedSpeedup), or 0 when none beats plain decoding. */
export function bestDraftLength(
  maxK: number,
  q: number,
  costs: SpeculationCosts,
  qNext = q,
): { k: number; speedup: number } {
  let best = { k: 0, speedup: 1 };
  for (let k = 1; k <= maxK; k++) {
    const s = expectedSpeedup(k, q, costs, qNext);
    if (s > best.speedup) best = { k, speedup: s };
  }
  return best;
}

/**
 * Where the build measured a variant's verify costs (DraftSettings' rowCost, rowCosts, headShare):
 * the costs depend on the runtime and the kernel build (workerd's relaxed kernels batch a verify
 * row relatively cheaper than Node's SIMD128 build), so the served drafter is only as right as this.
 */
export const VerifyCostsOrigin = z.strictObject({
  /**
   * workerd: the runtime the Worker serves in (Miniflare, the build's default; timed by the worker's
   * performance.now(), which runs freely outside production); node: the build's own process (timed by
   * its CPU time), where the build was told to (workerd could not run there).
   */
  measuredOn: z.enum(["workerd", "node"]),
  /** The kernel build timed: relaxed (i32 dot-add: what the Worker serves with), relaxed-i16, simd128. */
  kernels: z.enum(["relaxed", "relaxed-i16", "simd128"]),
  /** Versions, KV cache layout and CPU, for people reading the manifest. */
  detail: z.string(),
});
export type VerifyCostsOrigin = z.infer<typeof VerifyCostsOrigin>;

/** What the build measured for a draft configuration on calibration data. */
export const DraftMeasurement = z.strictObject({
  /** Teacher-forced positions where the layer-skip draft's argmax equals the full variant's. */
  skipAgreement: z.number().min(0).max(1),
  /** Positions where the prompt-lookup draft proposed a token, and the fraction of those it got right. */
  ngramCoverage: z.number().min(0).max(1),
  ngramAgreement: z.number().min(0).max(1),
  /** Estimated decode speedup over plain decoding (cost model: per-layer cost, head cost, batch rows). */
  estimatedSpeedup: z.number().positive(),
  calibrationTokens: z.number().int().nonnegative(),
  /** Where the verify costs in `draft` were measured (absent in manifests from before: Node, SIMD128). */
  verifyCosts: VerifyCostsOrigin.optional(),
});
export type DraftMeasurement = z.infer<typeof DraftMeasurement>;

/** The manifest's optional `speculative` field. */
export const SpeculativeProfile = z.strictObject({
  /** Whether the API speculates by default on this variant (the build measured a gain). */
  enabled: z.boolean(),
  draft: DraftSettings,
  measured: DraftMeasurement,
});
export type SpeculativeProfile = z.infer<typeof SpeculativeProfile>;

/**
 * Expected decode cost per token with speculation as built (for the router's cost model):
 * the plain per-token cost divided by the build's estimated speedup when speculation is on.
 */
export function effectiveDecodeMsPerToken(
  plainMsPerToken: number,
  spec: SpeculativeProfile | undefined,
): number {
  return spec?.enabled ? plainMsPerToken / spec.measured.estimatedSpeedup : plainMsPerToken;
}

/** What GET /v1/models shows of a variant's speculation (null: the build recorded none). */
export function speculationInfo(spec: SpeculativeProfile | undefined): {
  enabled: boolean;
  adaptive: boolean;
  skip_layers: number[];
  prompt_lookup: boolean;
  estimated_speedup: number;
  verify_row_cost: number;
  draft_acceptance: number;
  prompt_lookup_acceptance: number;
} | null {
  if (!spec) return null;
  return {
    enabled: spec.enabled,
    adaptive: spec.draft.adaptive,
    skip_layers: spec.draft.skipLayers,
    prompt_lookup: true,
    estimated_speedup: spec.measured.estimatedSpeedup,
    verify_row_cost: spec.draft.rowCost,
    draft_acceptance: spec.measured.skipAgreement,
    prompt_lookup_acceptance: spec.measured.ngramAgreement,
  };
}
