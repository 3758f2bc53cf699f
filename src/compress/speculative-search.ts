/**
 * Build-time search for the self-speculative draft (issue 13): which layers the draft skips, chosen
 * on calibration chat prompts the way Draft & Verify (Zhang et al. 2023) does it, by measured
 * acceptance against cost, but over a small family of candidate sets instead of Bayesian
 * optimization (a build must stay minutes, not hours): interleaved and contiguous sets of 1/4 .. 1/2
 * of the layers, plus prompt lookup alone.
 *
 * Each candidate really speculates (generate() with the adaptive drafter, priced with the verify row
 * cost measured here) over the calibration prompts, so acceptance is what serving will see. Cost
 * model, in units of one plain decode step (src/format/speculative.ts, speculationCosts): plain steps
 * cost 1; a verify pass's layers cost body(rows) * (1 - headShare) per row, its heads what the
 * engine's batched head passes cost (headCosts[m - 1] per row of each pass of m rows it ran; headShare
 * per row the sampler looked at when heads are not measured); a layer-skip draft step costs
 * headShare + (1 - headShare) * kept / layers.
 * Estimated speedup = decoded tokens / total cost.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import type { TokenizerSpec } from "../format/model.ts";
import {
  bestDraftLength,
  type DraftMeasurement,
  DraftSettings,
  type DraftSettingsInput,
  headShareOf,
  type SpeculationCosts,
  type SpeculativeProfile,
  speculationCosts,
  type VerifyCostsOrigin,
} from "../format/speculative.ts";
import { promptTokens, renderPrompt } from "../runtime/chat.ts";
import { generate } from "../runtime/generate.ts";
import { ngramDraft, type SpeculationStats } from "../runtime/speculative.ts";
import { createTokenizer } from "../runtime/tokenizer/index.ts";
import {
  measureRowCost,
  measureVerifyCosts as measureVerifyCostsBy,
  type VerifyCosts,
} from "../runtime/verify-costs.ts";
import type { WasmEngine } from "../runtime/wasm/engine.ts";
import { ownCpuMs } from "./measure.ts";
import type { MeasuredVerifyCosts } from "./workerd-measure.ts";

export { measureRowCost, type VerifyCosts };

/** data/chat/calibration.json: chat prompts (text) the search runs on. */
export function readChatCalibration(): string[] {
  const file = new URL("../../data/chat/calibration.json", import.meta.url);
  return (JSON.parse(readFileSync(file, "utf8")) as { prompts: string[] }).prompts;
}

export interface SpeculativeSearchOptions {
  /** Tokens generated per calibration prompt (greedy). */
  answerTokens?: number;
  /** Fraction of the decode step spent in the head (default: from the weight table's sizes). */
  headShare?: number;
  /** Per-row cost of a batched verify relative to a decode step (default: measured). */
  rowCost?: number;
  /**
   * Verify costs measured elsewhere (the build: in workerd, ./workerd-measure.ts) and where; they
   * price the candidates and go into the manifest. Default: measured here on `engine`, in Node.
   */
  verifyCosts?: MeasuredVerifyCosts;
  /** Speculation is enabled by default when the best estimate beats plain decoding by this factor. */
  minGain?: number;
  log?: (msg: string) => void;
}

export interface CandidateResult {
  skipLayers: number[];
  drafted: number;
  accepted: number;
  tokens: number;
  estimatedSpeedup: number;
}

/** Layer-skip sets run on every calibration prompt after screening (see searchSpeculative). */
const SCREEN_KEEP = 2;

/** The counts of a trace of generations that its cost in decode steps depends on (traceCostSteps). */
export interface TraceCounts {
  /** Decode steps no verification pass produced (the prefill's token not counted). */
  plainSteps: number;
  drafted: number;
  verifications: number;
  draftPasses: number;
  headRows: number;
  /** Entry m: batched head passes of m rows the engine ran (its verifyHeadPasses, differenced). */
  headPasses: number[];
}

/** What greedy generations of one draft configuration over some prompts counted. */
interface RunTotals extends TraceCounts {
  prompts: number;
  tokens: number;
  accepted: number;
}

/**
 * A trace's cost in plain decode steps, as the search prices it: draft passes at `costs.draft`, verify
 * rows at the per-row layer cost of the trace's mean pass size, the head passes the engine ran at their
 * measured per-row cost (else `headShare` per head row), and the plain steps.
 */
