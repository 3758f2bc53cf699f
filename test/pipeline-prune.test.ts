/**
 * Structured pruning (FFN channels, KV heads with their query heads, whole blocks) of the real
 * stories260K, and closed-form healing: shapes, errors for impossible requests, error reduction.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { calibrationSequences, collectCalibrationStats } from "../src/compress/calibration.ts";
import { compareModels } from "../src/compress/evaluate.ts";
import { healPrunedModel, refitProjection } from "../src/compress/heal.ts";
import { dequantizedModel } from "../src/compress/model-edit.ts";
import {
  applyPrunePlan,
  layersToDrop,
  PruneError,
  prunedFfnWidth,
  prunedKvHeads,
  pruneModel,
} from "../src/compress/prune.ts";
import { quantizeModel } from "../src/compress/quantize.ts";
import { TensorNames } from "../src/format/model.ts";
import { packWeights } from "../src/format/pack.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { loadTestKernels } from "./kernels-helpers.ts";
import { type Fixture, loadFixture } from "./pipeline-fixtures.ts";

let fx: Fixture;
beforeAll(async () => {
  fx = await loadFixture();
});

const f32Bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe("pruning shape rules", () => {
  it("rounds the FFN width to multiples of 32 (172 → 128 at 25%)", () => {
    expect(prunedFfnWidth(172, { ffnRatio: 0 })).toBe(172);
    expect(prunedFfnWidth(172, { ffnRatio: 0.25 })).toBe(128);
    expect(prunedFfnWidth(172, { ffnRatio: 0.5 })).toBe(96);
    expect(prunedFfnWidth(172, { ffnRatio: 0.05 })).toBe(160);
    expect(prunedFfnWidth(172, { ffnRatio: 0.9 })).toBe(32);
    expect(prunedFfnWidth(172, { ffnRatio: 0.25, ffnMultipleOf: 1 })).toBe(129);
    expect(prunedFfnWidth(172, { ffnWidth: 64 })).toBe(64);
  });

  it("keeps the GQA ratio: 4 KV heads → 2 with 8 query heads → 4", () => {
    expect(prunedKvHeads(4, { kvHeadRatio: 0.5 })).toBe(2);
    expect(prunedKvHeads(4, { kvHeadRatio: 0.25 })).toBe(3);
  });

  it("throws clear errors for impossible requests", () => {
    const { model, stats } = fx;
    const expectPruneError = (f: () => unknown, message: RegExp) => {
      expect(f).toThrow(PruneError);
      expect(f).toThrow(message);
    };
    expectPruneError(() => pruneModel(model, stats, { ffnRatio: 0.95 }), /ffnRatio[\s\S]*at most 0\.9/);
    expectPruneError(() => pruneModel(model, stats, { kvHeadRatio: -0.1 }), /kvHeadRatio[\s\S]*at least 0/);
    expectPruneError(() => pruneModel(model, stats, { dropLayers: 5 }), /would leave none/);
    expectPruneError(() => pruneModel(model, stats, { kvHeadRatio: 0.9 }), /would leave 0 of 4 KV heads/);
    expectPruneError(() => pruneModel(model, stats, { ffnWidth: 100 }), /not a multiple of 32/);
    expectPruneError(() => pruneModel(model, stats, { ffnWidth: 192 }), /wider than/);
    expectPruneError(() => prunedFfnWidth(20, { ffnRatio: 0.5 }), /fewer than one multiple of 32/);
    expectPruneError(() => pruneModel(model, stats, { heads: 2 } as object), /invalid prune options/);
  });
});

describe("pruning stories260K", () => {
  it("prunes FFN 172 → 128, KV heads 4 → 2 (queries 8 → 4) and layers 5 → 4 into a valid model", () => {
    const { model, stats } = fx;
    const r = pruneModel(model, stats, { ffnRatio: 0.25, kvHeadRatio: 0.5, dropLayers: 1 });
    const c = r.plan.config;
    expect({ I: c.intermediateSize, kv: c.numKvHeads, q: c.numHeads, L: c.numLayers }).toEqual({
      I: 128,
      kv: 2,
      q: 4,
      L: 4,
    });
    expect(r.model.config).toEqual(c);
    // The least influential block (highest input/output cosine) goes.
    const cosines = stats.layers.map((l) => l.blockCosine);
    expect(r.plan.droppedLayers).toEqual([cosines.indexOf(Math.max(...cosines))]);
    expect(r.plan.layers.map((l) => l.source)).toEqual(
      [0, 1, 2, 3, 4].filter((l) => !r.plan.droppedLayers.includes(l)),
    );
    expect(r.model.tensors.get(TensorNames.attnQ(0))!.shape).toEqual([32, 64]);
    expect(r.model.tensors.get(TensorNames.attnK(0))!.shape).toEqual([16, 64]);
    expect(r.model.tensors.get(TensorNames.attnOutput(0))!.shape).toEqual([64, 32]);
    expect(r.model.tensors.get(TensorNames.ffnDown(3))!.shape).toEqual([64, 128]);
    expect(r.model.tensors.has(TensorNames.ffnDown(4))).toBe(false);

    // Kept rows/columns are the original ones, in order.
    const pl = r.plan.layers[1]!;
    const src = (name: string) => model.tensors.get(name)!.f32();
    const gate = r.model.tensors.get(TensorNames.ffnGate(1))!.f32();
    const down = r.model.tensors.get(TensorNames.ffnDown(1))!.f32();
    pl.ffnChannels.forEach((ch, i) => {
      expect(f32Bytes(gate.subarray(i * 64, (i + 1) * 64))).toEqual(
        f32Bytes(src(TensorNames.ffnGate(pl.source)).subarray(ch * 64, (ch + 1) * 64)),
      );
      expect(down[5 * 128 + i]).toBe(src(TensorNames.ffnDown(pl.source))[5 * 172 + ch]);
    });
    const k = r.model.tensors.get(TensorNames.attnK(1))!.f32();
    const q = r.model.tensors.get(TensorNames.attnQ(1))!.f32();
    pl.kvHeads.forEach((g, i) => {
      expect(f32Bytes(k.subarray(i * 8 * 64, (i + 1) * 8 * 64))).toEqual(
        f32Bytes(src(TensorNames.attnK(pl.source)).subarray(g * 8 * 64, (g + 1) * 8 * 64)),
      );
      // Query heads 2g, 2g+1 follow KV head g.
      expect(f32Bytes(q.subarray(i * 16 * 64, (i + 1) * 16 * 64))).toEqual(
        f32Bytes(src(TensorNames.attnQ(pl.source)).subarray(g * 16 * 64, (g + 1) * 16 * 64)),
      );
    });

    const ref = new ReferenceModel(r.model);
    const logits = ref.prefill(ref.newState(4), [1, 403, 407, 261]);
    expect(logits.every(Number.isFinite)).toBe(true);
  });

  it("keeping everything reproduces the original model exactly", () => {
    const { model } = fx;
    const all = (n: number) => Array.from({ length: n }, (_, i) => i);
    const r = applyPrunePlan(model, {
      layers: all(5).map((source) => ({ source, ffnChannels: all(172), kvHeads: all(4) })),
      droppedLayers: [],
    });
    const a = new ReferenceModel(model);
    const b = new ReferenceModel(r.model);
    const tokens = [1, 403, 407, 261, 378];
    expect(b.prefill(b.newState(5), tokens)).toEqual(a.prefill(a.newState(5), tokens));
    expect(pruneModel(model, fx.stats, {}).model.config).toEqual(model.config);
  });

  it("ranks block influence by cosine similarity", () => {
    const cos = fx.stats.layers.map((l) => l.blockCosine);
    const order = [...cos.keys()].sort((a, b) => cos[b]! - cos[a]!);
    expect(layersToDrop(fx.stats, 2)).toEqual(order.slice(0, 2).sort((a, b) => a - b));
  });

  it("is deterministic", () => {
    const opts = { ffnRatio: 0.25, kvHeadRatio: 0.5 };
    const a = pruneModel(fx.model, fx.stats, opts);
    const b = pruneModel(fx.model, fx.stats, opts);
    expect(a.plan).toEqual(b.plan);
    for (const [name, t] of a.model.tensors)
      expect(f32Bytes(t.f32()).equals(f32Bytes(b.model.tensors.get(name)!.f32()))).toBe(true);
  });
});

describe("closed-form healing", () => {
  it("re-fitting with every channel kept returns the original projection", () => {
    const w = fx.model.tensors.get(TensorNames.ffnDown(0))!.f32();
    const all = Array.from({ length: 172 }, (_, i) => i);
    const r = refitProjection(w, 64, 172, fx.stats.layers[0]!.ffnDownIn.gram, all, 1e-9);
    expect(r.before).toBe(0);
    expect(r.after).toBeLessThan(1e-4);
  });

  it("lowers every pruned projection's output error and the end-to-end KL (FFN 25%, KV heads 50%)", () => {
    const { model, stats, heldout, heldoutStats } = fx;
    for (const opts of [{ ffnRatio: 0.25 }, { kvHeadRatio: 0.5 }]) {
      const pruned = pruneModel(model, stats, opts);
      const lines: string[] = [];
      const healed = healPrunedModel(model, pruned, stats, {}, (m) => lines.push(m));
      expect(healed.report).toHaveLength(5);
      expect(lines).toHaveLength(5);
      for (const r of healed.report) {
        expect(r.after, r.tensor).toBeLessThan(r.before);
        expect(r.before).toBeGreaterThan(0);
      }
      // The re-fit also helps on held-out activations (it did not just memorize calibration).
      const site = "ffnRatio" in opts ? "ffnDownIn" : "attnOutIn";
      for (const [i, pl] of pruned.plan.layers.entries()) {
        const tensor = "ffnRatio" in opts ? TensorNames.ffnDown : TensorNames.attnOutput;
        const w = model.tensors.get(tensor(pl.source))!.f32();
        const K = w.length / 64;
        const kept =
          "ffnRatio" in opts
            ? [...pl.ffnChannels]
            : pl.kvHeads.flatMap((g) => Array.from({ length: 16 }, (_, j) => g * 16 + j));
        const fit = refitProjection(w, 64, K, stats.layers[pl.source]![site].gram, kept);
        const healedW = healed.model.tensors.get(tensor(i))!.f32();
        expect(f32Bytes(healedW).equals(f32Bytes(fit.weights))).toBe(true);
      }
      const before = compareModels(model, pruned.model, heldout).meanKl;
      const after = compareModels(model, healed.model, heldout).meanKl;
      expect(after).toBeLessThan(before);
      expect(heldoutStats.tokens).toBeGreaterThan(0);
    }
  });
});

describe("prune → heal → calibrate → GPTQ → pack", () => {
  it("runs on the WASM engine like the reference over the same weights", async () => {
    const { model, stats } = fx;
    const pruned = pruneModel(model, stats, { ffnRatio: 0.25, kvHeadRatio: 0.5, dropLayers: 1 });
    const healed = healPrunedModel(model, pruned, stats).model;
    const small = collectCalibrationStats(healed, calibrationSequences(healed, { maxTokens: 300 }));
    const q = quantizeModel(healed, small, { method: "gptq", embeddings: "int4", head: "int4" });
    const { table, data } = packWeights(q.folded, q.tensors);
    const engine = await WasmEngine.load(await loadTestKernels(), table, bytesToStream(data), {
      activations: "f32",
    });
    const ref = new ReferenceModel(dequantizedModel(q.folded, q.tensors));
    const tokens = fx.heldout[1]!.slice(0, 16);
    const se = engine.newState(tokens.length);
    const sr = ref.newState(tokens.length);
    let worst = 0;
    let scale = 0;
    for (const t of tokens) {
      const a = engine.forward(se, t);
      const b = ref.forward(sr, t);
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        scale = Math.max(scale, Math.abs(b[i]!));
      }
    }
    expect(worst / scale).toBeLessThan(3e-3);
  });
});
