/**
 * The reference forward pass, a whole sequence at a time, with every matrix product on the WASM
 * SIMD fp32 kernel: what calibration and evaluation run on a real model (the per-token JS reference
 * in src/model/reference takes ~0.3 s per token at 135M parameters, this one ~10x less).
 *
 * Same maths as src/model/reference/transformer.ts (rmsnorm, rope, causal GQA, SwiGLU), same
 * activation sites, but fp32 products accumulated in fp32 SIMD lanes instead of float64 sums.
 * A product Y = X Wᵀ ([T, K] x [N, K]ᵀ) is N calls of `matvec_f32` with the activations X as the
 * "matrix" and one weight row as the "vector": X (≤ a few hundred KB) stays in cache and every
 * weight row is read once per sequence, not once per token.
 */
import type { ModelConfig, ModelDescription } from "../format/model.ts";
import type { WasmKernels } from "../kernels/wasm/index.ts";
import { loadReferenceWeights } from "../model/reference/weights.ts";
import type { SyncLogits } from "./evaluate.ts";

/** An activation site (see ActivationSite in the reference) seen for all T positions at once. */
export type BatchSite = "attn_in" | "attn_out_in" | "ffn_in" | "ffn_down_in" | "output_in";

/**
 * Called with [T, K] row-major activations of one sequence (a scratch buffer: copy to keep), and
 * for the residual stream the per-position cosine(in, out) of block `layer`.
 */
export interface BatchObserver {
  site(layer: number, site: BatchSite, values: Float32Array, rows: number, cols: number): void;
  blockCosines?(layer: number, cosines: Float64Array): void;
}

interface Linear {
  ptr: number;
  n: number;
  k: number;
  bias: Float32Array | null;
}

interface Layer {
  attnNorm: Float32Array;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  ffnNorm: Float32Array;
  gate: Linear;
  up: Linear;
  down: Linear;
}

export class BatchedForward {
  readonly config: ModelConfig;
  private readonly layers: Layer[];
  private readonly embedding: Float32Array;
  private readonly outputNorm: Float32Array;
  private readonly output: Linear;

  /** Copies the model's fp32 weights into `kernels`' memory (≈ 4 bytes per parameter). */
  constructor(
    private readonly kernels: WasmKernels,
    model: ModelDescription,
  ) {
    this.config = model.config;
    const w = loadReferenceWeights(model);
    const up = (data: Float32Array, n: number, k: number, bias: Float32Array | null = null): Linear => ({
      ptr: kernels.uploadF32(data),
      n,
      k,
      bias,
    });
    const c = model.config;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const H = c.hiddenSize;
    const F = c.intermediateSize;
    this.layers = w.layers.map((l) => ({
      attnNorm: l.attnNorm,
      q: up(l.wq, qDim, H, l.bq),
      k: up(l.wk, kvDim, H, l.bk),
      v: up(l.wv, kvDim, H, l.bv),
      o: up(l.wo, H, qDim),
      ffnNorm: l.ffnNorm,
      gate: up(l.wGate, F, H),
      up: up(l.wUp, F, H),
      down: up(l.wDown, H, F),
    }));
    this.embedding = w.tokenEmbedding;
    this.outputNorm = w.outputNorm;
    this.output = up(w.output, c.vocabSize, H);
  }

