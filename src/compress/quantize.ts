/**
 * Error-aware int4 for a whole model: every linear weight of every block becomes a `PackedInt4`
 * (the engine's format, so it runs unchanged) chosen to keep the layer's *output* close on calibration
 * data, not just its weights:
 *   "rtn"     round-to-nearest (src/format/int4.ts quantizeRtn), the baseline;
 *   "search"  RTN with a per-group clip-ratio search weighted by E[x_k²];
 *   "gptq"    GPTQ with error feedback over the calibration Hessian (default);
 *   "source"  the source file's own blocks where they are exact in our formats (src/model/import/ggml/
 *             repack.ts: GGUF Q4_1 -> int4 with fp16 mins, Q4_0 -> symmetric int4, Q8_0 -> int8 g32),
 *             found for each tensor by value (a pruned model's kept, unmodified tensors match their
 *             source tensor bit for bit); anything else (other dtypes, healed tensors) falls back to
 *             "search".
 * Optionally AWQ scaling first (`awq: true`): per-input-channel scales folded into attn_norm (q/k/v),
 * ffn_norm (gate/up), the v rows (attn_output) and the up rows (ffn_down); the folded fp32 model
 * computes exactly what the original does, and the packed tensors belong to it.
 * A tensor falls back to int8 when asked (`int8` names/globs) or when its int4 relative output error
 * exceeds `maxRelativeError`. Embeddings and the output head default to int8 (per row) as in pack.ts.
 */
import { z } from "zod";
import {
  dequantize,
  dequantizeInt8,
  type PackedInt4,
  type PackedInt8,
  quantizeInt8Rtn,
  quantizeRtn,
} from "../format/int4.ts";
import { type ModelDescription, memoryTensor, type TensorEntry, TensorNames } from "../format/model.ts";
import { REPACKABLE_DTYPES, repackGgml } from "../model/import/ggml/repack.ts";
import { type AwqScales, scaleColumns, scaleGram, searchAwqScales } from "./awq.ts";
import { type CalibrationStats, channelMeanAbs, type InputStats, type Log } from "./calibration.ts";
import { quantizeClipSearch } from "./clip-search.ts";
import { Int4GroupSizeSchema, quantizeGptq } from "./gptq.ts";
import { DEFAULT_CLIP_RATIOS } from "./int4-groups.ts";
import { type QuantizedTensor, withTensors } from "./model-edit.ts";
import { OUTPUT_ERROR_MAX_ROWS, outputError } from "./output-error.ts";

export const QuantMethod = z.enum(["rtn", "search", "gptq", "source"]);
export type QuantMethod = z.infer<typeof QuantMethod>;

export const QuantizeOptions = z.strictObject({
  method: QuantMethod.default("gptq"),
  /** AWQ scale search and folding before quantizing. */
  awq: z.boolean().default(false),
  groupSize: Int4GroupSizeSchema.default(32),
  zeroPoint: z.boolean().default(false),
  clipRatios: z
    .array(z.number().gt(0).max(1))
    .min(1)
    .default([...DEFAULT_CLIP_RATIOS]),
  /** GPTQ: relative damping of the Hessian diagonal. */
  dampening: z.number().positive().default(0.01),
  /** GPTQ: quantize columns by decreasing Hessian diagonal (static group scales). */
  actOrder: z.boolean().default(false),
  /** GPTQ: pick each group's scale by clip search (weighted by the Hessian diagonal). */
  gptqClipSearch: z.boolean().default(true),
  /** AWQ: α grid points in [0, 1] and rows sampled per layer for the search. */
  awqGrid: z.number().int().min(1).default(20),
  awqMaxRows: z.number().int().min(1).default(512),
  /** Tensors kept int8 whatever their int4 error: exact names or globs ("blk.*.ffn_down.weight"). */
  int8: z.array(z.string().min(1)).default([]),
  /**
   * Rows of each weight whose output error is computed (K² multiply-adds each, evenly spaced; the
   * reported error and the maxRelativeError check use them): the report's cost on a real model.
   */
  errorRows: z.number().int().min(1).default(OUTPUT_ERROR_MAX_ROWS),
  /** A linear weight whose int4 relative output error exceeds this becomes int8. */
  maxRelativeError: z.number().positive().nullable().default(null),
  int8GroupSize: z.union([Int4GroupSizeSchema, z.literal("row")]).default(32),
  /** Token embedding (and a tied head) and untied output head storage, as pack.ts. */
  embeddings: z.enum(["int8", "int4"]).default("int8"),
  head: z.enum(["int8", "int4"]).default("int8"),
  /**
   * int4 embeddings by clip search (weighted by the head's input E[x²] when tied) instead of RTN.
   * Off by default: on SmolLM2 it cut KL but flipped a greedy chat answer (test/real-model-api).
   */
  embeddingSearch: z.boolean().default(false),
});
export type QuantizeOptionsInput = z.input<typeof QuantizeOptions>;
type Options = z.output<typeof QuantizeOptions>;

