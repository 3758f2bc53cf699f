/**
 * Calibration: run the fp32 reference model over a small token set and collect what the error-aware
 * quantizers, the pruner and the healer need — for every linear layer's input the Gram matrix XᵀX
 * (float64) and per-channel Σ|x|, and for every block the cosine similarity between the residual
 * stream entering and leaving it (block influence: near 1 = the block barely changes the stream).
 *
 * Token sets come from the shipped text (data/calibration, "text") or from the model itself with a
 * seeded sampler ("sample": data-free, in-distribution by construction).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import type { ModelDescription } from "../format/model.ts";
import { ReferenceModel } from "../model/reference/index.ts";
import type { ActivationObserver, ActivationSite } from "../model/reference/transformer.ts";
import { createSampler } from "../runtime/sampler.ts";
import { createTokenizer } from "../runtime/tokenizer/index.ts";
import type { BatchedForward, BatchSite } from "./batched-forward.ts";

export type Log = (message: string) => void;

/** The shipped calibration (train) and evaluation (held-out) paragraphs. */
export const CALIBRATION_TEXT = {
  train: fileURLToPath(new URL("../../data/calibration/train.txt", import.meta.url)),
  heldout: fileURLToPath(new URL("../../data/calibration/heldout.txt", import.meta.url)),
  /** Real prose (public domain / PSF-licensed, data/heldout/README.md): evaluation only. */
  prose: fileURLToPath(new URL("../../data/heldout/heldout.txt", import.meta.url)),
} as const;

export const CalibrationOptions = z.strictObject({
  /** "text": paragraphs of `textPath`; "sample": sequences the model generates from BOS. */
  source: z.enum(["text", "sample"]).default("text"),
  /** Paragraphs separated by blank lines (source "text"); default data/calibration/train.txt. */
  textPath: z.string().min(1).default(CALIBRATION_TEXT.train),
  /** Sampler seed (source "sample"). */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(0),
  /** Total tokens over all sequences (the last sequence is cut to fit). */
  maxTokens: z.number().int().min(2).default(4096),
  /** Longest sequence, BOS included. */
  maxSequenceLength: z.number().int().min(2).default(256),
  /** Sampling temperature (source "sample"). */
  temperature: z.number().positive().default(1),
});
export type CalibrationOptionsInput = z.input<typeof CalibrationOptions>;

/** A text file that cannot serve as calibration or evaluation text; the message names the file. */
export class TextFileError extends Error {
  override readonly name = "TextFileError";
}

/**
 * Paragraphs of a UTF-8 text file (blank-line separated, whitespace-trimmed, empty ones dropped).
 * Throws TextFileError for a missing/unreadable file, one that is not UTF-8 text (invalid bytes or
 * NUL: a binary file passed by mistake) or one with no paragraph.
 */
