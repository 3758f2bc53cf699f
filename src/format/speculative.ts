/**
 * How a variant speculates (issue 13): the self-speculative draft (the variant's own weights with some
 * layers skipped, as in Draft & Verify, Zhang et al. 2023) and prompt-lookup n-gram drafting, verified
 * by the full variant so the output is exactly the full variant's. The build searches `skipLayers` on
 * calibration chat data and records what it measured; the runtime only reads this.
 */
import { z } from "zod";

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
   * A draft source pauses while its running acceptance rate is below this (a rejected draft costs a
   * verified row: the build sets it to the measured per-row verify cost).
   */
  minAcceptance: z.number().min(0).max(1).default(0.35),
});
export type DraftSettings = z.output<typeof DraftSettings>;
export type DraftSettingsInput = z.input<typeof DraftSettings>;

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
  skip_layers: number[];
  prompt_lookup: boolean;
  estimated_speedup: number;
  draft_acceptance: number;
} | null {
  if (!spec) return null;
  return {
    enabled: spec.enabled,
    skip_layers: spec.draft.skipLayers,
    prompt_lookup: true,
    estimated_speedup: spec.measured.estimatedSpeedup,
    draft_acceptance: spec.measured.skipAgreement,
  };
}
