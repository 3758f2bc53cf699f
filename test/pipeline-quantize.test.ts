/**
 * Error-aware int4 on the real stories260K with calibration Gram matrices: GPTQ, clip search and AWQ
 * against round-to-nearest, the engine's PackedInt4 layout, int8 fallback, llama.cpp Q4_0 rounding,
 * determinism.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { searchAwqScales } from "../src/compress/awq.ts";
import type { InputStats } from "../src/compress/calibration.ts";
import { quantizeClipSearch } from "../src/compress/clip-search.ts";
import { compareModels } from "../src/compress/evaluate.ts";
import { quantizeGptq } from "../src/compress/gptq.ts";
import { llamaCppQ4_0 } from "../src/compress/llama-cpp-q4-0.ts";
import { dequantizedModel } from "../src/compress/model-edit.ts";
import { outputError } from "../src/compress/output-error.ts";
import { quantizeModel } from "../src/compress/quantize.ts";
import {
  dequantize,
  f16ToF32,
  int4Code,
  int4Geometry,
  int4ZeroPoint,
  type PackedInt4,
  quantizeRtn,
} from "../src/format/int4.ts";
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

const LAYER_TYPES = {
  attn_q: { name: TensorNames.attnQ, site: "attnIn" },
  attn_k: { name: TensorNames.attnK, site: "attnIn" },
  attn_v: { name: TensorNames.attnV, site: "attnIn" },
  attn_output: { name: TensorNames.attnOutput, site: "attnOutIn" },
  ffn_gate: { name: TensorNames.ffnGate, site: "ffnIn" },
  ffn_up: { name: TensorNames.ffnUp, site: "ffnIn" },
  ffn_down: { name: TensorNames.ffnDown, site: "ffnDownIn" },
} as const;

interface Linear {
  type: keyof typeof LAYER_TYPES;
  name: string;
  weights: Float32Array;
  N: number;
  K: number;
  input: InputStats;
  heldout: InputStats;
}

function linears(): Linear[] {
  const out: Linear[] = [];
  for (let l = 0; l < fx.model.config.numLayers; l++) {
    for (const [type, t] of Object.entries(LAYER_TYPES) as [
      keyof typeof LAYER_TYPES,
      (typeof LAYER_TYPES)[keyof typeof LAYER_TYPES],
    ][]) {
      const name = t.name(l);
      const e = fx.model.tensors.get(name)!;
      const [N, K] = e.shape as [number, number];
      out.push({
        type,
        name,
        weights: e.f32(),
        N,
        K,
        input: fx.stats.layers[l]![t.site],
        heldout: fx.heldoutStats.layers[l]![t.site],
      });
    }
  }
  return out;
}

const relError = (l: Linear, p: PackedInt4, gram = l.input.gram) =>
  outputError(l.weights, dequantize(p), l.N, l.K, gram).relative;
const diagonal = (s: InputStats) => Float64Array.from({ length: s.K }, (_, k) => s.gram[k * s.K + k]!);
const bytesOf = (p: PackedInt4) => [
  Buffer.from(p.qweight),
  Buffer.from(p.scales.buffer),
  p.zeros ? Buffer.from(p.zeros) : null,
];

/** Structural validity of a PackedInt4 as the engine reads it. */
function expectValidPacked(p: PackedInt4, N: number, K: number, zeroPoint: boolean) {
  const { nGroups, kPadded } = int4Geometry(K, p.groupSize);
  expect({ N: p.N, K: p.K, nGroups: p.nGroups, kPadded: p.kPadded }).toEqual({ N, K, nGroups, kPadded });
  expect(p.qweight.length).toBe((N * kPadded) / 2);
  expect(p.scales.length).toBe(N * nGroups);
  expect(p.zeros === null).toBe(!zeroPoint);
  let bad = 0;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < nGroups; g++) {
      if (!Number.isFinite(f16ToF32(p.scales[n * nGroups + g]!))) bad++;
      // Padding past K must dequantize to exactly 0.
      for (let k = Math.max(K, g * p.groupSize); k < (g + 1) * p.groupSize; k++) {
        if (int4Code(p, n, k) !== int4ZeroPoint(p, n, g)) bad++;
      }
    }
  }
  expect(bad).toBe(0);
  expect(dequantize(p).every(Number.isFinite)).toBe(true);
}

