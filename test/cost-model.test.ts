/**
 * The cost model (src/runtime/cost-model.ts), the request clocks (src/runtime/clock.ts) and what
 * feeds one from the other (src/worker/calibrate.ts), on synthetic observations: corrections
 * converge to the truth, zero and frozen readings are ignored, factors stay bounded; the frozen
 * clock really does not move during CPU work and does move across a timer.
 */
import { describe, expect, it } from "vitest";
import type { Manifest } from "../src/format/manifest.ts";
import { DraftSettings } from "../src/format/speculative.ts";
import type { CompletionResult } from "../src/runtime/chat.ts";
import {
  advancesDuringCpuWork,
  ClockTrust,
  IoFrozenClock,
  SUBSTANTIAL_WORK_MS,
  systemClock,
} from "../src/runtime/clock.ts";
import {
  CostModel,
  LOAD_PRIOR_MS_PER_MB,
  MAX_CORRECTION,
  MIN_CORRECTION,
  prefillWorkTokens,
} from "../src/runtime/cost-model.ts";
import { observeGeneration } from "../src/worker/calibrate.ts";
import { planRequest } from "../src/worker/plan.ts";

/** The fields of a manifest the cost model reads (a real manifest has many more). */
function manifest(
  variant: string,
  decode = 2,
  prefill = 0.5,
  loadPerMB = 10,
  prefillPositionTokens?: number,
): Manifest {
  return {
    variant,
    speed: {
      decodeMsPerToken: decode,
      prefillMsPerToken: prefill,
      ...(prefillPositionTokens === undefined ? {} : { prefillPositionTokens }),
      loadMsPerMB: loadPerMB,
      measuredOn: "test",
    },
    weights: { totalBytes: 3_000_000 },
  } as unknown as Manifest;
}

/** Deterministic noise in [-amp, amp]. */
function noise(i: number, amp: number): number {
  return amp * Math.sin(i * 12.9898) * Math.cos(i * 4.1414);
}

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin: CPU work with no I/O
  }
}

describe("speculation in the cost model", () => {
  it("a variant that speculates (build measured a gain) is planned at its effective per-token cost", () => {
    const plain = manifest("plain", 2);
    const spec = (enabled: boolean) =>
      ({
        ...manifest(enabled ? "spec-on" : "spec-off", 2),
        speculative: {
          enabled,
          draft: DraftSettings.parse({}),
          measured: {
            skipAgreement: 0,
            ngramCoverage: 0.1,
            ngramAgreement: 0.6,
            estimatedSpeedup: 1.25,
            calibrationTokens: 256,
          },
        },
      }) as unknown as Manifest;
    const cost = new CostModel();
    expect(cost.costs(plain, true).decodeMsPerToken).toBe(2);
    expect(cost.costs(spec(false), true).decodeMsPerToken).toBe(2);
    expect(cost.costs(spec(true), true).decodeMsPerToken).toBeCloseTo(2 / 1.25, 12);
    expect(cost.predict(spec(true), 10, 100, true).totalMs).toBeCloseTo(10 * 0.5 + 100 * 1.6, 9);
    // Observations correct against the effective cost: observing exactly it leaves the factor at 1.
    cost.observe(spec(true), "decode", 1.6 * 50, 50);
    expect(cost.correction("spec-on").decode).toBeCloseTo(1, 12);
  });
});

