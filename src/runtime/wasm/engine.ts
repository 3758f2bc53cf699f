/**
 * The WASM-SIMD inference engine: a packed model's weights live in one WebAssembly.Memory (streamed in
 * by loadWeights, used in place), activations and the KV cache beside them, and every op of the
 * forward pass runs in our kernels. Same math as src/model/reference (the oracle it is tested against),
 * with int4 weights, int8/int4 embeddings and head, and an fp16 or int8 KV cache.
 *
 * One engine holds one KV cache and runs one sequence at a time: `newState` starts a new sequence and
 * retires the previous state (using a retired state throws). The API layer queues requests per engine.
 *
 * Prefill runs the prompt in blocks of up to PREFILL_BLOCK tokens, layer by layer: each weight matrix
 * is applied to every token of the block back to back, so it is read from memory once per block and
 * then served from cache (a 110M model's layers do not fit in cache; one matrix does). Attention is
 * causal per token, in one call for the block's rows (each KV block widened once for all of them).
 * With q8 activations every token goes through exactly the ops a decode step would run, so prefill's
 * results are bit-identical to feeding the prompt one token at a time.
 */

import type { ModelConfig } from "../../format/model.ts";
import type { HeadBatchShape } from "../../format/speculative.ts";
import type { WeightTable } from "../../format/weights.ts";
import {
  type Int4Tensor,
  type Int8Tensor,
  type Q8Batch,
  q8Row,
  type WasmKernels,
} from "../../kernels/wasm/index.ts";
import {
  checkAppend,
  checkState as checkSequence,
  checkStateSize,
  EngineSequence,
  EngineStateError,
  type LoadProgress,
} from "../engine-core.ts";
import type { LogitsModel } from "../generate.ts";
import { PREFILL_BLOCK, planWasmMemory, type RowsPlan } from "../memory-plan.ts";
import type { KvSnapshot } from "../prefix-cache.ts";
import type { VerifiedRows } from "../speculative.ts";
import { bindWeights, type LayerWeights as SharedLayerWeights } from "../weight-bindings.ts";
import { loadWeights } from "./load-weights.ts";

export interface WasmEngineOptions {
  /** KV cache storage: fp16 (default) or int8 with a scale per (position, kv head). */
  kvCache?: "f16" | "q8";
  /** int4 matvecs on activations quantized to int8 per 32-block (default, faster) or on fp32. */
  activations?: "q8" | "f32";
  /** Tokens the KV cache holds (default: the model's context, at most 2048). */
  contextSize?: number;
  /**
   * Prompt tokens per pass over the weights, 1..PREFILL_BLOCK (default PREFILL_BLOCK; 1 = token by
   * token). Each costs one row of activation buffers.
   */
  prefillBlock?: number;
  /**
   * Rows of logits one head pass computes, 1..prefillBlock (default HEAD_ROWS, at most the block):
   * verifyRows runs the final norm and head of up to this many rows as one batched matmul (each weight
   * chunk unpacked once for all rows). Each costs a row of vocabSize floats of wasm memory.
   */
  headRows?: number;
  /**
   * Rows the first head pass of a verify covers, 1..headRows (default headRows: a whole verify pass of
   * up to headRows rows at once); rows past it get theirs in passes of up to headRows when asked for.
   */
  headChunk?: number;
  onProgress?: (p: LoadProgress) => void;
}

type Matrix = { kind: "int4"; t: Int4Tensor } | { kind: "int8"; t: Int8Tensor };

export { PREFILL_BLOCK };

/** `rows` fp32 vectors in wasm memory, row i at ptr + i * stride * 4 (zero-padded up to stride). */
interface Rows {
  ptr: number;
  stride: number;
}

const rowAt = (b: Rows, i: number) => b.ptr + i * b.stride * 4;

type LayerWeights = SharedLayerWeights<number, Int4Tensor>;

/** How verifyRows batches heads: the first pass covers `first` rows, later ones up to `rows`. */
export type HeadBatch = HeadBatchShape;

