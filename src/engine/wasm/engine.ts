/**
 * The WASM-SIMD inference engine: a packed model's weights live in one WebAssembly.Memory (streamed in
 * by loadWeights, used in place), activations and the KV cache beside them, and every op of the
 * forward pass runs in our kernels. Same math as src/engine/reference (the oracle it is tested against),
 * with int4 weights, int8/int4 embeddings and head, and an fp16 or int8 KV cache.
 *
 * One engine holds one KV cache and runs one sequence at a time: `newState` starts a new sequence and
 * retires the previous state (using a retired state throws). The API layer queues requests per engine.
 */
import type { WeightTable } from "../../format/weights.ts";
import type { Int4Tensor, Int8Tensor, Q8Activations, WasmKernels } from "../../kernels/wasm/index.ts";
import type { InferenceState, LogitsModel } from "../generate.ts";
import { type ModelConfig, TensorNames } from "../model.ts";
import { type LoadProgress, loadWeights } from "./load-weights.ts";

export interface WasmEngineOptions {
  /** KV cache storage: fp16 (default) or int8 with a scale per (position, kv head). */
  kvCache?: "f16" | "q8";
  /** int4 matvecs on activations quantized to int8 per 32-block (default, faster) or on fp32. */
  activations?: "q8" | "f32";
  /** Tokens the KV cache holds (default: the model's context, at most 2048). */
  contextSize?: number;
  onProgress?: (p: LoadProgress) => void;
}

type Matrix = { kind: "int4"; t: Int4Tensor } | { kind: "int8"; t: Int8Tensor };

interface LayerWeights {
  attnNorm: number;
  ffnNorm: number;
  wq: Int4Tensor;
  wk: Int4Tensor;
  wv: Int4Tensor;
  wo: Int4Tensor;
  wGate: Int4Tensor;
  wUp: Int4Tensor;
  wDown: Int4Tensor;
  /** 0 when the model has no q/k/v biases. */
  bq: number;
  bk: number;
  bv: number;
}

/** One sequence on a WasmEngine. */
export class WasmState implements InferenceState {
  length = 0;
  constructor(
    readonly owner: WasmEngine,
    readonly capacity: number,
    readonly generation: number,
  ) {}
}

export class EngineStateError extends Error {
  override readonly name = "EngineStateError";
}

const roundUp32 = (n: number) => Math.ceil(n / 32) * 32;

export class WasmEngine implements LogitsModel<WasmState> {
  readonly config: ModelConfig;
  readonly contextSize: number;
  readonly kvCache: "f16" | "q8";
  readonly activations: "q8" | "f32";
  private readonly k: WasmKernels;
  private readonly layers: LayerWeights[] = [];
  private readonly embedding: Matrix;
  private readonly head: Matrix;
  private readonly outputNorm: number;
  private generation = 0;
  // Activation buffers (byte offsets in wasm memory), zero-padded to what their consumers read.
  private readonly x: number;
  private readonly xb: number;
  private readonly q: number;
  private readonly kv: { k: number; v: number };
  private readonly att: number;
  private readonly delta: number;
  private readonly gate: number;
  private readonly up: number;
  private readonly hb: number;
  private readonly logits: number;
  private readonly ropeCos: number;
  private readonly ropeSin: number;
  private readonly scores: number;
  private readonly q8 = new Map<number, Q8Activations>();
  /** Per layer: K and V caches, and for q8 their per-(position, kv head) scales. */
  private readonly cache: { k: number; v: number; kScale: number; vScale: number }[] = [];