  /** Y [T, N] = X [T, K] Wᵀ (+ bias). */
  private matmul(x: Float32Array, T: number, lin: Linear, out: Float32Array): void {
    const kern = this.kernels;
    const m = kern.mark();
    const xp = kern.uploadF32(x.subarray(0, T * lin.k));
    const yp = kern.alloc(lin.n * T * 4);
    const rowBytes = lin.k * 4;
    const mv = kern.raw.matvec_f32;
    for (let n = 0; n < lin.n; n++) mv(xp, lin.ptr + n * rowBytes, yp + n * T * 4, T, lin.k);
    const yt = kern.f32(yp, lin.n * T);
    const N = lin.n;
    for (let t = 0; t < T; t++) {
      const row = t * N;
      for (let n = 0; n < N; n++) out[row + n] = yt[n * T + t]!;
    }
    if (lin.bias) for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) out[t * N + n]! += lin.bias[n]!;
    kern.release(m);
  }

  /**
   * The upper triangle of XᵀX ([K, K], added into `gram`) of X [T, K], on the same kernel: row i of XᵀX is Xᵀ·X[:, i].
   * fp32 sums over T positions, accumulated across calls in float64.
   */
  addGram(x: Float32Array, T: number, K: number, gram: Float64Array): void {
    const kern = this.kernels;
    const m = kern.mark();
    const xtp = kern.alloc(K * T * 4);
    const xt = kern.f32(xtp, K * T);
    for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) xt[k * T + t] = x[t * K + k]!;
    const gp = kern.alloc(K * 4);
    const mv = kern.raw.matvec_f32;
    // Upper triangle only (callers mirror it, see finishInputStats): row i from column i on.
    for (let i = 0; i < K; i++) {
      const rowPtr = xtp + i * T * 4;
      mv(rowPtr, rowPtr, gp, K - i, T);
      const g = kern.f32(gp, K - i);
      const row = i * K + i;
      for (let j = 0; j < K - i; j++) gram[row + j]! += g[j]!;
    }
    kern.release(m);
  }

  /**
   * Runs `tokens` (one sequence from position 0) and returns the logits [T, vocab] when `logits`,
   * else null. The observer sees every site for all positions.
   */
  run(
    tokens: readonly number[],
    opts: { logits?: boolean; observer?: BatchObserver } = {},
  ): Float32Array | null {
    const c = this.config;
    const T = tokens.length;
    if (T === 0) throw new RangeError("run needs at least one token");
    if (T > c.maxContext) throw new RangeError(`${T} tokens exceed the context (${c.maxContext})`);
    const H = c.hiddenSize;
    const F = c.intermediateSize;
    const hd = c.headDim;
    const qDim = c.numHeads * hd;
    const kvDim = c.numKvHeads * hd;
    const obs = opts.observer;
    const x = new Float32Array(T * H);
    for (const [t, id] of tokens.entries()) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new RangeError(`token id ${id}`);
      x.set(this.embedding.subarray(id * H, (id + 1) * H), t * H);
    }
    const xb = new Float32Array(T * H);
    const q = new Float32Array(T * qDim);
    const k = new Float32Array(T * kvDim);
    const v = new Float32Array(T * kvDim);
    const att = new Float32Array(T * qDim);
    const delta = new Float32Array(T * H);
    const gate = new Float32Array(T * F);
    const upv = new Float32Array(T * F);
    const residIn = new Float32Array(T * H);
    const cosines = new Float64Array(T);
    const { cos, sin } = ropeTables(T, hd, c.ropeTheta);
    const scores = new Float64Array(T);

    for (const [l, lw] of this.layers.entries()) {
      if (obs?.blockCosines) residIn.set(x);
      rmsNormRows(xb, x, lw.attnNorm, T, H, c.rmsNormEps);
      obs?.site(l, "attn_in", xb, T, H);
      this.matmul(xb, T, lw.q, q);
      this.matmul(xb, T, lw.k, k);
      this.matmul(xb, T, lw.v, v);
      ropeRows(q, T, c.numHeads, hd, cos, sin, c.ropeStyle === "interleaved");
      ropeRows(k, T, c.numKvHeads, hd, cos, sin, c.ropeStyle === "interleaved");
      causalAttention(att, q, k, v, T, c, scores);
      obs?.site(l, "attn_out_in", att, T, qDim);
      this.matmul(att, T, lw.o, delta);
      for (let i = 0; i < T * H; i++) x[i]! += delta[i]!;

      rmsNormRows(xb, x, lw.ffnNorm, T, H, c.rmsNormEps);
      obs?.site(l, "ffn_in", xb, T, H);
      this.matmul(xb, T, lw.gate, gate);
      this.matmul(xb, T, lw.up, upv);
      for (let i = 0; i < T * F; i++) {
        const g = gate[i]!;
        gate[i] = (g / (1 + Math.exp(-g))) * upv[i]!;
      }
      obs?.site(l, "ffn_down_in", gate, T, F);
      this.matmul(gate, T, lw.down, delta);
      for (let i = 0; i < T * H; i++) x[i]! += delta[i]!;
      if (obs?.blockCosines) {
        for (let t = 0; t < T; t++) cosines[t] = cosine(residIn, x, t * H, H);
        obs.blockCosines(l, cosines);
      }
    }
    rmsNormRows(xb, x, this.outputNorm, T, H, c.rmsNormEps);
    obs?.site(c.numLayers, "output_in", xb, T, H);
    if (!opts.logits) return null;
    const logits = new Float32Array(T * c.vocabSize);
    this.matmul(xb, T, this.output, logits);
    return logits;
  }
}

