/**
 * Structured pruning of a ModelDescription into a smaller one the engine runs unchanged (new config):
 *   - FFN intermediate channels (gate/up rows and ffn_down columns together), width rounded to a
 *     multiple of the int4 group size so the kernels see whole groups;
 *   - KV heads together with the query heads that read them (the GQA ratio is kept);
 *   - whole blocks, those whose output residual stream is most similar to their input (ShortGPT's
 *     block influence, from calibration).
 * Channel and head choices are per layer; counts are the same in every layer (one config).
 * The result records what was kept (`PrunePlan`), which healing needs.
 */
import { z } from "zod";
import {
  type ModelConfig,
  type ModelDescription,
  memoryTensor,
  type TensorEntry,
  TensorNames,
} from "../format/model.ts";
import type { CalibrationStats } from "./calibration.ts";
import { channelNorms } from "./calibration.ts";
import { withTensors } from "./model-edit.ts";
import { greedyObsRemoval } from "./obs.ts";

/** A pruning request that cannot be satisfied (bad ratio, nothing left, shape rules). */
export class PruneError extends Error {
  override readonly name = "PruneError";
}

const Ratio = z.number().min(0, "must be at least 0").max(0.9, "must be at most 0.9 (keep at least 10%)");

export const PruneOptions = z.strictObject({
  /** Fraction of FFN intermediate channels to remove, in [0, 0.9]. */
  ffnRatio: Ratio.default(0),
  /** Or the exact FFN width to keep (overrides ffnRatio); must be a multiple of ffnMultipleOf. */
  ffnWidth: z.number().int().positive().optional(),
  /** Kept FFN width is a multiple of this (the int4 group size); 1 = any width. */
  ffnMultipleOf: z.number().int().positive().default(32),
  /**
   * How channels are ranked: "wanda" Σ|W|·‖x‖ over gate/up/down; "energy" ‖W_down[:,c]‖²·E[h_c²]
   * (output lost without healing); "obs" greedy structured OBS (output lost *after* healing).
   */
  ffnImportance: z.enum(["wanda", "energy", "obs"]).default("obs"),
  /** Fraction of KV heads to remove (with their query heads), in [0, 0.9]. */
  kvHeadRatio: Ratio.default(0),
  /** How KV groups are ranked: "energy" = attn_output-weighted output energy; "obs" as above. */
  headImportance: z.enum(["energy", "obs"]).default("obs"),
  /** Number of whole blocks to remove (least influential first). */
  dropLayers: z.number().int().min(0).default(0),
  /** Relative damping of the Gram matrix for OBS ranking. */
  dampening: z.number().positive().default(0.01),
});
export type PruneOptionsInput = z.input<typeof PruneOptions>;

export interface PrunedLayer {
  /** Index of this block in the original model. */
  readonly source: number;
  /** Original FFN channels kept, ascending. */
  readonly ffnChannels: readonly number[];
  /** Original KV heads kept, ascending (query heads kvHead*group .. +group-1 come with each). */
  readonly kvHeads: readonly number[];
}

export interface PrunePlan {
  readonly original: ModelConfig;
  readonly config: ModelConfig;
  /** One entry per block of the pruned model. */
  readonly layers: readonly PrunedLayer[];
  /** Original indices of removed blocks, ascending. */
  readonly droppedLayers: readonly number[];
}

export interface PruneResult {
  readonly model: ModelDescription;
  readonly plan: PrunePlan;
}

function parseOptions(options: PruneOptionsInput): z.output<typeof PruneOptions> {
  const parsed = PruneOptions.safeParse(options);
  if (!parsed.success) {
    const issues = parsed.error.issues.map(
      (i) => `${i.path.length ? `${i.path.join(".")}: ` : ""}${i.message}`,
    );
    throw new PruneError(`invalid prune options: ${issues.join("; ")}`);
  }
  return parsed.data;
}