  private constructor(kernels: WasmKernels, table: WeightTable, base: number, opts: WasmEngineOptions) {
    const c = table.config;
    this.config = c;
    this.k = kernels;
    this.kvCache = opts.kvCache ?? "f16";
    this.activations = opts.activations ?? "q8";
    this.contextSize = opts.contextSize ?? Math.min(c.maxContext, 2048);
    if (!Number.isInteger(this.contextSize) || this.contextSize < 1 || this.contextSize > c.maxContext) {
      throw new RangeError(`contextSize must be an integer in 1..${c.maxContext}, got ${opts.contextSize}`);
    }

    const entries = new Map(table.tensors.map((t) => [t.name, t]));
    const at = (name: string) => {
      const e = entries.get(name);
      if (!e) throw new Error(`weight table has no ${name}`);
      return { e, ptr: base + e.offset };
    };
    const int4 = (name: string): Int4Tensor => {
      const { e, ptr } = at(name);
      if (e.encoding.kind !== "int4")
        throw new Error(`${name}: expected int4, table says ${e.encoding.kind}`);
      return kernels.int4At(ptr);
    };
    const vector = (name: string): number => {
      const { e, ptr } = at(name);
      if (e.encoding.kind !== "f32") throw new Error(`${name}: expected f32, table says ${e.encoding.kind}`);
      return ptr;
    };
    const matrix = (name: string): Matrix => {
      const { e, ptr } = at(name);
      if (e.encoding.kind === "int4") return { kind: "int4", t: kernels.int4At(ptr) };
      if (e.encoding.kind === "int8") return { kind: "int8", t: kernels.int8At(ptr) };
      throw new Error(`${name}: f32 matrices are not supported by the wasm engine`);
    };

    for (let l = 0; l < c.numLayers; l++) {
      this.layers.push({
        attnNorm: vector(TensorNames.attnNorm(l)),
        ffnNorm: vector(TensorNames.ffnNorm(l)),
        wq: int4(TensorNames.attnQ(l)),
        wk: int4(TensorNames.attnK(l)),
        wv: int4(TensorNames.attnV(l)),
        wo: int4(TensorNames.attnOutput(l)),
        wGate: int4(TensorNames.ffnGate(l)),
        wUp: int4(TensorNames.ffnUp(l)),
        wDown: int4(TensorNames.ffnDown(l)),
        bq: c.attentionBias ? vector(TensorNames.attnQBias(l)) : 0,
        bk: c.attentionBias ? vector(TensorNames.attnKBias(l)) : 0,
        bv: c.attentionBias ? vector(TensorNames.attnVBias(l)) : 0,
      });
    }
    this.embedding = matrix(TensorNames.tokenEmbedding);
    this.head = c.tiedEmbeddings ? this.embedding : matrix(TensorNames.output);
    this.outputNorm = vector(TensorNames.outputNorm);

    // Padded widths: every buffer is as long as the widest kPadded that reads it, zeros beyond.
    const l0 = this.layers[0]!;
    const hiddenPad = Math.max(
      l0.wq.kPadded,
      l0.wGate.kPadded,
      this.head.t.kPadded,
      this.embedding.t.kPadded,
      roundUp32(c.hiddenSize),
    );
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const f32 = (n: number) => kernels.allocZeroed(n * 4);
    this.x = f32(hiddenPad);
    this.xb = f32(hiddenPad);
    this.delta = f32(hiddenPad);
    this.q = f32(qDim);
    this.kv = { k: f32(kvDim), v: f32(kvDim) };
    this.att = f32(Math.max(l0.wo.kPadded, qDim));
    this.gate = f32(c.intermediateSize);
    this.up = f32(c.intermediateSize);
    this.hb = f32(Math.max(l0.wDown.kPadded, c.intermediateSize));
    this.logits = f32(c.vocabSize);
    this.ropeCos = f32(c.headDim / 2);
    this.ropeSin = f32(c.headDim / 2);
    this.scores = f32(this.contextSize);
    for (const kp of new Set([
      l0.wq.kPadded,
      l0.wGate.kPadded,
      l0.wo.kPadded,
      l0.wDown.kPadded,
      this.head.t.kPadded,
    ])) {
      if (kp % 32 === 0) this.q8.set(kp, kernels.allocQ8(kp));
    }
    const cells = this.contextSize * kvDim;
    for (let l = 0; l < c.numLayers; l++) {
      if (this.kvCache === "f16") {
        this.cache.push({ k: kernels.alloc(cells * 2), v: kernels.alloc(cells * 2), kScale: 0, vScale: 0 });
      } else {
        const scales = this.contextSize * c.numKvHeads * 4;
        this.cache.push({
          k: kernels.alloc(cells),
          v: kernels.alloc(cells),
          kScale: kernels.alloc(scales),
          vScale: kernels.alloc(scales),
        });
      }
    }
  }

  /** Streams the weights into a fresh kernels instance's memory and builds the engine. */
  static async load(
    kernels: WasmKernels,
    table: WeightTable,
    weights: ReadableStream<Uint8Array>,
    opts: WasmEngineOptions = {},
  ): Promise<WasmEngine> {
    const base = await loadWeights(kernels, table, weights, opts.onProgress);
    return new WasmEngine(kernels, table, base, opts);
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get maxContext(): number {
    return this.contextSize;
  }

  /** WebAssembly memory in use (it never shrinks, so this is also the peak). */
  get memoryBytes(): number {
    return this.k.memory.buffer.byteLength;
  }

  newState(maxTokens: number): WasmState {
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > this.contextSize) {
      throw new RangeError(`state size must be an integer in 1..${this.contextSize}, got ${maxTokens}`);
    }
    return new WasmState(this, maxTokens, ++this.generation);
  }

  prefill(state: WasmState, tokens: readonly number[]): Float32Array {
    this.checkState(state);
    if (tokens.length === 0) throw new RangeError("prefill needs at least one token");
    for (const t of tokens) this.checkToken(t);
    if (state.length + tokens.length > state.capacity) {
      throw new RangeError(
        `${tokens.length} tokens do not fit: the state holds ${state.length} of ${state.capacity}`,
      );
    }
    for (const [i, t] of tokens.entries()) this.step(state, t, i === tokens.length - 1);
    return this.k.f32(this.logits, this.config.vocabSize).slice();
  }

