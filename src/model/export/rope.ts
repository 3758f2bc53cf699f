/** Puts q/k rows into the rope layout a target format expects (see RopeStyle in model.ts). */
import { type ModelConfig, permuteQK, type RopeStyle } from "../../format/model.ts";

const QK_NAME = /^blk\.\d+\.attn_(q|k)\.(weight|bias)$/;

/** `data` of canonical tensor `name`, re-ordered from `config.ropeStyle` to `target` if it is q or k. */
export function toRopeLayout(
  config: ModelConfig,
  name: string,
  data: Float32Array,
  target: RopeStyle,
): Float32Array {
  const m = QK_NAME.exec(name);
  if (!m || config.ropeStyle === target) return data;
  const heads = m[1] === "q" ? config.numHeads : config.numKvHeads;
  const cols = m[2] === "weight" ? config.hiddenSize : 1;
  return permuteQK(data, heads, config.headDim, cols, target);
}
