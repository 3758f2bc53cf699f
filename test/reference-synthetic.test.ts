/**
 * The reference forward pass on small random models built in memory, against an independent naive
 * transformer in this file: float64 throughout, no KV cache (every position recomputed from scratch
 * over the whole prefix), rope written the way the original papers/code write it (complex pairs for
 * the interleaved layout, HF rotate_half for neox), K/V heads repeated as HF repeat_kv does.
 */
import { describe, expect, it } from "vitest";
import {
  type ModelConfig,
  type ModelDescription,
  memoryTensor,
  type TensorEntry,
  TensorNames,
} from "../src/format/model.ts";
import { KVCacheFullError, ReferenceModel } from "../src/model/reference/index.ts";
import { Xoshiro128 } from "../src/runtime/sampler.ts";

const QWEN2_LIKE: ModelConfig = {
  architecture: "qwen2",
  vocabSize: 40,
  hiddenSize: 24,
  intermediateSize: 40,
  numLayers: 2,
  numHeads: 6,
  numKvHeads: 2,
  headDim: 4,
  ropeDim: 4,
  ropeTheta: 1_000_000,
  ropeStyle: "neox",
  rmsNormEps: 1e-6,
  maxContext: 64,
  tiedEmbeddings: true,
  attentionBias: true,
  slidingWindow: null,
};
const LLAMA_LIKE: ModelConfig = {
  ...QWEN2_LIKE,
  architecture: "llama",
  hiddenSize: 32,
  numHeads: 4,
  numKvHeads: 1,
  headDim: 8,
  ropeDim: 8,
  ropeTheta: 10000,
  ropeStyle: "interleaved",
  rmsNormEps: 1e-5,
  tiedEmbeddings: false,
  attentionBias: false,
};
const MISTRAL_LIKE: ModelConfig = {
  ...LLAMA_LIKE,
  architecture: "mistral",
  numKvHeads: 2,
  slidingWindow: 3,
};

/** A model with random weights; norm weights near 1 so activations stay O(1). */
function randomModel(config: ModelConfig, seed: number): ModelDescription {
  const rng = new Xoshiro128(seed);
  const tensors = new Map<string, TensorEntry>();
  const add = (name: string, shape: number[], center = 0, spread = 1) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = spread / Math.sqrt(shape[shape.length - 1]!);
    const data = Float32Array.from({ length: n }, () => center + (rng.nextFloat() * 2 - 1) * scale * 1.7);
    tensors.set(name, memoryTensor(name, shape, data));
  };
  const c = config;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  add(TensorNames.tokenEmbedding, [c.vocabSize, c.hiddenSize], 0, 4);
  for (let l = 0; l < c.numLayers; l++) {
    add(TensorNames.attnNorm(l), [c.hiddenSize], 1, 1);
    add(TensorNames.attnQ(l), [q, c.hiddenSize], 0, 2);
    add(TensorNames.attnK(l), [kv, c.hiddenSize], 0, 2);
    add(TensorNames.attnV(l), [kv, c.hiddenSize]);
    if (c.attentionBias) {
      add(TensorNames.attnQBias(l), [q], 0, 1);
      add(TensorNames.attnKBias(l), [kv], 0, 1);
      add(TensorNames.attnVBias(l), [kv], 0, 1);
    }
    add(TensorNames.attnOutput(l), [c.hiddenSize, q]);
    add(TensorNames.ffnNorm(l), [c.hiddenSize], 1, 1);
    add(TensorNames.ffnGate(l), [c.intermediateSize, c.hiddenSize]);
    add(TensorNames.ffnUp(l), [c.intermediateSize, c.hiddenSize]);
    add(TensorNames.ffnDown(l), [c.hiddenSize, c.intermediateSize]);
  }
  add(TensorNames.outputNorm, [c.hiddenSize], 1, 1);
  if (!c.tiedEmbeddings) add(TensorNames.output, [c.vocabSize, c.hiddenSize]);
  return {
    config,
    tensors,
    tokenizer: { kind: "hf", tokenizerJson: {}, tokenizerConfig: null },
    chatTemplate: null,
    eosTokenIds: [],
    bosTokenId: null,
    source: { format: "hf", path: "<synthetic>", files: [] },
  };
}

// ---- The naive implementation (float64, no cache) ----