function rmsNormRows(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  T: number,
  n: number,
  eps: number,
): void {
  for (let t = 0; t < T; t++) {
    const o = t * n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i]! * x[o + i]!;
    const s = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out[o + i] = x[o + i]! * s * w[i]!;
  }
}

function ropeTables(T: number, hd: number, base: number): { cos: Float64Array; sin: Float64Array } {
  const half = hd / 2;
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const theta = t * base ** ((-2 * i) / hd);
      cos[t * half + i] = Math.cos(theta);
      sin[t * half + i] = Math.sin(theta);
    }
  }
  return { cos, sin };
}

function ropeRows(
  x: Float32Array,
  T: number,
  heads: number,
  hd: number,
  cos: Float64Array,
  sin: Float64Array,
  interleaved: boolean,
): void {
  const half = hd / 2;
  const width = heads * hd;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < heads; h++) {
      const head = t * width + h * hd;
      for (let i = 0; i < half; i++) {
        const a = interleaved ? head + 2 * i : head + i;
        const b = interleaved ? a + 1 : a + half;
        const x0 = x[a]!;
        const x1 = x[b]!;
        const cc = cos[t * half + i]!;
        const ss = sin[t * half + i]!;
        x[a] = x0 * cc - x1 * ss;
        x[b] = x0 * ss + x1 * cc;
      }
    }
  }
}

/** Causal GQA with an optional sliding window, as ReferenceModel.attention, for all T queries. */
function causalAttention(
  out: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  T: number,
  c: ModelConfig,
  scores: Float64Array,
): void {
  const hd = c.headDim;
  const group = c.numHeads / c.numKvHeads;
  const qDim = c.numHeads * hd;
  const kvDim = c.numKvHeads * hd;
  const scale = 1 / Math.sqrt(hd);
  for (let pos = 0; pos < T; pos++) {
    const first = c.slidingWindow === null ? 0 : Math.max(0, pos - c.slidingWindow + 1);
    for (let h = 0; h < c.numHeads; h++) {
      const kvOff = Math.floor(h / group) * hd;
      const qOff = pos * qDim + h * hd;
      let max = Number.NEGATIVE_INFINITY;
      for (let p = first; p <= pos; p++) {
        const kOff = p * kvDim + kvOff;
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[qOff + i]! * k[kOff + i]!;
        const s = dot * scale;
        scores[p] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let p = first; p <= pos; p++) {
        const e = Math.exp(scores[p]! - max);
        scores[p] = e;
        sum += e;
      }
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let p = first; p <= pos; p++) acc += scores[p]! * v[p * kvDim + kvOff + i]!;
        out[qOff + i] = acc / sum;
      }
    }
  }
}

function cosine(a: Float32Array, b: Float32Array, off: number, n: number): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    ab += a[off + i]! * b[off + i]!;
    aa += a[off + i]! * a[off + i]!;
    bb += b[off + i]! * b[off + i]!;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 1;
}

/**
 * Logits computed once (e.g. the original model's, on held-out text) played back as a SyncLogits in
 * the same sequence order, so every variant is compared against them without rerunning the model.
 */
export function recordedLogits(
  forward: BatchedForward,
  sequences: readonly (readonly number[])[],
): SyncLogits<{ seq: number; t: number }> {
  const vocab = forward.config.vocabSize;
  const rows = sequences.map((s) => forward.run(s, { logits: true })!);
  let next = 0;
  return {
    newState: () => ({ seq: next++ % rows.length, t: 0 }),
    forward: (state, tokenId) => {
      const seq = sequences[state.seq]!;
      if (seq[state.t] !== tokenId) throw new Error("recordedLogits: played back out of order");
      const row = rows[state.seq]!.subarray(state.t * vocab, (state.t + 1) * vocab);
      state.t++;
      return row;
    },
  };
}
