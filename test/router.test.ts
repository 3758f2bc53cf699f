/**
 * The router's ranking (src/worker/router.ts) on manifests' speed profiles: a budget nothing fits
 * picks the lowest declared tier (the fastest by the manifests' measured speed within a tier),
 * whatever this isolate has loaded (a resident variant has no load cost) or learnt (its cost
 * corrections).
 */
import { describe, expect, it } from "vitest";
import type { Manifest } from "../src/format/manifest.ts";
import { CostModel, manifestCostMs, rankVariants, TIERS, tierTarget } from "../src/worker/router.ts";

/** The fields of a manifest the router reads (a real manifest has many more). */
function manifest(variant: "quality" | "balanced" | "speed", decode: number, prefill: number): Manifest {
  return {
    variant,
    tier: variant,
    speed: { decodeMsPerToken: decode, prefillMsPerToken: prefill, loadMsPerMB: 10, measuredOn: "test" },
    weights: { totalBytes: 3_000_000 },
  } as unknown as Manifest;
}

// Best quality first, as the live set lists them; speed is the fastest by its manifest.
const variants = [manifest("quality", 2, 0.5), manifest("balanced", 1.6, 0.4), manifest("speed", 1.2, 0.3)];
const request = { tier: null, pinned: null, promptTokens: 50, maxTokens: 200 };
const order = (ranked: { manifest: Manifest }[]) => ranked.map((r) => r.manifest.variant);

describe("a budget nothing fits", () => {
  it("picks the fastest by the manifests when nothing is loaded or learnt", () => {
    const ranked = rankVariants(variants, { ...request, budgetMs: 1 }, new CostModel(), () => false);
    expect(order(ranked)).toEqual(["speed", "balanced", "quality"]);
  });

  it("still picks it when a slower variant is resident and the fastest was observed slow here", () => {
    const cost = new CostModel();
    const [, balanced, speed] = variants as [Manifest, Manifest, Manifest];
    // This isolate saw `speed` decode 3x slower than its manifest (a loaded machine, a cold cache).
    for (let i = 0; i < 20; i++) cost.observe(speed, "decode", 3 * 1.2 * 100, 100);
    const resident = (m: Manifest) => m === balanced;
    const p = (m: Manifest) => cost.predict(m, request.promptTokens, request.maxTokens, resident(m)).totalMs;
    expect(p(balanced), "the isolate's own prediction now prefers balanced").toBeLessThan(p(speed));

    for (const budgetMs of [1, 0.001, Math.min(p(balanced), p(speed)) - 1]) {
      const ranked = rankVariants(variants, { ...request, budgetMs }, cost, resident);
      expect(order(ranked)[0], `budget ${budgetMs} ms`).toBe("speed");
    }
  });

  it("with a tier, picks the fastest at or below it; ties go to the lower-quality variant", () => {
    const same = [manifest("quality", 2, 0.5), manifest("balanced", 1.2, 0.3), manifest("speed", 1.2, 0.3)];
    expect(manifestCostMs(same[1]!, 50, 200)).toBe(manifestCostMs(same[2]!, 50, 200));
    const ranked = rankVariants(same, { ...request, budgetMs: 1 }, new CostModel(), () => false);
    expect(order(ranked)).toEqual(["speed", "balanced", "quality"]);
    const capped = rankVariants(
      variants,
      { ...request, tier: "balanced", budgetMs: 1 },
      new CostModel(),
      (m) => m.variant === "balanced",
    );
    expect(order(capped).slice(0, 2)).toEqual(["speed", "balanced"]);
  });

  it("ranks by declared tier, not by noisy build-time timings (SmolLM2: speed measured slower)", () => {
    // The default SmolLM2 build measured speed's decode at 20.99 ms/token and quality's at 16.21.
    const noisy = [manifest("quality", 16.21, 2), manifest("speed", 20.99, 2)];
    const ranked = rankVariants(noisy, { ...request, budgetMs: 50 }, new CostModel(), () => false);
    expect(order(ranked)).toEqual(["speed", "quality"]);
    // Even when quality is resident here (no load cost) and speed is not.
    const resident = (m: Manifest) => m.variant === "quality";
    expect(order(rankVariants(noisy, { ...request, budgetMs: 50 }, new CostModel(), resident))[0]).toBe(
      "speed",
    );
  });

  it("a budget that one variant fits still picks the best that fits", () => {
    const cost = new CostModel();
    const budgetMs = Math.ceil(cost.predict(variants[1]!, 50, 200, false).totalMs);
    const ranked = rankVariants(variants, { ...request, budgetMs }, cost, () => false);
    expect(order(ranked)).toEqual(["balanced", "speed", "quality"]);
  });
});

describe("a tier the deployment has no variant for (SmolLM2: quality and speed only)", () => {
  const [quality, balanced, speed] = variants as [Manifest, Manifest, Manifest];
  it.each([
    ["quality + speed", [quality, speed], { quality: "quality", balanced: "speed", speed: "speed" }],
    [
      "quality + balanced",
      [quality, balanced],
      { quality: "quality", balanced: "balanced", speed: "balanced" },
    ],
    ["balanced + speed", [balanced, speed], { quality: "balanced", balanced: "balanced", speed: "speed" }],
  ])(
    "%s: the tier caps quality from above, else the nearest above; tierTarget is rankVariants' first",
    (_, set, expected) => {
      for (const tier of TIERS) {
        const first = rankVariants(
          set,
          { ...request, tier, budgetMs: null },
          new CostModel(),
          () => false,
        )[0];
        expect(first?.manifest.variant, tier).toBe(expected[tier]);
        expect(tierTarget(set, tier)?.variant, tier).toBe(expected[tier]);
      }
    },
  );
});
