/** The reference (oracle) engine: plain-TypeScript fp32 forward pass. */
export { KVCache, KVCacheFullError } from "./kv-cache.ts";
export { applyRope, type RopeAngles, ropeAngles } from "./rope.ts";
export { type ReferenceArithmetic, ReferenceModel, ReferenceState } from "./transformer.ts";
export { type LayerWeights, loadReferenceWeights, type ReferenceWeights } from "./weights.ts";
