/**
 * Exact speculative decoding on stories260K (issue 13): greedy output with speculation (prompt lookup,
 * layer skipping, both) equals plain decoding token for token; with temperature > 0, seeded runs equal
 * plain seeded runs, and the accept/reject rule keeps the model's distribution (chi-square); the KV
 * rollback and the prefix cache leave outputs equal to a cold run.
 */
import { beforeAll, describe, expect, it, vi } from "vitest";
import { searchSpeculative } from "../src/compress/speculative-search.ts";
import type { ModelDescription } from "../src/format/model.ts";
import {
  bestDraftLength,
  DraftSettings,
  expectedHeadCost,
  expectedSpeedup,
  speculationCosts,
} from "../src/format/speculative.ts";
import { loadModel } from "../src/model/import/index.ts";
import { type GenerateOptionsInput, generate } from "../src/runtime/generate.ts";
import { PrefixCache, ResidentPrefix } from "../src/runtime/prefix-cache.ts";
import { softmax } from "../src/runtime/sampler.ts";
import { Drafter, ngramDraft, type SpeculationStats } from "../src/runtime/speculative.ts";
import { WasmEngine, type WasmEngineOptions, type WasmState } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { type PackedTestModel, packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

let model: ModelDescription;
let packed: PackedTestModel;
let engine: WasmEngine;

beforeAll(async () => {
  model = await loadModel(sharedModelPath());
  packed = packForTest(model);
  engine = await load();
});

async function load(opts: WasmEngineOptions = {}): Promise<WasmEngine> {
  return loadPacked(packed, opts);
}

async function loadPacked(p: PackedTestModel, opts: WasmEngineOptions = {}): Promise<WasmEngine> {
  return WasmEngine.load(await loadTestKernels(), p.table, bytesToStream(p.data, 4096), opts);
}

/** Prompts: BOS + random token runs, some repeating themselves (so prompt lookup has matches). */
function prompts(count: number, seed: number): number[][] {
  const r = mulberry32(seed);
  const V = packed.table.config.vocabSize;
  return Array.from({ length: count }, (_, i) => {
    const base = Array.from({ length: 4 + Math.floor(r() * 12) }, () => 3 + Math.floor(r() * (V - 3)));
    return i % 2 === 0 ? [1, ...base] : [1, ...base, ...base.slice(0, 3), ...base];
  });
}

async function run(
  model: WasmEngine,
  prompt: number[],
  opts: GenerateOptionsInput,
): Promise<{ tokens: number[]; drafted: number; accepted: number; cached: number }> {
  const tokens: number[] = [];
  const gen = generate(model, prompt, opts);
  for (;;) {
    const n = await gen.next();
    if (n.done)
      return { tokens, drafted: n.value.drafted, accepted: n.value.accepted, cached: n.value.cachedTokens };
    tokens.push(n.value);
  }
}

describe("greedy: speculative output equals plain decoding", () => {
  const drafts = {
    ngram: { skipLayers: [] },
    // Not adaptive: draft whatever a source offers, so every verify path runs on the tiny model (the
    // cost model rightly finds layer skipping a loss there).
    "layer skip": { skipLayers: [2, 3], ngramMin: 8, ngramMax: 8, minConfidence: 0, adaptive: false },
    both: { skipLayers: [3], adaptive: false },
    "adaptive, verify rows priced cheap": { skipLayers: [3], rowCost: 0.2 },
  };
  for (const [name, speculative] of Object.entries(drafts)) {
    it(`${name}: 24 prompts x 96 tokens`, async () => {
      let drafted = 0;
      let accepted = 0;
      for (const p of prompts(24, 7)) {
        const plain = await run(engine, p, { maxTokens: 96, temperature: 0 });
        const spec = await run(engine, p, { maxTokens: 96, temperature: 0, speculative });
        expect(spec.tokens).toEqual(plain.tokens);
        drafted += spec.drafted;
        accepted += spec.accepted;
      }
      // The drafters did draft, and some drafts were right and some wrong (both paths ran).
      expect(drafted).toBeGreaterThan(100);
      expect(accepted).toBeGreaterThan(0);
      expect(accepted).toBeLessThan(drafted);
    });
  }

  it("q8 KV cache, prefill block 1, fp32 activations: still exact", async () => {
    for (const opts of [{ kvCache: "q8" }, { prefillBlock: 1 }, { activations: "f32" }] as const) {
      const e = await load(opts);
      for (const p of prompts(6, 11)) {
        const plain = await run(e, p, { maxTokens: 64, temperature: 0 });
        const spec = await run(e, p, { maxTokens: 64, temperature: 0, speculative: { skipLayers: [1] } });
        expect(spec.tokens).toEqual(plain.tokens);
      }
    }
  });

  it("stops, maxTokens and a full context end speculation exactly where plain decoding ends", async () => {
    const small = await load({ contextSize: 40 });
    for (const p of prompts(8, 3)) {
      for (const opts of [
        { maxTokens: 200 },
        { maxTokens: 7 },
        { maxTokens: 60, stopTokenIds: [p[2]!, p[3]!] },
      ]) {
        const plainGen = generate(small, p, { ...opts, temperature: 0 });
        const specGen = generate(small, p, { ...opts, temperature: 0, speculative: {} });
        const a: number[] = [];
        const b: number[] = [];
        let ra = await plainGen.next();
        while (!ra.done) {
          a.push(ra.value);
          ra = await plainGen.next();
        }
        let rb = await specGen.next();
        while (!rb.done) {
          b.push(rb.value);
          rb = await specGen.next();
        }
        expect(b).toEqual(a);
        expect(rb.value.finishReason).toBe(ra.value.finishReason);
        expect(rb.value.completionTokens).toBe(ra.value.completionTokens);
      }
    }
  });
});

describe("sampling (temperature > 0)", () => {
  it("seeded speculative runs equal seeded plain runs and repeat themselves", async () => {
    for (const [i, p] of prompts(8, 5).entries()) {
      const opts = { maxTokens: 64, temperature: 0.8, topP: 0.95, seed: 1000 + i };
      const plain = await run(engine, p, opts);
      const spec = await run(engine, p, { ...opts, speculative: { skipLayers: [3] } });
      const again = await run(engine, p, { ...opts, speculative: { skipLayers: [3] } });
      expect(spec.tokens).toEqual(plain.tokens);
      expect(again.tokens).toEqual(spec.tokens);
    }
  });

  it("with penalties, logit bias and logprob reports, speculative runs still equal plain runs", async () => {
    let drafted = 0;
    for (const [i, p] of prompts(4, 6).entries()) {
      for (const temperature of [0, 0.9]) {
        const shaping = {
          maxTokens: 48,
          temperature,
          seed: 2000 + i,
          presencePenalty: 0.7,
          frequencyPenalty: 0.4,
          logitBias: { "5": 2, "13": -3 },
          topLogprobs: 3,
        };
        const plainChoices: number[] = [];
        const specChoices: number[] = [];
        const plain = await run(engine, p, {
          ...shaping,
          hooks: { onChoice: (c) => plainChoices.push(c.logprob) },
        });
        const spec = await run(engine, p, {
          ...shaping,
          speculative: { skipLayers: [3], adaptive: false },
          hooks: { onChoice: (c) => specChoices.push(c.logprob) },
        });
        expect(spec.tokens).toEqual(plain.tokens);
        // The logits rows a verify computes equal forward steps', so the reports agree too.
        expect(specChoices).toEqual(plainChoices);
        drafted += spec.drafted;
      }
    }
    expect(drafted).toBeGreaterThan(0);
  });

  it("the accept/reject rule keeps the distribution: chi-square over 3000 seeded samples", async () => {
    // The layer-skip draft (confidence floor 0) always drafts the second token: it is accepted or
    // replaced by the rule. Tally (first, second) token pairs against p(first) * p(second | first).
    const prompt = [1, 60, 61, 62, 60, 61, 62, 60, 61];
    const N = 3000;
    const counts = new Map<string, number>();
    let drafted = 0;
    let accepted = 0;
    for (let s = 0; s < N; s++) {
      const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
      // maxTokens 3: room for one draft, for the second token.
      const r = await run(engine, prompt, {
        maxTokens: 3,
        temperature: 1,
        seed: s,
        speculative: { skipLayers: [2], minConfidence: 0, ngramMin: 8, ngramMax: 8, adaptive: false },
        stats,
      });
      drafted += stats.drafted;
      accepted += stats.accepted;
      const key = r.tokens.slice(0, 2).join(",");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(drafted).toBe(N);
    expect(accepted).toBeGreaterThan(0.05 * N); // both branches of the rule ran often
    expect(accepted).toBeLessThan(0.95 * N);

    const expected = async (temperature: number) => {
      const st = engine.newState(prompt.length + 1);
      const p1 = softmax(engine.prefill(st, prompt), temperature);
      const probs = new Map<string, number>();
      for (const key of counts.keys()) {
        const [a, b] = key.split(",").map(Number) as [number, number];
        const s2 = engine.newState(prompt.length + 1);
        engine.prefill(s2, prompt);
        const p2 = softmax(engine.forward(s2, a), temperature);
        probs.set(key, p1[a]! * p2[b]!);
      }
      return probs;
    };
    const chi2 = (probs: Map<string, number>) => {
      // Cells with expected count >= 5; the rest pooled into one.
      let stat = 0;
      let df = -1;
      let restObs = 0;
      let restExp = 0;
      for (const [key, p] of probs) {
        const e = p * N;
        const o = counts.get(key)!;
        if (e >= 5) {
          stat += (o - e) ** 2 / e;
          df++;
        } else {
          restObs += o;
          restExp += e;
        }
      }
      const unseen = N - [...probs.values()].reduce((a, b) => a + b, 0) * N; // pairs never drawn
      restExp += unseen;
      if (restExp > 0) {
        stat += (restObs - restExp) ** 2 / restExp;
        df++;
      }
      return { stat, df };
    };
    // Upper 0.1% point of chi-square(df), Wilson-Hilferty approximation (z = 3.09).
    const critical = (df: number) => df * (1 - 2 / (9 * df) + 3.09 * Math.sqrt(2 / (9 * df))) ** 3;
    const right = chi2(await expected(1));
    expect(right.df).toBeGreaterThan(5);
    expect(right.stat).toBeLessThan(critical(right.df));
    // The test has power: the same samples against a slightly different distribution fail it.
    const wrong = chi2(await expected(0.8));
    expect(wrong.stat).toBeGreaterThan(critical(wrong.df));
  });
});

describe("engine rollback and drafts", () => {
  it("verify's rows equal forward steps; rollback then re-feeding gives the same logits", async () => {
    const p = prompts(1, 9)[0]!;
    const tokens = [17, 99, 250, 3, 17, 44, 8, 120, 77, 5, 6, 7, 8, 9, 10, 11, 12, 13];
    const a = engine.newState(64);
    engine.prefill(a, p);
    const stepwise = tokens.map((t) => engine.forward(a, t));
    const b = engine.newState(64);
    engine.prefill(b, p);
    engine.forwardSkipping(b, 400, new Set([1, 2]));
    engine.rollback(b, p.length);
    engine.verify(b, [5, 5, 5, 5, 5, 5]); // rejected drafts, overwritten below
    engine.rollback(b, p.length);
    const verified = engine.verify(b, tokens);
    expect(verified.length).toBe(tokens.length);
    for (let i = 0; i < tokens.length; i++) expect(verified[i]).toEqual(stepwise[i]);
  });

  it("verifyRows computes a row's head on demand, equal to verify's row, in any order", async () => {
    const p = prompts(1, 12)[0]!;
    const tokens = [17, 99, 250, 3, 17, 44];
    const a = engine.newState(64);
    engine.prefill(a, p);
    const full = engine.verify(a, tokens);
    const b = engine.newState(64);
    engine.prefill(b, p);
    const lazy = engine.verifyRows(b, tokens);
    engine.forward(b, 5); // a later pass does not disturb the kept rows
    expect(lazy.length).toBe(tokens.length);
    for (const i of [3, 0, 5, 1]) expect(lazy.logits(i)).toEqual(full[i]);
    expect(() => lazy.logits(6)).toThrow(RangeError);
    expect(() => lazy.logits(-1)).toThrow(RangeError);
    expect(() => lazy.logits(0.5)).toThrow(RangeError);
  });

  // Batched heads (one matmul for several rows' final norm and head) must equal forward's logits bit
  // for bit: int8 tied head (the default pack), int4 tied head, fp32 activations, and every chunking.
  const heads: [string, () => Promise<WasmEngine>][] = [
    ["int8 head, Q8 activations", async () => engine],
    ["int4 head, Q8 activations", async () => loadPacked(packForTest(model, { embeddings: "int4" }))],
    [
      "int4 head, fp32 activations",
      async () => loadPacked(packForTest(model, { embeddings: "int4" }), { activations: "f32" }),
    ],
    ["int8 head, q8 KV, head passes of 3 rows", async () => load({ kvCache: "q8", headRows: 3 })],
  ];
  for (const [name, make] of heads) {
    it(`batched heads equal forward's logits (${name}), for every first chunk and ask order`, async () => {
      const e = await make();
      const p = prompts(1, 21)[0]!;
      const tokens = [17, 99, 250, 3, 17, 44, 8, 120, 77, 5, 6]; // more rows than one head pass
      const a = e.newState(64);
      e.prefill(a, p);
      const stepwise = tokens.map((t) => e.forward(a, t));
      for (let chunk = 1; chunk <= e.headBatch.rows; chunk++) {
        for (const order of [tokens.map((_, i) => i), [4, 0, 10, 3, 9, 1, 2, 5, 6, 7, 8]]) {
          const b = e.newState(64);
          e.prefill(b, p);
          const rows = e.verifyRows(b, tokens, chunk);
          e.forward(b, 5); // a later pass does not disturb rows already computed or still to come
          for (const i of order) expect(rows.logits(i), `row ${i}, chunk ${chunk}`).toEqual(stepwise[i]);
        }
      }
      expect(() => e.verifyRows(e.newState(8), [1], 0)).toThrow(RangeError);
      expect(() => e.verifyRows(e.newState(8), [1], e.headBatch.rows + 1)).toThrow(RangeError);
    });
  }

  it("head passes: headRows / headChunk options, bad ones refused", async () => {
    await expect(load({ headRows: 0 })).rejects.toThrow(RangeError);
    await expect(load({ headRows: 17 })).rejects.toThrow(RangeError);
    await expect(load({ headRows: 1.5 })).rejects.toThrow(RangeError);
    await expect(load({ headRows: 4, headChunk: 5 })).rejects.toThrow(RangeError);
    await expect(load({ prefillBlock: 2, headRows: 3 })).rejects.toThrow(RangeError);
    const one = await load({ headRows: 1 });
    expect(one.headBatch).toEqual({ first: 1, rows: 1 });
    expect((await load({ prefillBlock: 4 })).headBatch).toEqual({ first: 4, rows: 4 });
    expect(engine.headBatch).toEqual({ first: 8, rows: 8 });
    expect((await load({ headChunk: 2 })).headBatch).toEqual({ first: 2, rows: 8 });
  });

  it("draft length policy: no draft when acceptance cannot pay for verified rows, long drafts when it can", () => {
    const costs = speculationCosts(0.75, 0.15);
    expect(costs.body(1)).toBe(1);
    expect(expectedSpeedup(0, 0.9, costs)).toBe(1);
    expect(bestDraftLength(8, 0, costs).k).toBe(0);
    expect(bestDraftLength(8, 0.3, costs).k).toBe(0);
    const sure = bestDraftLength(8, 1, costs);
    expect(sure.k).toBe(8);
    expect(sure.speedup).toBeGreaterThan(1);
    // Cheaper verify rows make the same acceptance worth a draft.
    expect(bestDraftLength(8, 0.6, speculationCosts(0.3, 0.15)).k).toBeGreaterThan(0);
    // A draft step's cost counts against the layer-skip source.
    expect(expectedSpeedup(4, 0.9, speculationCosts(0.75, 0.15, 0.8))).toBeLessThan(
      expectedSpeedup(4, 0.9, costs),
    );
  });

  it("measured verify costs: draft lengths follow the per-row table, and runs of accepted drafts", () => {
    // Per-row layer costs as measured on the real model: two rows cost as much as two steps' layers.
    const table = [0.8, 0.82, 0.71, 0.66, 0.62, 0.61, 0.59, 0.58];
    const costs = speculationCosts(0.75, 0.2, 0, table);
    expect(costs.body(1)).toBe(1);
    expect(costs.body(2)).toBeCloseTo(0.82 / 0.8, 12);
    expect(costs.body(20)).toBeCloseTo(0.58 / 0.8, 12); // past the table: its last entry
    expect(costs.body(2.5)).toBeCloseTo((0.82 + 0.71) / 2 / 0.8, 12); // a mean row count
    // One draft never pays here (the fitted model said it did); long drafts pay when acceptance is high.
    expect(bestDraftLength(1, 0.99, costs).k).toBe(0);
    expect(bestDraftLength(1, 0.99, speculationCosts(0.75, 0.2)).k).toBe(1);
    expect(bestDraftLength(6, 0.98, costs).k).toBe(6);
    // A weak first token followed by a reliable run is worth more than the same q throughout.
    expect(expectedSpeedup(6, 0.9, costs, 0.99)).toBeGreaterThan(expectedSpeedup(6, 0.9, costs));
  });

  it("batched heads: a verify pass pays its head passes, each when its first row is needed", () => {
    const table = [0.8, 0.82, 0.71, 0.66, 0.62, 0.61, 0.59, 0.58];
    const headCosts = [0.2, 0.15, 0.12, 0.1, 0.09, 0.08, 0.075, 0.07];
    const lazy = speculationCosts(0.75, 0.2, 0, table);
    const all = speculationCosts(0.75, 0.2, 0, table, { costs: headCosts, batch: { first: 8, rows: 8 } });
    const chunked = speculationCosts(0.75, 0.2, 0, table, { costs: headCosts, batch: { first: 2, rows: 8 } });
    const needed = [1, 0.9, 0.81, 0.729, 0.656];
    // Without measured heads: one full head per needed row.
    expect(expectedHeadCost(needed, lazy)).toBeCloseTo(0.2 * 4.095, 12);
    // All five rows in one pass, needed or not.
    expect(expectedHeadCost(needed, all)).toBeCloseTo(5 * 0.09, 12);
    // Rows 0-1 always, rows 2-4 in a second pass only when row 2 is needed.
    expect(expectedHeadCost(needed, chunked)).toBeCloseTo(2 * 0.15 + 0.81 * 3 * 0.12, 12);
    // Rows past the table cost its last entry.
    expect(expectedHeadCost(new Array(12).fill(1), all)).toBeCloseTo(8 * 0.07 + 4 * 0.1, 12);
    // Cheaper heads make speculation pay more, and at an acceptance where lazy heads paid nothing.
    expect(expectedSpeedup(6, 0.9, all)).toBeGreaterThan(expectedSpeedup(6, 0.9, lazy));
    expect(bestDraftLength(6, 0.85, lazy).k).toBe(0);
    expect(bestDraftLength(6, 0.85, all).k).toBeGreaterThan(0);
  });

  it("the drafter prices batched heads only on an engine that batches them", () => {
    const headCosts = [0.2, 0.15, 0.12, 0.1, 0.09, 0.08, 0.075, 0.07];
    const settings = { rowCosts: [0.8, 0.82, 0.71, 0.66, 0.62, 0.61, 0.59, 0.58], headShare: 0.2, headCosts };
    const costsOf = (d: Drafter<WasmState>) =>
      (d as unknown as { costs: { ngram: ReturnType<typeof speculationCosts> } }).costs.ngram;
    expect(costsOf(new Drafter(engine, settings)).heads?.batch).toEqual(engine.headBatch);
    expect(costsOf(new Drafter(engine, { ...settings, headCosts: undefined })).heads).toBeUndefined();
    // An engine with verify only (the WebGPU engine): each row is a full step, heads not batched.
    const verifyOnly = {
      config: engine.config,
      vocabSize: engine.vocabSize,
      maxContext: engine.maxContext,
      newState: (n: number) => engine.newState(n),
      prefill: (st: WasmState, t: readonly number[]) => engine.prefill(st, t),
      forward: (st: WasmState, t: number) => engine.forward(st, t),
      verify: (st: WasmState, t: readonly number[]) => engine.verify(st, t),
      rollback: (st: WasmState, n: number) => engine.rollback(st, n),
    };
    expect(costsOf(new Drafter(verifyOnly, settings)).heads).toBeUndefined();
  });

  it("adaptive drafter: a copy that keeps being accepted earns the longest drafts", async () => {
    const table = [0.8, 0.82, 0.71, 0.66, 0.62, 0.61, 0.59, 0.58];
    const drafter = new Drafter(engine, { rowCosts: table, headShare: 0.2, maxDraft: 6 });
    const span = Array.from({ length: 20 }, (_, i) => 10 + i);
    // The sequence copies `span` over and over: prompt lookup's drafts are always right.
    const history = [1, ...span, ...span.slice(0, 3)];
    const next = () => span[(history.length - 1) % span.length]!;
    const state = engine.newState(256);
    const lengths: number[] = [];
    for (let round = 0; round < 40; round++) {
      const drafts = await drafter.propose(state, history, 6);
      lengths.push(drafts.length);
      for (const t of drafts) {
        expect(t).toBe(next());
        history.push(t);
      }
      if (drafts.length > 0) drafter.update(drafts.length);
      history.push(next()); // the token sampled after the drafts (or by a plain step)
    }
    // Plain steps first (acceptance unknown), learned from prompt lookup's would-be drafts; then the
    // estimate passes 0.95 (a prior that never decays capped it at 0.9: drafts of 4 at most here).
    expect(lengths[0]).toBe(0);
    expect(lengths.slice(-10)).toEqual(Array(10).fill(6));
  });

  it("adaptive policy: on prompts without repeats it falls back to plain steps after a few drafts", async () => {
    let drafted = 0;
    let tokens = 0;
    for (const p of prompts(12, 31).filter((_, i) => i % 2 === 0)) {
      const plain = await run(engine, p, { maxTokens: 64, temperature: 0.9, seed: 3 });
      const spec = await run(engine, p, { maxTokens: 64, temperature: 0.9, seed: 3, speculative: {} });
      expect(spec.tokens).toEqual(plain.tokens);
      drafted += spec.drafted;
      tokens += spec.tokens.length;
    }
    expect(tokens).toBeGreaterThan(100);
    expect(drafted).toBeLessThan(tokens / 4);
  });

  it("bad input: rollback past the end, unknown layers, oversized verifies throw RangeErrors", () => {
    const s = engine.newState(8);
    engine.prefill(s, [1, 2, 3]);
    expect(() => engine.rollback(s, 4)).toThrow(RangeError);
    expect(() => engine.rollback(s, -1)).toThrow(RangeError);
    expect(() => engine.forwardSkipping(s, 5, new Set([99]))).toThrow(RangeError);
    expect(() => engine.verify(s, [1, 2, 3, 4, 5, 6])).toThrow(RangeError);
    expect(() => engine.verify(s, [1, 1e9])).toThrow(RangeError);
    expect(s.length).toBe(3);
  });

  it("prompt lookup drafts what followed the latest earlier occurrence of the suffix", () => {
    expect(ngramDraft([5, 6, 7, 8, 1, 5, 6], 3, 3, 1)).toEqual([7, 8, 1]);
    expect(ngramDraft([5, 6, 7, 9, 5, 6, 8, 5, 6], 2, 3, 2)).toEqual([8, 5]);
    expect(ngramDraft([1, 2, 3], 4, 3, 1)).toEqual([]);
    expect(ngramDraft([4, 4], 3, 3, 1)).toEqual([4]);
  });
});

describe("prefix cache", () => {
  it("multi-turn: later turns reuse the cached prefix and equal cold runs", async () => {
    const cache = new PrefixCache(8 << 20);
    let conversation = prompts(1, 21)[0]!;
    const r = mulberry32(4);
    for (let turn = 0; turn < 5; turn++) {
      const opts = { maxTokens: 24, temperature: 0.7, seed: turn };
      const cold = await run(engine, conversation, opts);
      const warm = await run(engine, conversation, { ...opts, prefixCache: cache, speculative: {} });
      expect(warm.tokens).toEqual(cold.tokens);
      if (turn > 0) expect(warm.cached).toBeGreaterThan(conversation.length / 2);
      const user = Array.from({ length: 5 }, () => 3 + Math.floor(r() * 500));
      conversation = [...conversation, ...warm.tokens, ...user];
    }
    expect(cache.size).toBe(1); // each turn replaced the one it extends
  });

  it("resident (zero bytes): later turns continue from the engine's last sequence and equal cold runs", async () => {
    // Warm turns on an engine of their own: a cold run on it would start another sequence.
    const own = await load();
    const rows = new ResidentPrefix();
    let conversation = prompts(1, 23)[0]!;
    const r = mulberry32(5);
    for (let turn = 0; turn < 5; turn++) {
      const opts = { maxTokens: 24, temperature: 0.7, seed: turn };
      const cold = await run(engine, conversation, opts);
      const warm = await run(own, conversation, { ...opts, residentPrefix: rows, speculative: {} });
      expect(warm.tokens).toEqual(cold.tokens);
      if (turn > 0) expect(warm.cached).toBeGreaterThan(conversation.length / 2);
      const user = Array.from({ length: 5 }, () => 3 + Math.floor(r() * 500));
      conversation = [...conversation, ...warm.tokens, ...user];
    }
    // Another sequence in between retires the rows: the next turn runs cold, and still right.
    await run(own, [1, 7, 8, 9], { maxTokens: 3, temperature: 0 });
    rows.last = { state: own.newState(4), tokens: conversation.slice(0, 4) };
    await run(own, [1, 5], { maxTokens: 2, temperature: 0 }); // retires that state
    const opts = { maxTokens: 8, temperature: 0 };
    const stale = await run(own, conversation, { ...opts, residentPrefix: rows });
    expect(stale).toEqual({ ...(await run(engine, conversation, opts)), cached: 0 });
  });

  it("stays within its byte budget (LRU) and rejects snapshots that do not match", async () => {
    const per = engine.kvBytesPerToken;
    const cache = new PrefixCache(per * 50);
    for (const p of prompts(6, 31))
      await run(engine, p, { maxTokens: 20, temperature: 0, prefixCache: cache });
    expect(cache.bytes).toBeLessThanOrEqual(per * 50);
    expect(cache.size).toBeGreaterThan(0);
    const s = engine.newState(16);
    engine.prefill(s, [1, 2, 3]);
    const snap = engine.exportKv(s);
    const t = engine.newState(16);
    expect(() => engine.importKv(t, { length: 3, bytes: snap.bytes.subarray(1) }, 3)).toThrow(RangeError);
    expect(() => engine.importKv(t, snap, 4)).toThrow(RangeError);
    expect(() => cache.store([1, 2], snap)).toThrow(RangeError);
  });
});

describe("the build's speculative search (searchSpeculative)", () => {
  it("with cheap verify rows, screens the layer-skip sets on a quarter of the prompts and runs only the best 2 on all, each prompt once per set", async () => {
    const lines: string[] = [];
    const calib = prompts(8, 77);
    const priced = { rowCost: 0.05, headShare: 0.05 }; // every skip set can pay if its drafts are right
    // Counts generations (generate opens one engine state per prompt); the engine runs as it is.
    const states = vi.spyOn(engine, "newState");
    let opened: number;
    let result: Awaited<ReturnType<typeof searchSpeculative>>;
    try {
      result = await searchSpeculative(engine, calib, {
        answerTokens: 12,
        ...priced,
        log: (m) => lines.push(m),
      });
      opened = states.mock.calls.length;
    } finally {
      states.mockRestore();
    }
    const { profile, candidates } = result;
    const screening = lines
      .map((l) => /^ {2}screening (\d+) skip sets on 2 of 8 prompts$/.exec(l))
      .find(Boolean);
    expect(screening).toBeTruthy();
    const screened = Number(screening![1]);
    expect(screened).toBeGreaterThan(2);
    // one line per layer-skip run without prompt lookup: each set screened, then the 2 finalists
    const skipRuns = lines.filter((l) => /^ {2}skip \[[\d,]+\]: accepted/.test(l));
    expect(skipRuns).toHaveLength(screened + 2);
    expect(
      skipRuns.slice(screened).every((l) => l.endsWith("(all 8 prompts; the first 2 from screening)")),
    ).toBe(true);
    // Screening runs 2 prompts per set; the finalists only the 6 they have not run; the served
    // configurations (with prompt lookup: candidates after the finalists) all 8.
    expect(opened).toBe(screened * 2 + 2 * 6 + (candidates.length - 2) * 8);
    // The finalists' counts (screening's 2 prompts + the other 6) equal a run over all 8 prompts.
    for (const c of candidates.slice(0, 2)) {
      expect(c.skipLayers.length).toBeGreaterThan(0);
      const settings = DraftSettings.parse({
        skipLayers: c.skipLayers,
        ...priced,
        ngramMin: 8,
        ngramMax: 8,
        adaptive: false,
      });
      const full = { drafted: 0, accepted: 0, tokens: 0 };
      for (const p of calib) {
        const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
        for await (const _ of generate(engine, p, {
          maxTokens: 12,
          temperature: 0,
          speculative: settings,
          stats,
        }))
          full.tokens++;
        full.drafted += stats.drafted;
        full.accepted += stats.accepted;
      }
      expect(full.drafted).toBeGreaterThan(0);
      expect({ drafted: c.drafted, accepted: c.accepted, tokens: c.tokens }).toEqual(full);
    }
    expect(candidates.filter((c) => c.skipLayers.length > 0).length).toBeLessThanOrEqual(2 + 1);
    expect(profile.measured.calibrationTokens).toBeGreaterThan(0);
  });
});
