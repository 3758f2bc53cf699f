/**
 * `npm run eval [-- --json] [--model <path>] [--config <file>] [--out <variants dir>]`
 *
 * The quality/size/speed table of the built variants (measured at build time with the WASM engine,
 * on held-out text, against the original fp32 model), with two comparison rows on the same model and
 * the same bytes: `rtn-int4` (plain round-to-nearest, our format, run by the engine) and `q4_0`
 * (llama.cpp's Q4_0 rounding reimplemented for evaluation, run through the reference pass; same
 * 4.5 bits per linear weight, same int8 embeddings and head).
 */
import { parseArgs } from "node:util";
import { CALIBRATION_TEXT, calibrate, calibrationSequences } from "../src/compress/calibration.ts";
import { llamaCppQ4_0 } from "../src/compress/llama-cpp-q4-0.ts";
import { engineFor, measureQuality, measureSpeed } from "../src/compress/measure.ts";
import { dequantizedModel, withTensors } from "../src/compress/model-edit.ts";
import { quantizeModel } from "../src/compress/quantize.ts";
import { type ModelDescription, memoryTensor, parameterCount, TensorNames } from "../src/format/model.ts";
import { packWeights } from "../src/format/pack.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { buildVariants, DEFAULT_CONFIG, DEFAULT_MODEL, DEFAULT_OUT } from "./build-variants.ts";

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
  const heldout = calibrationSequences(original, { textPath: CALIBRATION_TEXT.heldout, maxTokens: 2048 });
  opts.log("rtn-int4: round-to-nearest int4 g32 (int8 embeddings and head)");
  const stats = calibrate(original, {});
  const rtn = quantizeModel(original, stats, {
    method: "rtn",
    groupSize: 32,
    embeddings: "int8",
    head: "int8",
  });
  const { table, data } = packWeights(original, rtn.tensors);
  const rtnQuality = measureQuality(original, await engineFor(table, data), heldout);
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
  const q4Quality = measureQuality(original, new ReferenceModel(q4), heldout);
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      model: { type: "string", default: process.env.SHARDLM_MODEL ?? DEFAULT_MODEL },
      config: { type: "string", default: DEFAULT_CONFIG },
      out: { type: "string", default: DEFAULT_OUT },
    },
  });
  const rows = await evaluate({
    model: values.model!,
    config: values.config!,
    out: values.out!,
    log: (m) => console.error(m),
  });
  if (values.json) for (const r of rows) console.log(JSON.stringify(r));
  else console.log(formatTable(rows));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
