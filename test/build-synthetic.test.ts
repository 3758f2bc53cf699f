/**
 * build:variants at real scale: a synthetic model in stories110M's shape (seeded weights; decode
 * speed and sizes do not depend on values) through calibration, pruning + healing, int4, shards and
 * manifests, with a CI-sized calibration/eval budget (config/ci-synthetic-110m.json: output errors
 * reported on 8 rows per weight, as the real SmolLM2 config does; 64 rows made them 80% of the
 * quality variant's quantization; healing's report uses the same rows). Healing the speed variant's
 * ffn_down re-fits was about half of this test's CPU time until they were made 2.2x cheaper
 * (381 -> 233 s of CPU for this file, 2026-11-30).
 */
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { buildVariants } from "../src/compress/build-variants.ts";
import { SHAPE_CONFIGS } from "../src/model/synthetic.ts";
import { estimateEngineBytes } from "../src/runtime/load-engine.ts";
import { tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("build110m");
afterAll(() => dirs.cleanup());

describe("build:variants on a synthetic stories110M-shape model", () => {
  it("builds a quality and a pruned speed variant with 16 MiB shards and measured manifests", async () => {
    const config = fileURLToPath(new URL("../config/ci-synthetic-110m.json", import.meta.url));
    const t0 = performance.now();
    const r = await buildVariants({
      model: "synthetic:stories110M",
      config,
      out: dirs.make(),
      log: () => {},
    });
    console.log(`synthetic stories110M build: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const [quality, speed] = r.rows.map((row) => row.manifest);
    const shape = SHAPE_CONFIGS.stories110M;
    expect(quality!.model.config).toEqual(shape);
    expect(quality!.shards.every((s) => s.bytes <= 16 * 1024 * 1024)).toBe(true);
    expect(quality!.shards.length).toBe(Math.ceil(quality!.weights.totalBytes / (16 * 1024 * 1024)));
    // int4 g32 (4.5 bits) for 85M block weights + int8 (8.5 bits) embeddings and head.
    expect(quality!.size.bitsPerWeight).toBeGreaterThan(5);
    expect(quality!.size.bitsPerWeight).toBeLessThan(6.5);

    const s = speed!.model.config;
    expect(s.numLayers).toBe(10); // 12 * (1 - 0.17) rounded
    expect(s.intermediateSize).toBe(1536); // 2048 * 0.75, a multiple of 32
    expect(s.numKvHeads).toBe(9);
    expect(s.numHeads).toBe(9);
    expect(speed!.size.totalBytes).toBeLessThan(0.65 * quality!.size.totalBytes);
    expect(speed!.speed.decodeMsPerToken).toBeLessThan(quality!.speed.decodeMsPerToken);
    // The speed variant fits a Worker isolate with a 1024-token int8 KV cache, with room to spare.
    expect(estimateEngineBytes(speed!.weights, 1024, "q8")).toBeLessThan(100 * 1024 * 1024);
    for (const m of [quality!, speed!]) {
      expect(m.quality.klMean).toBeGreaterThan(0);
      expect(m.quality.evalTokens).toBeGreaterThan(0);
    }
  }, 1_800_000); // ~5 min on an idle 2-core machine; a loaded one (other test files beside it) takes far longer
});