describe("CostModel", () => {
  it("corrections converge to the true cost on noisy synthetic observations, per phase", () => {
    const m = manifest("a");
    const cost = new CostModel();
    const truth = { decode: 3.4, prefill: 0.3, load: 25 }; // ms per token / MB
    for (let i = 0; i < 60; i++) {
      const k = 1 + noise(i, 0.05);
      expect(cost.observe(m, "decode", truth.decode * 50 * k, 50)).toBe(true);
      expect(cost.observe(m, "prefill", truth.prefill * 20 * k, 20)).toBe(true);
      expect(cost.observe(m, "load", truth.load * 3 * k, 3)).toBe(true);
    }
    const c = cost.costs(m, false);
    expect(c.decodeMsPerToken / truth.decode).toBeCloseTo(1, 1);
    expect(c.prefillMsPerToken / truth.prefill).toBeCloseTo(1, 1);
    expect(c.loadMs / (truth.load * 3)).toBeCloseTo(1, 1);
    // Without noise the fixed point is exact.
    for (let i = 0; i < 80; i++) cost.observe(m, "decode", truth.decode * 10, 10);
    expect(cost.costs(m, true).decodeMsPerToken).toBeCloseTo(truth.decode, 6);
  });

  it("observations change predictions (and only the observed variant's)", () => {
    const a = manifest("a");
    const b = manifest("b");
    const cost = new CostModel();
    const before = cost.predict(a, 10, 100, true).totalMs;
    expect(before).toBeCloseTo(10 * 0.5 + 100 * 2, 9);
    for (let i = 0; i < 20; i++) cost.observe(a, "decode", 4 * 100, 100); // 2x slower than measured
    const after = cost.predict(a, 10, 100, true);
    expect(after.decodeMsPerToken).toBeGreaterThan(3.9);
    expect(after.totalMs).toBeGreaterThan(before * 1.9);
    expect(cost.predict(b, 10, 100, true).totalMs).toBe(before);
  });

  it("a load of any variant sets the isolate's load speed for every variant, from the first reading", () => {
    const a = manifest("a");
    const b = manifest("b");
    const cost = new CostModel();
    const mbA = a.weights.totalBytes / 1e6;
    const mbB = b.weights.totalBytes / 1e6;
    // Before any load: the build's figure or the storage prior, the slower.
    const prior = Math.max(b.speed.loadMsPerMB, LOAD_PRIOR_MS_PER_MB);
    expect(cost.costs(b, false).loadMs).toBeCloseTo(prior * mbB, 9);
    const slow = prior * 3; // storage three times slower than that
    cost.observe(a, "load", slow * mbA, mbA);
    expect(cost.observedLoadMsPerMB()).toBeCloseTo(slow, 9);
    expect(cost.costs(b, false).loadMs).toBeCloseTo(slow * mbB, 9); // b was never loaded
    expect(cost.costs(b, true).loadMs).toBe(0);
    cost.observe(b, "load", slow * 3 * mbB, mbB); // moving average from then on
    expect(cost.observedLoadMsPerMB()).toBeCloseTo(slow * 2, 9);
  });

  it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY])("ignores an observation of %s ms", (ms) => {
    const m = manifest("a");
    const cost = new CostModel();
    for (let i = 0; i < 50; i++) {
      expect(cost.observe(m, "decode", ms, 100)).toBe(false);
      expect(cost.observe(m, "prefill", ms, 10)).toBe(false);
    }
    expect(cost.correction("a")).toEqual({ prefill: 1, decode: 1 });
    for (let i = 0; i < 5; i++) expect(cost.observe(m, "load", ms, 10)).toBe(false);
    expect(cost.observedLoadMsPerMB()).toBeNull();
  });

  it("ignores empty intervals", () => {
    const cost = new CostModel();
    expect(cost.observe(manifest("a"), "decode", 10, 0)).toBe(false);
    expect(cost.correction("a").decode).toBe(1);
  });

  it("stays bounded however extreme the observations", () => {
    const m = manifest("a");
    const cost = new CostModel();
    for (let i = 0; i < 100; i++) {
      cost.observe(m, "decode", 1e9, 1);
      expect(cost.correction("a").decode).toBeLessThanOrEqual(MAX_CORRECTION);
    }
    expect(cost.correction("a").decode).toBeCloseTo(MAX_CORRECTION, 9);
    for (let i = 0; i < 100; i++) {
      cost.observe(m, "decode", 1e-9, 1);
      expect(cost.correction("a").decode).toBeGreaterThanOrEqual(MIN_CORRECTION);
    }
    expect(cost.correction("a").decode).toBeCloseTo(MIN_CORRECTION, 9);
    expect(cost.costs(m, true).decodeMsPerToken).toBeCloseTo(2 * MIN_CORRECTION, 12);
  });
});

