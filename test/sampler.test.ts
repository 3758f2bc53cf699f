import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  argmax,
  createSampler,
  logprobsOf,
  samplingMsPerToken,
  softmax,
  type TokenChoice,
  topIds,
  Xoshiro128,
} from "../src/runtime/sampler.ts";

/** Logits whose softmax is exactly `probs`. */
const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** Draws `n` tokens and returns the count per token id. */
function histogram(options: Parameters<typeof createSampler>[0], logits: Float32Array, n: number): number[] {
  const sampler = createSampler(options);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampler.sample(logits)]!++;
  return counts;
}

/** Pearson chi-square of `counts` against `probs` over the tokens with probs > 0. */
function chiSquare(counts: number[], probs: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return probs.reduce((sum, p, i) => (p > 0 ? sum + (counts[i]! - n * p) ** 2 / (n * p) : sum), 0);
}
// Critical values at p = 0.001; draws use fixed seeds, so these checks are deterministic.
const CHI2_CRIT_3DOF = 16.27;
const CHI2_CRIT_1DOF = 10.83;

const normalize = (xs: number[]) => {
  const s = xs.reduce((a, b) => a + b, 0);
  return xs.map((x) => x / s);
};

describe("Xoshiro128 (xoshiro128** seeded by SplitMix32)", () => {
  it("matches the C reference implementation (values from xoshiro128starstar.c + the same seeding, gcc)", () => {
    const take = (seed: number) => {
      const r = new Xoshiro128(seed);
      return Array.from({ length: 6 }, () => r.nextUint32());
    };
    expect(take(0)).toEqual([3809008728, 1133695204, 53579671, 2891528803, 139681546, 2203266335]);
    expect(take(42)).toEqual([2837322924, 544945897, 479756282, 3500138142, 339756180, 113173290]);
  });

  it("nextFloat is in [0, 1)", () => {
    const r = new Xoshiro128(1);
    for (let i = 0; i < 10_000; i++) {
      const f = r.nextFloat();
      expect(f >= 0 && f < 1).toBe(true);
    }
  });
});

describe("greedy", () => {
  it("argmax takes the lowest id on ties and rejects NaN", () => {
    expect(argmax([1, 5, 5, 2])).toBe(1);
    expect(argmax([Number.NEGATIVE_INFINITY, -3])).toBe(1);
    expect(() => argmax([0, Number.NaN])).toThrow(/NaN/);
  });

  it("temperature 0, top-k 1 and a tiny top-p all pick the argmax", () => {
    const rng = new Xoshiro128(123);
    const greedy = createSampler({ temperature: 0 });
    const topK1 = createSampler({ topK: 1, seed: 5 });
    const tinyP = createSampler({ topP: 1e-9, temperature: 1.3, seed: 5 });
    for (let trial = 0; trial < 200; trial++) {
      const logits = Float32Array.from({ length: 50 }, () => rng.nextFloat() * 6);
      const best = argmax(logits);
      expect(greedy.sample(logits)).toBe(best);
      expect(topK1.sample(logits)).toBe(best);
      expect(tinyP.sample(logits)).toBe(best);
    }
  });
});

describe("seeded sampling", () => {
  const logits = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i) * 2);
  const draw = (seed: number, extra: object = {}) => {
    const s = createSampler({ seed, temperature: 1.2, ...extra });
    return Array.from({ length: 300 }, () => s.sample(logits));
  };

  it("same seed, same tokens; different seed, different tokens", () => {
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7, { topK: 10, topP: 0.9 })).toEqual(draw(7, { topK: 10, topP: 0.9 }));
    expect(draw(7)).not.toEqual(draw(8));
    expect(new Set(draw(7)).size).toBeGreaterThan(5);
  });

  it("is pinned: a seed's tokens never change silently (same in Node and Workers)", () => {
    expect(draw(2024).slice(0, 16)).toEqual([15, 20, 8, 15, 19, 20, 1, 14, 2, 20, 21, 19, 0, 0, 26, 28]);
  });
});

