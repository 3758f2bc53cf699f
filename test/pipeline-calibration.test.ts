/**
 * Calibration: the reference model's activation observer (zero effect on results), token sets from
 * the shipped text and from seeded sampling, and the statistics collected on the real stories260K.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  CALIBRATION_TEXT,
  calibrationSequences,
  channelMeanAbs,
  channelNorms,
  collectCalibrationStats,
  readParagraphs,
} from "../src/compress/calibration.ts";
import type { ModelDescription } from "../src/format/model.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import type { ActivationSite } from "../src/model/reference/transformer.ts";
import { type Fixture, loadFixture } from "./pipeline-fixtures.ts";

let fx: Fixture;
let model: ModelDescription;
beforeAll(async () => {
  fx = await loadFixture();
  model = fx.model;
});

describe("activation observer", () => {
  it("sees every site once per layer and token, in forward order, without changing the logits", () => {
    const tokens = [1, 403, 407, 261, 378];
    const plain = new ReferenceModel(model);
    const s1 = plain.newState(tokens.length);
    const expected = tokens.map((t) => plain.forward(s1, t));

    const observed = new ReferenceModel(model);
    const seen: string[] = [];
    const sizes = new Map<ActivationSite, number>();
    observed.observer = (layer, site, values) => {
      seen.push(`${layer}:${site}`);
      sizes.set(site, values.length);
    };
    const s2 = observed.newState(tokens.length);
    const got = tokens.map((t) => observed.forward(s2, t));
    expect(got).toEqual(expected);

    const c = model.config;
    const perLayer = ["resid_in", "attn_in", "attn_out_in", "ffn_in", "ffn_down_in", "resid_out"];
    const oneToken = [
      ...Array.from({ length: c.numLayers }, (_, l) => perLayer.map((s) => `${l}:${s}`)).flat(),
      `${c.numLayers}:output_in`,
    ];
    expect(seen).toEqual(tokens.flatMap(() => oneToken));
    expect(Object.fromEntries(sizes)).toEqual({
      resid_in: 64,
      attn_in: 64,
      attn_out_in: 64,
      ffn_in: 64,
      ffn_down_in: 172,
      resid_out: 64,
      output_in: 64,
    });
  });
});

describe("calibration token sets", () => {
  it("ships ~30 training and ~10 held-out paragraphs", () => {
    expect(readParagraphs(CALIBRATION_TEXT.train).length).toBeGreaterThanOrEqual(30);
    expect(readParagraphs(CALIBRATION_TEXT.heldout).length).toBeGreaterThanOrEqual(10);
  });

  it("text: BOS-prefixed paragraphs within the token budget and sequence length", () => {
    const seqs = calibrationSequences(model, { maxTokens: 300, maxSequenceLength: 40 });
    const total = seqs.reduce((a, s) => a + s.length, 0);
    expect(total).toBeLessThanOrEqual(300);
    expect(total).toBeGreaterThan(250);
    for (const s of seqs) {
      expect(s[0]).toBe(model.bosTokenId);
      expect(s.length).toBeLessThanOrEqual(40);
    }
  });

  it("sample: deterministic for a seed, different for another", () => {
    const opts = { source: "sample", maxTokens: 120, maxSequenceLength: 60 } as const;
    const a = calibrationSequences(model, { ...opts, seed: 5 });
    const b = calibrationSequences(model, { ...opts, seed: 5 });
    const c = calibrationSequences(model, { ...opts, seed: 6 });
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a.reduce((n, s) => n + s.length, 0)).toBeLessThanOrEqual(120);
    for (const s of a) expect(s[0]).toBe(model.bosTokenId);
  });

  it("rejects bad options", () => {
    expect(() => calibrationSequences(model, { maxTokens: 1 })).toThrow();
    expect(() => calibrationSequences(model, { source: "web" as "text" })).toThrow();
  });
});

describe("calibration statistics (stories260K)", () => {
  it("Gram matrices are symmetric with Σx² on the diagonal; channel stats agree", () => {
    const { stats } = fx;
    expect(stats.layers).toHaveLength(5);
    expect(stats.tokens).toBeGreaterThan(1000);
    for (const layer of stats.layers) {
      for (const s of [layer.attnIn, layer.attnOutIn, layer.ffnIn, layer.ffnDownIn]) {
        expect(s.rows).toBe(stats.tokens);
        let asymmetric = 0;
        let emptyDiagonal = 0;
        for (let i = 0; i < s.K; i++) {
          if (!(s.gram[i * s.K + i]! > 0)) emptyDiagonal++;
          for (let j = 0; j < i; j++) if (s.gram[i * s.K + j] !== s.gram[j * s.K + i]) asymmetric++;
        }
        expect({ asymmetric, emptyDiagonal }).toEqual({ asymmetric: 0, emptyDiagonal: 0 });
        // Cauchy-Schwarz: mean|x| ≤ rms(x) = ‖x‖ / sqrt(rows).
        const mean = channelMeanAbs(s);
        const norm = channelNorms(s);
        const violations = Array.from(mean).filter((m, k) => m > norm[k]! / Math.sqrt(s.rows) + 1e-12);
        expect(violations).toEqual([]);
      }
      expect(layer.blockCosine).toBeGreaterThan(0);
      expect(layer.blockCosine).toBeLessThan(1);
    }
    expect(stats.outputIn.rows).toBe(stats.tokens);
  });

  it("is deterministic and reports progress through the log callback", () => {
    const seqs = calibrationSequences(model, { maxTokens: 100 });
    const lines: string[] = [];
    const a = collectCalibrationStats(model, seqs, { log: (m) => lines.push(m) });
    const b = collectCalibrationStats(model, seqs);
    const bytes = (x: Float64Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    for (const [l, la] of a.layers.entries()) {
      const lb = b.layers[l]!;
      expect(la.blockCosine).toBe(lb.blockCosine);
      for (const site of ["attnIn", "attnOutIn", "ffnIn", "ffnDownIn"] as const) {
        expect(bytes(la[site].gram).equals(bytes(lb[site].gram))).toBe(true);
        expect(bytes(la[site].absSum).equals(bytes(lb[site].absSum))).toBe(true);
      }
    }
    expect(lines.filter((l) => l.includes("sequence"))).toHaveLength(seqs.length);
    expect(lines.filter((l) => l.includes("block cosine"))).toHaveLength(5);
  });
});