describe("request clocks", () => {
  it("the frozen clock does not move during CPU work, and moves once the event loop turns", async () => {
    const clock = new IoFrozenClock();
    const t0 = clock.now();
    busy(15);
    expect(clock.now()).toBe(t0);
    await Promise.resolve(); // a promise chain is not I/O
    busy(5);
    expect(clock.now()).toBe(t0);
    await new Promise((r) => setTimeout(r, 10));
    expect(clock.now()).toBeGreaterThanOrEqual(t0 + 10);
  });

  it("the CPU probe tells a free clock from a frozen one", () => {
    expect(advancesDuringCpuWork(systemClock)).toBe(true);
    expect(advancesDuringCpuWork(new IoFrozenClock())).toBe(false);
  });

  it("ClockTrust gives up on a clock that read 0 ms across substantial work, and only then", () => {
    const t = new ClockTrust();
    expect(t.cpuMeasurable(systemClock)).toBe(true);
    expect(t.check(0, SUBSTANTIAL_WORK_MS / 10)).toBe(false); // too little work to tell
    expect(t.known).toBe(true);
    expect(t.check(3, 2)).toBe(true);
    expect(t.check(0, 50)).toBe(false);
    expect(t.known).toBe(false);
    expect(t.check(3, 2)).toBe(false); // from now on nothing is measured on it
    expect(t.cpuMeasurable(systemClock)).toBe(false);
  });
});

describe("feeding generations back (calibrate.ts)", () => {
  const result = (prefillMs: number, decodeMs: number): CompletionResult => ({
    finishReason: "length",
    completionTokens: 101,
    prefillMs,
    decodeMs,
  });

  it("a free clock's readings correct the costs; a frozen clock's never do, and predictions hold", async () => {
    const m = manifest("a");
    const free = { cost: new CostModel(), clockTrust: new ClockTrust() };
    const p = free.cost.predict(m, 10, 101, true);
    for (let i = 0; i < 30; i++) {
      expect(observeGeneration(free, systemClock, m, p, 10, result(10, 300))).toEqual({
        prefill: true,
        decode: true,
      });
    }
    expect(free.cost.costs(m, true).decodeMsPerToken).toBeCloseTo(3, 3);
    expect(free.cost.costs(m, true).prefillMsPerToken).toBeCloseTo(1, 3);

    // Frozen: the generation reads ~0 ms, as in production; the costs stay the manifest's.
    const frozen = { cost: new CostModel(), clockTrust: new ClockTrust() };
    const clock = new IoFrozenClock();
    for (let i = 0; i < 30; i++) {
      const t0 = clock.now();
      busy(2);
      const read = clock.now() - t0;
      expect(read).toBe(0);
      expect(observeGeneration(frozen, clock, m, p, 10, result(read, read))).toEqual({
        prefill: false,
        decode: false,
      });
    }
    expect(frozen.cost.predict(m, 10, 101, true).totalMs).toBe(p.totalMs);
  });
});