describe("int4 group primitives", () => {
  it("clip search with ratio 1 reproduces quantizeRtn byte for byte (sym/asym, ragged K, G 32/64)", () => {
    for (const l of linears().filter((x) => x.name.startsWith("blk.1."))) {
      for (const opts of [
        {},
        { zeroPoint: true },
        { groupSize: 64 as const },
        { groupSize: 64 as const, zeroPoint: true },
      ]) {
        const rtn = quantizeRtn(l.weights, l.N, l.K, opts);
        const ours = quantizeClipSearch(l.weights, l.N, l.K, diagonal(l.input), { ...opts, clipRatios: [1] });
        expect(bytesOf(ours)).toEqual(bytesOf(rtn));
      }
    }
  });
});

describe("GPTQ vs RTN on stories260K layers", () => {
  it("lowers every layer's output error on calibration data, and on held-out data per layer type", () => {
    const byType = new Map<
      string,
      { rtn: number; gptq: number; rtnHeld: number; gptqHeld: number; n: number }
    >();
    for (const l of linears()) {
      const rtn = quantizeRtn(l.weights, l.N, l.K);
      const gptq = quantizeGptq(l.weights, l.N, l.K, l.input.gram);
      const e = { rtn: relError(l, rtn), gptq: relError(l, gptq) };
      expect(e.gptq, l.name).toBeLessThan(e.rtn);
      const acc = byType.get(l.type) ?? { rtn: 0, gptq: 0, rtnHeld: 0, gptqHeld: 0, n: 0 };
      acc.rtn += e.rtn;
      acc.gptq += e.gptq;
      acc.rtnHeld += relError(l, rtn, l.heldout.gram);
      acc.gptqHeld += relError(l, gptq, l.heldout.gram);
      acc.n++;
      byType.set(l.type, acc);
    }
    for (const [type, acc] of byType) {
      // GPTQ should win clearly (≥ 10% lower error), not by noise.
      expect(acc.gptq / acc.rtn, type).toBeLessThan(0.9);
      expect(acc.gptqHeld / acc.rtnHeld, `${type} held-out`).toBeLessThan(0.95);
    }
  });

  it("produces valid PackedInt4 in every variant (asymmetric, act-order, clip search, group 64)", () => {
    const l = linears().find((x) => x.name === TensorNames.ffnDown(2))!; // K = 172: ragged last group
    const variants = [
      {},
      { zeroPoint: true },
      { actOrder: true },
      { clipSearch: true },
      { groupSize: 64 as const, actOrder: true, clipSearch: true, zeroPoint: true },
    ];
    for (const opts of variants) {
      const p = quantizeGptq(l.weights, l.N, l.K, l.input.gram, opts);
      expectValidPacked(p, l.N, l.K, opts.zeroPoint ?? false);
      const rtn = quantizeRtn(l.weights, l.N, l.K, opts);
      expect(relError(l, p), JSON.stringify(opts)).toBeLessThan(relError(l, rtn));
    }
  });

  it("is deterministic", () => {
    const l = linears().find((x) => x.name === TensorNames.attnQ(3))!;
    const a = quantizeGptq(l.weights, l.N, l.K, l.input.gram, { actOrder: true, clipSearch: true });
    const b = quantizeGptq(l.weights, l.N, l.K, l.input.gram, { actOrder: true, clipSearch: true });
    expect(bytesOf(a)).toEqual(bytesOf(b));
  });

  it("survives a singular Gram matrix (dead input channels)", () => {
    const l = linears().find((x) => x.name === TensorNames.ffnGate(0))!;
    const gram = Float64Array.from(l.input.gram);
    for (let j = 0; j < l.K; j++) {
      gram[5 * l.K + j] = 0;
      gram[j * l.K + 5] = 0;
    }
    const p = quantizeGptq(l.weights, l.N, l.K, gram);
    expectValidPacked(p, l.N, l.K, false);
    expect(relError(l, p, gram)).toBeLessThan(relError(l, quantizeRtn(l.weights, l.N, l.K), gram));
  });
});

