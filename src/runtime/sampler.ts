/**
 * Next-token selection: greedy, or seeded sampling with temperature, top-k and top-p, over logits
 * shaped first by logit bias, presence/frequency penalties and an optional token mask (constrained
 * decoding); optionally reporting each chosen token's log probability and the most likely
 * alternatives.
 *
 * Shaping follows OpenAI's documented formula (platform.openai.com/docs/advanced-usage, "frequency
 * and presence penalties"): logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
 * count[j] = how often token j was generated so far in this sequence (prompt tokens do not count);
 * logit_bias adds its value to the token's logit.
 *
 * Order: temperature → top-k → top-p → draw, as Hugging Face transformers' logits warpers apply them.
 * (llama.cpp's default chain applies temperature *last*, after top-k/top-p; the two agree on top-k
 * but not on top-p when temperature != 1.)
 *
 * Randomness comes from xoshiro128** (Blackman & Vigna), seeded through SplitMix32. Both are pure
 * 32-bit integer arithmetic (Math.imul, shifts), so a seed gives the same stream in Node, Workers and
 * browsers; the probabilities use Math.exp in float64, which V8 (Node and workerd) computes identically.
 */
import { z } from "zod";

export const SamplerOptions = z.strictObject({
  /** 0 = greedy; otherwise logits are divided by it. */
  temperature: z.number().min(0).default(1),
  /** Keep only the k most likely tokens; 0 = off. */
  topK: z.number().int().min(0).default(0),
  /**
   * Keep the smallest set of most likely tokens whose probability sums to >= topP; 1 = off, 0 = the
   * most likely token only (greedy), as OpenAI's [0, 1] range means it.
   */
  topP: z.number().min(0).max(1).default(1),
  /** uint32 seed; omitted = a random one. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  /** OpenAI's presence_penalty, [-2, 2]: subtracted once from every token already generated. */
  presencePenalty: z.number().min(-2).max(2).default(0),
  /** OpenAI's frequency_penalty, [-2, 2]: subtracted once per earlier occurrence of the token. */
  frequencyPenalty: z.number().min(-2).max(2).default(0),
  /** Added to the logit of the token id (key: id as a decimal string), [-100, 100]. */
  logitBias: z.record(z.string().regex(/^\d+$/), z.number().min(-100).max(100)).default({}),
  /**
   * Report each choice (token, log probability, this many alternatives) through the sampler's
   * `onChoice` hook; undefined = no report (nothing extra computed).
   */
  topLogprobs: z.number().int().min(0).max(20).optional(),
});
/** Options as callers write them (every field optional). */
export type SamplerOptionsInput = z.input<typeof SamplerOptions>;
export type SamplerOptions = z.output<typeof SamplerOptions>;

export interface Sampler {
  /**
   * Picks the next token id from a vocabulary-sized logits vector. Every call's result counts as
   * generated (the penalties and a token mask advance on it), so call it once per position, in order.
   */
  sample(logits: ArrayLike<number>): number;
}

/** A token and its log probability (natural log) in the distribution it was chosen from. */
export interface TokenLogprob {
  token: number;
  logprob: number;
}

/** One sampling step as reported: the chosen token and the `topLogprobs` most likely ones. */
export interface TokenChoice extends TokenLogprob {
  top: TokenLogprob[];
}

/**
 * Constrained decoding: says which tokens may come next, and follows the chosen ones.
 * `allow` sets disallowed entries of `logits` to -Infinity (at least one must stay finite).
 */
export interface TokenMask {
  allow(logits: Float64Array): void;
  accept(token: number): void;
}

export interface SamplerHooks {
  /** Called with each choice when options.topLogprobs is set. */
  onChoice?: (choice: TokenChoice) => void;
  mask?: TokenMask;
}

/** xoshiro128** 1.1 (https://prng.di.unimi.it/xoshiro128starstar.c), seeded from a uint32 via SplitMix32. */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // SplitMix32 (golden-ratio increment, murmur3 finalizer) spreads one uint32 over 128 bits of state;
    // four consecutive outputs are never all zero.
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Next uint32. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Index of the largest logit; ties go to the lowest id. Throws on NaN (a broken forward pass). */
export function argmax(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new RangeError("argmax of empty logits");
  let best = 0;
  let max = logits[0]!;
  if (Number.isNaN(max)) throw new RangeError("logit 0 is NaN");
  for (let i = 1; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > max) {
      max = v;
      best = i;
    } else if (Number.isNaN(v)) throw new RangeError(`logit ${i} is NaN`);
  }
  return best;
}

