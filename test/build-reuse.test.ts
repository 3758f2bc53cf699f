/**
 * Switching models in one variants folder keeps each model's build: build A, build B into the same
 * folder (variants.json now describes B), build A again -> A's variants are reused, not rebuilt.
 * A: stories260K.gguf; B: the same weights written as a Hugging Face folder (another source file, so
 * other input keys and other manifests). A small one-variant config keeps the builds short.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildVariants } from "../src/compress/build-variants.ts";
import { readVariantsIndex } from "../src/compress/variant-store.ts";
import { writeHfFolder } from "../src/model/export/hf.ts";
import { loadModel } from "../src/model/import/index.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("build-reuse");
afterAll(() => dirs.cleanup());

const CONFIG = {
  seed: 7,
  calibration: { maxTokens: 64 },
  evaluation: { maxTokens: 32 },
  speculative: null,
  variants: [{ name: "speed", tier: "speed", quant: { method: "rtn" } }],
};

describe("one variants folder, two models", () => {
  it("build A, build B, build A again: A is reused from its build record, nothing rebuilds", async () => {
    const dir = dirs.make();
    const config = join(dir, "config.json");
    writeFileSync(config, JSON.stringify(CONFIG));
    const modelA = sharedModelPath();
    const modelB = join(dir, "stories260K-hf");
    await writeHfFolder(await loadModel(modelA), modelB);
    const out = join(dir, "variants");
    const run = async (model: string) => {
      const lines: string[] = [];
      const r = await buildVariants({ model, config, out, log: (m) => lines.push(m) });
      return { r, lines };
    };

    const a1 = await run(modelA);
    expect(a1.r.rows.map((r) => r.reused)).toEqual([false]);
    const b = await run(modelB);
    expect(b.r.rows.map((r) => r.reused)).toEqual([false]);
    expect(b.r.index.variants.speed).not.toBe(a1.r.index.variants.speed);
    expect(readVariantsIndex(out)!.variants).toEqual(b.r.index.variants); // the last build is B's

    const a2 = await run(modelA);
    expect(a2.r.rows.map((r) => r.reused)).toEqual([true]);
    expect(a2.lines.some((l) => l.includes("building"))).toBe(false);
    expect(a2.lines.some((l) => l.includes("inputs unchanged, reusing"))).toBe(true);
    expect(a2.r.index).toEqual(a1.r.index);
    expect(readVariantsIndex(out)).toEqual(a1.r.index);
    // And back to B: reused too; --force still rebuilds.
    expect((await run(modelB)).r.rows.map((r) => r.reused)).toEqual([true]);
    const forced = await buildVariants({ model: modelA, config, out, force: true, log: () => {} });
    expect(forced.rows.map((r) => r.reused)).toEqual([false]);
    // Same inputs, same weights (the manifest differs: its measured speed is re-measured).
    expect(forced.rows[0]!.manifest.shards).toEqual(a1.r.rows[0]!.manifest.shards);
  }, 300_000);
});