describe("clip search and AWQ vs RTN", () => {
  it("clip search is never worse on the weighted error and better on output error per layer type", () => {
    let rtnTotal = 0;
    let searchTotal = 0;
    for (const l of linears()) {
      const d = diagonal(l.input);
      const rtn = dequantize(quantizeRtn(l.weights, l.N, l.K));
      const search = dequantize(quantizeClipSearch(l.weights, l.N, l.K, d));
      const weighted = (q: Float32Array) => {
        let s = 0;
        for (let n = 0; n < l.N; n++)
          for (let k = 0; k < l.K; k++) s += d[k]! * (q[n * l.K + k]! - l.weights[n * l.K + k]!) ** 2;
        return s;
      };
      expect(weighted(search), l.name).toBeLessThanOrEqual(weighted(rtn));
      rtnTotal += outputError(l.weights, rtn, l.N, l.K, l.input.gram).relative;
      searchTotal += outputError(l.weights, search, l.N, l.K, l.input.gram).relative;
    }
    expect(searchTotal).toBeLessThan(rtnTotal);
  });

  it("AWQ scale search is never worse than unscaled quantization", () => {
    const ls = fx.stats.layers[1]!;
    const layer = (name: string) => {
      const e = fx.model.tensors.get(name)!;
      return { name, weights: e.f32(), N: e.shape[0]!, K: e.shape[1]! };
    };
    const mean = (s: InputStats) => s.absSum.map((v) => v / s.rows);
    for (const quantizer of ["rtn", "search"] as const) {
      const qkv = [TensorNames.attnQ(1), TensorNames.attnK(1), TensorNames.attnV(1)].map(layer);
      const r = searchAwqScales(qkv, ls.attnIn.gram, mean(ls.attnIn), { quantizer, grid: 10 });
      expect(r.error).toBeLessThanOrEqual(r.unscaledError);
      const down = searchAwqScales([layer(TensorNames.ffnDown(1))], ls.ffnDownIn.gram, mean(ls.ffnDownIn), {
        quantizer,
        grid: 10,
      });
      expect(down.error).toBeLessThan(down.unscaledError);
      expect(down.alpha).toBeGreaterThan(0);
    }
  });

  it("AWQ folding leaves the fp32 model's outputs unchanged", () => {
    const r = quantizeModel(fx.model, fx.stats, { method: "rtn", awq: true, awqGrid: 5 });
    expect(r.report.filter((x) => x.awqAlpha !== null && x.awqAlpha > 0).length).toBeGreaterThan(0);
    const a = new ReferenceModel(fx.model);
    const b = new ReferenceModel(r.folded);
    const sa = a.newState(8);
    const sb = b.newState(8);
    for (const t of [1, 403, 407, 261, 378, 300, 15, 90]) {
      const la = a.forward(sa, t);
      const lb = b.forward(sb, t);
      let maxDiff = 0;
      for (let i = 0; i < la.length; i++) maxDiff = Math.max(maxDiff, Math.abs(la[i]! - lb[i]!));
      expect(maxDiff).toBeLessThan(1e-3);
    }
    // And its int4 tensors beat plain RTN of the unscaled weights on output error.
    const int4 = r.report.filter((x) => x.format === "int4");
    const sum = (f: (x: (typeof int4)[number]) => number) => int4.reduce((s, x) => s + f(x), 0);
    expect(sum((x) => x.relativeError)).toBeLessThan(sum((x) => x.rtnRelativeError));
  });
});

