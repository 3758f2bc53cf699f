/**
 * Offline estimate for the model-output n-gram datastore (issue 13): the real SmolLM2-135M-Instruct
 * answers the calibration prompts and the bench prompts greedily (as the speculative bench does: 128
 * tokens, no stop token), the datastore is built from the calibration answers only, and on the bench
 * answers we count the tokens a draft would have got right (src/compress/ngram-datastore.ts,
 * draftCoverage): prompt lookup alone, the datastore alone, and prompt lookup first with the datastore
 * as fallback, per prompt set. Answers are kept in a JSON cache under the OS temp folder (keyed by the
 * model file and the prompt) so reruns with other table settings cost no decoding.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildNgramDatastore,
  type CoverageCounts,
  type DatastoreBuildOptions,
  type DraftDatastore,
  type DraftLookup,
  datastoreLookup,
  draftCoverage,
  draftDatastore,
  type PromptAnswer,
} from "../compress/ngram-datastore.ts";
import { traceCostSteps } from "../compress/speculative-search.ts";
import { NgramDatastore } from "../format/ngram-datastore.ts";
import { speculationCosts } from "../format/speculative.ts";
import { loadKernelsNode } from "../kernels/wasm/node.ts";
import { promptTokens, renderPrompt } from "../runtime/chat.ts";
import { generate } from "../runtime/generate.ts";
import { ngramDraft, type SpeculationStats } from "../runtime/speculative.ts";
import { createTokenizer } from "../runtime/tokenizer/index.ts";
import { WasmEngine } from "../runtime/wasm/engine.ts";
import { bytesToStream } from "../runtime/wasm/load-weights.ts";
import { loadRealModel, readBenchPrompts, readCalibrationPrompts, realModelPath } from "./real-model.ts";

export interface CoverageRow {
  set: "grounded" | "open";
  source: "prompt-lookup" | "datastore" | "lookup+datastore";
  /** "128": the bench's answers (128 tokens, no stop); "eos": the same cut at the end-of-sequence token (as served). */
  answers: "128" | "eos";
  counts: CoverageCounts;
}

export interface DatastoreCoverage {
  calibrationPrompts: number;
  calibrationTokens: number;
  entries: number;
  bytes: number;
  rows: CoverageRow[];
}

/**
 * Greedy answers of the real model (our packed int4 pack of it) to `texts` (one user message each),
 * `tokens` each: with `stop`, ending at its end-of-sequence token (as served; what the build counts
 * the datastore from), else exactly `tokens` (what the speculative bench decodes). From the cache
 * where present.
 */
export async function realGreedyAnswers(
  texts: readonly string[],
  tokens = 128,
  stop = false,
): Promise<PromptAnswer[]> {
  const path = await realModelPath();
  const st = statSync(path);
  const cacheFile = join(
    tmpdir(),
    `shardlm-greedy-answers-${st.size}-${Math.floor(st.mtimeMs)}-${tokens}${stop ? "-stop" : ""}.json`,
  );
  const cache: Record<string, PromptAnswer> = existsSync(cacheFile)
    ? (JSON.parse(readFileSync(cacheFile, "utf8")) as Record<string, PromptAnswer>)
    : {};
  const model = await loadRealModel(path);
  const tok = createTokenizer(model.tokenizer);
  let engine: WasmEngine | null = null;
  const out: PromptAnswer[] = [];
  for (const text of texts) {
    const prompt = promptTokens(
      renderPrompt(model.chatTemplate, [{ role: "user", content: text }], tok),
      tok,
    );
    const hit = cache[text];
    if (hit && hit.prompt.join(",") === prompt.join(",")) {
      out.push(hit);
      continue;
    }
    engine ??= await WasmEngine.load(await loadKernelsNode(), model.table, bytesToStream(model.data), {
      contextSize: 1024,
    });
    const answer: number[] = [];
    const stopTokenIds = stop ? model.eosTokenIds : [];
    for await (const t of generate(engine, prompt, { maxTokens: tokens, temperature: 0, stopTokenIds }))
      answer.push(t);
    cache[text] = { prompt, answer };
    writeFileSync(cacheFile, JSON.stringify(cache));
    out.push(cache[text]);
  }
  return out;
}

/** Coverage of prompt lookup, the datastore and both on the bench sets, the datastore built from `calibration`. */
export async function datastoreCoverage(
  calibration: readonly string[],
  opts: DatastoreBuildOptions & { maxDraft?: number; perSet?: number } = {},
): Promise<DatastoreCoverage> {
  const model = await loadRealModel(await realModelPath());
  const calib = await realGreedyAnswers(calibration, 128, true);
  const built = buildNgramDatastore(calib, model.table.config.vocabSize, opts);
  if (!built.bytes) throw new Error("the calibration answers gave no datastore entry");
  const store = NgramDatastore.parse(built.bytes);
  const sets = readBenchPrompts();
  const prompt: DraftLookup = (h, k) => ngramDraft(h, k, 3, 2);
  const data = datastoreLookup(store);
  const both: DraftLookup = (h, k) => {
    const d = prompt(h, k);
    return d.length > 0 ? d : data(h, k);
  };
  const rows: CoverageRow[] = [];
  for (const set of ["grounded", "open"] as const) {
    const full = await realGreedyAnswers(sets[set].slice(0, opts.perSet));
    const eos = new Set(model.eosTokenIds);
    const cut = full.map(({ prompt, answer }) => {
      const end = answer.findIndex((t) => eos.has(t));
      return { prompt, answer: end < 0 ? answer : answer.slice(0, end) };
    });
    for (const [answers, which] of [
      [full, "128"],
      [cut, "eos"],
    ] as const)
      for (const [source, lookup] of [
        ["prompt-lookup", prompt],
        ["datastore", data],
        ["lookup+datastore", both],
      ] as const)
        rows.push({ set, source, answers: which, counts: draftCoverage(answers, lookup, opts.maxDraft) });
  }
  return {
    calibrationPrompts: calibration.length,
    calibrationTokens: built.sourceTokens,
    entries: store.size,
    bytes: built.bytes.byteLength,
    rows,
  };
}