export function traceCostSteps(costs: SpeculationCosts, headShare: number, t: TraceCounts): number {
  const rows = t.verifications + t.drafted;
  const perRow = costs.body(t.verifications > 0 ? rows / t.verifications : 1) * (1 - headShare);
  const headCost = costs.heads
    ? t.headPasses.reduce((a, n, m) => a + (m > 0 ? n * m * costs.heads!.perRow(m) : 0), 0)
    : t.headRows * headShare;
  return t.draftPasses * costs.draft + rows * perRow + headCost + t.plainSteps;
}

function emptyTotals(headPassSizes: number): RunTotals {
  return {
    prompts: 0,
    tokens: 0,
    plainSteps: 0,
    drafted: 0,
    accepted: 0,
    verifications: 0,
    draftPasses: 0,
    headRows: 0,
    headPasses: new Array<number>(headPassSizes).fill(0),
  };
}

/** Totals of two runs over disjoint prompts: the totals of one run over both. */
function addTotals(a: RunTotals, b: RunTotals): RunTotals {
  const sum = emptyTotals(Math.max(a.headPasses.length, b.headPasses.length));
  const counts = [
    "prompts",
    "tokens",
    "plainSteps",
    "drafted",
    "accepted",
    "verifications",
    "draftPasses",
    "headRows",
  ];
  for (const k of counts as (keyof Omit<RunTotals, "headPasses">)[]) sum[k] = a[k] + b[k];
  sum.headPasses = sum.headPasses.map((_, m) => (a.headPasses[m] ?? 0) + (b.headPasses[m] ?? 0));
  return sum;
}

/** Candidate skip sets for `L` layers (first and last layers always kept: they matter most). */
export function candidateSkipSets(L: number): number[][] {
  const sets = new Map<string, number[]>();
  const add = (s: number[]) => {
    const v = [...new Set(s.filter((l) => l > 0 && l < L - 1))].sort((a, b) => a - b);
    if (v.length > 0) sets.set(v.join(","), v);
  };
  for (const frac of [0.25, 0.375, 0.5]) {
    const n = Math.max(1, Math.round(L * frac));
    // Interleaved over the upper part (Draft & Verify's searches mostly skip alternate later layers).
    add(Array.from({ length: n }, (_, i) => L - 2 - 2 * i));
    // Interleaved from the middle outwards.
    add(Array.from({ length: n }, (_, i) => Math.floor(L / 2) + (i % 2 === 0 ? i : -i - 1)));
    // Contiguous block ending before the last layer, and one centred.
    add(Array.from({ length: n }, (_, i) => L - 2 - i));
    add(Array.from({ length: n }, (_, i) => Math.floor((L - n) / 2) + i));
  }
  return [...sets.values()];
}

/** measureVerifyCosts (src/runtime/verify-costs.ts) by this process's CPU time. */
export function measureVerifyCosts(engine: WasmEngine, maxRows = 8, reps = 7): VerifyCosts {
  return measureVerifyCostsBy(engine, ownCpuMs, maxRows, reps);
}

/**
 * Verify costs measured in this Node process on `engine` (the build's SIMD128 kernels: engineFor),
 * by its CPU time: what the build records where it was told not to measure in workerd.
 */
export function nodeVerifyCosts(engine: WasmEngine): MeasuredVerifyCosts {
  const origin: VerifyCostsOrigin = {
    measuredOn: "node",
    kernels: "simd128",
    detail: `node ${process.version}, kernels.wasm (SIMD128), process CPU time, ${cpus()[0]?.model ?? "unknown cpu"}`,
  };
  return { ...measureVerifyCosts(engine), rowCost: measureRowCost(engine), origin };
}

/**
 * Runs the candidates over `prompts` (token ids, chat template applied) and returns the profile to
 * record in the manifest: the best candidate's settings, measurement and whether it is on by default.
 */
