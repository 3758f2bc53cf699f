/**
 * The memory plan (src/runtime/memory-plan.ts) is what WasmEngine allocates and what the Worker's
 * budget check reads (estimateEngineBytes): its predicted bytes match a real engine's WebAssembly
 * memory within one 64 KiB page, for both KV cache formats, several contexts and prefill blocks, and
 * int4 and int8 heads. Bad options fail in the plan with the engine's own errors.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { ModelDescription } from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import { syntheticModel } from "../src/model/synthetic.ts";
import { contextThatFits, estimateEngineBytes, servedEngineLayout } from "../src/runtime/load-engine.ts";
import { planWasmMemory } from "../src/runtime/memory-plan.ts";
import { WasmEngine, type WasmEngineOptions } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { type PackedTestModel, packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

const PAGE = 65536;
let original: ModelDescription;
let int8Head: PackedTestModel;
let int4Head: PackedTestModel;
/** A bigger shape, where a forgotten activation buffer would be more than a page. */
let stories15M: PackedTestModel;

beforeAll(async () => {
  original = await loadModel(sharedModelPath());
  int8Head = packForTest(original);
  int4Head = packForTest(original, { embeddings: "int4" });
  stories15M = packForTest(syntheticModel("stories15M"));
});

async function actualBytes(p: PackedTestModel, opts: WasmEngineOptions): Promise<number> {
  const e = await WasmEngine.load(await loadTestKernels(), p.table, bytesToStream(p.data), opts);
  // Run a token so nothing the first pass might allocate is missed.
  e.forward(e.newState(2), 1);
  return e.memoryBytes;
}

describe("memory plan", () => {
  const cases: [string, () => PackedTestModel, WasmEngineOptions][] = [
    ["f16 cache, full context", () => int8Head, { kvCache: "f16" }],
    ["q8 cache, full context", () => int8Head, { kvCache: "q8" }],
    ["f16 cache, 64 tokens, token-by-token prefill", () => int8Head, { contextSize: 64, prefillBlock: 1 }],
    ["q8 cache, 100 tokens, int4 embedding and head", () => int4Head, { kvCache: "q8", contextSize: 100 }],
    ["stories15M shape, f16 cache, 256 tokens", () => stories15M, { contextSize: 256 }],
    ["int4 head, 3 head rows", () => int4Head, { headRows: 3, contextSize: 128 }],
  ];
  for (const [name, model, opts] of cases) {
    it(`predicts the engine's memory: ${name}`, async () => {
      const p = model();
      const plan = planWasmMemory(p.table, opts);
      const actual = await actualBytes(p, opts);
      expect(
        Math.abs(plan.totalBytes - actual),
        `plan ${plan.totalBytes}, engine ${actual}`,
      ).toBeLessThanOrEqual(PAGE);
      expect(plan.weightBytes + plan.bufferBytes + plan.kvBytes).toBeLessThan(actual);
    });
  }

  it("head passes: headRows rows of logits, bounded by the prefill block", () => {
    const t = int4Head.table;
    const V = t.config.vocabSize;
    const one = planWasmMemory(t, { headRows: 1 });
    const eight = planWasmMemory(t, { headRows: 8 });
    expect(planWasmMemory(t).headRows).toBe(8);
    expect(planWasmMemory(t, { prefillBlock: 3 }).headRows).toBe(3);
    expect(eight.logits).toBe(8 * V);
    expect(eight.bufferBytes - one.bufferBytes).toBe(7 * V * 4);
    expect(() => planWasmMemory(t, { headRows: 0 })).toThrow(RangeError);
    expect(() => planWasmMemory(t, { prefillBlock: 4, headRows: 5 })).toThrow(RangeError);
  });

  it("servedEngineLayout: context first, then as many batched head rows as fit beside it", () => {
    const t = stories15M.table;
    const roomy = servedEngineLayout(t, estimateEngineBytes(t, 256, "f16") + PAGE);
    expect(roomy).toEqual({ contextSize: 256, kvCache: "f16", headRows: 8 });
    // Room for the full context with an int8 KV cache and a single-row head, plus 3 rows of logits:
    // the context stays, the head rows shrink to what fits.
    const rowBytes = t.config.vocabSize * 4;
    const budget = estimateEngineBytes(t, 256, "q8", 1) + 3 * rowBytes;
    const tight = servedEngineLayout(t, budget);
    expect(tight.contextSize).toBe(256);
    expect(tight.kvCache).toBe("q8");
    expect(tight.headRows).toBeGreaterThan(1);
    expect(tight.headRows).toBeLessThan(8);
    expect(estimateEngineBytes(t, 256, "q8", tight.headRows)).toBeLessThanOrEqual(budget);
    expect(estimateEngineBytes(t, 256, "q8", tight.headRows + 1)).toBeGreaterThan(budget);
  });

  it("is what the Worker's estimate reads, and the KV cache formats differ as their bytes do", () => {
    const t = int8Head.table;
    const ctx = t.config.maxContext;
    const f16 = planWasmMemory(t, { contextSize: ctx, kvCache: "f16" });
    const q8 = planWasmMemory(t, { contextSize: ctx, kvCache: "q8" });
    expect(estimateEngineBytes(t, ctx, "f16")).toBe(f16.totalBytes);
    expect(estimateEngineBytes(t, ctx, "q8")).toBe(q8.totalBytes);
    const c = t.config;
    const kvDim = c.numKvHeads * c.headDim;
    expect(f16.kvBytes).toBe(c.numLayers * 2 * ctx * kvDim * 2);
    expect(q8.kvBytes).toBe(c.numLayers * 2 * (ctx * kvDim + ctx * c.numKvHeads * 4));
  });

  it("contextThatFits: the full context when it fits, else the largest multiple of 64 that does, else 0", () => {
    const t = stories15M.table;
    const full = 256; // stories15M's context
    const at = (n: number) => estimateEngineBytes(t, n, "q8");
    expect(contextThatFits(t, full, at(full))).toBe(full);
    // a budget between the 192- and 256-position plans: 192, the largest multiple of 64 under it
    const budget = at(200);
    const got = contextThatFits(t, full, budget);
    expect(got).toBe(192);
    expect(at(got)).toBeLessThanOrEqual(budget);
    expect(at(got + 64)).toBeGreaterThan(budget);
    expect(contextThatFits(t, full, at(64) - 1)).toBe(0);
  });

  it("rejects the options the engine rejects, with its messages", () => {
    const t = int8Head.table;
    expect(() => planWasmMemory(t, { contextSize: 0 })).toThrow(/contextSize must be an integer in 1\.\./);
    expect(() => planWasmMemory(t, { contextSize: t.config.maxContext + 1 })).toThrow(/contextSize/);
    expect(() => planWasmMemory(t, { prefillBlock: 17 })).toThrow(
      /prefillBlock must be an integer in 1\.\.16/,
    );
  });
});