/**
 * The datastore the build would make for the real model (src/compress/ngram-datastore.ts,
 * draftDatastore): from its greedy answers (to their end-of-sequence token, `answerTokens` at most)
 * to the calibration prompts past the layer-skip search's first `searchPrompts`.
 */
export async function realDraftDatastore(
  opts: DatastoreBuildOptions & { answerTokens?: number; searchPrompts?: number } = {},
): Promise<DraftDatastore> {
  const model = await loadRealModel(await realModelPath());
  const texts = readCalibrationPrompts().slice(opts.searchPrompts ?? 8);
  const answers = await realGreedyAnswers(texts, opts.answerTokens ?? 128, true);
  const d = draftDatastore(answers, model.table.config.vocabSize, opts);
  if (!d) throw new Error("the calibration answers gave no datastore entry");
  return d;
}

/** Verify costs to price a trace with (DraftSettings' rowCosts, headCosts, headShare; decode steps). */
export interface TraceCosts {
  rowCost: number;
  rowCosts: number[];
  headCosts: number[];
  headShare: number;
}

export interface TracePricedRow {
  set: "grounded" | "open";
  datastore: boolean;
  tokens: number;
  verifications: number;
  drafted: number;
  accepted: number;
  storeAccepted: number;
  storeDrafted: number;
  /** Decoded tokens (after the first) / their cost in plain decode steps (speculative-search's pricing). */
  estimatedSpeedup: number;
}

/**
 * Our engine in Node decodes the bench prompts (`perSet` per set, 128 greedy tokens, no stop) with
 * the adaptive drafter priced at `costs` (measured elsewhere, e.g. in workerd), with and without
 * `datastore`; each run's trace is priced as the build's search prices it (verify rows by the
 * per-row cost at the pass's mean row count, head passes by their measured cost, plain steps 1), so
 * the estimate does not depend on this machine's load. Greedy output is checked against plain decoding.
 */
export async function tracePricedSpeedups(
  costs: TraceCosts,
  datastore: DraftDatastore,
  perSet = 8,
): Promise<TracePricedRow[]> {
  const model = await loadRealModel(await realModelPath());
  const engine = await WasmEngine.load(await loadKernelsNode(), model.table, bytesToStream(model.data), {
    contextSize: 1024,
  });
  const store = NgramDatastore.parse(datastore.bytes);
  const sets = readBenchPrompts();
  const tok = createTokenizer(model.tokenizer);
  const h = costs.headShare;
  const priced = speculationCosts(costs.rowCost, h, 0, costs.rowCosts, {
    costs: costs.headCosts,
    batch: engine.headBatch,
  });
  const rows: TracePricedRow[] = [];
  for (const set of ["grounded", "open"] as const) {
    const prompts = sets[set]
      .slice(0, perSet)
      .map((content) =>
        promptTokens(renderPrompt(model.chatTemplate, [{ role: "user", content }], tok), tok),
      );
    const plain: number[][] = [];
    for (const p of prompts) {
      const out: number[] = [];
      for await (const t of generate(engine, p, { maxTokens: 128, temperature: 0 })) out.push(t);
      plain.push(out);
    }
    for (const withStore of [false, true]) {
      const settings = {
        ...costs,
        ...(withStore
          ? { storeAcceptance: datastore.acceptance.first, storeNextAcceptance: datastore.acceptance.next }
          : {}),
      };
      const r: TracePricedRow = {
        set,
        datastore: withStore,
        tokens: 0,
        verifications: 0,
        drafted: 0,
        accepted: 0,
        storeAccepted: 0,
        storeDrafted: 0,
        estimatedSpeedup: 0,
      };
      let plainSteps = 0;
      const passesBefore = [...engine.verifyHeadPasses];
      for (const [i, p] of prompts.entries()) {
        const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
        const out: number[] = [];
        for await (const t of generate(engine, p, {
          maxTokens: 128,
          temperature: 0,
          speculative: settings,
          ...(withStore ? { draftStore: store } : {}),
          stats,
        }))
          out.push(t);
        if (out.join() !== plain[i]!.join())
          throw new Error(`${set} prompt ${i}: output differs from plain decoding`);
        r.tokens += out.length - 1;
        r.verifications += stats.verifications;
        r.drafted += stats.drafted;
        r.accepted += stats.accepted;
        r.storeAccepted += stats.sources?.store.accepted ?? 0;
        r.storeDrafted += stats.sources?.store.drafted ?? 0;
        plainSteps += Math.max(0, out.length - 1 - stats.verifications - stats.accepted);
      }
      const cost = traceCostSteps(priced, h, {
        plainSteps,
        drafted: r.drafted,
        verifications: r.verifications,
        draftPasses: 0,
        headRows: 0,
        headPasses: engine.verifyHeadPasses.map((n, m) => n - passesBefore[m]!),
      });
      r.estimatedSpeedup = r.tokens / cost;
      rows.push(r);
    }
  }
  return rows;
}
