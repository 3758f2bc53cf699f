/**
 * The reference forward pass: a llama-family decoder (llama, mistral, qwen2) in plain TypeScript fp32,
 * one token at a time, in the spirit of llama2.c's run.c. It is the oracle every faster kernel is
 * tested against, so it favours clarity over speed.
 *
 * Per layer:  x += Wo · attention(rope(Wq·n + bq), rope(Wk·n + bk), Wv·n + bv),  n = rmsnorm(x)
 *             x += Wdown · (silu(Wgate·n) * (Wup·n)),                            n = rmsnorm(x)
 * then logits = Woutput · rmsnorm(x).
 *
 * Weights are read once and shared; everything that changes while decoding lives in a
 * `ReferenceState` (KV cache + scratch), so many sequences can run over one `ReferenceModel`.
 */

import { type ModelConfig, type ModelDescription, TensorNames, tensorOrThrow } from "../../format/model.ts";
import type { InferenceState, LogitsModel } from "../../runtime/generate.ts";
import { validateTensors } from "../import/validate.ts";
import { type GgmlLinear, ggmlLinear, rmsNormGgml } from "./ggml-cpu.ts";
import { KVCache } from "./kv-cache.ts";
import { addInPlace, matVec, rmsNorm, softmaxInPlace, swiGluInPlace } from "./ops.ts";
import { applyRope, ropeAngles } from "./rope.ts";
import { loadReferenceWeights, type ReferenceWeights } from "./weights.ts";

/**
 * Where an `ActivationObserver` sees activations (every input of a linear layer, and the residual
 * stream around each block), for calibration:
 *   resid_in     residual stream entering the block
 *   attn_in      rmsnorm(x) * attn_norm: input of q/k/v
 *   attn_out_in  attention output, all heads concatenated: input of attn_output
 *   ffn_in       rmsnorm(x) * ffn_norm: input of gate/up
 *   ffn_down_in  silu(gate) * up: input of ffn_down
 *   resid_out    residual stream leaving the block
 *   output_in    rmsnorm(x) * output_norm: input of the output head (layer = numLayers; only when
 *                logits are computed, i.e. forward() and the last token of prefill())
 */
export type ActivationSite =
  | "resid_in"
  | "attn_in"
  | "attn_out_in"
  | "ffn_in"
  | "ffn_down_in"
  | "resid_out"
  | "output_in";

/**
 * Called synchronously with the model's own scratch buffer: copy `values` to keep them, and never
 * write to it.
 */
export type ActivationObserver = (layer: number, site: ActivationSite, values: Float32Array) => void;

/** One sequence: its KV cache and activation buffers (llama2.c's RunState). */
export class ReferenceState implements InferenceState {
  readonly cache: KVCache;
  /** Residual stream. */
  readonly x: Float32Array;
  /** Normalized input of the current sub-block. */
  readonly xb: Float32Array;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** Attention output, all heads concatenated. */
  readonly attnOut: Float32Array;
  /** Output of Wo or Wdown, added to the residual stream. */
  readonly delta: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  /** Attention scores of one head over the cached positions (float64: softmax input). */
  readonly scores: Float64Array;

  constructor(
    readonly owner: ReferenceModel,
    config: ModelConfig,
    capacity: number,
  ) {
    const qDim = config.numHeads * config.headDim;
    const kvDim = config.numKvHeads * config.headDim;
    this.cache = new KVCache(config.numLayers, kvDim, capacity);
    this.x = new Float32Array(config.hiddenSize);
    this.xb = new Float32Array(config.hiddenSize);
    this.q = new Float32Array(qDim);
    this.k = new Float32Array(kvDim);
    this.v = new Float32Array(kvDim);
    this.attnOut = new Float32Array(qDim);
    this.delta = new Float32Array(config.hiddenSize);
    this.gate = new Float32Array(config.intermediateSize);
    this.up = new Float32Array(config.intermediateSize);
    this.scores = new Float64Array(capacity);
  }

  /** Tokens in the context (== the position the next token gets). */
  get length(): number {
    return this.cache.length;
  }

  get capacity(): number {
    return this.cache.capacity;
  }
}

/**
 * How the reference computes its linear layers:
 *   "fp32"      dequantized fp32 weights times fp32 activations, summed in float64 (the default;
 *               what every kernel of ours is judged against)
 *   "ggml-cpu"  llama.cpp's CPU arithmetic for the stored quant types: activations rounded to
 *               q8_1/q8_0 blocks before each matmul (see ./ggml-cpu.ts). For comparing with
 *               llama.cpp itself; needs a GGUF source whose linears are Q4_1 or Q8_0.
 */