describe("sampling distributions (chi-square over 20,000 seeded draws)", () => {
  const probs = [0.1, 0.2, 0.3, 0.4];
  const logits = logitsOf(probs);
  const N = 20_000;

  it("temperature 1 reproduces softmax(logits)", () => {
    expect(chiSquare(histogram({ seed: 1 }, logits, N), probs)).toBeLessThan(CHI2_CRIT_3DOF);
  });

  it("temperature 0.5 sharpens to p^2, temperature 2 flattens to sqrt(p)", () => {
    const sharp = normalize(probs.map((p) => p ** 2));
    const flat = normalize(probs.map(Math.sqrt));
    expect(chiSquare(histogram({ seed: 2, temperature: 0.5 }, logits, N), sharp)).toBeLessThan(
      CHI2_CRIT_3DOF,
    );
    expect(chiSquare(histogram({ seed: 3, temperature: 2 }, logits, N), flat)).toBeLessThan(CHI2_CRIT_3DOF);
    // And the alternatives are clearly rejected.
    expect(chiSquare(histogram({ seed: 2, temperature: 0.5 }, logits, N), probs)).toBeGreaterThan(100);
  });

  it("top-k keeps the k most likely tokens, renormalized", () => {
    const counts = histogram({ seed: 4, topK: 2 }, logits, N);
    expect(counts[0]! + counts[1]!).toBe(0);
    expect(chiSquare(counts, [0, 0, 3 / 7, 4 / 7])).toBeLessThan(CHI2_CRIT_1DOF);
  });

  it("top-p keeps the smallest set reaching p, renormalized", () => {
    // Sorted: 0.4, 0.3 (cum 0.7 >= 0.65) -> keep {3, 2}.
    const counts = histogram({ seed: 5, topP: 0.65 }, logits, N);
    expect(counts[0]! + counts[1]!).toBe(0);
    expect(chiSquare(counts, [0, 0, 3 / 7, 4 / 7])).toBeLessThan(CHI2_CRIT_1DOF);
    // p = 0.75 needs a third token: 0.4 + 0.3 + 0.2.
    const three = histogram({ seed: 6, topP: 0.75 }, logits, N);
    expect(three[0]).toBe(0);
    expect(chiSquare(three, [0, 2 / 9, 3 / 9, 4 / 9])).toBeLessThan(CHI2_CRIT_3DOF);
  });

  it("selects top-k / top-p candidates as a full sort of the vocabulary would (ties, -Infinity, 49k ids)", () => {
    const rng = new Xoshiro128(11);
    const V = 49_152;
    // Coarse values (many ties), a masked tail, and a peaked head, as a chat model's logits look.
    const logits = Float32Array.from({ length: V }, (_, i) =>
      i % 97 === 0
        ? Number.NEGATIVE_INFINITY
        : Math.round(rng.nextFloat() * 40) / 4 + (i % 1009 === 0 ? 4 : 0),
    );
    const sorted = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
    for (const m of [1, 2, 40, 256, 1000, 2048, V - 1, V])
      expect(topIds(logits, m)).toEqual(sorted.slice(0, m));
    // Sampling keeps only the truncated set: top-k 40 never draws outside the 40 most likely ids;
    // top-p 0.6 never outside the prefix whose (full-sort) mass first reaches 0.6.
    const inK = new Set(sorted.slice(0, 40));
    const k40 = createSampler({ seed: 3, topK: 40, temperature: 0.8 });
    for (let i = 0; i < 300; i++) expect(inK.has(k40.sample(logits))).toBe(true);
    const p = softmax(
      sorted.map((i) => logits[i]!),
      0.8,
    );
    let cum = 0;
    let kept = 0;
    while (cum < 0.6) cum += p[kept++]!;
    const inP = new Set(sorted.slice(0, kept));
    const p50 = createSampler({ seed: 4, topP: 0.6, temperature: 0.8 });
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const t = p50.sample(logits);
      expect(inP.has(t)).toBe(true);
      seen.add(t);
    }
    expect(kept).toBeGreaterThan(256); // the prefix had to grow past its first 256 ids
    expect(seen.size).toBeGreaterThan(256);
  });

  it("plans sampling's cost per token: none for greedy forms, more for truncation, by vocabulary size", () => {
    for (const o of [{ temperature: 0 }, { topK: 1 }, { topP: 0 }, { temperature: 0, topP: 0.9 }])
      expect(samplingMsPerToken(49_152, o)).toBe(0);
    const plain = samplingMsPerToken(49_152, {});
    expect(plain).toBeGreaterThan(0);
    expect(samplingMsPerToken(49_152, { topP: 0.9 })).toBeGreaterThan(plain);
    expect(samplingMsPerToken(49_152, { topK: 40 })).toBeGreaterThan(plain);
    expect(samplingMsPerToken(49_152, { topK: 49_152 })).toBe(plain); // k >= vocabulary: no truncation
    expect(samplingMsPerToken(512, {})).toBeLessThan(plain);
  });

  it("applies temperature before top-p (transformers order)", () => {
    // At T=0.5 the probabilities are ~[.033, .133, .3, .533]: top-p 0.8 keeps two tokens
    // (at T=1 it would keep three: .4 + .3 < .8).
    const counts = histogram({ seed: 7, temperature: 0.5, topP: 0.8 }, logits, N);
    expect(counts[0]! + counts[1]!).toBe(0);
    expect(chiSquare(counts, [0, 0, 9 / 25, 16 / 25])).toBeLessThan(CHI2_CRIT_1DOF);
  });

  it("softmax helper is normalized and temperature-aware", () => {
    const p = softmax(logits);
    for (const [i, q] of probs.entries()) expect(p[i]).toBeCloseTo(q, 6);
    expect(softmax([0, Math.log(2)], 0.5)[1]).toBeCloseTo(0.8, 12);
  });
});

