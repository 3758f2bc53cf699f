/// <reference types="@webgpu/types" />
/**
 * The WebGPU inference engine: the WASM engine's forward pass (src/runtime/wasm/engine.ts), op for op,
 * in our WGSL kernels (src/kernels/webgpu). Weights are streamed into one GPU buffer and read in place
 * (packed int4 linear layers, int8 or int4 embeddings and head), activations stay f32, the KV cache is
 * fp16 (default) or f32.
 *
 * Per pass (one decode token, or up to `block` prompt tokens): one command encoder, one compute pass,
 * one submit: embed, then per layer rmsnorm, q / k / v matvecs into one fused row (+ biases), rope and
 * the K/V store, attention, Wo with the residual add fused in, rmsnorm, gate and up with SwiGLU fused
 * in, Wdown with the residual add, then the last row's final norm and the head. Only the logits are
 * read back (`forward` / `prefill`), or only the argmax (`forwardGreedy` / `prefillGreedy`: 4 bytes).
 * Prompt blocks use matmul variants of the matvec kernels (each weight word decoded once for all rows).
 *
 * Like WasmEngine, one engine holds one KV cache and runs one sequence at a time: `newState` retires the
 * previous state. Calls are async and must not overlap (an overlapping call throws).
 */

import type { ModelConfig } from "../../format/model.ts";
import type { WeightEntry, WeightTable } from "../../format/weights.ts";
import { BufferUsage, MAP_READ, type WebGpuDevice, WebGpuError } from "../../kernels/webgpu/device.ts";
import {
  type Dispatch,
  MAX_ROWS,
  type MatrixBinding,
  type VectorBinding,
  WebGpuKernels,
} from "../../kernels/webgpu/kernels.ts";
import {
  checkAppend,
  checkState as checkSequence,
  checkStateSize,
  contextSizeFor,
  EngineSequence,
  EngineStateError,
  type LoadProgress,
  prefillBlockFor,
} from "../engine-core.ts";
import type { LogitsModel } from "../generate.ts";
import { bindWeights } from "../weight-bindings.ts";
import { loadWeightsToGpu } from "./load-weights.ts";

export interface WebGpuEngineOptions {
  /** KV cache storage: fp16 (default) or f32. */
  kvCache?: "f16" | "f32";
  /** Tokens the KV cache holds (default: the model's context, at most 2048). */
  contextSize?: number;
  /** Prompt tokens per pass, 1..16 (default 16). */
  prefillBlock?: number;
  onProgress?: (p: LoadProgress) => void;
}

/** One sequence on a WebGpuEngine. */
export class WebGpuState extends EngineSequence<WebGpuEngine> {}

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

export class WebGpuEngine implements LogitsModel<WebGpuState> {
  readonly config: ModelConfig;
  readonly contextSize: number;
  readonly kvCache: "f16" | "f32";
  /** Tokens per prefill pass. */
  readonly block: number;
  readonly gpu: WebGpuDevice;
  private readonly k: WebGpuKernels;
  private readonly owned: GPUBuffer[] = [];
  private generation = 0;
  private busy = false;
  private destroyed = false;
  /** Dispatches of one pass through the layers (embedding included), for 1 row and for `block` rows. */
  private decodePlan: Dispatch[] = [];
  private blockPlan: Dispatch[] = [];
  /** Final norm of the last row + head. */
  private headPlan: Dispatch[] = [];
  private argmaxOp: Dispatch | null = null;
  private logits!: GPUBuffer;
  private argmaxOut!: GPUBuffer;
  private logitsStaging!: GPUBuffer;
  private argmaxStaging!: GPUBuffer;
  private allocated = 0;

  private constructor(gpu: WebGpuDevice, table: WeightTable, opts: WebGpuEngineOptions) {
    const c = table.config;
    this.gpu = gpu;
    this.config = c;
    this.k = new WebGpuKernels(gpu);
    this.kvCache = opts.kvCache ?? "f16";
    this.contextSize = contextSizeFor(c, opts.contextSize);
    this.block = prefillBlockFor(opts.prefillBlock, MAX_ROWS, this.contextSize);
    if (c.headDim % 2 !== 0 || c.ropeDim % 2 !== 0)
      throw new Error("the WebGPU engine needs even head/rope dims");
  }