/** softmax(logits / temperature) in float64. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const out = new Float64Array(logits.length);
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp((logits[i]! - max) / temperature);
    sum += out[i]!;
  }
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / sum;
  return out;
}

/**
 * A planning estimate of the sampler's CPU cost per token, ms, beyond a greedy argmax (which the
 * build's decode timing already includes), for a vocabulary of `vocabSize`: temperature sampling
 * exponentiates every logit (1.5-2.3 ms on SmolLM2's 49,152 tokens); top-k / top-p add a selection and
 * a sort of the kept prefix (3.4 ms with top_p 0.9 on flat logits, `npm run bench -- --real`'s
 * sampling section; less on a chat answer's peaked ones), rounded up like json-mask.ts's
 * maskMsPerToken.
 */
export function samplingMsPerToken(
  vocabSize: number,
  o: Pick<SamplerOptionsInput, "temperature" | "topK" | "topP">,
): number {
  const temperature = o.temperature ?? 1;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (temperature === 0 || topK === 1 || topP === 0) return 0;
  return ((truncates({ topK, topP }, vocabSize) ? 0.08 : 0.05) * vocabSize) / 1000;
}

/**
 * A sampler for one sequence (it owns its PRNG state, the counts of generated tokens and the mask).
 * Throws a ZodError on invalid options; a logit_bias id outside the logits is a RangeError at the
 * first sample.
 *
 * Reported log probabilities are log-softmax of the shaped logits divided by the temperature (1 for
 * greedy): the distribution the token is drawn from before top-k / top-p truncation. Tokens a mask
 * forbids have probability 0 (-Infinity).
 */
export function createSampler(options: SamplerOptionsInput = {}, hooks: SamplerHooks = {}): Sampler {
  const o = SamplerOptions.parse(options);
  const greedy = o.temperature === 0 || o.topK === 1 || o.topP === 0;
  const bias = Object.entries(o.logitBias).map(([id, v]) => [Number(id), v] as const);
  const penalized = o.presencePenalty !== 0 || o.frequencyPenalty !== 0;
  const { mask, onChoice } = hooks;
  const report = o.topLogprobs !== undefined && onChoice !== undefined;
  // Plain sampling (no shaping, no report) reads the engine's logits as they are.
  if (!penalized && bias.length === 0 && !mask && !report) {
    if (greedy) return { sample: argmax };
    const rng = new Xoshiro128(o.seed ?? randomSeed());
    return { sample: drawer(o, rng) };
  }
  const draw = greedy ? null : drawer(o, new Xoshiro128(o.seed ?? randomSeed()));
  const counts = new Map<number, number>();
  return {
    sample(raw) {
      argmax(raw); // NaN check on the engine's output
      const logits = Float64Array.from(raw);
      for (const [id, v] of bias) {
        if (id >= logits.length) throw new RangeError(`logit_bias token ${id} is outside the vocabulary`);
        logits[id] = logits[id]! + v;
      }
      if (penalized) {
        for (const [id, n] of counts) logits[id] = logits[id]! - n * o.frequencyPenalty - o.presencePenalty;
      }
      mask?.allow(logits);
      const token = draw ? draw(logits) : argmax(logits);
      if (report)
        onChoice({ token, ...logprobsOf(logits, greedy ? 1 : o.temperature, token, o.topLogprobs!) });
      if (penalized) counts.set(token, (counts.get(token) ?? 0) + 1);
      mask?.accept(token);
      return token;
    },
  };
}

/** log-softmax(logits / temperature) at `token`, and the `k` most likely tokens (ties: lowest id). */
export function logprobsOf(
  logits: ArrayLike<number>,
  temperature: number,
  token: number,
  k: number,
): { logprob: number; top: TokenLogprob[] } {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i]! - max) / temperature);
  const logZ = Math.log(sum);
  const lp = (i: number) => (logits[i]! - max) / temperature - logZ;
  // Top k by insertion into a short sorted list (k <= 20, one pass over the vocabulary).
  const top: number[] = [];
  for (let i = 0; i < logits.length && k > 0; i++) {
    const v = logits[i]!;
    if (top.length === k && v <= logits[top[k - 1]!]!) continue;
    let at = top.length;
    while (at > 0 && v > logits[top[at - 1]!]!) at--;
    top.splice(at, 0, i);
    if (top.length > k) top.pop();
  }
  return { logprob: lp(token), top: top.map((i) => ({ token: i, logprob: lp(i) })) };
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** Whether top-k or top-p cut the candidates of a vocabulary of `n` tokens. */
function truncates(o: Pick<SamplerOptions, "topK" | "topP">, n: number): boolean {
  return (o.topK > 0 && o.topK < n) || o.topP < 1;
}

/** weights[i] = exp((logits[i] - max) / temperature) for every id; returns their sum. */
function fillWeights(
  logits: ArrayLike<number>,
  max: number,
  temperature: number,
  weights: Float64Array,
): number {
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Math.exp((logits[i]! - max) / temperature);
    total += weights[i]!;
  }
  return total;
}

/** Candidate order: most likely first, ties to the lowest id (so truncation is deterministic). */
function byLikelihood(logits: ArrayLike<number>): (a: number, b: number) => number {
  return (a, b) => logits[b]! - logits[a]! || a - b;
}