export type ReferenceArithmetic = "fp32" | "ggml-cpu";

interface LayerLinears {
  readonly q: GgmlLinear;
  readonly k: GgmlLinear;
  readonly v: GgmlLinear;
  readonly o: GgmlLinear;
  readonly gate: GgmlLinear;
  readonly up: GgmlLinear;
  readonly down: GgmlLinear;
}

export class ReferenceModel implements LogitsModel<ReferenceState> {
  readonly config: ModelConfig;
  readonly weights: ReferenceWeights;
  readonly arithmetic: ReferenceArithmetic;
  /** Sees every linear layer's input as tokens run (calibration); null = off, at no cost. */
  observer: ActivationObserver | null = null;
  /** Per layer, the ggml-cpu linears; null in fp32 mode. */
  private readonly ggml: { layers: LayerLinears[]; output: GgmlLinear } | null;

  constructor(model: ModelDescription, options: { arithmetic?: ReferenceArithmetic } = {}) {
    validateTensors(model);
    this.config = model.config;
    this.weights = loadReferenceWeights(model);
    this.arithmetic = options.arithmetic ?? "fp32";
    this.ggml = this.arithmetic === "ggml-cpu" ? ggmlLinears(model) : null;
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get maxContext(): number {
    return this.config.maxContext;
  }

  /** A fresh sequence with room for `maxTokens` tokens (prompt + generated). */
  newState(maxTokens: number): ReferenceState {
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > this.config.maxContext) {
      throw new RangeError(
        `state size must be an integer in 1..${this.config.maxContext} (the model's context), got ${maxTokens}`,
      );
    }
    return new ReferenceState(this, this.config, maxTokens);
  }

  /**
   * Runs `tokenId` at position `pos` (default: the end of the sequence) and returns the next-token
   * logits (a new array). A `pos` before the end first forgets the cached positions from `pos` on.
   * Throws KVCacheFullError when the state has no room left.
   */
  forward(state: ReferenceState, tokenId: number, pos: number = state.length): Float32Array {
    this.checkState(state);
    if (!Number.isInteger(pos) || pos < 0 || pos > state.length) {
      throw new RangeError(`position ${pos} is not in 0..${state.length} (the sequence length)`);
    }
    this.checkToken(tokenId);
    if (pos < state.length) state.cache.truncate(pos);
    const logits = new Float32Array(this.config.vocabSize);
    this.step(state, tokenId, logits);
    return logits;
  }

  /** Runs all `tokens` from the end of the sequence; returns the logits after the last one. */
  prefill(state: ReferenceState, tokens: readonly number[]): Float32Array {
    this.checkState(state);
    if (tokens.length === 0) throw new RangeError("prefill needs at least one token");
    for (const t of tokens) this.checkToken(t); // all up front: a bad id must not leave half a prompt
    if (state.length + tokens.length > state.capacity) {
      throw new RangeError(
        `${tokens.length} tokens do not fit: the state holds ${state.length} of ${state.capacity}`,
      );
    }
    const logits = new Float32Array(this.config.vocabSize);
    // Only the last position needs the (vocab-sized) output head.
    for (const [i, t] of tokens.entries()) this.step(state, t, i === tokens.length - 1 ? logits : null);
    return logits;
  }

  private checkState(state: ReferenceState): void {
    if (state.owner !== this) throw new Error("this state was created by another model");
  }

