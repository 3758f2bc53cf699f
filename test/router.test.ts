/**
 * The router's ranking (src/worker/router.ts) on manifests' speed profiles: a budget nothing fits
 * picks the lowest declared tier (the fastest by the manifests' measured speed within a tier),
 * whatever this isolate has loaded (a resident variant has no load cost) or learnt (its cost
 * corrections).
 */
import { describe, expect, it } from "vitest";
import type { Manifest } from "../src/format/manifest.ts";
import {
  CostModel,
  manifestCostMs,
  rankVariants,
  startsInTime,
  TIERS,
  tierTarget,
} from "../src/worker/router.ts";

/** The fields of a manifest the router reads (a real manifest has many more). */
function manifest(
  variant: "quality" | "balanced" | "speed",
  decode: number,
  prefill: number,
  prefillPositionTokens?: number,
): Manifest {
  return {
    variant,
    tier: variant,
    speed: {
      decodeMsPerToken: decode,
      prefillMsPerToken: prefill,
      ...(prefillPositionTokens === undefined ? {} : { prefillPositionTokens }),
      loadMsPerMB: 10,
      measuredOn: "test",
    },
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

describe("a long prompt under a latency budget", () => {
  // Prefill doubles in cost by position 1200 (SmolLM2's measured growth), on every variant.
  const grows = [
    manifest("quality", 2, 0.5, 1200),
    manifest("balanced", 1.6, 0.4, 1200),
    manifest("speed", 1.2, 0.3, 1200),
  ];
  const long = { tier: null, pinned: null, promptTokens: 1500, maxTokens: 20 };

  it("routes by the position-aware prefill: a budget the flat cost of quality fits picks balanced", () => {
    const cost = new CostModel();
    const p = (m: Manifest) => cost.predict(m, long.promptTokens, long.maxTokens, true).totalMs;
    const [quality, balanced] = grows as [Manifest, Manifest, Manifest];
    // quality: 0.5 x (1500 + 1500*1499/2400) + 40 = 1258.4375 ms; flat it would be 790 ms.
    expect(p(quality)).toBeCloseTo(1258.4375, 9);
    const budgetMs = Math.ceil(p(balanced)); // 0.4 x 2436.875 + 32 = 1006.75 -> 1007
    expect(budgetMs).toBe(1007);
    expect(manifestCostMs(variants[0]!, long.promptTokens, long.maxTokens)).toBeLessThan(budgetMs);
    const ranked = rankVariants(grows, { ...long, budgetMs }, cost, () => true);
    expect(order(ranked)[0]).toBe("balanced");
    expect(ranked[0]!.prediction.totalMs).toBeLessThanOrEqual(budgetMs);
  });

  it("a resident variant that holds the prompt's prefix predicts only the rest, and may then fit", () => {
    const cost = new CostModel();
    const budgetMs = 1007;
    // quality's prefix cache holds the first 1400 tokens: 100 left at positions 1400..1499.
    const cached = (m: Manifest) => (m.variant === "quality" ? 1400 : 0);
    const ranked = rankVariants(grows, { ...long, budgetMs }, cost, () => true, cached);
    expect(order(ranked)[0]).toBe("quality");
    expect(ranked[0]!.prediction.prefillMs).toBeCloseTo(0.5 * (100 + (100 * (2 * 1400 + 99)) / 2400), 9);
  });

  it("a budget nothing fits ranks a tier's variants by the manifests' position-aware cost", () => {
    // Two speed-tier variants, equal flat costs (a tie would go to the later, "lower-quality" one);
    // the later one's prefill grows 12x faster, so the first is the fastest for a long prompt.
    const flatter = { ...manifest("speed", 1.2, 0.3, 1200), variant: "flatter" } as Manifest;
    const steeper = { ...manifest("speed", 1.2, 0.3, 100), variant: "steeper" } as Manifest;
    expect(manifestCostMs(steeper, 1500, 20)).toBeGreaterThan(manifestCostMs(flatter, 1500, 20));
    const ranked = rankVariants([flatter, steeper], { ...long, budgetMs: 1 }, new CostModel(), () => false);
    expect(order(ranked)).toEqual(["flatter", "steeper"]);
  });
});

describe("the wait behind other requests' work counts against a budget", () => {
  const cost = new CostModel();
  const p = (m: Manifest, resident: boolean) =>
    cost.predict(m, request.promptTokens, request.maxTokens, resident).totalMs;
  const [quality, , speed] = variants as [Manifest, Manifest, Manifest];

  it("a variant that fits on its own but not after its wait is passed over for one that fits", () => {
    // quality is resident and busy; speed is resident and idle.
    const budgetMs = p(quality, true) + 1;
    const waitMs = (m: Manifest) => (m === quality ? 10_000 : 0);
    const ranked = rankVariants(
      variants,
      { ...request, budgetMs },
      cost,
      () => true,
      () => 0,
      waitMs,
    );
    expect(order(ranked)[0]).toBe("balanced"); // the best variant whose wait + work fits
    expect(ranked.find((r) => r.manifest === quality)!.waitMs).toBe(10_000);
    expect(startsInTime(ranked[0]!, budgetMs)).toBe(true);
    // Without the wait, quality fits and leads.
    expect(order(rankVariants(variants, { ...request, budgetMs }, cost, () => true))[0]).toBe("quality");
  });

  it("when nothing fits, those that can start in time come first; a wait past the budget cannot start", () => {
    const budgetMs = 1;
    const waitMs = (m: Manifest) => (m === speed ? 5_000 : 0);
    const ranked = rankVariants(
      variants,
      { ...request, budgetMs },
      cost,
      () => false,
      () => 0,
      waitMs,
    );
    // speed would lead (lowest tier) but waits; balanced waits for no one (its load is its own work).
    expect(order(ranked)).toEqual(["balanced", "quality", "speed"]);
    expect(startsInTime(ranked[0]!, budgetMs)).toBe(true);
    expect(startsInTime(ranked.at(-1)!, budgetMs)).toBe(false);
    expect(startsInTime(ranked.at(-1)!, 5_000 + p(speed, false))).toBe(true);
  });
});