describe("plans", () => {
  const m = manifest("a", 2, 0.5, 10);
  const p = new CostModel().predict(m, 10, 1000, true); // 5 ms prefill + 2 ms per token
  const base = { manifest: m, prediction: p, promptTokens: 10, maxTokens: 1000, spentMs: 0 };

  it("a budget becomes decode tokens: what fits after prefill and time already spent", () => {
    expect(planRequest({ ...base, budgetMs: null, cpuLimitMs: null })).toMatchObject({
      maxDecodeTokens: 1000,
      limitedBy: "request",
      speculation: false,
      prefillTokens: 10,
    });
    expect(planRequest({ ...base, budgetMs: 105, cpuLimitMs: null })).toMatchObject({
      maxDecodeTokens: 50,
      limitedBy: "budget",
    });
    expect(planRequest({ ...base, budgetMs: 105, spentMs: 40, cpuLimitMs: null }).maxDecodeTokens).toBe(30);
    expect(planRequest({ ...base, budgetMs: 1, cpuLimitMs: null }).maxDecodeTokens).toBe(1);
  });

  it("time spent + the predicted work (X-Predicted-Ms) stays within the budget unless it is exhausted", () => {
    for (const [budgetMs, spentMs, maxTokens] of [
      [105, 40, 1000],
      [1500, 800, 8],
      [1500, 1499, 8],
      [50, 0, 1],
      [1, 0, 1],
    ] as const) {
      const plan = planRequest({ ...base, budgetMs, spentMs, maxTokens, cpuLimitMs: null });
      expect(plan.spentMs).toBe(spentMs);
      if (plan.spentMs + plan.predictedMs > budgetMs)
        expect(plan.limitedBy, `${budgetMs}/${spentMs}`).toBe("budget");
    }
  });

  it("the CPU limit caps decode tokens, and refuses a request whose prefill alone passes it", () => {
    const capped = planRequest({ ...base, budgetMs: null, cpuLimitMs: 1000 });
    expect(capped.limitedBy).toBe("cpu");
    expect(capped.maxDecodeTokens).toBe(Math.floor((800 - 5) / 2));
    expect(capped.predictedMs).toBeLessThanOrEqual(800);
    expect(() => planRequest({ ...base, budgetMs: null, cpuLimitMs: 5 })).toThrow(/cpu|CPU/);
  });

  it("n choices run one after another: n prefills, and the tokens that fit are shared out per choice", () => {
    const four = planRequest({ ...base, budgetMs: null, cpuLimitMs: 1000, choices: 4 });
    expect(four.limitedBy).toBe("cpu");
    expect(four.maxDecodeTokens).toBe(Math.floor((800 - 4 * 5) / (4 * 2)));
    expect(four.predictedMs).toBeLessThanOrEqual(800);
    // Within the request's own max_tokens nothing changes per choice.
    expect(planRequest({ ...base, budgetMs: null, cpuLimitMs: null, choices: 8 }).maxDecodeTokens).toBe(1000);
    // A prefill that fits once can be refused eight times over.
    expect(() => planRequest({ ...base, budgetMs: null, cpuLimitMs: 30, choices: 8 })).toThrow(/8 choices/);
    expect(planRequest({ ...base, budgetMs: null, cpuLimitMs: 30 }).maxDecodeTokens).toBeGreaterThan(0);
  });

  it("a token mask's cost is charged on every decode step", () => {
    const masked = planRequest({ ...base, budgetMs: null, cpuLimitMs: 1000, extraMsPerToken: 2 });
    expect(masked.maxDecodeTokens).toBe(Math.floor((800 - 5) / (2 + 2)));
    expect(masked.predictedMs).toBeLessThanOrEqual(800);
  });
});

