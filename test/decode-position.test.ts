/**
 * Decode cost by position (manifest speed.decodePositionTokens): the build measures it on the test
 * variants (stories260K, built for real), the schema refuses garbage in it and still reads
 * manifests without it, and the planner prices the decode steps after a prompt at their positions:
 * CostModel.predict, planRequest under a budget and the CPU limit, the router's manifest ranking,
 * and the feedback of observed decode times.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { readManifest } from "../src/compress/variant-store.ts";
import { Manifest, SpeedProfile } from "../src/format/manifest.ts";
import type { CompletionResult } from "../src/runtime/chat.ts";
import { ClockTrust, systemClock } from "../src/runtime/clock.ts";
import { CostModel, decodeStepsWithin, decodeWorkTokens } from "../src/runtime/cost-model.ts";
import { observeGeneration } from "../src/worker/calibrate.ts";
import { planRequest } from "../src/worker/plan.ts";
import { manifestCostMs } from "../src/worker/router.ts";
import { buildTestVariants } from "./helpers/api-server.ts";

let manifests: Manifest[];

beforeAll(async () => {
  const built = await buildTestVariants();
  manifests = Object.values(built.index.variants).map((id) => readManifest(built.dir, id));
}, 600_000);

/** `m` as an older build wrote it: no decode growth recorded. */
function withoutDecodeGrowth(m: Manifest): Manifest {
  const { decodePositionTokens: _, ...speed } = m.speed;
  return Manifest.parse({ ...m, speed });
}

/** What `steps` decode steps after a `prompt`-token prompt cost, summed step by step, in position-0 steps. */
function bruteForce(prompt: number, steps: number, l: number): number {
  let sum = 0;
  for (let p = prompt; p < prompt + steps; p++) sum += 1 + p / l;
  return sum;
}

describe("the build records decode growth", () => {
  it("every test variant's manifest has a positive decodePositionTokens, and the schema accepts it", () => {
    for (const m of manifests) {
      expect(m.speed.decodePositionTokens, m.variant).toBeGreaterThan(0);
      expect(Manifest.parse(m).speed.decodePositionTokens).toBe(m.speed.decodePositionTokens);
      expect(m.speed.measuredOn).toMatch(/decode by position/);
    }
  });
});

describe("the manifest schema", () => {
  it.each([0, -1200, "1200", null, true, Number.NaN, Number.POSITIVE_INFINITY, [1200], { l: 1 }])(
    "refuses decodePositionTokens %j",
    (garbage) => {
      const m = manifests[0]!;
      const bad = { ...m, speed: { ...m.speed, decodePositionTokens: garbage } };
      const r = Manifest.safeParse(bad);
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.path).toEqual(["speed", "decodePositionTokens"]);
      expect(SpeedProfile.safeParse(bad.speed).success).toBe(false);
    },
  );

  it("reads an older manifest without it (flat decode cost)", () => {
    const old = withoutDecodeGrowth(manifests[0]!);
    expect(old.speed.decodePositionTokens).toBeUndefined();
    expect(new CostModel().costs(old, true).decodePositionTokens).toBeNull();
  });
});