describe("quantizeModel", () => {
  it("packs every linear weight, keeps vectors fp32, and GPTQ cuts RTN's KL on held-out text by over 30%", () => {
    const rtn = quantizeModel(fx.model, fx.stats, { method: "rtn" });
    const gptq = quantizeModel(fx.model, fx.stats, { method: "gptq" });
    expect(gptq.tensors.map((t) => t.name)).toEqual([...fx.model.tensors.keys()]);
    for (const t of gptq.tensors) {
      const format = t.value instanceof Float32Array ? "f32" : t.value.format;
      const expected = t.shape.length === 1 ? "f32" : t.name.startsWith("blk.") ? "int4" : "int8";
      expect(format, t.name).toBe(expected);
    }
    const klRtn = compareModels(fx.model, dequantizedModel(rtn.folded, rtn.tensors), fx.heldout).meanKl;
    const klGptq = compareModels(fx.model, dequantizedModel(gptq.folded, gptq.tensors), fx.heldout).meanKl;
    expect(klGptq).toBeLessThan(0.7 * klRtn);
  });

  it("int4 embeddings: clip search when asked (head-weighted when tied) beats RTN on the logits", () => {
    const opts = { method: "search", embeddings: "int4", head: "int4", embeddingSearch: true } as const;
    const searched = quantizeModel(fx.model, fx.stats, opts);
    const emb = fx.model.tensors.get(TensorNames.tokenEmbedding)!;
    const [V, H] = emb.shape as [number, number];
    const rtnEmb = quantizeRtn(emb.f32(), V, H);
    const swapped = searched.tensors.map((t) =>
      t.name === TensorNames.tokenEmbedding ? { ...t, value: rtnEmb } : t,
    );
    const kl = (tensors: typeof swapped) =>
      compareModels(fx.model, dequantizedModel(searched.folded, tensors), fx.heldout).meanKl;
    expect(kl(searched.tensors)).toBeLessThan(kl(swapped));
    const rtn = quantizeModel(fx.model, fx.stats, { ...opts, method: "rtn" });
    const rtnTensor = rtn.tensors.find((t) => t.name === TensorNames.tokenEmbedding)!.value;
    expect(rtnTensor).toEqual(rtnEmb);
  });

  it("GPTQ + AWQ output packs and runs on the WASM engine like the dequantized reference", async () => {
    // int4 head and embeddings too: no matvec then quantizes its activations.
    const q = quantizeModel(fx.model, fx.stats, {
      method: "gptq",
      awq: true,
      awqGrid: 5,
      embeddings: "int4",
      head: "int4",
    });
    const { table, data } = packWeights(q.folded, q.tensors);
    const engine = await WasmEngine.load(await loadTestKernels(), table, bytesToStream(data), {
      activations: "f32",
    });
    const ref = new ReferenceModel(dequantizedModel(q.folded, q.tensors));
    const tokens = fx.heldout[0]!.slice(0, 24);
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
    // Same weights; only summation order and the engine's fp16 KV cache differ (measured 7e-4).
    expect(worst / scale).toBeLessThan(3e-3);
  });

  it("falls back to int8 when asked by name/glob or when the error bound is exceeded", () => {
    const asked = quantizeModel(fx.model, fx.stats, {
      method: "search",
      int8: ["blk.*.ffn_down.weight", "blk.0.attn_q.weight"],
    });
    const int8 = asked.report.filter((r) => r.fallback === "requested").map((r) => r.name);
    expect(int8).toEqual(
      ["blk.0.attn_q.weight", ...[0, 1, 2, 3, 4].map((l) => TensorNames.ffnDown(l)), "output.weight"].sort(
        (a, b) => int8.indexOf(a) - int8.indexOf(b),
      ),
    );
    for (const r of asked.report.filter((x) => x.format === "int8" && x.errorKind === "output")) {
      expect(r.relativeError).toBeLessThan(r.rtnRelativeError / 5);
    }

    const bounded = quantizeModel(fx.model, fx.stats, { method: "rtn", maxRelativeError: 0.1 });
    for (const r of bounded.report.filter((x) => x.name.startsWith("blk."))) {
      expect(r.format === "int8").toBe(r.rtnRelativeError > 0.1);
      if (r.format === "int8") expect(r.fallback).toBe("error-bound");
    }
    expect(bounded.report.some((r) => r.fallback === "error-bound")).toBe(true);
  });

  it("logs through the callback only, and rejects unknown options", () => {
    const lines: string[] = [];
    quantizeModel(fx.model, fx.stats, { method: "rtn" }, (m) => lines.push(m));
    expect(lines.length).toBe(35);
    expect(() => quantizeModel(fx.model, fx.stats, { method: "hqq" as "rtn" })).toThrow();
    expect(() => quantizeModel(fx.model, fx.stats, { bits: 3 } as object)).toThrow();
  });
});

describe("llama.cpp Q4_0 rounding (comparison only)", () => {
  it("follows the public definition: d = max/-8, q = min(15, trunc(x/d + 8.5))", () => {
    // max = 8 → d = -1; x = 0.5 → 0.5·(-1) + 8.5 = 8 → q = 8 → 0. (Our RTN rounds -0.5 away from zero: 1.)
    const row = new Float32Array(32);
    row[0] = 8;
    row[1] = 0.5;
    row[2] = -3.2;
    row[3] = 7.9;
    const q = llamaCppQ4_0(row, 1, 32);
    expect([q[0], q[1], q[2], q[3]].map((v) => v! + 0)).toEqual([8, 0, -3, 8]);
    expect(dequantize(quantizeRtn(row, 1, 32))[1]).toBe(1);
  });

  it("is within one step of our RTN on real weights and as good on output error", () => {
    for (const l of linears().filter((x) => x.name.startsWith("blk.0."))) {
      const rtn = dequantize(quantizeRtn(l.weights, l.N, l.K));
      const q4 = llamaCppQ4_0(l.weights, l.N, l.K);
      const p = quantizeRtn(l.weights, l.N, l.K);
      let further = 0;
      for (let n = 0; n < l.N; n++) {
        for (let k = 0; k < l.K; k++) {
          const step = Math.abs(f16ToF32(p.scales[n * p.nGroups + Math.floor(k / 32)]!));
          if (Math.abs(q4[n * l.K + k]! - rtn[n * l.K + k]!) > step * 1.0001) further++;
        }
      }
      expect(further, l.name).toBe(0);
      const e4 = outputError(l.weights, q4, l.N, l.K, l.input.gram).relative;
      const eR = outputError(l.weights, rtn, l.N, l.K, l.input.gram).relative;
      expect(Math.abs(e4 - eR) / eR).toBeLessThan(0.05);
    }
  });
});