  private checkToken(tokenId: number): void {
    const n = this.config.vocabSize;
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= n) {
      throw new RangeError(`token id ${tokenId} is outside the vocabulary (0..${n - 1})`);
    }
  }

  /** One token through every layer; writes the logits when `logits` is given. */
  private step(s: ReferenceState, tokenId: number, logits: Float32Array | null): void {
    const c = this.config;
    const w = this.weights;
    s.cache.ensureRoom();
    const pos = s.cache.length;
    const angles = ropeAngles(pos, c.headDim, c.ropeTheta);
    const observe = this.observer;

    s.x.set(w.tokenEmbedding.subarray(tokenId * c.hiddenSize, (tokenId + 1) * c.hiddenSize));
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l]!;

      // Attention block.
      if (observe) observe(l, "resid_in", s.x);
      this.norm(s.xb, s.x, lw.attnNorm, c.rmsNormEps);
      if (observe) observe(l, "attn_in", s.xb);
      this.linear(s.q, lw.wq, s.xb, l, "q", lw.bq);
      this.linear(s.k, lw.wk, s.xb, l, "k", lw.bk);
      this.linear(s.v, lw.wv, s.xb, l, "v", lw.bv);
      applyRope(s.q, c.numHeads, c.headDim, angles, c.ropeStyle);
      applyRope(s.k, c.numKvHeads, c.headDim, angles, c.ropeStyle);
      s.cache.write(l, s.k, s.v);
      this.attention(s, l, pos);
      if (observe) observe(l, "attn_out_in", s.attnOut);
      this.linear(s.delta, lw.wo, s.attnOut, l, "o");
      addInPlace(s.x, s.delta);

      // Feed-forward block (SwiGLU).
      this.norm(s.xb, s.x, lw.ffnNorm, c.rmsNormEps);
      if (observe) observe(l, "ffn_in", s.xb);
      this.linear(s.gate, lw.wGate, s.xb, l, "gate");
      this.linear(s.up, lw.wUp, s.xb, l, "up");
      swiGluInPlace(s.gate, s.up);
      if (observe) observe(l, "ffn_down_in", s.gate);
      this.linear(s.delta, lw.wDown, s.gate, l, "down");
      addInPlace(s.x, s.delta);
      if (observe) observe(l, "resid_out", s.x);
    }
    s.cache.advance();

    if (logits) {
      this.norm(s.xb, s.x, w.outputNorm, c.rmsNormEps);
      if (observe) observe(c.numLayers, "output_in", s.xb);
      if (this.ggml) this.ggml.output(logits, s.xb);
      else matVec(logits, w.output, s.xb);
    }
  }

  /** out = rmsnorm(x) * weight in the model's arithmetic. */
  private norm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
    if (this.ggml) rmsNormGgml(out, x, weight, eps);
    else rmsNorm(out, x, weight, eps);
  }

  /** out = W x (+ bias) in the model's arithmetic; `which` names the layer's linear for ggml-cpu. */
  private linear(
    out: Float32Array,
    w: Float32Array,
    x: Float32Array,
    layer: number,
    which: keyof LayerLinears,
    bias: Float32Array | null = null,
  ): void {
    if (!this.ggml) {
      matVec(out, w, x, bias);
      return;
    }
    this.ggml.layers[layer]![which](out, x);
    if (bias) addInPlace(out, bias); // ggml adds the bias as a separate fp32 op
  }

  /**
   * Causal grouped-query attention of the query at `pos` over cached positions, into s.attnOut.
   * Query head h reads KV head floor(h / (numHeads/numKvHeads)), as HF repeat_kv and llama.cpp do.
   * A sliding window W keeps the last W positions including `pos` (key p visible iff pos - p < W).
   */
  private attention(s: ReferenceState, layer: number, pos: number): void {
    const c = this.config;
    const hd = c.headDim;
    const group = c.numHeads / c.numKvHeads;
    const first = c.slidingWindow === null ? 0 : Math.max(0, pos - c.slidingWindow + 1);
    const n = pos - first + 1;
    const scale = 1 / Math.sqrt(hd);
    const keys = s.cache.keys[layer]!;
    const values = s.cache.values[layer]!;
    const kvDim = s.cache.kvDim;
    for (let h = 0; h < c.numHeads; h++) {
      const kvOffset = Math.floor(h / group) * hd;
      const qOffset = h * hd;
      for (let t = 0; t < n; t++) {
        const kOffset = (first + t) * kvDim + kvOffset;
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += s.q[qOffset + i]! * keys[kOffset + i]!;
        s.scores[t] = dot * scale;
      }
      softmaxInPlace(s.scores, n);
      // Weighted sum of values, accumulated in float64 per output element.
      for (let i = 0; i < hd; i++) {
        let sum = 0;
        for (let t = 0; t < n; t++) sum += s.scores[t]! * values[(first + t) * kvDim + kvOffset + i]!;
        s.attnOut[qOffset + i] = sum;
      }
    }
  }
}

/** The ggml-cpu linears of every layer and the output head (tied: the token embedding). */
function ggmlLinears(model: ModelDescription): { layers: LayerLinears[]; output: GgmlLinear } {
  const get = (name: string) => ggmlLinear(tensorOrThrow(model, name));
  const layers: LayerLinears[] = [];
  for (let l = 0; l < model.config.numLayers; l++) {
    layers.push({
      q: get(TensorNames.attnQ(l)),
      k: get(TensorNames.attnK(l)),
      v: get(TensorNames.attnV(l)),
      o: get(TensorNames.attnOutput(l)),
      gate: get(TensorNames.ffnGate(l)),
      up: get(TensorNames.ffnUp(l)),
      down: get(TensorNames.ffnDown(l)),
    });
  }
  const output = get(model.config.tiedEmbeddings ? TensorNames.tokenEmbedding : TensorNames.output);
  return { layers, output };
}