export interface TensorQuantReport {
  readonly name: string;
  readonly shape: readonly [number, number];
  readonly format: "int4" | "int8";
  /** How the int4 candidate was made (also for tensors that fell back to int8). */
  readonly method: QuantMethod;
  /** Why int8: asked for by name, or the int4 error bound was exceeded. */
  readonly fallback: "requested" | "error-bound" | null;
  /** Relative output error on calibration data (weights error for the embedding, which has no input). */
  readonly relativeError: number;
  /** The same metric for plain RTN int4 of the original weights (the baseline). */
  readonly rtnRelativeError: number;
  /** What relativeError measures. */
  readonly errorKind: "output" | "weights";
  /** AWQ α chosen for this tensor's input (null without AWQ). */
  readonly awqAlpha: number | null;
  /** "source": the source tensor whose blocks were repacked, or null where the method fell back. */
  readonly sourceTensor?: string | null;
}

export interface QuantizeResult {
  /** Every tensor of the (AWQ-folded) model: linear weights packed, vectors fp32. */
  readonly tensors: QuantizedTensor[];
  readonly report: TensorQuantReport[];
  /** The fp32 model the packed tensors quantize (the input model when AWQ is off). */
  readonly folded: ModelDescription;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

/** One linear layer to quantize: its (possibly AWQ-scaled) weights and the Gram of its input. */
interface LinearJob {
  name: string;
  weights: Float32Array;
  N: number;
  K: number;
  gram: Float64Array;
  /** Original weights and Gram, for the RTN baseline. */
  original: Float32Array;
  originalGram: Float64Array;
  awqAlpha: number | null;
}

function quantizeInt4(job: LinearJob, o: Options): PackedInt4 {
  const { weights, N, K, gram } = job;
  const opts = { groupSize: o.groupSize, zeroPoint: o.zeroPoint };
  switch (o.method) {
    case "source": // no exact source blocks: the cheap error-aware method
    case "search": {
      const importance = new Float64Array(K);
      for (let k = 0; k < K; k++) importance[k] = gram[k * K + k]!;
      return quantizeClipSearch(weights, N, K, importance, { ...opts, clipRatios: o.clipRatios });
    }
    case "rtn":
      return quantizeRtn(weights, N, K, opts);
    case "gptq":
      return quantizeGptq(weights, N, K, gram, {
        ...opts,
        dampening: o.dampening,
        actOrder: o.actOrder,
        clipSearch: o.gptqClipSearch,
        clipRatios: o.clipRatios,
      });
  }
}

function runJob(
  job: LinearJob,
  o: Options,
  int8Requested: boolean,
  exact: SourceBlocks | null = null,
): { value: PackedInt4 | PackedInt8; report: TensorQuantReport } {
  const { name, N, K } = job;
  if (exact && exact.value.format === (int8Requested ? "int8" : "int4")) {
    const rtnInt4 = quantizeRtn(job.original, N, K, o);
    const rtn = outputError(job.original, dequantize(rtnInt4), N, K, job.originalGram, o.errorRows);
    const err = outputError(job.weights, dequantizeAny(exact.value), N, K, job.gram, o.errorRows);
    return {
      value: exact.value,
      report: {
        name,
        shape: [N, K],
        method: "source",
        errorKind: "output",
        awqAlpha: job.awqAlpha,
        format: exact.value.format,
        fallback: exact.value.format === "int8" ? "requested" : null,
        relativeError: err.relative,
        rtnRelativeError: rtn.relative,
        sourceTensor: exact.source,
      },
    };
  }
  const rtnInt4 = quantizeRtn(job.original, N, K, o);
  const rtn = outputError(job.original, dequantize(rtnInt4), N, K, job.originalGram, o.errorRows);
  const base = {
    name,
    shape: [N, K] as const,
    method: o.method,
    errorKind: "output" as const,
    awqAlpha: job.awqAlpha,
  };
  // Plain RTN of unscaled weights is the baseline itself: no second quantization or error pass.
  const same = o.method === "rtn" && job.awqAlpha === null && job.weights === job.original;
  const int4 = int8Requested ? null : same ? rtnInt4 : quantizeInt4(job, o);
  const int4Error = !int4
    ? null
    : same
      ? rtn.relative
      : outputError(job.weights, dequantize(int4), N, K, job.gram, o.errorRows).relative;
  if (int4 && int4Error !== null && (o.maxRelativeError === null || int4Error <= o.maxRelativeError)) {
    return {
      value: int4,
      report: {
        ...base,
        format: "int4",
        fallback: null,
        relativeError: int4Error,
        rtnRelativeError: rtn.relative,
      },
    };
  }
  const int8 = quantizeInt8Rtn(job.weights, N, K, { groupSize: o.int8GroupSize });
  const int8Error = outputError(job.weights, dequantizeInt8(int8), N, K, job.gram, o.errorRows).relative;
  return {
    value: int8,
    report: {
      ...base,
      format: "int8",
      fallback: int8Requested ? "requested" : "error-bound",
      relativeError: int8Error,
      rtnRelativeError: rtn.relative,
    },
  };
}

/** Working fp32 copies of the tensors AWQ may rescale. */
class Working {
  readonly values = new Map<string, Float32Array>();
  constructor(private readonly model: ModelDescription) {}
  get(name: string): Float32Array {
    let v = this.values.get(name);
    if (!v) {
      const t = this.model.tensors.get(name);
      if (!t) throw new Error(`quantize: the model has no tensor ${name}`);
      v = Float32Array.from(t.f32());
      this.values.set(name, v);
    }
    return v;
  }
  shape(name: string): readonly number[] {
    return this.model.tensors.get(name)!.shape;
  }
}

/** Multiplies columns of `names` by s (in place) and divides `divide`'s entries (vector or rows) by s. */
function foldScales(
  w: Working,
  names: string[],
  s: Float64Array,
  divide: { name: string; rows: boolean }[],
): void {
  for (const name of names) {
    const [N, K] = w.shape(name) as [number, number];
    w.get(name).set(scaleColumns(w.get(name), N, K, s));
  }
  for (const d of divide) {
    const v = w.get(d.name);
    const width = d.rows ? v.length / s.length : 1;
    for (let i = 0; i < s.length; i++)
      for (let j = 0; j < width; j++) v[i * width + j] = v[i * width + j]! / s[i]!;
  }
}

/**
 * AWQ for one layer, in dependency order (a fold into a producer's rows must happen before that
 * producer's own scale search): ffn_down → gate/up → attn_output → q/k/v. Returns the transformed
 * Gram matrices and the α per input site.
 */
function applyAwqToLayer(
  model: ModelDescription,
  l: number,
  stats: CalibrationStats["layers"][number],
  w: Working,
  o: Options,
  log: Log,
): Map<string, { gram: Float64Array; alpha: number }> {
  const c = model.config;
  const search = (names: string[], input: InputStats, meanAbs: ArrayLike<number>): AwqScales =>
    searchAwqScales(
      names.map((name) => {
        const [N, K] = w.shape(name) as [number, number];
        return { name, weights: w.get(name), N, K };
      }),
      input.gram,
      meanAbs,
      {
        groupSize: o.groupSize,
        zeroPoint: o.zeroPoint,
        quantizer: o.method === "rtn" ? "rtn" : "search",
        clipRatios: o.clipRatios,
        grid: o.awqGrid,
        maxRows: o.awqMaxRows,
      },
    );
  const result = new Map<string, { gram: Float64Array; alpha: number }>();
  const record = (names: string[], input: InputStats, found: AwqScales, site: string) => {
    const gram = scaleGram(input.gram, input.K, found.scales);
    for (const name of names) result.set(name, { gram, alpha: found.alpha });
    const gain = found.unscaledError > 0 ? found.error / found.unscaledError : 1;
    log(`awq: layer ${l} ${site}: alpha ${found.alpha.toFixed(2)}, error x${gain.toFixed(3)}`);
  };

  const down = [TensorNames.ffnDown(l)];
  const sDown = search(down, stats.ffnDownIn, channelMeanAbs(stats.ffnDownIn));
  foldScales(w, down, sDown.scales, [{ name: TensorNames.ffnUp(l), rows: true }]);
  record(down, stats.ffnDownIn, sDown, "ffn_down");

  const gateUp = [TensorNames.ffnGate(l), TensorNames.ffnUp(l)];
  const sFfn = search(gateUp, stats.ffnIn, channelMeanAbs(stats.ffnIn));
  foldScales(w, gateUp, sFfn.scales, [{ name: TensorNames.ffnNorm(l), rows: false }]);
  record(gateUp, stats.ffnIn, sFfn, "gate/up");

  // attn_output's input channel (h, i) is value channel (kv(h), i) averaged by attention: the scale
  // folds into that v row, so all query heads of a KV group must share it.
  const group = c.numHeads / c.numKvHeads;
  const hd = c.headDim;
  const raw = channelMeanAbs(stats.attnOutIn);
  const tied = new Float64Array(raw.length);
  for (let kv = 0; kv < c.numKvHeads; kv++) {
    for (let i = 0; i < hd; i++) {
      let sum = 0;
      for (let h = kv * group; h < (kv + 1) * group; h++) sum += raw[h * hd + i]!;
      for (let h = kv * group; h < (kv + 1) * group; h++) tied[h * hd + i] = sum / group;
    }
  }
  const out = [TensorNames.attnOutput(l)];
  const sOut = search(out, stats.attnOutIn, tied);
  const kvScales = new Float64Array(c.numKvHeads * hd);
  for (let kv = 0; kv < c.numKvHeads; kv++)
    for (let i = 0; i < hd; i++) kvScales[kv * hd + i] = sOut.scales[kv * group * hd + i]!;
  foldScales(w, out, sOut.scales, []);
  const vRows = [{ name: TensorNames.attnV(l), rows: true }];
  if (c.attentionBias) vRows.push({ name: TensorNames.attnVBias(l), rows: false });
  foldScales(w, [], kvScales, vRows);
  record(out, stats.attnOutIn, sOut, "attn_output");

  const qkv = [TensorNames.attnQ(l), TensorNames.attnK(l), TensorNames.attnV(l)];
  const sAttn = search(qkv, stats.attnIn, channelMeanAbs(stats.attnIn));
  foldScales(w, qkv, sAttn.scales, [{ name: TensorNames.attnNorm(l), rows: false }]);
  record(qkv, stats.attnIn, sAttn, "q/k/v");
  return result;
}

/**
 * Quantizes every tensor of `model` using calibration statistics collected on it
 * (`collectCalibrationStats`). Deterministic.
 */
export function quantizeModel(
  model: ModelDescription,
  stats: CalibrationStats,
  options: QuantizeOptionsInput = {},
  log: Log = () => {},
  /** "source": the imported model whose stored blocks may be repacked (default: `model`). */
  source: ModelDescription = model,
): QuantizeResult {
  const o = QuantizeOptions.parse(options);
  if (o.method === "source" && o.awq)
    throw new Error("quantize: method source keeps the source weights, no AWQ");
  const c = model.config;
  const exactOf = (name: string): SourceBlocks | null =>
    o.method === "source" ? findSourceBlocks(source, name, model.tensors.get(name)!) : null;
  if (stats.layers.length !== c.numLayers) {
    throw new Error(`calibration has ${stats.layers.length} layers, the model ${c.numLayers}: recalibrate`);
  }
  const int8Patterns = o.int8.map(globToRegExp);
  const wantsInt8 = (name: string) => int8Patterns.some((r) => r.test(name));
  const w = new Working(model);
  const packed = new Map<string, PackedInt4 | PackedInt8>();
  const report: TensorQuantReport[] = [];

  for (let l = 0; l < c.numLayers; l++) {
    const ls = stats.layers[l]!;
    const inputs: [string, InputStats][] = [
      [TensorNames.attnQ(l), ls.attnIn],
      [TensorNames.attnK(l), ls.attnIn],
      [TensorNames.attnV(l), ls.attnIn],
      [TensorNames.attnOutput(l), ls.attnOutIn],
      [TensorNames.ffnGate(l), ls.ffnIn],
      [TensorNames.ffnUp(l), ls.ffnIn],
      [TensorNames.ffnDown(l), ls.ffnDownIn],
    ];
    for (const [name, input] of inputs) {
      const K = w.shape(name)[1];
      if (input.K !== K)
        throw new Error(`calibration input of ${name} has ${input.K} channels, the weight ${K}`);
    }
    const awq = o.awq ? applyAwqToLayer(model, l, ls, w, o, log) : null;
    for (const [name, input] of inputs) {
      const [N, K] = w.shape(name) as [number, number];
      const scaled = awq?.get(name);
      const original = model.tensors.get(name)!.f32();
      const job: LinearJob = {
        name,
        weights: o.awq ? w.get(name) : original,
        N,
        K,
        gram: scaled?.gram ?? input.gram,
        original,
        originalGram: input.gram,
        awqAlpha: scaled?.alpha ?? null,
      };
      const { value, report: r } = runJob(job, o, wantsInt8(name), exactOf(name));
      packed.set(name, value);
      report.push(r);
      log(
        `quantize: ${name} ${r.format}${r.fallback ? ` (${r.fallback})` : ""} ${o.method}: ` +
          `rel. output error ${r.relativeError.toExponential(3)} (rtn ${r.rtnRelativeError.toExponential(3)})`,
      );
    }
  }

  // Embedding: int4 by RTN or, asked for, clip search; its error is reported on weights.
  const embName = TensorNames.tokenEmbedding;
  const emb = model.tensors.get(embName)!;
  const [vocab, hidden] = emb.shape as [number, number];
  const embValues = emb.f32();
  const embRtn = dequantize(quantizeRtn(embValues, vocab, hidden, o));
  const embWant = o.embeddings === "int4" && !wantsInt8(embName) ? "int4" : "int8";
  const embExact = exactOf(embName);
  const embPacked =
    embExact && embExact.value.format === embWant
      ? embExact.value
      : embWant === "int4"
        ? o.method === "rtn" || !o.embeddingSearch
          ? quantizeRtn(embValues, vocab, hidden, o)
          : quantizeClipSearch(
              embValues,
              vocab,
              hidden,
              embeddingImportance(stats, hidden, c.tiedEmbeddings),
              {
                groupSize: o.groupSize,
                zeroPoint: o.zeroPoint,
                clipRatios: o.clipRatios,
              },
            )
        : quantizeInt8Rtn(embValues, vocab, hidden, { groupSize: "row" });
  packed.set(embName, embPacked);
  const eye = identityGram(hidden);
  report.push({
    name: embName,
    shape: [vocab, hidden],
    format: embPacked.format,
    method:
      embExact && embPacked === embExact.value
        ? "source"
        : embPacked.format === "int4" && o.method !== "rtn" && o.embeddingSearch
          ? "search"
          : "rtn",
    sourceTensor: embExact && embPacked === embExact.value ? embExact.source : null,
    fallback: embPacked.format === "int8" && o.embeddings === "int4" ? "requested" : null,
    relativeError: outputError(embValues, dequantizeAny(embPacked), vocab, hidden, eye).relative,
    rtnRelativeError: outputError(embValues, embRtn, vocab, hidden, eye).relative,
    errorKind: "weights",
    awqAlpha: null,
  });

  if (!c.tiedEmbeddings) {
    const headName = TensorNames.output;
    const job: LinearJob = {
      name: headName,
      weights: model.tensors.get(headName)!.f32(),
      N: vocab,
      K: hidden,
      gram: stats.outputIn.gram,
      original: model.tensors.get(headName)!.f32(),
      originalGram: stats.outputIn.gram,
      awqAlpha: null,
    };
    const { value, report: r } = runJob(job, o, o.head === "int8" || wantsInt8(headName), exactOf(headName));
    packed.set(headName, value);
    report.push(r);
  }

  const tensors: QuantizedTensor[] = [];
  const foldedEntries: TensorEntry[] = [];
  for (const t of model.tensors.values()) {
    const fp32 = w.values.get(t.name) ?? t.f32();
    foldedEntries.push(w.values.has(t.name) ? memoryTensor(t.name, t.shape, fp32) : t);
    tensors.push({ name: t.name, shape: [...t.shape], value: packed.get(t.name) ?? fp32 });
  }
  return { tensors, report, folded: withTensors(model, foldedEntries) };
}

/**
 * Per-channel weights for the embedding's clip search. As a lookup table every channel of a row
 * counts alike (1); a tied embedding is also the head, whose logit error on channel k grows with
 * E[x_k²] of the head's input: its calibration Gram diagonal, scaled to mean 1, is added.
 */
function embeddingImportance(stats: CalibrationStats, hidden: number, tied: boolean): Float64Array {
  const w = new Float64Array(hidden).fill(1);
  if (!tied || stats.outputIn.K !== hidden) return w;
  let mean = 0;
  for (let k = 0; k < hidden; k++) mean += stats.outputIn.gram[k * hidden + k]! / hidden;
  if (mean > 0) for (let k = 0; k < hidden; k++) w[k]! += stats.outputIn.gram[k * hidden + k]! / mean;
  return w;
}

function dequantizeAny(p: PackedInt4 | PackedInt8): Float32Array {
  return p.format === "int4" ? dequantize(p) : dequantizeInt8(p);
}

function identityGram(n: number): Float64Array {
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) g[i * n + i] = 1;
  return g;
}

