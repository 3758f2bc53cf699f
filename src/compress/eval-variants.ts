/**
 * The quality/size/speed table of the built variants (measured at build time with the WASM engine,
 * on held-out text, against the original fp32 model), with two comparison rows on the same model and
 * the same bytes: `rtn-int4` (plain round-to-nearest, our format, run by the engine) and `q4_0`
 * (llama.cpp's Q4_0 rounding reimplemented for evaluation, run through the reference pass; same
 * 4.5 bits per linear weight, same int8 embeddings and head).
 */

import { type ModelDescription, memoryTensor, parameterCount, TensorNames } from "../format/model.ts";
import { packWeights } from "../format/pack.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { loadModel } from "../model/import/index.ts";
import { BatchedForward, recordedLogits } from "./batched-forward.ts";
import { buildVariants } from "./build-variants.ts";
import { CALIBRATION_TEXT, calibrationSequences, collectCalibrationStatsBatched } from "./calibration.ts";
import { llamaCppQ4_0 } from "./llama-cpp-q4-0.ts";
import { engineFor, measureQuality, measureSpeed } from "./measure.ts";
import { dequantizedModel, withTensors } from "./model-edit.ts";
import { quantizeModel } from "./quantize.ts";
import { readVariantsFile } from "./variants-config.ts";

export interface EvalRow {
  variant: string;
  method: string;
  bytes: number;
  bits_per_weight: number;
  kl_mean: number;
  top1_agreement: number;
  perplexity: number;
  reference_perplexity: number;
  decode_tok_s: number | null;
}

/** `model` with every block linear replaced by llama.cpp Q4_0 round-trip values. */
function q4_0Model(model: ModelDescription, embeddingsAndHead: ModelDescription): ModelDescription {
  const tensors = [...model.tensors.values()].map((t) => {
    if (t.name === TensorNames.tokenEmbedding || t.name === TensorNames.output)
      return embeddingsAndHead.tensors.get(t.name)!;
    if (t.shape.length !== 2) return t;
    const [N, K] = t.shape as [number, number];
    return memoryTensor(t.name, [N, K], llamaCppQ4_0(t.f32(), N, K));
  });
  return withTensors(model, tensors);
}

export async function evaluate(opts: {
  model: string;
  config: string;
  out: string;
  log: (m: string) => void;
}): Promise<EvalRow[]> {
  const built = await buildVariants({ model: opts.model, config: opts.config, out: opts.out, log: opts.log });
  const rows: EvalRow[] = built.rows.map(({ variant, manifest: m }) => ({
    variant,
    method: `${(m.build.config as { quant?: { method?: string } }).quant?.method ?? "?"}${
      (m.build.config as { prune?: unknown }).prune ? "+prune" : ""
    }`,
    bytes: m.size.totalBytes,
    bits_per_weight: m.size.bitsPerWeight,
    kl_mean: m.quality.klMean,
    top1_agreement: m.quality.top1Agreement,
    perplexity: m.quality.perplexity,
    reference_perplexity: m.quality.referencePerplexity,
    decode_tok_s: 1000 / m.speed.decodeMsPerToken,
  }));

  const original = await loadModel(opts.model);
  const file = readVariantsFile(opts.config);
  const heldout = calibrationSequences(original, {
    textPath: CALIBRATION_TEXT.heldout,
    maxTokens: file.evaluation.maxTokens,
  });
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  const forward = new BatchedForward(kernels, original);
  opts.log("rtn-int4: round-to-nearest int4 g32 (int8 embeddings and head)");
  // RTN needs no statistics; the quantizer's error report does (same calibration as the build).
  const stats = collectCalibrationStatsBatched(
    forward,
    calibrationSequences(original, { maxTokens: file.calibration.maxTokens }),
  );
  const reference = () => recordedLogits(forward, heldout);
  const rtn = quantizeModel(original, stats, {
    method: "rtn",
    groupSize: 32,
    embeddings: "int8",
    head: "int8",
  });
  const { table, data } = packWeights(original, rtn.tensors);
  const rtnQuality = measureQuality(reference(), await engineFor(table, data), heldout);
  const rtnSpeed = await measureSpeed(table, data);
  const params = parameterCount(original);
  const base = {
    bytes: data.byteLength,
    bits_per_weight: (data.byteLength * 8) / params,
    reference_perplexity: rtnQuality.referencePerplexity,
  };
  rows.push({
    variant: "rtn-int4",
    method: "rtn",
    ...base,
    kl_mean: rtnQuality.klMean,
    top1_agreement: rtnQuality.top1Agreement,
    perplexity: rtnQuality.perplexity,
    decode_tok_s: 1000 / rtnSpeed.decodeMsPerToken,
  });

  opts.log("q4_0: llama.cpp Q4_0 rounding (eval only, same bytes)");
  const q4 = q4_0Model(original, dequantizedModel(original, rtn.tensors));
  const mark = kernels.mark();
  const q4Forward = new BatchedForward(kernels, q4);
  const q4Quality = measureQuality(
    reference(),
    { ...recordedLogits(q4Forward, heldout), maxContext: q4.config.maxContext },
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
    decode_tok_s: null,
  });
  return rows;
}

export function formatTable(rows: EvalRow[]): string {
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
