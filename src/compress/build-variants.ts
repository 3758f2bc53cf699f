/**
 * `npm run build:variants -- --model <path> [--config config/variants.json] [--out variants] [--force]`
 *
 * Turns a model into the compressed variants the API serves: calibrate, prune + heal, error-aware
 * int4, then shards + manifest with measured quality (vs the original, on held-out text) and speed
 * (the WASM engine, single thread). Output mirrors the R2 layout (see src/compress/variant-store.ts).
 * A variant whose inputs (model hash, its config, calibration, pipeline code) are unchanged is reused.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Manifest, R2Keys } from "../format/manifest.ts";
import { type ModelDescription, ModelImportError, parameterCount } from "../format/model.ts";
import { packWeights } from "../format/pack.ts";
import type { SpeculativeProfile } from "../format/speculative.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { loadModel } from "../model/import/index.ts";
import { MODEL_SHAPES, type ModelShape, syntheticModel } from "../model/synthetic.ts";
import { BatchedForward, recordedLogits } from "./batched-forward.ts";
import {
  CALIBRATION_TEXT,
  type CalibrationStats,
  calibrationSequences,
  collectCalibrationStatsBatched,
  type Log,
} from "./calibration.ts";
import { compressVariant } from "./compress-variant.ts";
import { engineFor, measureQuality, measureSpeed } from "./measure.ts";
import { chatCalibrationTokens, nodeVerifyCosts, searchSpeculative } from "./speculative-search.ts";
import {
  putContent,
  putManifest,
  putShards,
  readBuildRecord,
  readManifest,
  readVariantsIndex,
  type VariantsIndex,
  writeBuildRecord,
  writeVariantsIndex,
} from "./variant-store.ts";
import { ConfigError, readVariantsFile, type VariantConfig, type VariantsFile } from "./variants-config.ts";
import { type MeasuredVerifyCosts, WorkerdVerifyCosts } from "./workerd-measure.ts";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const DEFAULT_CONFIG = join(root, "config/variants.json");
/**
 * The config for real models (SmolLM2-135M class): tuned so the three variants build in minutes on
 * two cores (fewer calibration/eval tokens, no GPTQ), where DEFAULT_CONFIG's GPTQ over 4096 tokens
 * suits toy models and would take about an hour.
 */
export const REAL_MODEL_CONFIG = join(root, "config/variants-smollm2.json");
/** Model files at least this large get REAL_MODEL_CONFIG when no config is named. */
const REAL_MODEL_BYTES = 16 * 1024 * 1024;

/** The config a CLI uses when none is named: by the model's size on disk (synthetic shapes: real). */
export function defaultConfigFor(model: string): string {
  if (model.startsWith("synthetic:")) return REAL_MODEL_CONFIG;
  if (!existsSync(model)) return DEFAULT_CONFIG; // the build reports the missing model
  const st = statSync(model);
  const bytes = st.isDirectory()
    ? readdirSync(model).reduce((n, f) => n + statSync(join(model, f)).size, 0)
    : st.size;
  return bytes >= REAL_MODEL_BYTES ? REAL_MODEL_CONFIG : DEFAULT_CONFIG;
}
export const DEFAULT_OUT = join(root, "variants");

/** The code that decides a variant's bytes and measurements (not deploy, CLI or table code). */
const PIPELINE_SOURCES = ["src/compress", "src/format", "src/model/synthetic.ts"];

/** Hash of the code that decides what a variant's bytes are: change it and variants rebuild. */
export function pipelineVersion(): string {
  const h = createHash("sha256");
  for (const entry of PIPELINE_SOURCES) {
    const path = join(root, entry);
    const files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => f.endsWith(".ts"))
          .sort()
          .map((f) => join(entry, f))
      : [entry];
    for (const f of files) h.update(f).update(readFileSync(join(root, f)));
  }
  return h.digest("hex").slice(0, 16);
}

async function fileSha256(path: string): Promise<{ sha256: string; bytes: number }> {
  const files = statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((f) => /\.(json|safetensors)$/.test(f))
        .sort()
        .map((f) => join(path, f))
    : [path];
  const h = createHash("sha256");
  let bytes = 0;
  for (const f of files) {
    for await (const chunk of createReadStream(f)) {
      h.update(chunk as Buffer);
      bytes += (chunk as Buffer).byteLength;
    }
  }
  return { sha256: h.digest("hex"), bytes };
}

