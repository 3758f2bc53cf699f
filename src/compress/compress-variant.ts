/**
 * One variant, from the original model: prune (calibrated) -> heal (least squares) -> recalibrate ->
 * error-aware int4 -> packed tensors. Pure computation; the caller measures and stores.
 */
import type { ModelDescription } from "../format/model.ts";
import { type CalibrationStats, calibrate, type Log } from "./calibration.ts";
import { type HealedProjection, healPrunedModel } from "./heal.ts";
import type { QuantizedTensor } from "./model-edit.ts";
import { pruneModel } from "./prune.ts";
import { quantizeModel, type TensorQuantReport } from "./quantize.ts";
import { ConfigError, type VariantConfig, type VariantsFile } from "./variants-config.ts";

export interface CompressedVariant {
  /** The fp32 model the packed tensors quantize (pruned, healed, maybe AWQ-folded). */
  model: ModelDescription;
  tensors: QuantizedTensor[];
  quantReport: TensorQuantReport[];
  healReport: HealedProjection[];
}

export function compressVariant(
  original: ModelDescription,
  originalStats: CalibrationStats,
  variant: VariantConfig,
  file: VariantsFile,
  log: Log,
  /** Calibration of a pruned model (default: the per-token reference pass). */
  recalibrate: (model: ModelDescription) => CalibrationStats = (m) =>
    calibrate(m, { source: file.calibration.source, maxTokens: file.calibration.maxTokens, seed: file.seed }),
): CompressedVariant {
  let model = original;
  let stats = originalStats;
  let healReport: HealedProjection[] = [];
  const p = variant.prune;
  if (p && (p.ffn > 0 || p.kvHeads > 0 || p.layers > 0)) {
    const dropLayers = Math.round(p.layers * original.config.numLayers);
    log(
      `  pruning: ffn ${p.ffn}, kv heads ${p.kvHeads}, layers ${dropLayers} of ${original.config.numLayers}`,
    );
    const pruned = pruneModel(original, originalStats, {
      ffnRatio: p.ffn,
      ffnMultipleOf: variant.quant.groupSize,
      kvHeadRatio: p.kvHeads,
      dropLayers,
      ffnImportance: p.importance,
      headImportance: p.importance === "obs" ? "obs" : "energy",
    });
    model = pruned.model;
    if (p.heal) {
      // The variant's error-report budget (quant.errorRows) sizes healing's before/after report too:
      // at 64 rows it was ~2 s of each ~18 s ffn_down re-fit of a synthetic stories110M.
      const healed = healPrunedModel(
        original,
        pruned,
        originalStats,
        { errorRows: variant.quant.errorRows },
        log,
      );
      model = healed.model;
      healReport = healed.report;
    }
    log("  recalibrating the pruned model");
    stats = recalibrate(model);
  }
  const q = variant.quant;
  const { tensors, report, folded } = quantizeModel(
    model,
    stats,
    {
      method: q.method === "awq" ? "search" : q.method,
      awq: q.method === "awq",
      groupSize: q.groupSize,
      zeroPoint: q.zeroPoint,
      embeddings: q.embeddings,
      head: q.head,
      int8: q.int8Tensors,
      embeddingSearch: q.embeddingSearch,
      errorRows: q.errorRows,
    },
    log,
    original,
  );
  // The WASM engine runs int8 for the embeddings and head only; inside blocks it needs int4.
  const int8InBlocks = tensors.filter(
    (t) => t.name.startsWith("blk.") && !(t.value instanceof Float32Array) && t.value.format === "int8",
  );
  if (int8InBlocks.length > 0) {
    throw new ConfigError(
      `variant ${variant.name}: ${int8InBlocks.map((t) => t.name).join(", ")} fell back to int8, which the engine runs only for embeddings and the head (quant.int8Tensors may name token_embd.weight or output.weight)`,
    );
  }
  return { model: folded, tensors, quantReport: report, healReport };
}
