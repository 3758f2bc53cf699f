/**
 * The quality/size/speed table of the built variants against the original fp32 model on held-out
 * text, with two comparison rows on the same model at the same bytes: `rtn-int4` (plain
 * round-to-nearest in our format, run by the engine) and `q4_0` (llama.cpp's Q4_0 rounding
 * reimplemented for evaluation, run through the fp32 batched reference pass, so without the engine's
 * activation rounding: if anything it flatters Q4_0). Both baselines store the token embedding and
 * the head as the `quality` variant does (int4 -> RTN int4 / Q4_0 rounding; int8 -> int8 per row),
 * so their bytes equal its unpruned size.
 *
 * Variants are measured by the WASM engine that serves them. With the build's own evaluation text
 * and token budget their numbers are the manifests' (measured at build time, same code); with
 * another `text` or `tokens` each variant is reloaded from its shards and measured again.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { R2Keys } from "../format/manifest.ts";
import { type ModelDescription, memoryTensor, parameterCount, TensorNames } from "../format/model.ts";
import { packWeights } from "../format/pack.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { loadModel } from "../model/import/index.ts";
import { BatchedForward, recordedLogits } from "./batched-forward.ts";
import { buildVariants, evaluationSequences } from "./build-variants.ts";
import {
  CALIBRATION_TEXT,
  calibrationSequences,
  collectCalibrationStatsBatched,
  readParagraphs,
} from "./calibration.ts";
import { llamaCppQ4_0 } from "./llama-cpp-q4-0.ts";
import { engineFor, measureQuality, measureSpeed } from "./measure.ts";
import { dequantizedModel, withTensors } from "./model-edit.ts";
import { quantizeModel } from "./quantize.ts";
import { ConfigError, readVariantsFile } from "./variants-config.ts";

export interface EvalRow {
  variant: string;
  method: string;
  bytes: number;
  bits_per_weight: number;
  kl_mean: number;
  top1_agreement: number;
  perplexity: number;
  reference_perplexity: number;
  /** Teacher-forced positions scored. */
  eval_tokens: number;
  decode_tok_s: number | null;
}

/** The issue's benchmark target: `quality` KL ≤ 0.5 × Q4_0's, at no more bytes than Q4_0. */
export interface EvalTarget {
  quality_kl: number;
  q4_0_kl: number;
  /** quality_kl / q4_0_kl. */
  ratio: number;
  bytes_ok: boolean;
  met: boolean;
}

export interface EvalReport {
  /** The held-out text file scored. */
  text: string;
  rows: EvalRow[];
  /** Null when the config has no variant named `quality`. */
  target: EvalTarget | null;
}

export interface EvalOptions {
  model: string;
  config: string;
  out: string;
  log: (m: string) => void;
  /** Held-out text (blank-line separated paragraphs); default: the config's evaluation text. */
  text?: string;
  /** Tokens scored; default: the config's evaluation.maxTokens. */
  tokens?: number;
}

/**
 * `model` with every 2-D tensor replaced by llama.cpp Q4_0 round-trip values, except the embedding
 * and head when the quality variant keeps those int8 (taken from `int8Reference`).
 */
function q4_0Model(
  model: ModelDescription,
  int8Reference: ModelDescription,
  embeddings: "int4" | "int8",
  head: "int4" | "int8",
): ModelDescription {
  const tensors = [...model.tensors.values()].map((t) => {
    if (t.name === TensorNames.tokenEmbedding && embeddings === "int8")
      return int8Reference.tensors.get(t.name)!;
    if (t.name === TensorNames.output && head === "int8") return int8Reference.tensors.get(t.name)!;
    if (t.shape.length !== 2) return t;
    const [N, K] = t.shape as [number, number];
    return memoryTensor(t.name, [N, K], llamaCppQ4_0(t.f32(), N, K));
  });
  return withTensors(model, tensors);
}

/** The benchmark target from a report's rows (null without `quality` and `q4_0` rows). */
export function evalTarget(rows: readonly EvalRow[]): EvalTarget | null {
  const quality = rows.find((r) => r.variant === "quality");
  const q4 = rows.find((r) => r.variant === "q4_0");
  if (!quality || !q4) return null;
  const ratio = q4.kl_mean > 0 ? quality.kl_mean / q4.kl_mean : Number.POSITIVE_INFINITY;
  const bytes_ok = quality.bytes <= q4.bytes;
  return { quality_kl: quality.kl_mean, q4_0_kl: q4.kl_mean, ratio, bytes_ok, met: bytes_ok && ratio <= 0.5 };
}

function checkTokens(tokens: number | undefined): void {
  if (tokens === undefined) return;
  if (!Number.isInteger(tokens) || tokens < 8)
    throw new ConfigError(`eval: tokens must be an integer ≥ 8 (got ${tokens})`);
}