/**
 * A model file/folder, or `synthetic:<shape>` (seeded synthetic weights in a real model's shape:
 * stories15M, stories110M, SmolLM2-135M) for builds and benchmarks without a download.
 */
async function loadSource(
  path: string,
): Promise<{ original: ModelDescription; source: { sha256: string; bytes: number } }> {
  const m = /^synthetic:(.+)$/.exec(path);
  if (!m) return { original: await loadModel(path), source: await fileSha256(path) };
  const shape = m[1] as ModelShape;
  if (!MODEL_SHAPES.includes(shape)) {
    throw new ModelImportError(path, `unknown synthetic shape (known: ${MODEL_SHAPES.join(", ")})`);
  }
  const original = syntheticModel(shape);
  const bytes = [...original.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
  return { original, source: { sha256: createHash("sha256").update(path).digest("hex"), bytes } };
}

/** The held-out sequences a variants file's `evaluation` names (text and token budget). */
export function evaluationSequences(model: ModelDescription, file: VariantsFile): number[][] {
  return calibrationSequences(model, {
    textPath: file.evaluation.text === "prose" ? CALIBRATION_TEXT.prose : CALIBRATION_TEXT.heldout,
    maxTokens: file.evaluation.maxTokens,
  });
}

/** Where the build measures the speculative verify costs it records (BuildOptions.verifyCosts). */
export const VERIFY_COSTS_ON = ["workerd", "node"] as const;
export type VerifyCostsOn = (typeof VERIFY_COSTS_ON)[number];

export interface BuildOptions {
  model: string;
  config: string;
  out: string;
  force?: boolean;
  log?: Log;
  /**
   * Where to measure the verify costs the manifest records for speculation: "workerd" (default: where
   * the Worker serves, on its kernels; the build fails when workerd does not start) or "node" (this
   * process, SIMD128 kernels: for machines without workerd; the manifest says so).
   */
  verifyCosts?: VerifyCostsOn;
}

export interface BuildResult {
  out: string;
  index: VariantsIndex;
  rows: { variant: string; manifest: Manifest; reused: boolean }[];
}

function inputKey(
  sourceSha: string,
  v: VariantConfig,
  file: VariantsFile,
  pipeline: string,
  verifyCosts: VerifyCostsOn,
): string {
  const key = {
    sourceSha,
    // A variant measured in Node is not reused for a workerd build, nor the reverse.
    ...(file.speculative ? { verifyCosts } : {}),
    variant: v,
    seed: file.seed,
    calibration: file.calibration,
    evaluation: file.evaluation,
    shardBytes: file.shardBytes,
    pipeline,
  };
  return createHash("sha256").update(JSON.stringify(key)).digest("hex");
}

export async function buildVariants(opts: BuildOptions): Promise<BuildResult> {
  const verifyCostsOn = opts.verifyCosts ?? "workerd";
  if (!VERIFY_COSTS_ON.includes(verifyCostsOn))
    throw new ConfigError(
      `verifyCosts must be one of ${VERIFY_COSTS_ON.join(", ")}, got ${JSON.stringify(opts.verifyCosts)}`,
    );
  const log = withProgress(opts.log ?? ((m: string) => console.error(m)));
  const file = readVariantsFile(opts.config);
  log(`loading ${opts.model}`);
  const { original, source } = await loadSource(opts.model);
  // One WASM instance: the original model's fp32 weights stay resident (calibration, reference
  // logits); a pruned model's are allocated above them for its recalibration and released.
  const kernels = await loadKernelsNode(await ensureKernelsWasm());
  let forward: BatchedForward | null = null;
  const originalForward = () => {
    forward ??= new BatchedForward(kernels, original);
    return forward;
  };
  const calibrateBatched = (
    model: ModelDescription,
    fwd?: BatchedForward,
    maxTokens = file.calibration.maxTokens,
  ): CalibrationStats => {
    const mark = kernels.mark();
    try {
      const f = fwd ?? new BatchedForward(kernels, model);
      const seqs = calibrationSequences(model, {
        source: file.calibration.source,
        maxTokens,
        seed: file.seed,
      });
      return collectCalibrationStatsBatched(f, seqs, { log: log.every(8) });
    } finally {
      if (!fwd) kernels.release(mark);
    }
  };
  let referenceLogits: ReturnType<typeof recordedLogits> | null = null;
  const pipeline = pipelineVersion();
  const previous = readVariantsIndex(opts.out);
  const index: VariantsIndex = { format: "shardlm-variants", variants: {}, inputs: {} };
  const rows: BuildResult["rows"] = [];
  const tokenizerJson = JSON.stringify(original.tokenizer);
  const heldout = evaluationSequences(original, file);
  // The original model's calibration, by token count (a variant may ask for more: prune.calibrationTokens).
  const statsByTokens = new Map<number, CalibrationStats>();
  // Started for the first variant that measures verify costs there, stopped when the build ends.
  let workerd: WorkerdVerifyCosts | null = null;

  try {
    for (const v of file.variants) {
      const key = inputKey(source.sha256, v, file, pipeline, verifyCostsOn);
      // The last build of this folder, else the record of any earlier build with these exact inputs
      // (another model or config may have been built here since).
      const prevId =
        previous?.inputs[v.name] === key ? previous.variants[v.name] : readBuildRecord(opts.out, key, v.name);
      if (!opts.force && prevId && existsSync(join(opts.out, R2Keys.manifest(prevId)))) {
        log(`${v.name}: inputs unchanged, reusing manifest ${prevId.slice(0, 12)}`);
        index.variants[v.name] = prevId;
        index.inputs[v.name] = key;
        writeBuildRecord(opts.out, key, v.name, prevId); // folders built before builds/ existed
        rows.push({ variant: v.name, manifest: readManifest(opts.out, prevId), reused: true });
        continue;
      }
      const t0 = performance.now();
      log(`${v.name} (${v.tier}): building`);
      const tokens = v.prune?.calibrationTokens ?? file.calibration.maxTokens;
      let stats = statsByTokens.get(tokens);
      if (!stats) {
        log(`  calibrating the original model (${tokens} tokens)`);
        stats = calibrateBatched(original, originalForward(), tokens);
        statsByTokens.set(tokens, stats);
      }
      // Seven linear weights per kept layer (compress-variant.ts drops round(layers · numLayers)).
      const keptLayers =
        original.config.numLayers - Math.round((v.prune?.layers ?? 0) * original.config.numLayers);
      log.startStage(v.name, keptLayers * 7);
      const compressed = compressVariant(
        original,
        stats,
        v,
        file,
        (m) => log(`  ${m}`),
        (m) => calibrateBatched(m),
      );
      const { table, data } = packWeights(compressed.model, compressed.tensors);
      log(
        `  packed ${(data.byteLength / 1e6).toFixed(2)} MB; measuring quality on ${heldout.length} held-out sequences`,
      );
      const engine = await engineFor(table, data);
      if (!referenceLogits) {
        log("  original model's logits on the held-out text (once, for every variant)");
        const r0 = performance.now();
        referenceLogits = recordedLogits(originalForward(), heldout);
        log(`  original model's logits done in ${((performance.now() - r0) / 1000).toFixed(0)} s`);
      }
      // Each of these is one long synchronous pass: say what runs before it starts.
      log("  scoring the variant against them (KL, top-1, perplexity)");
      const quality = measureQuality(referenceLogits, engine, heldout);
      log(
        `  KL ${quality.klMean.toFixed(4)}, top-1 ${(quality.top1Agreement * 100).toFixed(1)}%, ppl ${quality.perplexity.toFixed(2)} (original ${quality.referencePerplexity.toFixed(2)})`,
      );
      log("  measuring decode and prefill speed (CPU time; prefill and decode cost by position)");
      const speed = await measureSpeed(table, data, undefined, (m) => log(`  ${m}`));
      log(
        `  decode ${speed.decodeMsPerToken.toFixed(3)} ms/token, prefill ${speed.prefillMsPerToken.toFixed(3)} ms/token`,
      );

      let speculative: SpeculativeProfile | undefined;
      if (file.speculative) {
        const prompts = chatCalibrationTokens(original, file.speculative.prompts);
        const m0 = performance.now();
        let verifyCosts: MeasuredVerifyCosts;
        if (verifyCostsOn === "workerd") {
          workerd ??= await WorkerdVerifyCosts.start();
          verifyCosts = await workerd.measure(table, data);
        } else {
          log(
            "  verify costs measured in Node (--verify-costs node): the served drafter prices rows as Node runs them",
          );
          verifyCosts = nodeVerifyCosts(engine);
        }
        log(
          `  verify costs measured on ${verifyCosts.origin.measuredOn} in ${((performance.now() - m0) / 1000).toFixed(1)} s: ${verifyCosts.origin.detail}`,
        );
        const found = await searchSpeculative(engine, prompts, {
          verifyCosts,
          answerTokens: file.speculative.answerTokens,
          log: (m) => log(`  ${m}`),
        });
        speculative = found.profile;
        log(
          `  speculation ${speculative.enabled ? "on" : "off"}: skip [${speculative.draft.skipLayers.join(",")}], ` +
            `estimated ${speculative.measured.estimatedSpeedup.toFixed(2)}x`,
        );
      }

      const shards = putShards(opts.out, data, file.shardBytes);
      const tokenizerSha = putContent(opts.out, R2Keys.blob, tokenizerJson);
      const params = parameterCount(compressed.model);
      const manifest: Manifest = {
        format: "shardlm-manifest",
        version: 1,
        variant: v.name,
        tier: v.tier,
        source: {
          name: basename(opts.model).replace(/\.gguf$/, ""),
          format: original.source.format,
          ...source,
        },
        build: {
          pipelineVersion: pipeline,
          config: v as unknown as Record<string, unknown>,
          seed: file.seed,
        },
        model: {
          config: table.config,
          bosTokenId: original.bosTokenId,
          eosTokenIds: original.eosTokenIds,
          chatTemplate: original.chatTemplate,
          tokenizer: { sha256: tokenizerSha, bytes: Buffer.byteLength(tokenizerJson) },
        },
        weights: table,
        shards,
        size: {
          totalBytes: data.byteLength,
          parameters: params,
          bitsPerWeight: (data.byteLength * 8) / params,
        },
        quality,
        speed,
        ...(speculative ? { speculative } : {}),
      };
      const id = putManifest(opts.out, manifest);
      writeBuildRecord(opts.out, key, v.name, id);
      index.variants[v.name] = id;
      index.inputs[v.name] = key;
      rows.push({ variant: v.name, manifest, reused: false });
      log(
        `  manifest ${id.slice(0, 12)}, ${shards.length} shard(s), ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
  } finally {
    await workerd?.dispose();
  }
  writeVariantsIndex(opts.out, index);
  return { out: opts.out, index, rows };
}

type ProgressLog = Log & {
  /** Starts counting `quantize:` lines of one variant (`total` expected) for an ETA. */
  startStage(name: string, total: number): void;
  /** A log that passes only every n-th line (and the last of a run is not known: keep n small). */
  every(n: number): Log;
};

/** Prefixes lines with the elapsed time; `quantize:` lines get "i/n, ETA" within the variant. */
function withProgress(log: Log): ProgressLog {
  const t0 = performance.now();
  let stage = { name: "", total: 0, done: 0, start: 0 };
  const stamp = () => {
    const s = Math.round((performance.now() - t0) / 1000);
    return `[${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}]`;
  };
  const out = ((m: string) => {
    if (stage.total > 0 && m.trimStart().startsWith("quantize:")) {
      stage.done++;
      const spent = (performance.now() - stage.start) / 1000;
      const eta = (spent / stage.done) * Math.max(0, stage.total - stage.done);
      if (stage.done % 7 === 0 || stage.done === stage.total) {
        log(
          `${stamp()} ${stage.name}: quantized ${stage.done}/${stage.total} tensors, ETA ${eta.toFixed(0)} s for this variant`,
        );
      }
      return;
    }
    log(`${stamp()} ${m}`);
  }) as ProgressLog;
  out.startStage = (name, total) => {
    stage = { name, total, done: 0, start: performance.now() };
  };
  out.every = (n) => {
    let i = 0;
    return (m) => {
      if (i++ % n === 0) out(m);
    };
  };
  return out;
}