type Vec = number[];
const w = (m: ModelDescription, name: string): Float32Array => m.tensors.get(name)!.f32();
function linear(weight: Float32Array, x: Vec, bias?: Float32Array): Vec {
  const cols = x.length;
  return Array.from({ length: weight.length / cols }, (_, r) => {
    let s = bias ? bias[r]! : 0;
    for (let c = 0; c < cols; c++) s += weight[r * cols + c]! * x[c]!;
    return s;
  });
}
function rmsnorm(x: Vec, weight: Float32Array, eps: number): Vec {
  const ms = x.reduce((a, v) => a + v * v, 0) / x.length;
  return x.map((v, i) => (v / Math.sqrt(ms + eps)) * weight[i]!);
}
function softmax(x: Vec): Vec {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
/** One head at position p. */
function rope(head: Vec, p: number, c: ModelConfig): Vec {
  const d = head.length;
  const freq = (i: number) => p / c.ropeTheta ** ((2 * i) / d);
  if (c.ropeStyle === "interleaved") {
    // Meta llama: view pairs as complex numbers, multiply by e^{i theta}.
    const out = head.slice();
    for (let i = 0; i < d / 2; i++) {
      const [re, im] = [head[2 * i]!, head[2 * i + 1]!];
      const [cr, ci] = [Math.cos(freq(i)), Math.sin(freq(i))];
      out[2 * i] = re * cr - im * ci;
      out[2 * i + 1] = re * ci + im * cr;
    }
    return out;
  }
  // HF: q * cos(emb) + rotate_half(q) * sin(emb), emb = cat(freqs, freqs).
  const emb = Array.from({ length: d }, (_, j) => freq(j % (d / 2)));
  const rotated = head.map((_, j) => (j < d / 2 ? -head[j + d / 2]! : head[j - d / 2]!));
  return head.map((v, j) => v * Math.cos(emb[j]!) + rotated[j]! * Math.sin(emb[j]!));
}
const heads = (x: Vec, n: number, d: number): Vec[] =>
  Array.from({ length: n }, (_, h) => x.slice(h * d, (h + 1) * d));

/** Logits at every position of `tokens`, each recomputed over the full prefix. */
function naiveLogits(m: ModelDescription, tokens: number[]): Vec[] {
  const c = m.config;
  const T = TensorNames;
  const emb = w(m, T.tokenEmbedding);
  let xs: Vec[] = tokens.map((t) => Array.from(emb.subarray(t * c.hiddenSize, (t + 1) * c.hiddenSize)));
  for (let l = 0; l < c.numLayers; l++) {
    const bias = (name: string) => (c.attentionBias ? w(m, name) : undefined);
    const n = xs.map((x) => rmsnorm(x, w(m, T.attnNorm(l)), c.rmsNormEps));
    const qs = n.map((x, p) =>
      heads(linear(w(m, T.attnQ(l)), x, bias(T.attnQBias(l))), c.numHeads, c.headDim).map((h) =>
        rope(h, p, c),
      ),
    );
    const ks = n.map((x, p) =>
      heads(linear(w(m, T.attnK(l)), x, bias(T.attnKBias(l))), c.numKvHeads, c.headDim).map((h) =>
        rope(h, p, c),
      ),
    );
    const vs = n.map((x) =>
      heads(linear(w(m, T.attnV(l)), x, bias(T.attnVBias(l))), c.numKvHeads, c.headDim),
    );
    const nRep = c.numHeads / c.numKvHeads;
    xs = xs.map((x, i) => {
      const visible = (j: number) => j <= i && (c.slidingWindow === null || i - j < c.slidingWindow);
      const attn = qs[i]!.flatMap((q, h) => {
        const kvh = Math.floor(h / nRep);
        const js = tokens.map((_, j) => j).filter(visible);
        const probs = softmax(
          js.map((j) => q.reduce((a, v, d) => a + v * ks[j]![kvh]![d]!, 0) / Math.sqrt(c.headDim)),
        );
        return q.map((_, d) => js.reduce((a, j, k) => a + probs[k]! * vs[j]![kvh]![d]!, 0));
      });
      const h1 = linear(w(m, T.attnOutput(l)), attn).map((v, k) => v + x[k]!);
      const f = rmsnorm(h1, w(m, T.ffnNorm(l)), c.rmsNormEps);
      const up = linear(w(m, T.ffnUp(l)), f);
      const act = linear(w(m, T.ffnGate(l)), f).map((g, k) => (g / (1 + Math.exp(-g))) * up[k]!);
      return linear(w(m, T.ffnDown(l)), act).map((v, k) => v + h1[k]!);
    });
  }
  const head = c.tiedEmbeddings ? emb : w(m, T.output);
  return xs.map((x) => linear(head, rmsnorm(x, w(m, T.outputNorm), c.rmsNormEps)));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const TOKENS = [3, 17, 17, 0, 39, 8, 25, 12, 30, 5, 1, 22];

describe("reference forward pass vs a naive transformer", () => {
  for (const [label, config] of [
    ["qwen2-like (GQA 6:2, q/k/v biases, tied embeddings, neox rope)", QWEN2_LIKE],
    ["llama-like (MQA 4:1, untied head, interleaved rope)", LLAMA_LIKE],
    ["mistral-like (GQA 4:2, sliding window 3)", MISTRAL_LIKE],
  ] as const) {
    it(`${label}: equal logits at every position`, () => {
      const desc = randomModel(config, 7);
      const model = new ReferenceModel(desc);
      const expected = naiveLogits(desc, TOKENS);
      const state = model.newState(TOKENS.length);
      const logits = TOKENS.map((t) => model.forward(state, t));
      // Logits are O(1-10) here; make sure the comparison is not trivially small.
      expect(Math.max(...expected.flat().map(Math.abs))).toBeGreaterThan(1);
      TOKENS.forEach((_, p) => {
        expect(maxAbsDiff(logits[p]!, expected[p]!), `position ${p}`).toBeLessThan(1e-5);
      });
    });
  }

  it("tied embeddings use token_embd as the head (no output.weight needed)", () => {
    const desc = randomModel(QWEN2_LIKE, 3);
    expect(desc.tensors.has(TensorNames.output)).toBe(false);
    const model = new ReferenceModel(desc);
    expect(model.weights.output).toBe(desc.tensors.get(TensorNames.tokenEmbedding)!.f32());
  });

  it("sliding window: same as full attention inside the window, different beyond it", () => {
    const windowed = randomModel(MISTRAL_LIKE, 11);
    const full: ModelDescription = { ...windowed, config: { ...windowed.config, slidingWindow: null } };
    const a = new ReferenceModel(windowed);
    const b = new ReferenceModel(full);
    const sa = a.newState(TOKENS.length);
    const sb = b.newState(TOKENS.length);
    TOKENS.forEach((t, p) => {
      const d = maxAbsDiff(a.forward(sa, t), b.forward(sb, t));
      if (p < 3) expect(d, `position ${p}`).toBe(0);
      else expect(d, `position ${p}`).toBeGreaterThan(1e-4);
    });
  });

  it("prefill equals token-by-token forward; states over one model are independent", () => {
    const model = new ReferenceModel(randomModel(QWEN2_LIKE, 5));
    const byToken = model.newState(16);
    const other = model.newState(16);
    let last: Float32Array | undefined;
    for (const t of TOKENS) {
      last = model.forward(byToken, t);
      model.forward(other, (t * 7) % 40); // interleave another sequence
    }
    expect(model.prefill(model.newState(16), TOKENS)).toEqual(last);
    expect(byToken.length).toBe(TOKENS.length);
  });

  it("forward at an earlier position rewinds the cache", () => {
    const model = new ReferenceModel(randomModel(LLAMA_LIKE, 9));
    const s = model.newState(8);
    model.prefill(s, [1, 2, 3, 4]);
    const rewound = model.forward(s, 9, 2);
    expect(s.length).toBe(3);
    const fresh = model.prefill(model.newState(8), [1, 2, 9]);
    expect(rewound).toEqual(fresh);
    expect(() => model.forward(s, 1, 5)).toThrow(RangeError);
  });

  it("a full KV cache is a clear error; bad sizes, token ids and foreign states are rejected", () => {
    const model = new ReferenceModel(randomModel(QWEN2_LIKE, 1));
    const s = model.newState(3);
    model.prefill(s, [1, 2, 3]);
    expect(() => model.forward(s, 4)).toThrow(KVCacheFullError);
    expect(() => model.forward(s, 4)).toThrow(/KV cache is full: all 3 positions/);
    expect(s.length).toBe(3);
    expect(() => model.prefill(model.newState(2), [1, 2, 3])).toThrow(/do not fit/);
    expect(() => model.newState(0)).toThrow(RangeError);
    expect(() => model.newState(QWEN2_LIKE.maxContext + 1)).toThrow(/context/);
    expect(() => model.forward(model.newState(2), 40)).toThrow(/outside the vocabulary/);
    const partial = model.newState(4);
    expect(() => model.prefill(partial, [1, 2, -1])).toThrow(/outside the vocabulary/);
    expect(partial.length).toBe(0);
    const another = new ReferenceModel(randomModel(QWEN2_LIKE, 2));
    expect(() => another.forward(s, 1)).toThrow(/another model/);
  });

  it("rejects inconsistent tensors up front", () => {
    const desc = randomModel(QWEN2_LIKE, 4);
    desc.tensors.delete(TensorNames.attnKBias(1));
    expect(() => new ReferenceModel(desc)).toThrow(/missing tensor blk\.1\.attn_k\.bias/);
  });
});