/** FFN width to keep, checked against the shape rules. */
export function prunedFfnWidth(intermediate: number, options: PruneOptionsInput): number {
  const o = parseOptions(options);
  const m = o.ffnMultipleOf;
  if (o.ffnWidth !== undefined) {
    if (o.ffnWidth > intermediate) {
      throw new PruneError(`ffnWidth ${o.ffnWidth} is wider than the model's FFN (${intermediate})`);
    }
    if (o.ffnWidth % m !== 0) {
      throw new PruneError(`ffnWidth ${o.ffnWidth} is not a multiple of ${m} (ffnMultipleOf)`);
    }
    return o.ffnWidth;
  }
  if (o.ffnRatio === 0) return intermediate;
  if (intermediate < m) {
    throw new PruneError(
      `the FFN has ${intermediate} channels, fewer than one multiple of ${m}: set ffnMultipleOf to 1 to prune it`,
    );
  }
  const target = intermediate * (1 - o.ffnRatio);
  // Nearest multiple, at least one and never above the original width.
  const keep = Math.min(Math.floor(intermediate / m) * m, Math.max(m, Math.round(target / m) * m));
  return keep;
}

/** KV heads to keep. */
export function prunedKvHeads(numKvHeads: number, options: PruneOptionsInput): number {
  const o = parseOptions(options);
  const keep = Math.round(numKvHeads * (1 - o.kvHeadRatio));
  if (keep < 1) {
    throw new PruneError(`kvHeadRatio ${o.kvHeadRatio} would leave 0 of ${numKvHeads} KV heads`);
  }
  return keep;
}

/** Original layer indices removed: the `count` with the highest block cosine (least influence). */
export function layersToDrop(stats: CalibrationStats, count: number): number[] {
  const n = stats.layers.length;
  if (count >= n) throw new PruneError(`dropping ${count} of ${n} layers would leave none`);
  return stats.layers
    .map((l, i) => ({ i, cos: l.blockCosine }))
    .sort((a, b) => b.cos - a.cos || a.i - b.i)
    .slice(0, count)
    .map((x) => x.i)
    .sort((a, b) => a - b);
}

function topByScore(scores: ArrayLike<number>, keep: number): number[] {
  return Array.from({ length: scores.length }, (_, i) => i)
    .sort((a, b) => scores[b]! - scores[a]! || a - b)
    .slice(0, keep)
    .sort((a, b) => a - b);
}

function keptComplement(total: number, removed: Iterable<number>): number[] {
  const gone = new Set(removed);
  return Array.from({ length: total }, (_, i) => i).filter((i) => !gone.has(i));
}

/** FFN channels of layer l to keep (ascending). */
export function rankFfnChannels(
  model: ModelDescription,
  stats: CalibrationStats,
  l: number,
  keep: number,
  method: "wanda" | "energy" | "obs",
  dampening = 0.01,
): number[] {
  const c = model.config;
  const I = c.intermediateSize;
  const H = c.hiddenSize;
  if (keep >= I) return Array.from({ length: I }, (_, i) => i);
  const gate = model.tensors.get(TensorNames.ffnGate(l))!.f32();
  const up = model.tensors.get(TensorNames.ffnUp(l))!.f32();
  const down = model.tensors.get(TensorNames.ffnDown(l))!.f32();
  const ls = stats.layers[l]!;
  if (method === "obs") {
    const blocks = Array.from({ length: I }, (_, i) => [i]);
    const removed = greedyObsRemoval(down, H, I, ls.ffnDownIn.gram, blocks, I - keep, dampening);
    return keptComplement(I, removed);
  }
  const scores = new Float64Array(I);
  if (method === "wanda") {
    const xNorm = channelNorms(ls.ffnIn);
    const hNorm = channelNorms(ls.ffnDownIn);
    for (let ch = 0; ch < I; ch++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += (Math.abs(gate[ch * H + k]!) + Math.abs(up[ch * H + k]!)) * xNorm[k]!;
      for (let n = 0; n < H; n++) s += Math.abs(down[n * I + ch]!) * hNorm[ch]!;
      scores[ch] = s;
    }
  } else {
    for (let ch = 0; ch < I; ch++) {
      let s = 0;
      for (let n = 0; n < H; n++) s += down[n * I + ch]! ** 2;
      scores[ch] = s * ls.ffnDownIn.gram[ch * I + ch]!;
    }
  }
  return topByScore(scores, keep);
}