/** VerifiedRows whose logits are computed synchronously. */
export interface SyncVerifiedRows extends VerifiedRows {
  logits(i: number): Float32Array;
}

/** One sequence on a WasmEngine. */
export class WasmState extends EngineSequence<WasmEngine> {}

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
  /** fp32 activations: run batched rows as single-row matvecs (verify must equal decode steps bit for bit). */
  private rowExact = false;
  /** Prompt tokens per prefill pass (`prefillBlock`, at most the context); decode uses row 0. */
  readonly block: number;
  /** verifyRows' head passes (headRows, headChunk). */
  readonly headBatch: HeadBatch;
  /** Entry m: head passes of m rows verifyRows has run on this engine (what a build's estimate prices). */
  private readonly headPasses: number[] = [];
  /** Query rows one multi-row attention call takes (the kernels' scratch bounds it). */
  private readonly attentionBatch: number;
  // Activation rows (wasm memory), zero-padded to what their consumers read: one row per block token.
  private readonly x: Rows;
  private readonly xb: Rows;
  private readonly q: Rows;
  private readonly kv: { k: Rows; v: Rows };
  private readonly att: Rows;
  private readonly delta: Rows;
  private readonly gate: Rows;
  private readonly up: Rows;
  private readonly hb: Rows;
  /** The head's input (final norm of the last token), padded to the head's kPadded. */
  private readonly headIn: number;
  private readonly logits: number;
  private readonly ropeCos: Rows;
  private readonly ropeSin: Rows;
  /** Q8 activation space by kPadded: one batch of `block` rows (matmulInt4Q8 reads them together). */
  private readonly q8 = new Map<number, { batch: Q8Batch; rows: ReturnType<typeof q8Row>[] }>();
  /** Per layer: K and V caches, and for q8 their per-(position, kv head) scales. */
  private readonly cache: { k: number; v: number; kScale: number; vScale: number }[] = [];

  private constructor(kernels: WasmKernels, table: WeightTable, base: number, opts: WasmEngineOptions) {
    const c = table.config;
    this.config = c;
    this.k = kernels;
    // Every buffer below is sized by the memory plan, which the Worker's budget check also reads.
    const plan = planWasmMemory(table, opts);
    this.kvCache = plan.kvCache;
    this.activations = opts.activations ?? "q8";
    this.contextSize = plan.contextSize;

    const bound = bindWeights<number, Int4Tensor, Matrix>(table, {
      vector: (e) => base + e.offset,
      int4: (e) => kernels.int4At(base + e.offset),
      matrix: (e) =>
        e.encoding.kind === "int4"
          ? { kind: "int4", t: kernels.int4At(base + e.offset) }
          : { kind: "int8", t: kernels.int8At(base + e.offset) },
    });
    this.layers.push(...bound.layers);
    this.embedding = bound.embedding;
    this.head = bound.head;
    this.outputNorm = bound.outputNorm;
    const l0 = this.layers[0]!;
    const blobs = {
      wq: l0.wq.kPadded,
      wo: l0.wo.kPadded,
      wGate: l0.wGate.kPadded,
      wDown: l0.wDown.kPadded,
      embedding: this.embedding.t.kPadded,
      head: this.head.t.kPadded,
    };
    for (const [name, kp] of Object.entries(blobs)) {
      const planned = plan.kPadded[name as keyof typeof blobs];
      if (kp !== planned)
        throw new Error(`${name}: blob is ${kp} wide (kPadded), its table entry ${planned}`);
    }

    const B = plan.block;
    this.block = B;
    const first = opts.headChunk ?? plan.headRows;
    if (!Number.isInteger(first) || first < 1 || first > plan.headRows)
      throw new RangeError(`headChunk must be an integer in 1..${plan.headRows} (headRows), got ${first}`);
    this.headBatch = { first, rows: plan.headRows };
    this.attentionBatch = Math.min(B, kernels.maxAttentionRows(c.numHeads, c.numKvHeads, c.headDim));
    const f32 = (n: number) => kernels.allocZeroed(n * 4);
    const rows = (p: RowsPlan): Rows => ({ ptr: f32(p.rows * p.stride), stride: p.stride });
    const r = plan.rows;
    this.x = rows(r.x);
    this.xb = rows(r.xb);
    this.delta = rows(r.delta);
    this.q = rows(r.q);
    this.kv = { k: rows(r.k), v: rows(r.v) };
    this.att = rows(r.att);
    this.gate = rows(r.gate);
    this.up = rows(r.up);
    this.hb = rows(r.hb);
    this.headIn = f32(plan.headIn);
    this.logits = f32(plan.logits);
    this.ropeCos = rows(plan.rope);
    this.ropeSin = rows(plan.rope);
    for (const kp of plan.q8Widths) {
      const batch = kernels.allocQ8Batch(kp, B);
      this.q8.set(kp, { batch, rows: Array.from({ length: B }, (_, i) => q8Row(batch, i)) });
    }
    for (let l = 0; l < c.numLayers; l++) {
      if (this.kvCache === "f16") {
        this.cache.push({
          k: kernels.alloc(plan.cache.kv),
          v: kernels.alloc(plan.cache.kv),
          kScale: 0,
          vScale: 0,
        });
      } else {
        this.cache.push({
          k: kernels.alloc(plan.cache.kv),
          v: kernels.alloc(plan.cache.kv),
          kScale: kernels.alloc(plan.cache.scales),
          vScale: kernels.alloc(plan.cache.scales),
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
    checkStateSize(maxTokens, this.contextSize);
    return new WasmState(this, maxTokens, ++this.generation);
  }

  /**
   * A new sequence that starts with the first `keep` positions of `prev`, whose KV rows are still in
   * place when `prev` is the latest sequence (null otherwise: another sequence may have overwritten
   * them). Throws RangeError when `keep` is past `prev` or over the new state's capacity.
   */
  resumeState(prev: WasmState, maxTokens: number, keep: number): WasmState | null {
    if (prev.owner !== this || prev.generation !== this.generation) return null;
    if (!Number.isInteger(keep) || keep < 0 || keep > prev.length || keep > maxTokens)
      throw new RangeError(
        `resume of ${keep} positions: the last sequence holds ${prev.length}, the new one ${maxTokens}`,
      );
    const state = this.newState(maxTokens);
    state.length = keep;
    return state;
  }

  prefill(state: WasmState, tokens: readonly number[]): Float32Array {
    this.checkState(state);
    checkAppend(state, tokens, this.config.vocabSize);
    for (let i = 0; i < tokens.length; i += this.block) {
      const end = Math.min(tokens.length, i + this.block);
      this.pass(state, tokens.slice(i, end), end === tokens.length);
    }
    return this.k.f32(this.logits, this.config.vocabSize).slice();
  }

  forward(state: WasmState, tokenId: number): Float32Array {
    this.checkState(state);
    checkAppend(state, [tokenId], this.config.vocabSize);
    this.pass(state, [tokenId], true);
    return this.k.f32(this.logits, this.config.vocabSize).slice();
  }

  /**
   * Speculative verification: appends `tokens` (the last sampled token, then the drafts) in batched
   * passes of up to `block` rows and returns the next-token logits after each of them, row i
   * bit-identical to what `forward` would have returned at that position (same single-row ops; with
   * fp32 activations the batched matmul is avoided for that reason). Roll back with `rollback`.
   */
  verify(state: WasmState, tokens: readonly number[]): Float32Array[] {
    const rows = this.verifyRows(state, tokens);
    return Array.from({ length: rows.length }, (_, i) => rows.logits(i));
  }

  /**
   * verify with heads on demand, batched: the layers run for every row now (their hidden states are
   * kept, hiddenSize floats per row); the final norm and head when `logits(i)` is first asked for a
   * row without them, then for row i and the rows after it in one batched pass (`headChunk` rows, by
   * default the engine's headBatch.first, in the first pass of this verify, up to headBatch.rows in
   * later ones). Rows past the first rejected draft in a later chunk cost no head. logits(i) is
   * bit-identical to verify's row i (and to `forward` at that position: the batched head matmul
   * equals one matvec per row), and stays valid after later passes (copied out when computed).
   */
  verifyRows(
    state: WasmState,
    tokens: readonly number[],
    headChunk: number = this.headBatch.first,
  ): SyncVerifiedRows {
    this.checkState(state);
    checkAppend(state, tokens, this.config.vocabSize);
    const maxRows = this.headBatch.rows;
    if (!Number.isInteger(headChunk) || headChunk < 1 || headChunk > maxRows)
      throw new RangeError(`headChunk must be an integer in 1..${maxRows}, got ${headChunk}`);
    const H = this.config.hiddenSize;
    const V = this.config.vocabSize;
    const hidden = new Float32Array(tokens.length * H);
    this.rowExact = true;
    try {
      for (let i = 0; i < tokens.length; i += this.block) {
        const n = Math.min(this.block, tokens.length - i);
        this.pass(state, tokens.slice(i, i + n), false);
        for (let r = 0; r < n; r++) hidden.set(this.k.f32(rowAt(this.x, r), H), (i + r) * H);
      }
    } finally {
      this.rowExact = false;
    }
    const done: (Float32Array | undefined)[] = [];
    let passes = 0;
    return {
      length: tokens.length,
      logits: (i: number) => {
        if (!Number.isInteger(i) || i < 0 || i >= tokens.length)
          throw new RangeError(`verified row ${i} not in 0..${tokens.length - 1}`);
        const row = done[i];
        if (row) return row;
        // Rows i.. without logits yet, as many as this pass takes.
        let n = 1;
        const most = Math.min(passes === 0 ? headChunk : maxRows, tokens.length - i);
        while (n < most && !done[i + n]) n++;
        // x rows 0..n-1 are scratch between passes: the kept hidden states go there for the heads.
        for (let r = 0; r < n; r++)
          this.k.f32(rowAt(this.x, r), H).set(hidden.subarray((i + r) * H, (i + r + 1) * H));
        this.heads(0, n);
        this.headPasses[n] = (this.headPasses[n] ?? 0) + 1;
        for (let r = 0; r < n; r++) done[i + r] = this.k.f32(this.logits + r * V * 4, V).slice();
        passes++;
        return done[i]!;
      },
    };
  }

  /** Entry m: how many head passes of m rows verifyRows has run so far (0 where none; a copy). */
  get verifyHeadPasses(): number[] {
    return Array.from({ length: this.headBatch.rows + 1 }, (_, m) => this.headPasses[m] ?? 0);
  }

  /**
   * Shortens the sequence to `length` tokens (rejected drafts). Nothing is cleared: the KV rows past
   * `length` are overwritten by the next pass, and attention never reads past the current position.
   */
  rollback(state: WasmState, length: number): void {
    this.checkState(state);
    if (!Number.isInteger(length) || length < 0 || length > state.length) {
      throw new RangeError(`rollback to ${length}: the state holds ${state.length} tokens`);
    }
    state.length = length;
  }

  /**
   * One decode step of the self-speculative draft: the same weights with the layers in `skip` left
   * out (no extra memory). Writes KV rows of the kept layers at this position, so a draft must be
   * rolled back and verified before its tokens count.
   */
  forwardSkipping(state: WasmState, tokenId: number, skip: ReadonlySet<number>): Float32Array {
    this.checkState(state);
    checkAppend(state, [tokenId], this.config.vocabSize);
    for (const l of skip) {
      if (!Number.isInteger(l) || l < 0 || l >= this.config.numLayers)
        throw new RangeError(`skip layer ${l} is outside 0..${this.config.numLayers - 1}`);
    }
    this.pass(state, [tokenId], true, skip);
    return this.k.f32(this.logits, this.config.vocabSize).slice();
  }

  /** Bytes of KV cache one position takes over all layers (what a prefix-cache entry costs per token). */
  get kvBytesPerToken(): number {
    return this.kvRowBytes().total * this.config.numLayers;
  }

  /** Copies the KV rows of the first `length` positions out of wasm memory (for a prefix cache). */
  exportKv(state: WasmState, length = state.length): KvSnapshot {
    this.checkState(state);
    if (!Number.isInteger(length) || length < 0 || length > state.length)
      throw new RangeError(`exportKv of ${length} positions: the state holds ${state.length}`);
    const r = this.kvRowBytes();
    const out = new Uint8Array(r.total * length * this.config.numLayers);
    const mem = new Uint8Array(this.k.memory.buffer);
    let o = 0;
    for (const layer of this.cache) {
      for (const [ptr, per] of this.kvParts(layer, r)) {
        out.set(mem.subarray(ptr, ptr + per * length), o);
        o += per * length;
      }
    }
    return { length, bytes: out };
  }

  /**
   * Writes the first `length` positions of a snapshot from `exportKv` (same engine shape and cache
   * kind) into an empty state: the state then holds them without running them.
   */
  importKv(state: WasmState, kv: KvSnapshot, length: number): void {
    this.checkState(state);
    const r = this.kvRowBytes();
    if (state.length !== 0) throw new EngineStateError("importKv needs a fresh state");
    if (!Number.isInteger(length) || length < 0 || length > state.capacity || length > kv.length)
      throw new RangeError(
        `importKv of ${length} positions: the state holds ${state.capacity}, the snapshot ${kv.length}`,
      );
    if (kv.bytes.byteLength !== r.total * kv.length * this.config.numLayers)
      throw new RangeError(
        `importKv: ${kv.bytes.byteLength} bytes is not ${kv.length} positions of this cache`,
      );
    const mem = new Uint8Array(this.k.memory.buffer);
    let o = 0;
    for (const layer of this.cache) {
      for (const [ptr, per] of this.kvParts(layer, r)) {
        mem.set(kv.bytes.subarray(o, o + per * length), ptr);
        o += per * kv.length;
      }
    }
    state.length = length;
  }

  private kvRowBytes(): { row: number; scale: number; total: number } {
    const c = this.config;
    const kvDim = c.numKvHeads * c.headDim;
    const row = this.kvCache === "f16" ? kvDim * 2 : kvDim;
    const scale = this.kvCache === "f16" ? 0 : c.numKvHeads * 4;
    return { row, scale, total: 2 * (row + scale) };
  }

  private kvParts(
    layer: { k: number; v: number; kScale: number; vScale: number },
    r: { row: number; scale: number },
  ): [number, number][] {
    const parts: [number, number][] = [
      [layer.k, r.row],
      [layer.v, r.row],
    ];
    if (r.scale > 0) parts.push([layer.kScale, r.scale], [layer.vScale, r.scale]);
    return parts;
  }

  private checkState(state: WasmState): void {
    checkSequence(state, this, this.generation);
  }

  /**
   * Y = X W^T for `n` rows. q8 activations: per row, quantize (unless `quantized`: q/k/v and gate/up
   * share one quantized input); then matmulInt4Q8 over all rows (each weight chunk decoded once,
   * bit-identical to one matvec per row, so verify rows still equal decode steps) or, for one row or
   * strided output, matvecInt4Q8 per row. fp32 activations: matmulInt4 likewise.
   */
  private linear(w: Int4Tensor, x: Rows, y: Rows, n: number, quantized: boolean): void {
    const k = this.k;
    if (this.activations === "q8") {
      const q8 = this.q8.get(w.kPadded)!;
      if (!quantized) for (let i = 0; i < n; i++) k.quantizeQ8(rowAt(x, i), q8.rows[i]!);
      if (n > 1 && y.stride === w.N) k.matmulInt4Q8(w, q8.batch, y.ptr, n);
      else for (let i = 0; i < n; i++) k.matvecInt4Q8(w, q8.rows[i]!, rowAt(y, i));
    } else if (n > 1 && !this.rowExact && x.stride === w.kPadded && y.stride === w.N)
      k.matmulInt4(w, x.ptr, y.ptr, n);
    else for (let i = 0; i < n; i++) k.matvecInt4(w, rowAt(x, i), rowAt(y, i));
  }

  /**
   * Appends `tokens` (at most `block`) to the sequence; logits of the last one into `logits` if asked
   * (x keeps every row's final hidden state until the next pass). `skip` leaves those layers out entirely (the
   * residual stream passes through; their KV rows are not written): the self-speculative draft.
   */
  private pass(
    state: WasmState,
    tokens: readonly number[],
    wantLogits: boolean,
    skip: ReadonlySet<number> | null = null,
  ): void {
    const c = this.config;
    const k = this.k;
    const n = tokens.length;
    const pos0 = state.length;
    const hd = c.headDim;
    const kvDim = c.numKvHeads * hd;
    const qDim = c.numHeads * hd;
    const scale = 1 / Math.sqrt(hd);
    const { x, xb, q, att, delta, gate, up, hb, ropeCos, ropeSin } = this;
    const kx = this.kv.k;
    const vx = this.kv.v;

    for (let i = 0; i < n; i++) {
      if (this.embedding.kind === "int4") k.embedRowInt4(this.embedding.t, tokens[i]!, rowAt(x, i));
      else k.embedRowInt8(this.embedding.t, tokens[i]!, rowAt(x, i));
      k.ropeTable(pos0 + i, c.ropeTheta, c.ropeDim, rowAt(ropeCos, i), rowAt(ropeSin, i));
    }

    for (let l = 0; l < c.numLayers; l++) {
      if (skip?.has(l)) continue;
      const w = this.layers[l]!;
      const cache = this.cache[l]!;

      for (let i = 0; i < n; i++)
        k.rmsnorm(rowAt(x, i), w.attnNorm, rowAt(xb, i), c.hiddenSize, c.rmsNormEps);
      this.linear(w.wq, xb, q, n, false);
      this.linear(w.wk, xb, kx, n, true); // q, k, v share one quantized input
      this.linear(w.wv, xb, vx, n, true);
      for (let i = 0; i < n; i++) {
        const pos = pos0 + i;
        const qi = rowAt(q, i);
        const ki = rowAt(kx, i);
        const vi = rowAt(vx, i);
        if (w.bq !== null && w.bk !== null && w.bv !== null) {
          k.addF32(qi, w.bq, qDim);
          k.addF32(ki, w.bk, kvDim);
          k.addF32(vi, w.bv, kvDim);
        }
        k.rope(qi, c.numHeads, hd, c.ropeDim, rowAt(ropeCos, i), rowAt(ropeSin, i), c.ropeStyle);
        k.rope(ki, c.numKvHeads, hd, c.ropeDim, rowAt(ropeCos, i), rowAt(ropeSin, i), c.ropeStyle);
        if (this.kvCache === "f16") {
          k.kvStoreF16(ki, cache.k + pos * kvDim * 2, kvDim);
          k.kvStoreF16(vi, cache.v + pos * kvDim * 2, kvDim);
        } else {
          k.kvStoreQ8(ki, cache.k + pos * kvDim, cache.kScale + pos * c.numKvHeads * 4, c.numKvHeads, hd);
          k.kvStoreQ8(vi, cache.v + pos * kvDim, cache.vScale + pos * c.numKvHeads * 4, c.numKvHeads, hd);
        }
      }
      // Causal attention: row i sees positions up to its own (later rows are stored already). Without
      // a sliding window, rows share their cache blocks: one multi-row call (bit-identical per row).
      if (n > 1 && c.slidingWindow === null) this.attentionRows(cache, pos0, n);
      else
        for (let i = 0; i < n; i++) {
          const pos = pos0 + i;
          const first = c.slidingWindow === null ? 0 : Math.max(0, pos - c.slidingWindow + 1);
          const qi = rowAt(q, i);
          const ai = rowAt(att, i);
          if (this.kvCache === "f16") {
            k.attentionF16(
              qi,
              cache.k,
              cache.v,
              ai,
              c.numHeads,
              c.numKvHeads,
              hd,
              first,
              pos - first + 1,
              scale,
            );
          } else {
            k.attentionQ8(
              qi,
              cache.k,
              cache.kScale,
              cache.v,
              cache.vScale,
              ai,
              c.numHeads,
              c.numKvHeads,
              hd,
              first,
              pos - first + 1,
              scale,
            );
          }
        }
      this.linear(w.wo, att, delta, n, false);
      for (let i = 0; i < n; i++) {
        k.addF32(rowAt(x, i), rowAt(delta, i), c.hiddenSize);
        k.rmsnorm(rowAt(x, i), w.ffnNorm, rowAt(xb, i), c.hiddenSize, c.rmsNormEps);
      }
      this.linear(w.wGate, xb, gate, n, false);
      this.linear(w.wUp, xb, up, n, true);
      for (let i = 0; i < n; i++) k.siluGate(rowAt(gate, i), rowAt(up, i), rowAt(hb, i), c.intermediateSize);
      this.linear(w.wDown, hb, delta, n, false);
      for (let i = 0; i < n; i++) k.addF32(rowAt(x, i), rowAt(delta, i), c.hiddenSize);
    }
    state.length = pos0 + n;
    if (wantLogits) this.heads(n - 1, 1);
  }

  /** Attention of rows 0..n-1 of q (positions pos0..pos0 + n - 1, no sliding window) into att. */
  private attentionRows(
    cache: { k: number; v: number; kScale: number; vScale: number },
    pos0: number,
    n: number,
  ): void {
    const c = this.config;
    const k = this.k;
    const scale = 1 / Math.sqrt(c.headDim);
    const { q, att } = this;
    for (let i = 0; i < n; i += this.attentionBatch) {
      const m = Math.min(this.attentionBatch, n - i);
      if (this.kvCache === "f16")
        k.attentionRowsF16(
          rowAt(q, i),
          q.stride,
          cache.k,
          cache.v,
          rowAt(att, i),
          att.stride,
          m,
          c.numHeads,
          c.numKvHeads,
          c.headDim,
          0,
          pos0 + i + 1,
          scale,
        );
      else
        k.attentionRowsQ8(
          rowAt(q, i),
          q.stride,
          cache.k,
          cache.kScale,
          cache.v,
          cache.vScale,
          rowAt(att, i),
          att.stride,
          m,
          c.numHeads,
          c.numKvHeads,
          c.headDim,
          0,
          pos0 + i + 1,
          scale,
        );
    }
  }

  /**
   * Final norm and head of rows first..first + n - 1 of x (n <= headBatch.rows) into logits rows
   * 0..n - 1 (vocabSize floats apart). Q8 activations (and int8 heads, which always read Q8): each row
   * quantized, then one batched matmul, bit-identical per row to the single-row matvec a decode step
   * runs. fp32 activations with an int4 head: one exact matvec per row.
   */
  private heads(first: number, n: number): void {
    const c = this.config;
    const k = this.k;
    const V = c.vocabSize;
    const head = this.head;
    const q8 = this.activations === "q8" || head.kind === "int8" ? this.q8.get(head.t.kPadded)! : null;
    for (let i = 0; i < n; i++) {
      k.rmsnorm(rowAt(this.x, first + i), this.outputNorm, this.headIn, c.hiddenSize, c.rmsNormEps);
      if (q8) k.quantizeQ8(this.headIn, q8.rows[i]!);
      else if (head.kind === "int4") k.matvecInt4(head.t, this.headIn, this.logits + i * V * 4);
    }
    if (!q8) return;
    if (head.kind === "int4") k.matmulInt4Q8(head.t, q8.batch, this.logits, n);
    else if (n === 1) k.matvecInt8Q8(head.t, q8.rows[0]!, this.logits);
    else k.matmulInt8Q8(head.t, q8.batch, this.logits, n);
  }
}