  /** Streams the weights into a GPU buffer and builds the engine (pipelines compile here). */
  static async load(
    gpu: WebGpuDevice,
    table: WeightTable,
    weights: ReadableStream<Uint8Array>,
    opts: WebGpuEngineOptions = {},
  ): Promise<WebGpuEngine> {
    const e = new WebGpuEngine(gpu, table, opts);
    const w = await loadWeightsToGpu(gpu, table, weights, opts.onProgress);
    e.owned.push(w.buffer);
    e.allocated += w.buffer.size;
    try {
      await gpu.validated("building the WebGPU engine", () => e.build(table, w.buffer, w.headers));
    } catch (err) {
      e.destroy();
      throw err;
    }
    return e;
  }

  private alloc(bytes: number, usage: number, label: string): GPUBuffer {
    const b = this.gpu.buffer(bytes, usage, label);
    this.owned.push(b);
    this.allocated += b.size;
    return b;
  }

  private f32Rows(rows: number, stride: number, label: string): GPUBuffer {
    // zero-initialized by WebGPU: padding columns stay 0, which the matvecs rely on
    return this.alloc(
      rows * stride * 4,
      BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST,
      label,
    );
  }

  private async build(table: WeightTable, weights: GPUBuffer, headers: ReadonlyMap<string, Uint8Array>) {
    const c = this.config;
    const k = this.k;
    const matrix = (e: WeightEntry): MatrixBinding => {
      const m = k.matrix(weights, e.offset, headers.get(e.name)!);
      if (m.format !== e.encoding.kind)
        throw new Error(`${e.name}: blob is ${m.format}, table says ${e.encoding.kind}`);
      const [rows, cols] = [e.shape[0], e.shape[1] ?? 1];
      if (m.N !== rows || m.K !== cols)
        throw new Error(`${e.name}: blob is [${m.N}, ${m.K}], table says [${e.shape}]`);
      return m;
    };
    const { layers, embedding, head, outputNorm } = bindWeights<VectorBinding, MatrixBinding, MatrixBinding>(
      table,
      {
        vector: (e) => k.vector(weights, e.offset, e.bytes / 4),
        int4: matrix,
        matrix,
      },
    );

    const l0 = layers[0]!;
    const B = this.block;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const xStride = roundUp(Math.max(embedding.kPadded, c.hiddenSize), 4);
    const xbStride = Math.max(l0.wq.kPadded, l0.wGate.kPadded);
    const qkvStride = roundUp(qDim + 2 * kvDim, 4);
    const attStride = Math.max(l0.wo.kPadded, roundUp(qDim, 4));
    const hbStride = Math.max(l0.wDown.kPadded, roundUp(c.intermediateSize, 4));
    const x = this.f32Rows(B, xStride, "x");
    const xb = this.f32Rows(B, xbStride, "xb");
    const qkv = this.f32Rows(B, qkvStride, "qkv");
    const att = this.f32Rows(B, attStride, "att");
    const hb = this.f32Rows(B, hbStride, "hb");
    const headIn = this.f32Rows(1, head.kPadded, "head in");
    this.logits = this.f32Rows(1, c.vocabSize, "logits");
    this.argmaxOut = this.f32Rows(1, 4, "argmax");
    this.logitsStaging = this.alloc(
      c.vocabSize * 4,
      BufferUsage.MAP_READ | BufferUsage.COPY_DST,
      "logits out",
    );
    this.argmaxStaging = this.alloc(16, BufferUsage.MAP_READ | BufferUsage.COPY_DST, "argmax out");

    // Rope table [ctx][ropeDim / 2] (cos, sin), angles in f64 exactly like the wasm kernels' rope_table.
    const half = c.ropeDim / 2;
    const ctx = this.contextSize;
    const rope = new Float32Array(ctx * half * 2);
    for (let p = 0; p < ctx; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * c.ropeTheta ** (-(2 * i) / c.ropeDim);
        rope[(p * half + i) * 2] = Math.cos(a);
        rope[(p * half + i) * 2 + 1] = Math.sin(a);
      }
    }
    const ropeTable = this.alloc(rope.byteLength, BufferUsage.STORAGE | BufferUsage.COPY_DST, "rope");
    this.gpu.write(ropeTable, 0, rope);
    const cacheBytes = 2 * ctx * kvDim * (this.kvCache === "f16" ? 2 : 4);
    if (cacheBytes > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new WebGpuError(`a layer's KV cache (${cacheBytes} bytes) exceeds the storage binding limit`);
    }
    const caches = layers.map((_, l) =>
      this.alloc(cacheBytes, BufferUsage.STORAGE | BufferUsage.COPY_SRC, `kv cache ${l}`),
    );