/** A tensor's exact repacking from the source file, and the source tensor it came from. */
interface SourceBlocks {
  readonly value: PackedInt4 | PackedInt8;
  readonly source: string;
}

/** "blk.3.attn_q.weight" -> "attn_q.weight" (the role of a tensor, whatever its layer). */
function roleOf(name: string): string {
  return name.replace(/^blk\.\d+\./, "");
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * The source tensor whose stored blocks `t` is, repacked losslessly: a tensor of the same role and
 * row length, repackable dtype, whose dequantized values equal t's bit for bit (the same name first,
 * then the other layers: layer dropping renumbers kept blocks). A source with more rows qualifies when
 * t's rows are some of its rows, in order (FFN channel or head pruning keeps whole rows of gate/up
 * and q/k/v; ggml blocks run along a row, so those rows' blocks are repacked alone). Null when none
 * (modified, columns removed, or not repackable).
 */
function findSourceBlocks(source: ModelDescription, name: string, t: TensorEntry): SourceBlocks | null {
  if (t.shape.length !== 2) return null;
  const [N, K] = t.shape as [number, number];
  const role = roleOf(name);
  const same = source.tensors.get(name);
  const candidates = [
    ...(same ? [same] : []),
    ...[...source.tensors.values()].filter((s) => s !== same && roleOf(s.name) === role),
  ];
  let values: Float32Array | null = null;
  for (const s of candidates) {
    const Ns = s.shape[0]!;
    if (!s.stored || !REPACKABLE_DTYPES.includes(s.dtype) || Ns < N || s.shape[1] !== K) continue;
    values ??= t.f32();
    const rows = Ns === N ? (sameBits(values, s.f32()) ? null : undefined) : keptRows(values, s.f32(), K);
    if (rows === undefined) continue;
    const stored = s.stored();
    const r = repackGgml(s.dtype, rows ? selectStoredRows(stored, Ns, rows) : stored, N, K);
    return r.ok ? { value: r.value, source: s.name } : null;
  }
  return null;
}

/**
 * The rows of `all` ([Ns, K]) that the rows of `values` ([N, K], N < Ns) are, bit for bit and in
 * ascending order; undefined when some row of `values` is no row of `all`.
 */
function keptRows(values: Float32Array, all: Float32Array, K: number): number[] | undefined {
  const Ns = all.length / K;
  const rows: number[] = [];
  let j = 0;
  for (let i = 0; i < values.length / K; i++) {
    const row = values.subarray(i * K, (i + 1) * K);
    while (j < Ns && !sameBits(row, all.subarray(j * K, (j + 1) * K))) j++;
    if (j === Ns) return undefined;
    rows.push(j++);
  }
  return rows;
}

/** The stored bytes of `rows` of an [Ns, K] ggml tensor (its blocks run along rows, row by row). */
function selectStoredRows(stored: Uint8Array, Ns: number, rows: readonly number[]): Uint8Array {
  const rowBytes = stored.byteLength / Ns;
  const out = new Uint8Array(rows.length * rowBytes);
  for (const [i, j] of rows.entries())
    out.set(stored.subarray(j * rowBytes, (j + 1) * rowBytes), i * rowBytes);
  return out;
}