/** KV heads of layer l to keep (ascending). */
export function rankKvHeads(
  model: ModelDescription,
  stats: CalibrationStats,
  l: number,
  keep: number,
  method: "energy" | "obs",
  dampening = 0.01,
): number[] {
  const c = model.config;
  if (keep >= c.numKvHeads) return Array.from({ length: c.numKvHeads }, (_, i) => i);
  const qDim = c.numHeads * c.headDim;
  const width = (c.numHeads / c.numKvHeads) * c.headDim; // attn_output columns per KV group
  const wo = model.tensors.get(TensorNames.attnOutput(l))!.f32();
  const gram = stats.layers[l]!.attnOutIn.gram;
  const blocks = Array.from({ length: c.numKvHeads }, (_, g) =>
    Array.from({ length: width }, (_, i) => g * width + i),
  );
  if (method === "obs") {
    const removed = greedyObsRemoval(wo, c.hiddenSize, qDim, gram, blocks, c.numKvHeads - keep, dampening);
    return keptComplement(c.numKvHeads, removed);
  }
  // Output energy of the group's slice of attn_output: Σ_n w_n,R G_RR w_n,Rᵀ.
  const scores = blocks.map((cols) => {
    let s = 0;
    for (let n = 0; n < c.hiddenSize; n++) {
      for (const a of cols) {
        const wa = wo[n * qDim + a]!;
        if (wa === 0) continue;
        for (const b of cols) s += wa * gram[a * qDim + b]! * wo[n * qDim + b]!;
      }
    }
    return s;
  });
  return topByScore(scores, keep);
}

function selectRows(data: Float32Array, cols: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * cols);
  for (const [i, r] of rows.entries()) out.set(data.subarray(r * cols, (r + 1) * cols), i * cols);
  return out;
}

function selectColumns(
  data: Float32Array,
  rowCount: number,
  cols: number,
  keep: readonly number[],
): Float32Array {
  const out = new Float32Array(rowCount * keep.length);
  for (let n = 0; n < rowCount; n++) {
    for (const [i, k] of keep.entries()) out[n * keep.length + i] = data[n * cols + k]!;
  }
  return out;
}

/** Rows of q (per query head) or k/v (per KV head) belonging to the kept heads. */
function headRows(heads: readonly number[], headDim: number): number[] {
  return heads.flatMap((h) => Array.from({ length: headDim }, (_, i) => h * headDim + i));
}