export async function evaluate(opts: EvalOptions): Promise<EvalReport> {
  // Bad inputs fail before minutes of building: the text is read and checked first.
  checkTokens(opts.tokens);
  if (opts.text !== undefined) readParagraphs(opts.text);
  const file = readVariantsFile(opts.config);
  const built = await buildVariants({ model: opts.model, config: opts.config, out: opts.out, log: opts.log });
  const original = await loadModel(opts.model);
  const custom =
    opts.text !== undefined || (opts.tokens ?? file.evaluation.maxTokens) !== file.evaluation.maxTokens;
  const textPath =
    opts.text ?? (file.evaluation.text === "prose" ? CALIBRATION_TEXT.prose : CALIBRATION_TEXT.heldout);
  const heldout = custom
    ? calibrationSequences(original, { textPath, maxTokens: opts.tokens ?? file.evaluation.maxTokens })
    : evaluationSequences(original, file);
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  const forward = new BatchedForward(kernels, original);
  // One recording, replayed for every comparison (each replay consumes whole sequences in order).
  const reference = recordedLogits(forward, heldout);

  const rows: EvalRow[] = [];
  for (const { variant, manifest: m } of built.rows) {
    let quality = m.quality;
    if (custom) {
      opts.log(`${variant}: measuring on ${textPath}`);
      const data = new Uint8Array(m.weights.totalBytes);
      for (const s of m.shards) data.set(readFileSync(join(built.out, R2Keys.shard(s.sha256))), s.offset);
      quality = measureQuality(reference, await engineFor(m.weights, data), heldout);
    }
    const cfg = m.build.config as { quant?: { method?: string }; prune?: unknown };
    rows.push({
      variant,
      method: `${cfg.quant?.method ?? "?"}${cfg.prune ? "+prune" : ""}`,
      bytes: m.size.totalBytes,
      bits_per_weight: m.size.bitsPerWeight,
      kl_mean: quality.klMean,
      top1_agreement: quality.top1Agreement,
      perplexity: quality.perplexity,
      reference_perplexity: quality.referencePerplexity,
      eval_tokens: quality.evalTokens,
      decode_tok_s: 1000 / m.speed.decodeMsPerToken,
    });
  }

  // Baselines store the embedding and head as the quality variant (else the first variant) does.
  const q = (file.variants.find((v) => v.name === "quality") ?? file.variants[0]!).quant;
  opts.log(`rtn-int4: round-to-nearest int4 g32 (embeddings ${q.embeddings}, head ${q.head})`);
  // RTN needs no statistics; the quantizer's error report does (same calibration as the build).
  const stats = collectCalibrationStatsBatched(
    forward,
    calibrationSequences(original, { maxTokens: file.calibration.maxTokens }),
  );
  const rtn = quantizeModel(original, stats, {
    method: "rtn",
    groupSize: 32,
    embeddings: q.embeddings,
    head: q.head,
    errorRows: q.errorRows,
  });
  const { table, data } = packWeights(original, rtn.tensors);
  const rtnQuality = measureQuality(reference, await engineFor(table, data), heldout);
  const rtnSpeed = await measureSpeed(table, data);
  const params = parameterCount(original);
  const base = { bytes: data.byteLength, bits_per_weight: (data.byteLength * 8) / params };
  rows.push({
    variant: "rtn-int4",
    method: "rtn",
    ...base,
    kl_mean: rtnQuality.klMean,
    top1_agreement: rtnQuality.top1Agreement,
    perplexity: rtnQuality.perplexity,
    reference_perplexity: rtnQuality.referencePerplexity,
    eval_tokens: rtnQuality.evalTokens,
    decode_tok_s: 1000 / rtnSpeed.decodeMsPerToken,
  });

  opts.log("q4_0: llama.cpp Q4_0 rounding (eval only, same bytes, fp32 reference pass)");
  const q4 = q4_0Model(original, dequantizedModel(original, rtn.tensors), q.embeddings, q.head);
  const mark = kernels.mark();
  const q4Quality = measureQuality(
    reference,
    { ...recordedLogits(new BatchedForward(kernels, q4), heldout), maxContext: q4.config.maxContext },
    heldout,
  );
  kernels.release(mark);
  rows.push({
    variant: "q4_0",
    method: "llama.cpp q4_0",
    ...base,
    kl_mean: q4Quality.klMean,
    top1_agreement: q4Quality.top1Agreement,
    perplexity: q4Quality.perplexity,
    reference_perplexity: q4Quality.referencePerplexity,
    eval_tokens: q4Quality.evalTokens,
    decode_tok_s: null,
  });
  return { text: textPath, rows, target: evalTarget(rows) };
}

export function formatTable(rows: readonly EvalRow[]): string {
  const head = ["variant", "method", "bytes", "bits/w", "KL mean", "top-1", "ppl (fp32)", "decode tok/s"];
  const body = rows.map((r) => [
    r.variant,
    r.method,
    String(r.bytes),
    r.bits_per_weight.toFixed(2),
    r.kl_mean.toFixed(4),
    `${(r.top1_agreement * 100).toFixed(1)}%`,
    `${r.perplexity.toFixed(2)} (${r.reference_perplexity.toFixed(2)})`,
    r.decode_tok_s === null ? "-" : r.decode_tok_s.toFixed(0),
  ]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(" | ")} |`).join("\n");
}

/** One line: the target, its numbers and met/missed. */
export function formatTarget(t: EvalTarget | null): string {
  if (!t) return "target: no quality or q4_0 row";
  return (
    `target (quality KL ≤ 0.5 × Q4_0 KL at ≤ Q4_0 bytes): ${t.met ? "MET" : "MISSED"} — ` +
    `KL ${t.quality_kl.toFixed(4)} vs ${t.q4_0_kl.toFixed(4)} (${t.ratio.toFixed(2)}×)` +
    `${t.bytes_ok ? "" : ", and larger than Q4_0"}`
  );
}