  forward(state: WasmState, tokenId: number): Float32Array {
    this.checkState(state);
    this.checkToken(tokenId);
    if (state.length >= state.capacity) throw new RangeError(`the state is full (${state.capacity} tokens)`);
    this.step(state, tokenId, true);
    return this.k.f32(this.logits, this.config.vocabSize).slice();
  }

  private checkState(state: WasmState): void {
    if (state.owner !== this) throw new EngineStateError("this state belongs to another engine");
    if (state.generation !== this.generation) {
      throw new EngineStateError("this state was retired: the engine has started another sequence since");
    }
  }

  private checkToken(tokenId: number): void {
    const n = this.config.vocabSize;
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= n) {
      throw new RangeError(`token id ${tokenId} is outside the vocabulary (0..${n - 1})`);
    }
  }

  /** y = W x for an int4 weight, through Q8 activations or fp32 per the engine's option. */
  private matvec(w: Int4Tensor, x: number, y: number, quantized: boolean): void {
    if (this.activations === "q8") {
      const q8 = this.q8.get(w.kPadded)!;
      if (!quantized) this.k.quantizeQ8(x, q8);
      this.k.matvecInt4Q8(w, q8, y);
    } else this.k.matvecInt4(w, x, y);
  }

  private step(state: WasmState, tokenId: number, wantLogits: boolean): void {
    const c = this.config;
    const k = this.k;
    const pos = state.length;
    const hd = c.headDim;
    const kvDim = c.numKvHeads * hd;

    if (this.embedding.kind === "int4") k.embedRowInt4(this.embedding.t, tokenId, this.x);
    else k.embedRowInt8(this.embedding.t, tokenId, this.x);
    k.ropeTable(pos, c.ropeTheta, c.ropeDim, this.ropeCos, this.ropeSin);
    const first = c.slidingWindow === null ? 0 : Math.max(0, pos - c.slidingWindow + 1);
    const scale = 1 / Math.sqrt(hd);

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.layers[l]!;
      const cache = this.cache[l]!;

      k.rmsnorm(this.x, w.attnNorm, this.xb, c.hiddenSize, c.rmsNormEps);
      this.matvec(w.wq, this.xb, this.q, false);
      this.matvec(w.wk, this.xb, this.kv.k, true); // q, k, v share one quantized input
      this.matvec(w.wv, this.xb, this.kv.v, true);
      if (w.bq) {
        k.addF32(this.q, w.bq, c.numHeads * hd);
        k.addF32(this.kv.k, w.bk, kvDim);
        k.addF32(this.kv.v, w.bv, kvDim);
      }
      k.rope(this.q, c.numHeads, hd, c.ropeDim, this.ropeCos, this.ropeSin, c.ropeStyle);
      k.rope(this.kv.k, c.numKvHeads, hd, c.ropeDim, this.ropeCos, this.ropeSin, c.ropeStyle);
      if (this.kvCache === "f16") {
        k.kvStoreF16(this.kv.k, cache.k + pos * kvDim * 2, kvDim);
        k.kvStoreF16(this.kv.v, cache.v + pos * kvDim * 2, kvDim);
        k.attentionF16(
          this.q,
          cache.k,
          cache.v,
          this.att,
          c.numHeads,
          c.numKvHeads,
          hd,
          first,
          pos - first + 1,
          scale,
          this.scores,
        );
      } else {
        k.kvStoreQ8(
          this.kv.k,
          cache.k + pos * kvDim,
          cache.kScale + pos * c.numKvHeads * 4,
          c.numKvHeads,
          hd,
        );
        k.kvStoreQ8(
          this.kv.v,
          cache.v + pos * kvDim,
          cache.vScale + pos * c.numKvHeads * 4,
          c.numKvHeads,
          hd,
        );
        k.attentionQ8(
          this.q,
          cache.k,
          cache.kScale,
          cache.v,
          cache.vScale,
          this.att,
          c.numHeads,
          c.numKvHeads,
          hd,
          first,
          pos - first + 1,
          scale,
          this.scores,
        );
      }
      this.matvec(w.wo, this.att, this.delta, false);
      k.addF32(this.x, this.delta, c.hiddenSize);

      k.rmsnorm(this.x, w.ffnNorm, this.xb, c.hiddenSize, c.rmsNormEps);
      this.matvec(w.wGate, this.xb, this.gate, false);
      this.matvec(w.wUp, this.xb, this.up, true);
      k.siluGate(this.gate, this.up, this.hb, c.intermediateSize);
      this.matvec(w.wDown, this.hb, this.delta, false);
      k.addF32(this.x, this.delta, c.hiddenSize);
    }
    state.length = pos + 1;
    if (!wantLogits) return;

    k.rmsnorm(this.x, this.outputNorm, this.xb, c.hiddenSize, c.rmsNormEps);
    if (this.head.kind === "int4") this.matvec(this.head.t, this.xb, this.logits, false);
    else {
      const q8 = this.q8.get(this.head.t.kPadded)!;
      k.quantizeQ8(this.xb, q8);
      k.matvecInt8Q8(this.head.t, q8, this.logits);
    }
  }
}
