/**
 * build:variants end to end on stories260K: the default tiers build, quality beats plain RTN and
 * llama.cpp's Q4_0 rounding at equal size, the same input and seed give byte-identical shards,
 * unchanged inputs are reused, and bad configs fail clearly before anything is written.
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildVariants, DEFAULT_CONFIG } from "../src/compress/build-variants.ts";
import { CALIBRATION_TEXT } from "../src/compress/calibration.ts";
import { evaluate } from "../src/compress/eval-variants.ts";
import { readManifest } from "../src/compress/variant-store.ts";
import { Manifest } from "../src/format/manifest.ts";
import { buildTestVariants } from "./helpers/api-server.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("build");
let cached: Awaited<ReturnType<typeof buildTestVariants>>;
const quiet = () => {};

beforeAll(async () => {
  cached = await buildTestVariants();
}, 300_000);

afterAll(() => dirs.cleanup());

describe("build:variants on stories260K", () => {
  it("builds quality, balanced and speed with measured quality, ordered as their tiers promise", () => {
    const m = Object.fromEntries(
      Object.entries(cached.index.variants).map(([k, id]) => [k, readManifest(cached.dir, id)]),
    );
    expect(Object.keys(m)).toEqual(["quality", "balanced", "speed"]);
    const { quality, balanced, speed } = m as Record<string, ReturnType<typeof readManifest>>;
    expect(quality!.quality.klMean).toBeLessThan(balanced!.quality.klMean);
    expect(balanced!.quality.klMean).toBeLessThan(speed!.quality.klMean);
    expect(speed!.size.totalBytes).toBeLessThan(balanced!.size.totalBytes);
    expect(balanced!.size.totalBytes).toBeLessThan(quality!.size.totalBytes);
    expect(speed!.model.config.numLayers).toBeLessThan(quality!.model.config.numLayers);
    expect(balanced!.model.config.intermediateSize % 32).toBe(0);
    // The speculative search ran on the chat calibration prompts and recorded its choice.
    for (const v of [quality!, balanced!, speed!]) {
      const spec = v.speculative!;
      expect(spec.measured.calibrationTokens).toBeGreaterThan(0);
      expect(spec.measured.estimatedSpeedup).toBeGreaterThan(0);
      for (const l of spec.draft.skipLayers) expect(l).toBeLessThan(v.model.config.numLayers);
      // Verify passes were priced per row count in workerd, where the Worker serves, on its kernels:
      // a pass of more rows never costs less.
      expect(spec.measured.verifyCosts).toMatchObject({ measuredOn: "workerd", kernels: "relaxed" });
      expect(spec.measured.verifyCosts!.detail).toMatch(/^workerd .*kernels-relaxed\.wasm/);
      const rowCosts = spec.draft.rowCosts!;
      expect(rowCosts).toHaveLength(8);
      for (const c of [...rowCosts, spec.draft.rowCost]) {
        expect(Number.isFinite(c)).toBe(true);
        expect(c).toBeGreaterThan(0);
        expect(c).toBeLessThanOrEqual(4);
      }
      for (let m = 2; m <= 8; m++)
        expect(m * rowCosts[m - 1]!).toBeGreaterThanOrEqual((m - 1) * rowCosts[m - 2]! * (1 - 1e-9));
      // stories260K's head (512 x 64) runs below the worker clock's 1 ms tick: its share may read 0.
      expect(spec.draft.headShare).toBeGreaterThanOrEqual(0);
      expect(spec.draft.headShare).toBeLessThan(1);
      // Batched head passes were priced per row count too (at most the engine's 8 head rows).
      const headCosts = spec.draft.headCosts!;
      expect(headCosts.length).toBeGreaterThan(1);
      for (let m = 2; m <= headCosts.length; m++)
        expect(m * headCosts[m - 1]!).toBeGreaterThanOrEqual((m - 1) * headCosts[m - 2]! * (1 - 1e-9));
      // Manifests from before batched heads (no headCosts) still parse.
      const { headCosts: _h, ...preBatched } = spec.draft;
      const parsed = Manifest.parse({ ...v, speculative: { ...spec, draft: preBatched } });
      expect(parsed.speculative!.draft.headCosts).toBeUndefined();
      expect(parsed.speculative!.draft.rowCosts).toEqual(rowCosts);
      // Manifests from before the fields still parse.
      const { speculative: _, ...old } = v;
      expect(Manifest.parse(old).speculative).toBeUndefined();
      const { verifyCosts: __, ...measuredBefore } = spec.measured;
      const before = Manifest.parse({ ...v, speculative: { ...spec, measured: measuredBefore } });
      expect(before.speculative!.measured.verifyCosts).toBeUndefined();
    }
  });

  it("the same input and seed give byte-identical shards; unchanged inputs are reused", async () => {
    const out = dirs.make();
    const again = await buildVariants({
      model: sharedModelPath(),
      config: DEFAULT_CONFIG,
      out,
      force: true,
      log: quiet,
    });
    for (const [name, id] of Object.entries(again.index.variants)) {
      const a = readManifest(out, id);
      const b = readManifest(cached.dir, cached.index.variants[name]!);
      expect(a.shards).toEqual(b.shards);
      expect(a.weights).toEqual(b.weights);
      expect(a.quality).toEqual(b.quality);
    }
    const third = await buildVariants({ model: sharedModelPath(), config: DEFAULT_CONFIG, out, log: quiet });
    expect(third.rows.every((r) => r.reused)).toBe(true);
    expect(third.index.variants).toEqual(again.index.variants);
  }, 300_000);

  it("eval: the quality variant has lower KL than RTN int4 and llama.cpp Q4_0 at equal or smaller size", async () => {
    const report = await evaluate({
      model: sharedModelPath(),
      config: DEFAULT_CONFIG,
      out: cached.dir,
      log: quiet,
    });
    const { rows } = report;
    expect(rows.map((r) => r.variant)).toEqual(["quality", "balanced", "speed", "rtn-int4", "q4_0"]);
    for (const r of rows) {
      for (const v of [r.bytes, r.bits_per_weight, r.kl_mean, r.top1_agreement, r.perplexity, r.eval_tokens])
        expect(Number.isFinite(v)).toBe(true);
      expect(r.eval_tokens).toBeGreaterThan(0);
      expect(r.top1_agreement).toBeLessThanOrEqual(1);
    }
    const by = Object.fromEntries(rows.map((r) => [r.variant, r]));
    // The variants' numbers are their manifests' (same text, same budget, same code).
    const m = readManifest(cached.dir, cached.index.variants.quality!);
    expect(by.quality!.kl_mean).toBe(m.quality.klMean);
    expect(report.target!.ratio).toBeCloseTo(by.quality!.kl_mean / by.q4_0!.kl_mean, 12);

    // Another text re-measures each variant from its shards on that text.
    const other = await evaluate({
      model: sharedModelPath(),
      config: DEFAULT_CONFIG,
      out: cached.dir,
      log: quiet,
      text: CALIBRATION_TEXT.prose,
      tokens: 64,
    });
    expect(other.text).toBe(CALIBRATION_TEXT.prose);
    for (const r of other.rows) expect(r.eval_tokens).toBeLessThanOrEqual(64);
    expect(other.rows[0]!.kl_mean).not.toBe(by.quality!.kl_mean);
    expect(by.quality!.bytes).toBeLessThanOrEqual(by["rtn-int4"]!.bytes);
    expect(by.quality!.bytes).toBeLessThanOrEqual(by.q4_0!.bytes);
    expect(by.quality!.kl_mean).toBeLessThan(by["rtn-int4"]!.kl_mean);
    expect(by.quality!.kl_mean).toBeLessThan(by.q4_0!.kl_mean);
  }, 300_000);
});

describe("bad configs fail before anything is written", () => {
  const base = {
    variants: [{ name: "quality", tier: "quality", quant: { method: "gptq" }, prune: null }],
  };
  const cases: [string, unknown, RegExp][] = [
    ["an unknown tier", { variants: [{ name: "x", tier: "ultra" }] }, /variants\.0\.tier/],
    [
      "an unknown variant field",
      { variants: [{ ...base.variants[0], colour: "red" }] },
      /Unrecognized key.*colour/,
    ],
    ["an unknown top-level field", { ...base, turbo: true }, /Unrecognized key.*turbo/],
    [
      "a pruning ratio out of range",
      { variants: [{ name: "s", tier: "speed", prune: { ffn: 0.95 } }] },
      /prune\.ffn: a pruning ratio is at most 0\.9/,
    ],
    [
      "a negative ratio",
      { variants: [{ name: "s", tier: "speed", prune: { layers: -0.1 } }] },
      /prune\.layers/,
    ],
    [
      "duplicate variant names",
      { variants: [base.variants[0], base.variants[0]] },
      /duplicate variant quality/,
    ],
    [
      "a bad group size",
      { variants: [{ name: "q", tier: "quality", quant: { groupSize: 48 } }] },
      /quant\.groupSize/,
    ],
  ];
  it("rejects a verify-cost runtime it does not know", async () => {
    const dir = dirs.make();
    const out = join(dir, "out");
    const bad = "gpu" as unknown as "node";
    await expect(
      buildVariants({ model: sharedModelPath(), config: DEFAULT_CONFIG, out, log: quiet, verifyCosts: bad }),
    ).rejects.toThrow(/verifyCosts must be one of workerd, node, got "gpu"/);
    expect(existsSync(out)).toBe(false);
  });

  for (const [what, config, message] of cases) {
    it(`rejects ${what}`, async () => {
      const dir = dirs.make();
      const file = join(dir, "variants.json");
      writeFileSync(file, JSON.stringify(config));
      const out = join(dir, "out");
      await expect(
        buildVariants({ model: sharedModelPath(), config: file, out, log: quiet }),
      ).rejects.toThrow(message);
      expect(existsSync(out)).toBe(false);
    });
  }

  it("rejects int8 inside blocks, which the engine cannot run, naming the tensor", async () => {
    const dir = dirs.make();
    const file = join(dir, "variants.json");
    const variant = {
      name: "q",
      tier: "quality",
      quant: { method: "rtn", int8Tensors: ["blk.0.ffn_down.weight"] },
    };
    writeFileSync(file, JSON.stringify({ variants: [variant] }));
    const out = join(dir, "out");
    await expect(buildVariants({ model: sharedModelPath(), config: file, out, log: quiet })).rejects.toThrow(
      /blk\.0\.ffn_down\.weight fell back to int8/,
    );
    expect(existsSync(join(out, "variants.json"))).toBe(false);
  }, 120_000);

  it("rejects shapes that cannot be pruned as asked (4 KV heads at 0.9 would keep none), writing no variant", async () => {
    const dir = dirs.make();
    const file = join(dir, "variants.json");
    writeFileSync(
      file,
      JSON.stringify({ variants: [{ name: "s", tier: "speed", prune: { kvHeads: 0.9 } }] }),
    );
    const out = join(dir, "out");
    await expect(buildVariants({ model: sharedModelPath(), config: file, out, log: quiet })).rejects.toThrow(
      /KV heads|kv head/i,
    );
    expect(existsSync(join(out, "variants.json"))).toBe(false);
    expect(existsSync(join(out, "manifests")) ? readdirSync(join(out, "manifests")) : []).toEqual([]);
  }, 120_000);
});