export function readParagraphs(path: string): string[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new TextFileError(
      `${path}: cannot read text (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new TextFileError(`${path}: not UTF-8 text`);
  }
  if (text.includes("\0")) throw new TextFileError(`${path}: not text (contains NUL bytes)`);
  const paragraphs = text
    .split(/\r?\n\s*\r?\n/)
    .map((p) => p.replace(/\s+/g, " ").trim())
    .filter((p) => p.length > 0);
  if (paragraphs.length === 0) throw new TextFileError(`${path}: no text (empty or whitespace only)`);
  return paragraphs;
}

/** Token sequences for calibration or evaluation, as `options` ask (deterministic for a seed). */
export function calibrationSequences(
  model: ModelDescription,
  options: CalibrationOptionsInput = {},
): number[][] {
  const o = CalibrationOptions.parse(options);
  const sequences: number[][] = [];
  let budget = o.maxTokens;
  const take = (tokens: number[]) => {
    const cut = tokens.slice(0, Math.min(o.maxSequenceLength, budget));
    // A lone BOS carries no information about the weights' inputs worth a sequence.
    if (cut.length >= 2) {
      sequences.push(cut);
      budget -= cut.length;
    }
  };

  if (o.source === "text") {
    const tokenizer = createTokenizer(model.tokenizer);
    for (const paragraph of readParagraphs(o.textPath)) {
      if (budget < 2) break;
      take(tokenizer.encode(paragraph, { addBos: true }));
    }
    if (sequences.length === 0) throw new Error(`${o.textPath}: no calibration text`);
    return sequences;
  }

  if (model.bosTokenId === null) throw new Error("sampled calibration needs a BOS token to start from");
  const ref = new ReferenceModel(model);
  const sampler = createSampler({ temperature: o.temperature, seed: o.seed });
  const stops = new Set(model.eosTokenIds);
  const maxLen = Math.min(o.maxSequenceLength, ref.maxContext);
  while (budget >= 2) {
    const limit = Math.min(maxLen, budget);
    const tokens = [model.bosTokenId];
    const state = ref.newState(limit);
    let logits = ref.forward(state, model.bosTokenId);
    while (tokens.length < limit) {
      const next = sampler.sample(logits);
      if (stops.has(next)) break;
      tokens.push(next);
      if (tokens.length < limit) logits = ref.forward(state, next);
    }
    if (tokens.length < 2) {
      budget -= 1; // an immediate EOS: charge it so a degenerate model cannot loop forever
      continue;
    }
    take(tokens);
  }
  return sequences;
}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Second-moment statistics of one linear layer input over all calibration tokens. */
export interface InputStats {
  /** Channels (the layer's K). */
  readonly K: number;
  /** Tokens seen. */
  rows: number;
  /** XᵀX, row-major [K, K], float64. */
  readonly gram: Float64Array;
  /** Σ_t |x_t,k| per channel. */
  readonly absSum: Float64Array;
}

export interface LayerStats {
  /** Input of q/k/v. */
  readonly attnIn: InputStats;
  /** Input of attn_output (all heads' attention outputs). */
  readonly attnOutIn: InputStats;
  /** Input of gate/up. */
  readonly ffnIn: InputStats;
  /** Input of ffn_down. */
  readonly ffnDownIn: InputStats;
  /** Mean over tokens of cos(residual in, residual out); 1 = the block changes nothing. */
  blockCosine: number;
}

export interface CalibrationStats {
  readonly layers: LayerStats[];
  /** Input of the output head. */
  readonly outputIn: InputStats;
  tokens: number;
  sequences: number;
}

export function newInputStats(K: number): InputStats {
  return { K, rows: 0, gram: new Float64Array(K * K), absSum: new Float64Array(K) };
}

/** Adds one token's activation vector (upper triangle only; `finishInputStats` mirrors it). */
export function accumulateInput(stats: InputStats, x: ArrayLike<number>): void {
  const K = stats.K;
  const g = stats.gram;
  for (let i = 0; i < K; i++) {
    const xi = x[i]!;
    stats.absSum[i]! += Math.abs(xi);
    if (xi === 0) continue;
    const row = i * K;
    for (let j = i; j < K; j++) g[row + j]! += xi * x[j]!;
  }
  stats.rows++;
}

/** Mirrors the accumulated upper triangle into the lower one. */
export function finishInputStats(stats: InputStats): void {
  const K = stats.K;
  for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) stats.gram[j * K + i] = stats.gram[i * K + j]!;
}

/** Per-channel mean |x|. */
export function channelMeanAbs(stats: InputStats): Float64Array {
  return stats.absSum.map((v) => v / Math.max(1, stats.rows));
}

/** Per-channel ‖x_k‖₂ over all tokens (Wanda's activation norm). */
export function channelNorms(stats: InputStats): Float64Array {
  const out = new Float64Array(stats.K);
  for (let k = 0; k < stats.K; k++) out[k] = Math.sqrt(Math.max(0, stats.gram[k * stats.K + k]!));
  return out;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 1;
}

export interface CollectOptions {
  /** Progress lines (one per sequence and a per-layer summary). */
  log?: Log;
}

/** Runs every sequence through the fp32 reference model and collects `CalibrationStats`. */
export function collectCalibrationStats(
  model: ModelDescription,
  sequences: readonly (readonly number[])[],
  options: CollectOptions = {},
): CalibrationStats {
  const log = options.log ?? (() => {});
  const c = model.config;
  const qDim = c.numHeads * c.headDim;
  const layers: LayerStats[] = Array.from({ length: c.numLayers }, () => ({
    attnIn: newInputStats(c.hiddenSize),
    attnOutIn: newInputStats(qDim),
    ffnIn: newInputStats(c.hiddenSize),
    ffnDownIn: newInputStats(c.intermediateSize),
    blockCosine: 0,
  }));
  const outputIn = newInputStats(c.hiddenSize);
  const cosineSums = new Float64Array(c.numLayers);
  const residIn = Array.from({ length: c.numLayers }, () => new Float32Array(c.hiddenSize));

  const siteStats: Partial<Record<ActivationSite, (l: number) => InputStats>> = {
    attn_in: (l) => layers[l]!.attnIn,
    attn_out_in: (l) => layers[l]!.attnOutIn,
    ffn_in: (l) => layers[l]!.ffnIn,
    ffn_down_in: (l) => layers[l]!.ffnDownIn,
    output_in: () => outputIn,
  };
  const observer: ActivationObserver = (layer, site, values) => {
    if (site === "resid_in") residIn[layer]!.set(values);
    else if (site === "resid_out") cosineSums[layer]! += cosine(residIn[layer]!, values);
    else accumulateInput(siteStats[site]!(layer), values);
  };

  const ref = new ReferenceModel(model);
  ref.observer = observer;
  let tokens = 0;
  for (const [i, seq] of sequences.entries()) {
    const state = ref.newState(seq.length);
    for (const t of seq) ref.forward(state, t);
    tokens += seq.length;
    log(`calibration: sequence ${i + 1}/${sequences.length}, ${seq.length} tokens (${tokens} total)`);
  }
  ref.observer = null;

  for (const [l, layer] of layers.entries()) {
    for (const s of [layer.attnIn, layer.attnOutIn, layer.ffnIn, layer.ffnDownIn]) finishInputStats(s);
    layer.blockCosine = tokens > 0 ? cosineSums[l]! / tokens : 1;
    log(`calibration: layer ${l}: block cosine(in, out) ${layer.blockCosine.toFixed(4)}`);
  }
  finishInputStats(outputIn);
  return { layers, outputIn, tokens, sequences: sequences.length };
}

/**
 * `collectCalibrationStats` on the batched WASM forward pass (same statistics, fp32 products): one
 * sequence at a time, Gram matrices added per sequence instead of per token.
 */
export function collectCalibrationStatsBatched(
  forward: BatchedForward,
  sequences: readonly (readonly number[])[],
  options: CollectOptions = {},
): CalibrationStats {
  const log = options.log ?? (() => {});
  const c = forward.config;
  const qDim = c.numHeads * c.headDim;
  const layers: LayerStats[] = Array.from({ length: c.numLayers }, () => ({
    attnIn: newInputStats(c.hiddenSize),
    attnOutIn: newInputStats(qDim),
    ffnIn: newInputStats(c.hiddenSize),
    ffnDownIn: newInputStats(c.intermediateSize),
    blockCosine: 0,
  }));
  const outputIn = newInputStats(c.hiddenSize);
  const cosineSums = new Float64Array(c.numLayers);
  const statsOf = (layer: number, site: BatchSite): InputStats => {
    if (site === "output_in") return outputIn;
    const l = layers[layer]!;
    return site === "attn_in"
      ? l.attnIn
      : site === "attn_out_in"
        ? l.attnOutIn
        : site === "ffn_in"
          ? l.ffnIn
          : l.ffnDownIn;
  };
  const observer = {
    site(layer: number, site: BatchSite, values: Float32Array, rows: number, cols: number) {
      const s = statsOf(layer, site);
      forward.addGram(values, rows, cols, s.gram);
      for (let t = 0; t < rows; t++)
        for (let k = 0; k < cols; k++) s.absSum[k]! += Math.abs(values[t * cols + k]!);
      s.rows += rows;
    },
    blockCosines(layer: number, cosines: Float64Array) {
      for (const v of cosines) cosineSums[layer]! += v;
    },
  };
  let tokens = 0;
  const t0 = performance.now();
  for (const [i, seq] of sequences.entries()) {
    forward.run(seq, { observer });
    tokens += seq.length;
    const s = (performance.now() - t0) / 1000;
    log(`calibration: sequence ${i + 1}/${sequences.length}, ${tokens} tokens, ${s.toFixed(1)} s`);
  }
  for (const [l, layer] of layers.entries()) {
    for (const s of [layer.attnIn, layer.attnOutIn, layer.ffnIn, layer.ffnDownIn]) finishInputStats(s);
    layer.blockCosine = tokens > 0 ? cosineSums[l]! / tokens : 1;
  }
  finishInputStats(outputIn);
  return { layers, outputIn, tokens, sequences: sequences.length };
}

/** `calibrationSequences` + `collectCalibrationStats`. */
export function calibrate(
  model: ModelDescription,
  options: CalibrationOptionsInput = {},
  collect: CollectOptions = {},
): CalibrationStats {
  return collectCalibrationStats(model, calibrationSequences(model, options), collect);
}