    const plan = async (maxRows: number): Promise<Dispatch[]> => {
      const ops: Dispatch[] = [await k.embed(embedding, x, xStride)];
      for (let l = 0; l < c.numLayers; l++) {
        const w = layers[l]!;
        const into = (yOff: number, bias: VectorBinding | null) => ({
          maxRows,
          yStride: qkvStride,
          yOff,
          ...(bias ? { bias } : {}),
        });
        ops.push(
          await k.rmsnorm(w.attnNorm, x, xStride, xb, xbStride, c.rmsNormEps, { label: `attn norm ${l}` }),
          await k.matvec(w.wq, xb, xbStride, qkv, { ...into(0, w.bq), label: `q ${l}` }),
          await k.matvec(w.wk, xb, xbStride, qkv, { ...into(qDim, w.bk), label: `k ${l}` }),
          await k.matvec(w.wv, xb, xbStride, qkv, { ...into(qDim + kvDim, w.bv), label: `v ${l}` }),
          await k.ropeKv(
            {
              nHeads: c.numHeads,
              nKvHeads: c.numKvHeads,
              headDim: c.headDim,
              ropeDim: c.ropeDim,
              neox: c.ropeStyle === "neox",
              stride: qkvStride,
              kOff: qDim,
              vOff: qDim + kvDim,
              ctx,
              kv: this.kvCache,
            },
            ropeTable,
            qkv,
            caches[l]!,
            `rope+kv ${l}`,
          ),
          await k.attention(
            {
              nHeads: c.numHeads,
              nKvHeads: c.numKvHeads,
              headDim: c.headDim,
              stride: qkvStride,
              ctx,
              window: c.slidingWindow,
              scale: 1 / Math.sqrt(c.headDim),
              outStride: attStride,
              kv: this.kvCache,
            },
            qkv,
            caches[l]!,
            att,
            `attention ${l}`,
          ),
          await k.matvec(w.wo, att, attStride, x, {
            maxRows,
            yStride: xStride,
            epilogue: "add",
            label: `o ${l}`,
          }),
          await k.rmsnorm(w.ffnNorm, x, xStride, xb, xbStride, c.rmsNormEps, { label: `ffn norm ${l}` }),
          await k.matvec(w.wGate, xb, xbStride, hb, {
            maxRows,
            yStride: hbStride,
            epilogue: "swiglu",
            w2: w.wUp,
            label: `gate/up ${l}`,
          }),
          await k.matvec(w.wDown, hb, hbStride, x, {
            maxRows,
            yStride: xStride,
            epilogue: "add",
            label: `down ${l}`,
          }),
        );
      }
      return ops;
    };
    this.decodePlan = await plan(1);
    this.blockPlan = B > 1 ? await plan(B) : this.decodePlan;
    this.headPlan = [
      await k.rmsnorm(outputNorm, x, xStride, headIn, head.kPadded, c.rmsNormEps, {
        lastOnly: true,
        label: "output norm",
      }),
      await k.matvec(head, headIn, head.kPadded, this.logits, { rows: 1, label: "head" }),
    ];
    this.argmaxOp = await k.argmax(this.logits, c.vocabSize, this.argmaxOut);
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  get maxContext(): number {
    return this.contextSize;
  }

  /** GPU memory this engine allocated (weights, activations, KV cache), bytes. */
  get gpuBytes(): number {
    return this.allocated;
  }

  /** Dispatches per decode token (for logs and the bench). */
  get dispatchesPerToken(): number {
    return this.decodePlan.length + this.headPlan.length;
  }

  newState(maxTokens: number): WebGpuState {
    checkStateSize(maxTokens, this.contextSize);
    return new WebGpuState(this, maxTokens, ++this.generation);
  }