describe("options validation", () => {
  it.each([
    [{ temperature: -0.1 }],
    [{ topP: -0.1 }],
    [{ topP: 1.01 }],
    [{ topK: -1 }],
    [{ topK: 1.5 }],
    [{ seed: -1 }],
    [{ seed: 2 ** 32 }],
    [{ temperature: Number.NaN }],
    [{ top_p: 0.5 }],
    [{ presencePenalty: 2.01 }],
    [{ frequencyPenalty: -2.01 }],
    [{ logitBias: { "3": 101 } }],
    [{ logitBias: { x: 1 } }],
    [{ topLogprobs: 21 }],
  ])("rejects %o with a ZodError", (options) => {
    expect(() => createSampler(options as never)).toThrow(z.ZodError);
  });

  it("accepts the boundaries", () => {
    expect(() => createSampler({ temperature: 0, topK: 0, topP: 1, seed: 2 ** 32 - 1 })).not.toThrow();
  });
});

describe("shaping: logit bias, presence and frequency penalties (OpenAI's formula)", () => {
  it("logit_bias +100 forces a token, -100 bans one", () => {
    const logits = logitsOf([0.7, 0.1, 0.1, 0.1]);
    const forced = createSampler({ temperature: 1, seed: 1, logitBias: { "2": 100 } });
    for (let i = 0; i < 50; i++) expect(forced.sample(logits)).toBe(2);
    const banned = histogram({ temperature: 1, seed: 2, logitBias: { "0": -100 } }, logits, 2000);
    expect(banned[0]).toBe(0);
    expect(() => createSampler({ temperature: 0, logitBias: { "9": 1 } }).sample(logits)).toThrow(RangeError);
  });

  it("greedy: penalties push already generated tokens down by count*frequency + presence", () => {
    // Token 0 leads by 1.5 over token 1. frequency 1: after one 0, 0 sits at +0.5; after two, at -0.5.
    const logits = Float32Array.from([2.5, 1, 0]);
    const freq = createSampler({ temperature: 0, frequencyPenalty: 1 });
    expect([0, 1, 2, 3, 4].map(() => freq.sample(logits))).toEqual([0, 0, 1, 0, 1]);
    // presence 2: once generated, 0 drops to 0.5 for good, below 1; 1 then drops to -1 below 0.5.
    const pres = createSampler({ temperature: 0, presencePenalty: 2 });
    expect([0, 1, 2, 3].map(() => pres.sample(logits))).toEqual([0, 1, 0, 0]);
    // Negative penalties favour repetition.
    const rep = createSampler({ temperature: 0, presencePenalty: -2, logitBias: { "1": 1.6 } });
    expect([0, 1, 2].map(() => rep.sample(logits))).toEqual([1, 1, 1]);
  });

  it("seeded sampling with penalties is reproducible, and the penalty changes the distribution", () => {
    const logits = logitsOf([0.4, 0.3, 0.2, 0.1]);
    const draw = (o: object) => {
      const s = createSampler({ temperature: 1, seed: 9, ...o });
      return Array.from({ length: 200 }, () => s.sample(logits));
    };
    expect(draw({ frequencyPenalty: 0.5 })).toEqual(draw({ frequencyPenalty: 0.5 }));
    // A strong frequency penalty spreads draws: no token runs away with them.
    const spread = new Set(draw({ frequencyPenalty: 2 }).slice(0, 40));
    expect(spread.size).toBe(4);
    // With no shaping requested, the shaped path is not taken: same stream as before.
    expect(draw({ presencePenalty: 0, logitBias: {} })).toEqual(draw({}));
  });
});