/** Builds the pruned model for an explicit plan (per-layer kept channels and heads). */
export function applyPrunePlan(
  model: ModelDescription,
  plan: Omit<PrunePlan, "config" | "original">,
): PruneResult {
  const c = model.config;
  const first = plan.layers[0];
  if (!first) throw new PruneError("a pruned model needs at least one layer");
  const I = first.ffnChannels.length;
  const kv = first.kvHeads.length;
  if (I === 0 || kv === 0)
    throw new PruneError("a pruned layer needs at least one FFN channel and one KV head");
  if (plan.layers.some((l) => l.ffnChannels.length !== I || l.kvHeads.length !== kv)) {
    throw new PruneError("every layer must keep the same number of FFN channels and KV heads (one config)");
  }
  const group = c.numHeads / c.numKvHeads;
  const config: ModelConfig = {
    ...c,
    numLayers: plan.layers.length,
    intermediateSize: I,
    numKvHeads: kv,
    numHeads: kv * group,
  };
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const entries: TensorEntry[] = [];
  const put = (name: string, shape: number[], data: Float32Array) =>
    entries.push(memoryTensor(name, shape, data));
  const get = (name: string) => model.tensors.get(name)!.f32();
  put(TensorNames.tokenEmbedding, [c.vocabSize, H], get(TensorNames.tokenEmbedding));
  plan.layers.forEach((pl, i) => {
    const l = pl.source;
    const qHeads = pl.kvHeads.flatMap((g) => Array.from({ length: group }, (_, j) => g * group + j));
    const qRows = headRows(qHeads, c.headDim);
    const kvRows = headRows(pl.kvHeads, c.headDim);
    put(TensorNames.attnNorm(i), [H], get(TensorNames.attnNorm(l)));
    put(TensorNames.attnQ(i), [qRows.length, H], selectRows(get(TensorNames.attnQ(l)), H, qRows));
    put(TensorNames.attnK(i), [kvRows.length, H], selectRows(get(TensorNames.attnK(l)), H, kvRows));
    put(TensorNames.attnV(i), [kvRows.length, H], selectRows(get(TensorNames.attnV(l)), H, kvRows));
    if (c.attentionBias) {
      put(TensorNames.attnQBias(i), [qRows.length], selectRows(get(TensorNames.attnQBias(l)), 1, qRows));
      put(TensorNames.attnKBias(i), [kvRows.length], selectRows(get(TensorNames.attnKBias(l)), 1, kvRows));
      put(TensorNames.attnVBias(i), [kvRows.length], selectRows(get(TensorNames.attnVBias(l)), 1, kvRows));
    }
    put(
      TensorNames.attnOutput(i),
      [H, qRows.length],
      selectColumns(get(TensorNames.attnOutput(l)), H, qDim, qRows),
    );
    put(TensorNames.ffnNorm(i), [H], get(TensorNames.ffnNorm(l)));
    const ch = pl.ffnChannels;
    put(TensorNames.ffnGate(i), [I, H], selectRows(get(TensorNames.ffnGate(l)), H, ch));
    put(TensorNames.ffnUp(i), [I, H], selectRows(get(TensorNames.ffnUp(l)), H, ch));
    put(
      TensorNames.ffnDown(i),
      [H, I],
      selectColumns(get(TensorNames.ffnDown(l)), H, c.intermediateSize, ch),
    );
  });
  put(TensorNames.outputNorm, [H], get(TensorNames.outputNorm));
  if (!c.tiedEmbeddings) put(TensorNames.output, [c.vocabSize, H], get(TensorNames.output));
  return {
    model: withTensors(model, entries, config),
    plan: { original: c, config, layers: plan.layers, droppedLayers: plan.droppedLayers },
  };
}

/**
 * Prunes `model` as `options` ask, ranking channels, heads and blocks with calibration statistics
 * collected on this model. Throws PruneError for impossible requests.
 */
export function pruneModel(
  model: ModelDescription,
  stats: CalibrationStats,
  options: PruneOptionsInput = {},
): PruneResult {
  const o = parseOptions(options);
  const c = model.config;
  if (stats.layers.length !== c.numLayers) {
    throw new PruneError(`calibration has ${stats.layers.length} layers, the model ${c.numLayers}`);
  }
  const ffnKeep = prunedFfnWidth(c.intermediateSize, o);
  const kvKeep = prunedKvHeads(c.numKvHeads, o);
  const dropped = layersToDrop(stats, o.dropLayers);
  const layers: PrunedLayer[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    if (dropped.includes(l)) continue;
    layers.push({
      source: l,
      ffnChannels: rankFfnChannels(model, stats, l, ffnKeep, o.ffnImportance, o.dampening),
      kvHeads: rankKvHeads(model, stats, l, kvKeep, o.headImportance, o.dampening),
    });
  }
  return applyPrunePlan(model, { layers, droppedLayers: dropped });
}