export async function searchSpeculative(
  engine: WasmEngine,
  prompts: readonly (readonly number[])[],
  opts: SpeculativeSearchOptions = {},
): Promise<{ profile: SpeculativeProfile; candidates: CandidateResult[] }> {
  const log = opts.log ?? (() => {});
  const L = engine.config.numLayers;
  // Measured verify costs per row count (given, else measured here), unless the caller prices rows itself.
  const verifyCosts = opts.rowCost === undefined ? (opts.verifyCosts ?? nodeVerifyCosts(engine)) : null;
  const headShare = opts.headShare ?? verifyCosts?.headShare ?? headShareOf(engine.config);
  const rowCost = opts.rowCost ?? verifyCosts!.rowCost;
  const rowCosts = verifyCosts?.rowCosts;
  const headCosts = verifyCosts?.headCosts;
  const answerTokens = opts.answerTokens ?? 48;
  log(
    `speculative search: ${L} layers, head share ${headShare.toFixed(2)}, verify row cost ${rowCost.toFixed(2)}` +
      (verifyCosts ? ` (measured on ${verifyCosts.origin.measuredOn})` : "") +
      (rowCosts
        ? `, layers per row at 1..${rowCosts.length} rows ${rowCosts.map((c) => c.toFixed(2)).join(" ")}`
        : "") +
      (headCosts
        ? `, head per row at 1..${headCosts.length} rows ${headCosts.map((c) => c.toFixed(3)).join(" ")}`
        : ""),
  );

  // The adaptive drafter prices a verified row at what it costs on this engine.
  const priced = {
    rowCost,
    headShare,
    ...(rowCosts ? { rowCosts } : {}),
    ...(headCosts ? { headCosts } : {}),
  };
  const heads = headCosts ? { costs: headCosts, batch: engine.headBatch } : undefined;
  const draftCostOf = (skipLayers: number[]) => headShare + ((1 - headShare) * (L - skipLayers.length)) / L;
  // A layer-skip candidate runs non-adaptively (every draft it offers is verified: its raw
  // acceptance); the served configurations run the adaptive drafter with that acceptance as prior.
  const settingsFor = (skipLayers: number[], ngram: boolean, extra: DraftSettingsInput = {}) =>
    DraftSettings.parse({
      skipLayers,
      ...priced,
      ...(ngram ? {} : { ngramMin: 8, ngramMax: 8, adaptive: false }),
      ...extra,
    });
  /** Greedy generations of `settings` over `on`, counted (sums: runs over disjoint prompts add up). */
  const run = async (settings: DraftSettings, on: readonly (readonly number[])[]): Promise<RunTotals> => {
    const t = emptyTotals(engine.verifyHeadPasses.length);
    const passesBefore = engine.verifyHeadPasses;
    for (const p of on) {
      const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0, draftPasses: 0 };
      const gen = generate(engine, p, {
        maxTokens: answerTokens,
        temperature: 0,
        speculative: settings,
        stats,
      });
      let n = 0;
      for (let r = await gen.next(); !r.done; r = await gen.next()) n++;
      t.prompts++;
      t.tokens += n;
      t.drafted += stats.drafted;
      t.accepted += stats.accepted;
      t.verifications += stats.verifications;
      t.draftPasses += stats.draftPasses ?? 0;
      t.headRows += stats.headRows ?? 0;
      // Steps without drafts: every token not produced by a verification pass (minus the prefill's).
      t.plainSteps += Math.max(0, n - 1 - stats.verifications - stats.accepted);
    }
    engine.verifyHeadPasses.forEach((n, m) => {
      t.headPasses[m] = n - passesBefore[m]!;
    });
    return t;
  };
  /** The estimated speedup of a run's totals, priced by the cost model above. */
  const price = (skipLayers: number[], ngram: boolean, t: RunTotals, note = ""): CandidateResult => {
    const costs = speculationCosts(rowCost, headShare, draftCostOf(skipLayers), rowCosts, heads);
    const cost = traceCostSteps(costs, headShare, t);
    const estimatedSpeedup = cost > 0 ? Math.max(0, t.tokens - t.prompts) / cost : 1;
    const r = { skipLayers, drafted: t.drafted, accepted: t.accepted, tokens: t.tokens, estimatedSpeedup };
    log(
      `  skip [${skipLayers.join(",")}]${ngram ? " + ngram" : ""}: accepted ${r.accepted}/${r.drafted}, ` +
        `estimated speedup ${estimatedSpeedup.toFixed(2)}x${note}`,
    );
    return r;
  };
  const evaluate = async (skipLayers: number[], ngram: boolean, extra: DraftSettingsInput = {}) =>
    price(skipLayers, ngram, await run(settingsFor(skipLayers, ngram, extra), prompts));

  const maxDraft = DraftSettings.parse({}).maxDraft;
  const affordable = candidateSkipSets(L).filter((set) => {
    // Even drafts that are always right cannot pay for a draft step this expensive: not worth running.
    const bound = bestDraftLength(
      maxDraft,
      1,
      speculationCosts(rowCost, headShare, draftCostOf(set), rowCosts, heads),
    );
    if (bound.k === 0)
      log(`  skip [${set.join(",")}]: cannot beat plain decoding even if every draft were accepted`);
    return bound.k > 0;
  });
  // Where verify rows are cheap (workerd) every set passes that bound, and running each on all the
  // prompts took 11 min of a SmolLM2 build at load 10: they are screened on a quarter of the prompts
  // first, and only the SCREEN_KEEP best run on all of them.
  // Greedy decoding of the same prompts with the same settings is deterministic (one engine, fixed
  // kernels, no sampling; test/speculative.test.ts checks the finalists against full runs), so each
  // finalist keeps its screening run's totals and runs only the prompts it has not seen.
  let finalists: { set: number[]; screened: RunTotals | null }[] = affordable.map((set) => ({
    set,
    screened: null,
  }));
  let seen = 0;
  if (affordable.length > SCREEN_KEEP && prompts.length >= 4) {
    seen = Math.ceil(prompts.length / 4);
    const few = prompts.slice(0, seen);
    log(`  screening ${affordable.length} skip sets on ${few.length} of ${prompts.length} prompts`);
    const screened: { set: number[]; screened: RunTotals; result: CandidateResult }[] = [];
    for (const set of affordable) {
      const totals = await run(settingsFor(set, false), few);
      screened.push({ set, screened: totals, result: price(set, false, totals) });
    }
    screened.sort((a, b) => b.result.estimatedSpeedup - a.result.estimatedSpeedup);
    finalists = screened.slice(0, SCREEN_KEEP);
  }
  const candidates: CandidateResult[] = [];
  for (const { set, screened } of finalists) {
    const rest = await run(settingsFor(set, false), prompts.slice(seen));
    const note = screened ? ` (all ${prompts.length} prompts; the first ${seen} from screening)` : "";
    candidates.push(price(set, false, screened ? addTotals(screened, rest) : rest, note));
  }
  candidates.sort((a, b) => b.estimatedSpeedup - a.estimatedSpeedup);
  const bestSkip = candidates[0];
  const skipAcceptance = bestSkip && bestSkip.drafted > 0 ? bestSkip.accepted / bestSkip.drafted : 0;
  // The served configuration combines the best layer-skip set with prompt lookup; measure it too,
  // and prompt lookup alone (no layer-skip draft) in case skipping never pays.
  const combined =
    bestSkip && bestSkip.estimatedSpeedup > 1
      ? await evaluate(bestSkip.skipLayers, true, { skipAcceptance })
      : await evaluate([], true);
  const ngramOnly = combined.skipLayers.length > 0 ? await evaluate([], true) : combined;
  const chosen = ngramOnly.estimatedSpeedup > combined.estimatedSpeedup ? ngramOnly : combined;
  const ngramStats = ngramAgreement(prompts);
  const measured: DraftMeasurement = {
    skipAgreement: skipAcceptance,
    ngramCoverage: ngramStats.coverage,
    ngramAgreement: ngramStats.agreement,
    estimatedSpeedup: chosen.estimatedSpeedup,
    calibrationTokens: chosen.tokens,
    ...(verifyCosts ? { verifyCosts: verifyCosts.origin } : {}),
  };
  return {
    profile: {
      // A small gain is enough: the adaptive drafter falls back to plain steps per request.
      enabled: chosen.estimatedSpeedup >= (opts.minGain ?? 1.02),
      draft: DraftSettings.parse({
        skipLayers: chosen.skipLayers,
        ...priced,
        ...(chosen.skipLayers.length > 0 ? { skipAcceptance } : {}),
      }),
      measured,
    },
    candidates: [...candidates, combined, ...(ngramOnly === combined ? [] : [ngramOnly])],
  };
}

/** Prompt lookup on the prompts themselves: how often a suffix recurs, and how often its follower is right. */
function ngramAgreement(prompts: readonly (readonly number[])[]): { coverage: number; agreement: number } {
  let positions = 0;
  let proposed = 0;
  let right = 0;
  for (const p of prompts) {
    for (let i = 3; i < p.length; i++) {
      positions++;
      const d = ngramDraft(p.slice(0, i), 1, 3, 2);
      if (d.length > 0) {
        proposed++;
        if (d[0] === p[i]) right++;
      }
    }
  }
  return { coverage: positions ? proposed / positions : 0, agreement: proposed ? right / proposed : 0 };
}

/** The calibration chat prompts as token ids for a model (its chat template, or the base-model one). */
export function chatCalibrationTokens(
  model: { tokenizer: TokenizerSpec; chatTemplate: string | null },
  count?: number,
): number[][] {
  const tok = createTokenizer(model.tokenizer);
  return readChatCalibration()
    .slice(0, count)
    .map((content) => promptTokens(renderPrompt(model.chatTemplate, [{ role: "user", content }], tok), tok));
}