describe("log probabilities of the chosen token", () => {
  it("logprobsOf is log-softmax(logits / T), top k most likely first, ties to the lowest id", () => {
    const logits = [1, 3, 3, -Infinity, 0.5];
    const r = logprobsOf(logits, 2, 4, 3);
    const p = softmax(logits, 2);
    expect(r.logprob).toBeCloseTo(Math.log(p[4]!), 12);
    expect(r.top.map((t) => t.token)).toEqual([1, 2, 0]);
    for (const t of r.top) expect(t.logprob).toBeCloseTo(Math.log(p[t.token]!), 12);
    expect(logprobsOf(logits, 1, 3, 0)).toEqual({ logprob: -Infinity, top: [] });
  });

  it("reports every chosen token: greedy picks top[0]; sampled tokens carry their own log probability", () => {
    const logits = logitsOf([0.5, 0.25, 0.125, 0.125]);
    const greedy: TokenChoice[] = [];
    const g = createSampler({ temperature: 0, topLogprobs: 2 }, { onChoice: (c) => greedy.push(c) });
    expect(g.sample(logits)).toBe(0);
    expect(greedy).toHaveLength(1);
    expect(greedy[0]!.token).toBe(0);
    expect(greedy[0]!.logprob).toBeCloseTo(Math.log(0.5), 6);
    expect(greedy[0]!.top.map((t) => t.token)).toEqual([0, 1]);

    const seen: TokenChoice[] = [];
    const s = createSampler(
      { temperature: 1, seed: 4, topLogprobs: 0, logitBias: { "3": Math.log(2) } },
      { onChoice: (c) => seen.push(c) },
    );
    const tokens = Array.from({ length: 30 }, () => s.sample(logits));
    expect(seen.map((c) => c.token)).toEqual(tokens);
    // The bias doubles token 3's weight: [0.5, 0.25, 0.125, 0.25] / 1.125.
    const shaped = [0.5, 0.25, 0.125, 0.25].map((x) => x / 1.125);
    for (const c of seen) {
      expect(c.logprob).toBeCloseTo(Math.log(shaped[c.token]!), 6);
      expect(c.top).toEqual([]);
    }
    // Same seed, same draws whether or not log probabilities are reported.
    const plain = createSampler({ temperature: 1, seed: 4, logitBias: { "3": Math.log(2) } });
    expect(Array.from({ length: 30 }, () => plain.sample(logits))).toEqual(tokens);
  });

  it("a token mask limits the draw and follows the chosen tokens", () => {
    const accepted: number[] = [];
    const mask = {
      allow(l: Float64Array) {
        // Only ids of the parity opposite to the last accepted token.
        const parity = accepted.length === 0 ? 0 : 1 - (accepted.at(-1)! % 2);
        for (let i = 0; i < l.length; i++) if (i % 2 !== parity) l[i] = Number.NEGATIVE_INFINITY;
      },
      accept: (t: number) => accepted.push(t),
    };
    const s = createSampler({ temperature: 1.5, seed: 5 }, { mask });
    const logits = logitsOf([0.1, 0.6, 0.2, 0.1]);
    const out = Array.from({ length: 40 }, () => s.sample(logits));
    expect(accepted).toEqual(out);
    expect(out.map((t) => t % 2)).toEqual(out.map((_, i) => i % 2));
  });
});