/**
 * The `m` most likely ids (ties: lowest id), sorted most likely first, in O(n + m log m): the m-th
 * largest logit by quickselect, then the ids above it and as many ids equal to it (lowest first) as
 * fit. Sorting all n ids instead cost 37 ms a token on a 49k vocabulary (2-3 decode steps).
 */
export function topIds(logits: ArrayLike<number>, m: number): number[] {
  const n = logits.length;
  if (m >= n) return Array.from({ length: n }, (_, i) => i).sort(byLikelihood(logits));
  const values = Float64Array.from(logits);
  const cut = kthLargest(values, m);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) if (logits[i]! > cut) ids.push(i);
  for (let i = 0; i < n && ids.length < m; i++) if (logits[i]! === cut) ids.push(i);
  return ids.sort(byLikelihood(logits));
}

/** The k-th largest of `v` (1-based; k <= v.length), reordering v (Hoare-style quickselect, middle pivot). */
function kthLargest(v: Float64Array, k: number): number {
  let lo = 0;
  let hi = v.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i]! > pivot) i++;
      while (v[j]! < pivot) j--;
      if (i <= j) {
        const t = v[i]!;
        v[i] = v[j]!;
        v[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return v[target]!;
  }
  return v[target]!;
}

/**
 * Top-k / top-p candidates (sorted, most likely first), their probabilities and how many top-p keeps.
 * With top-k, probabilities are softmax over the k kept (as transformers renormalizes after top-k);
 * top-p alone normalizes over the whole vocabulary and sorts only a growing prefix of the most likely
 * ids (256, then 8x) until it holds the top-p mass: the tokens outside that prefix are all less likely
 * than the ones inside, so the kept set equals a full sort's.
 */
function truncated(
  logits: ArrayLike<number>,
  o: SamplerOptions,
  best: number,
  weights: Float64Array,
): { ids: number[]; probs: ArrayLike<number>; kept: number } {
  const n = logits.length;
  const keepP = (probs: ArrayLike<number>, count: number): number => {
    let cumulative = 0;
    for (let i = 0; i < count; i++) {
      cumulative += probs[i]!;
      if (cumulative >= o.topP) return i + 1;
    }
    return -1;
  };
  if (o.topK > 0 && o.topK < n) {
    const ids = topIds(logits, o.topK);
    const probs = softmax(
      ids.map((i) => logits[i]!),
      o.temperature,
    );
    const kept = o.topP < 1 ? keepP(probs, ids.length) : ids.length;
    return { ids, probs, kept: kept < 0 ? ids.length : kept };
  }
  const total = fillWeights(logits, logits[best]!, o.temperature, weights);
  for (let m = Math.min(n, 256); ; m = Math.min(n, m * 8)) {
    const ids = topIds(logits, m);
    const probs = ids.map((i) => weights[i]! / total);
    const kept = keepP(probs, ids.length);
    if (kept > 0 || m === n) return { ids, probs, kept: kept < 0 ? ids.length : kept };
  }
}

/** One sequence's draws: sampleOnce with a weights buffer kept across calls (a fresh 393 KB array per token cost 0.8 ms). */
function drawer(o: SamplerOptions, rng: Xoshiro128): (logits: ArrayLike<number>) => number {
  let weights = new Float64Array(0);
  return (logits) => {
    if (weights.length !== logits.length) weights = new Float64Array(logits.length);
    return sampleOnce(logits, o, rng, weights);
  };
}

function sampleOnce(
  logits: ArrayLike<number>,
  o: SamplerOptions,
  rng: Xoshiro128,
  weights: Float64Array,
): number {
  // (-Infinity logits, from a mask, get probability 0: they are never drawn.)
  const n = logits.length;
  const best = argmax(logits); // NaN check
  if (!truncates(o, n)) {
    // No truncation: draw from softmax(logits / T) in id order without building candidate lists
    // (on a 49k vocabulary those cost ~20x the draw itself).
    const total = fillWeights(logits, logits[best]!, o.temperature, weights);
    const u = rng.nextFloat() * total;
    let cumulative = 0;
    let last = best;
    for (let i = 0; i < n; i++) {
      if (weights[i] === 0) continue;
      cumulative += weights[i]!;
      last = i;
      if (u < cumulative) return i;
    }
    return last; // u landed in float rounding slack at the very end
  }
  const { ids, probs, kept } = truncated(logits, o, best, weights);
  // Draw from the kept candidates, renormalized (scale u by their total instead of dividing).
  let total = 0;
  for (let i = 0; i < kept; i++) total += probs[i]!;
  const u = rng.nextFloat() * total;
  let cumulative = 0;
  for (let i = 0; i < kept; i++) {
    cumulative += probs[i]!;
    if (u < cumulative) return ids[i]!;
  }
  return ids[kept - 1]!; // u landed in float rounding slack at the very end
}