describe("the planner prices decode steps at their positions", () => {
  it("a prediction's decode is the sum over the positions after the prompt; flat for an older manifest", () => {
    for (const m of manifests) {
      const l = m.speed.decodePositionTokens!;
      const cost = new CostModel();
      const d = cost.costs(m, true).decodeMsPerToken;
      for (const [prompt, steps] of [
        [10, 1],
        [10, 200],
        [400, 100],
        [0, 511],
      ] as const) {
        const p = cost.predict(m, prompt, steps, true);
        expect(p.decodeMs).toBeCloseTo(d * bruteForce(prompt, steps, l), 6);
        expect(p.totalMs).toBeCloseTo(p.loadMs + p.prefillMs + p.decodeMs, 9);
        expect(decodeWorkTokens(m.speed, prompt, steps)).toBeCloseTo(bruteForce(prompt, steps, l), 6);
      }
      // The same 100 tokens cost more after a long prompt than after a short one.
      expect(cost.predict(m, 400, 100, true).decodeMs).toBeGreaterThan(
        cost.predict(m, 10, 100, true).decodeMs,
      );
      const flat = cost.predict(withoutDecodeGrowth(m), 400, 100, true);
      expect(flat.decodeMs).toBeCloseTo(100 * d, 9);
      // The router's ranking without a fitting budget counts it too.
      expect(manifestCostMs(m, 400, 100) - manifestCostMs(withoutDecodeGrowth(m), 400, 100)).toBeCloseTo(
        m.speed.decodeMsPerToken * (bruteForce(400, 100, l) - 100),
        6,
      );
    }
  });

  it("under a budget, the planned tokens are the most whose position-aware cost fits", () => {
    for (const m of manifests) {
      const cost = new CostModel();
      const prompt = 300;
      const asked = 200;
      const prediction = cost.predict(m, prompt, asked, true);
      // A budget that fits about half the asked tokens' decode after the prefill.
      const budgetMs = prediction.loadMs + prediction.prefillMs + prediction.decodeMs / 2;
      const plan = planRequest({
        manifest: m,
        prediction,
        promptTokens: prompt,
        maxTokens: asked,
        budgetMs,
        spentMs: 0,
        cpuLimitMs: null,
      });
      const k = plan.maxDecodeTokens;
      expect(plan.limitedBy).toBe("budget");
      const decodeMs = (n: number) => prediction.decodeMsPerToken * decodeWorkTokens(m.speed, prompt, n);
      expect(plan.predictedMs).toBeCloseTo(prediction.prefillMs + decodeMs(k), 6);
      expect(plan.predictedMs).toBeLessThanOrEqual(budgetMs + 1e-9);
      expect(prediction.prefillMs + decodeMs(k + 1)).toBeGreaterThan(budgetMs);
      // Flat pricing (an older manifest) would have planned more tokens into the same budget.
      const old = withoutDecodeGrowth(m);
      const flatPlan = planRequest({
        manifest: old,
        prediction: cost.predict(old, prompt, asked, true),
        promptTokens: prompt,
        maxTokens: asked,
        budgetMs,
        spentMs: 0,
        cpuLimitMs: null,
      });
      expect(flatPlan.maxDecodeTokens).toBeGreaterThan(k);
    }
  });

  it("the CPU limit caps decode tokens by their position-aware cost", () => {
    const m = manifests[0]!;
    const prediction = new CostModel().predict(m, 400, 100_000, true);
    const cpuLimitMs = (prediction.prefillMs + prediction.decodeMsPerToken * 300) / 0.8;
    const plan = planRequest({
      manifest: m,
      prediction,
      promptTokens: 400,
      maxTokens: 100_000,
      budgetMs: null,
      spentMs: 0,
      cpuLimitMs,
    });
    expect(plan.limitedBy).toBe("cpu");
    // 300 flat steps' worth of CPU buys fewer steps at positions 400.. than 300.
    expect(plan.maxDecodeTokens).toBeLessThan(300);
    expect(plan.maxDecodeTokens).toBe(
      decodeStepsWithin(m.speed, 400, cpuLimitMs * 0.8 - prediction.prefillMs, prediction.decodeMsPerToken),
    );
  });

  it("decodeStepsWithin inverts the work exactly, flat or not, with a per-step extra", () => {
    for (const speed of [{ decodePositionTokens: 37.5 }, { decodePositionTokens: 1200 }, {}]) {
      for (const [prompt, ms, d, extra] of [
        [0, 100, 2, 0],
        [1000, 100, 2, 0],
        [1000, 5000, 0.7, 0.3],
        [17, 1, 2, 0],
        [17, 0, 2, 0],
      ] as const) {
        const k = decodeStepsWithin(speed, prompt, ms, d, extra);
        const cost = (n: number) => d * decodeWorkTokens(speed, prompt, n) + extra * n;
        expect(cost(k)).toBeLessThanOrEqual(ms + 1e-9);
        expect(cost(k + 1)).toBeGreaterThan(ms);
      }
    }
    expect(decodeStepsWithin({}, 10, -5, 2)).toBe(0);
  });

  it("observed decode at the predicted position-aware speed corrects nothing", () => {
    const m = manifests[0]!;
    const s = { cost: new CostModel(), clockTrust: new ClockTrust() };
    const p = s.cost.predict(m, 400, 101, true);
    // 101 tokens: 100 decode steps after the first, at positions 400..499.
    const decodeMs = p.decodeMsPerToken * decodeWorkTokens(m.speed, 400, 100);
    const r: CompletionResult = {
      finishReason: "length",
      completionTokens: 101,
      prefillMs: p.prefillMs,
      decodeMs,
    };
    for (let i = 0; i < 10; i++) observeGeneration(s, systemClock, m, p, 400, r);
    expect(s.cost.correction(m.variant).decode).toBeCloseTo(1, 9);
  });
});
