/**
 * The math of the compression pipeline: calibration statistics, error-aware int4 (GPTQ, clip search,
 * AWQ), structured pruning and closed-form healing, and end-to-end evaluation.
 *
 * Typical build: calibrate → pruneModel → healPrunedModel → calibrate the pruned model → quantizeModel
 * → pack (src/format/pack.ts) the returned tensors.
 */
export {
  type AwqScales,
  awqScales,
  type ScaledLinear,
  scaleColumns,
  scaleGram,
  searchAwqScales,
} from "./awq.ts";
export {
  CALIBRATION_TEXT,
  type CalibrationOptionsInput,
  type CalibrationStats,
  calibrate,
  calibrationSequences,
  channelMeanAbs,
  channelNorms,
  collectCalibrationStats,
  type InputStats,
  type LayerStats,
  type Log,
  readParagraphs,
} from "./calibration.ts";
export { quantizeClipSearch } from "./clip-search.ts";
export { type Comparison, compareModels, type Perplexity, perplexity } from "./evaluate.ts";
export { type GptqOptionsInput, quantizeGptq } from "./gptq.ts";
export { type HealOptionsInput, type HealResult, healPrunedModel, refitProjection } from "./heal.ts";
export { NotPositiveDefiniteError } from "./linalg.ts";
export { llamaCppQ4_0 } from "./llama-cpp-q4-0.ts";
export { dequantizedModel, type QuantizedTensor } from "./model-edit.ts";
export { type OutputError, outputError } from "./output-error.ts";
export {
  applyPrunePlan,
  type PrunedLayer,
  PruneError,
  type PruneOptionsInput,
  type PrunePlan,
  type PruneResult,
  pruneModel,
} from "./prune.ts";
export {
  type QuantizeOptionsInput,
  type QuantizeResult,
  quantizeModel,
  type TensorQuantReport,
} from "./quantize.ts";