describe("prefill cost grows with position", () => {
  /** What a prompt costs summed token by token: position p costs (1 + p / l) position-0 tokens. */
  const bruteForce = (prompt: number, cached: number, l: number) => {
    let sum = 0;
    for (let p = cached; p < prompt; p++) sum += 1 + p / l;
    return sum;
  };

  it("a prompt's work is the sum over its positions after the cached ones; flat without a fit", () => {
    for (const [prompt, cached, l] of [
      [1, 0, 1200],
      [10, 0, 1200],
      [1000, 0, 1200],
      [1000, 999, 1200],
      [1000, 400, 37.5],
      [2048, 1024, 1200],
    ] as const) {
      expect(prefillWorkTokens({ prefillPositionTokens: l }, prompt, cached)).toBeCloseTo(
        bruteForce(prompt, cached, l),
        6,
      );
    }
    expect(prefillWorkTokens({}, 1000)).toBe(1000);
    expect(prefillWorkTokens({}, 1000, 600)).toBe(400);
    // Cached counts outside 0..prompt are clamped: never negative work.
    expect(prefillWorkTokens({ prefillPositionTokens: 1200 }, 10, 50)).toBe(0);
    expect(prefillWorkTokens({ prefillPositionTokens: 1200 }, 10, -5)).toBeCloseTo(
      bruteForce(10, 0, 1200),
      9,
    );
  });

  it("the planner's numbers: a long prompt costs more per token than a short one, its cached prefix nothing", () => {
    const cost = new CostModel();
    const m = manifest("a", 2, 0.5, 10, 1200); // SmolLM2's measured growth: x2 at position 1200
    const short = cost.predict(m, 10, 0, true);
    const long = cost.predict(m, 1000, 0, true);
    // 10 tokens: 0.5 x (10 + 10*9/2400); 1000 tokens: 0.5 x (1000 + 1000*999/2400).
    expect(short.prefillMs).toBeCloseTo(0.5 * 10.0375, 9);
    expect(long.prefillMs).toBeCloseTo(0.5 * 1416.25, 9);
    expect(long.prefillMs / 1000 / (short.prefillMs / 10)).toBeCloseTo(1416.25 / 1000 / 1.00375, 9);
    // The next turn of a conversation: 999 tokens cached, one prefilled at position 999.
    expect(cost.predict(m, 1000, 0, true, 999).prefillMs).toBeCloseTo(0.5 * (1 + 999 / 1200), 9);
    // An older manifest (no fit): flat, as before.
    expect(cost.predict(manifest("b"), 1000, 0, true).prefillMs).toBe(500);
  });

  it("observed prefill is compared with the position-aware work: a long prompt at the predicted speed corrects nothing", () => {
    const s = { cost: new CostModel(), clockTrust: new ClockTrust() };
    const m = manifest("a", 2, 0.5, 10, 1200);
    const p = s.cost.predict(m, 1000, 11, true);
    const r: CompletionResult = {
      finishReason: "length",
      completionTokens: 11,
      prefillMs: p.prefillMs,
      decodeMs: 20,
    };
    for (let i = 0; i < 10; i++) observeGeneration(s, systemClock, m, p, 1000, r);
    expect(s.cost.correction("a").prefill).toBeCloseTo(1, 9);
    // Read per flat token, the same reading would have looked 1.42x slow.
    expect(p.prefillMs / 1000 / 0.5).toBeCloseTo(1.41625, 9);
    // A cache hit: 900 of the 1000 tokens cached, the rest prefilled at the predicted speed.
    const hit = s.cost.predict(m, 1000, 11, true, 900);
    const cached: CompletionResult = { ...r, prefillMs: hit.prefillMs, cachedTokens: 900 };
    for (let i = 0; i < 10; i++) observeGeneration(s, systemClock, m, hit, 1000, cached);
    expect(s.cost.correction("a").prefill).toBeCloseTo(1, 9);
  });

  it("under a latency budget, a long prompt leaves fewer decode tokens than a flat cost would", () => {
    const m = manifest("a", 2, 0.5, 10, 1200);
    const flat = manifest("a", 2, 0.5, 10);
    const plan = (x: Manifest) =>
      planRequest({
        manifest: x,
        prediction: new CostModel().predict(x, 1000, 1000, true),
        promptTokens: 1000,
        maxTokens: 1000,
        budgetMs: 1000,
        spentMs: 0,
        cpuLimitMs: null,
      });
    // Flat: 500 ms prefill, (1000 - 500) / 2 = 250 tokens; position-aware: 708.125 ms, 145 tokens.
    expect(plan(flat).maxDecodeTokens).toBe(250);
    expect(plan(m)).toMatchObject({ maxDecodeTokens: 145, limitedBy: "budget" });
    expect(plan(m).predictedMs).toBeCloseTo(708.125 + 145 * 2, 9);
  });
});