  async prefill(state: WebGpuState, tokens: readonly number[]): Promise<Float32Array> {
    return (await this.run(state, tokens, "logits")) as Float32Array;
  }

  async forward(state: WebGpuState, tokenId: number): Promise<Float32Array> {
    return (await this.run(state, [tokenId], "logits")) as Float32Array;
  }

  /** prefill, but returns only the argmax of the last logits (computed on the GPU; 4 bytes read back). */
  async prefillGreedy(state: WebGpuState, tokens: readonly number[]): Promise<number> {
    return (await this.run(state, tokens, "argmax")) as number;
  }

  /** forward, but returns only the argmax of the logits (computed on the GPU; 4 bytes read back). */
  async forwardGreedy(state: WebGpuState, tokenId: number): Promise<number> {
    return (await this.run(state, [tokenId], "argmax")) as number;
  }

  /**
   * Speculative verification (same contract as WasmEngine.verify): appends `tokens` and returns the
   * logits after each. Runs them as sequential decode steps (one submit and read-back each), so every
   * row is exactly a `forward` step; a batched verify pass would need a per-row head in the plans.
   */
  async verify(state: WebGpuState, tokens: readonly number[]): Promise<Float32Array[]> {
    if (state.length + tokens.length > state.capacity) {
      throw new RangeError(
        `${tokens.length} tokens do not fit: the state holds ${state.length} of ${state.capacity}`,
      );
    }
    const out: Float32Array[] = [];
    for (const t of tokens) out.push(await this.forward(state, t));
    return out;
  }

  /** Shortens the sequence to `length` tokens; KV rows past it are overwritten by later passes. */
  rollback(state: WebGpuState, length: number): void {
    this.checkState(state);
    if (!Number.isInteger(length) || length < 0 || length > state.length) {
      throw new RangeError(`rollback to ${length}: the state holds ${state.length} tokens`);
    }
    state.length = length;
  }

  /** Frees this engine's GPU buffers (not the device, which the caller owns). */
  destroy(): void {
    this.destroyed = true;
    for (const b of this.owned.splice(0)) b.destroy();
    this.k.destroy();
    this.decodePlan = [];
    this.blockPlan = [];
    this.headPlan = [];
    this.argmaxOp = null;
  }

  private checkState(state: WebGpuState): void {
    if (this.destroyed) throw new EngineStateError("this engine was destroyed");
    checkSequence(state, this, this.generation);
  }

  private async run(
    state: WebGpuState,
    tokens: readonly number[],
    want: "logits" | "argmax",
  ): Promise<Float32Array | number> {
    this.checkState(state);
    const n = this.config.vocabSize;
    checkAppend(state, tokens, n);
    if (this.busy) throw new EngineStateError("another call on this engine is still running");
    this.busy = true;
    try {
      const dev = this.gpu.device;
      for (let i = 0; i < tokens.length; i += this.block) {
        const chunk = tokens.slice(i, i + this.block);
        const last = i + this.block >= tokens.length;
        const rows = chunk.length;
        this.k.writeStep(this.k.step, { pos0: state.length, rows, tokens: chunk });
        const enc = dev.createCommandEncoder();
        const ops = rows === 1 ? this.decodePlan : this.blockPlan;
        const tail = last ? (want === "argmax" ? [...this.headPlan, this.argmaxOp!] : this.headPlan) : [];
        this.k.encode(enc, [...ops, ...tail], rows);
        if (last) {
          if (want === "logits") enc.copyBufferToBuffer(this.logits, 0, this.logitsStaging, 0, n * 4);
          else enc.copyBufferToBuffer(this.argmaxOut, 0, this.argmaxStaging, 0, 4);
        }
        dev.queue.submit([enc.finish()]);
        state.length += rows;
      }
      const staging = want === "logits" ? this.logitsStaging : this.argmaxStaging;
      await staging.mapAsync(MAP_READ, 0, want === "logits" ? n * 4 : 4);
      try {
        const bytes = staging.getMappedRange(0, want === "logits" ? n * 4 : 4);
        if (want === "logits") return new Float32Array(bytes.slice(0));
        const idx = new Uint32Array(bytes)[0]!;
        return idx === 0xffffffff ? 0 : idx;
      } finally {
        staging.unmap();
      }
    } finally {
      this.busy = false;
    }
  }
}
