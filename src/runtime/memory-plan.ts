/**
 * The WASM engine's memory plan: every buffer WasmEngine allocates (weights, activation rows, Q8
 * activation space, logits, KV cache), with its size, computed from the weight table alone. WasmEngine
 * allocates exactly these buffers in this order, and the Worker sizes its isolate budget (and picks an
 * fp16 or int8 KV cache) from `totalBytes` before loading anything, so the estimate cannot drift from
 * the engine.
 *
 * Units: bytes (activation strides in fp32 elements). kPadded of a matrix is its input width rounded
 * up to whole quantization groups (src/format/int4.ts), which is what its kernel reads.
 */
import { int4Geometry, int8Geometry } from "../format/int4.ts";
import type { ModelConfig } from "../format/model.ts";
import { WEIGHT_ALIGNMENT, type WeightEntry, type WeightTable } from "../format/weights.ts";
import { MAX_MATMUL_ROWS, SCRATCH_BYTES } from "../kernels/wasm/index.ts";
import { contextSizeFor, prefillBlockFor } from "./engine-core.ts";
import { bindWeights } from "./weight-bindings.ts";

/** Most prompt tokens one prefill pass carries through the layers (matmulInt4's row limit). */
export const PREFILL_BLOCK = MAX_MATMUL_ROWS;

/**
 * Rows of logits one head pass computes by default (HEAD_ROWS x vocabSize fp32 in wasm memory): the
 * verify passes the draft policy picks (maxDraft 6 + 1 rows by default) get their heads in one batched
 * pass. 8 rows of SmolLM2's 49152-word vocabulary are 1.5 MiB (1.3 MiB over a single row).
 */
export const HEAD_ROWS = 8;

/** Context the Worker and the playground give an engine: the model's, capped so variants stay small. */
export const ENGINE_CONTEXT = 2048;

export function engineContextFor(config: ModelConfig): number {
  return Math.min(config.maxContext, ENGINE_CONTEXT);
}

/** WebAssembly page size; memory grows in whole pages. */
const PAGE = 65536;
/**
 * Bytes below the allocator's start: the kernels' static data (heap_base, a few KiB) rounded up
 * generously, plus their scratch. The test compares the plan with a real engine's memory.
 */
const KERNELS_BASE_BYTES = 16 * 1024 + SCRATCH_BYTES;
/** The kernels' bump allocator aligns every allocation to 16 bytes (WasmKernels.alloc's default). */
const ALLOC_ALIGN = 16;

export interface MemoryPlanOptions {
  kvCache?: "f16" | "q8";
  contextSize?: number;
  prefillBlock?: number;
  /** Rows of logits one batched head pass computes (1..prefill block, default HEAD_ROWS capped by it). */
  headRows?: number;
}

/** `rows` fp32 vectors of `stride` elements each. */
export interface RowsPlan {
  rows: number;
  stride: number;
}

export interface WasmMemoryPlan {
  contextSize: number;
  /** Prompt tokens per prefill pass (rows of each activation buffer). */
  block: number;
  kvCache: "f16" | "q8";
  /** Activation rows, in the order the engine allocates them. */
  rows: {
    x: RowsPlan;
    xb: RowsPlan;
    delta: RowsPlan;
    q: RowsPlan;
    k: RowsPlan;
    v: RowsPlan;
    att: RowsPlan;
    gate: RowsPlan;
    up: RowsPlan;
    hb: RowsPlan;
  };
  /** Rows one head pass computes (logits holds that many rows of vocabSize floats). */
  headRows: number;
  /** fp32 elements of the head's input and of the logits (headRows rows). */
  headIn: number;
  logits: number;
  rope: RowsPlan;
  /** Distinct kPadded widths that get `block` Q8 activation buffers each. */
  q8Widths: number[];
  /** kPadded of the layer-0 matrices, the embedding and the head (the engine checks its blobs agree). */
  kPadded: { wq: number; wo: number; wGate: number; wDown: number; embedding: number; head: number };
  /** Per layer: bytes of the K and V caches, and of each scale array (q8 only, else 0). */
  cache: { kv: number; scales: number };
  /** Bytes: the data region, everything else the engine allocates, and the KV caches of all layers. */
  weightBytes: number;
  bufferBytes: number;
  kvBytes: number;
  /** WebAssembly memory the loaded engine takes, whole pages (the kernels' own base included). */
  totalBytes: number;
}

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** The input width a matrix's kernel reads (K rounded up to whole groups). */
export function kPaddedOf(e: WeightEntry): number {
  const K = e.shape[1] ?? 1;
  if (e.encoding.kind === "int4") return int4Geometry(K, e.encoding.groupSize).kPadded;
  if (e.encoding.kind === "int8") return int8Geometry(K, e.encoding.groupSize).kPadded;
  throw new Error(`${e.name} is not a matrix`);
}

/** What a WasmEngine for `table` will allocate with these options. Throws RangeError on bad options. */
export function planWasmMemory(table: WeightTable, opts: MemoryPlanOptions = {}): WasmMemoryPlan {
  const c = table.config;
  const contextSize = contextSizeFor(c, opts.contextSize);
  const B = prefillBlockFor(opts.prefillBlock, PREFILL_BLOCK, contextSize);
  const kvCache = opts.kvCache ?? "f16";
  const headRows = opts.headRows ?? Math.min(HEAD_ROWS, B);
  if (!Number.isInteger(headRows) || headRows < 1 || headRows > B)
    throw new RangeError(`headRows must be an integer in 1..${B} (the prefill block), got ${opts.headRows}`);
  const bound = bindWeights<number, number, number>(table, {
    vector: () => 0,
    int4: kPaddedOf,
    matrix: kPaddedOf,
  });
  const l0 = bound.layers[0]!;
  const kPadded = {
    wq: l0.wq,
    wo: l0.wo,
    wGate: l0.wGate,
    wDown: l0.wDown,
    embedding: bound.embedding,
    head: bound.head,
  };
  // Padded widths: every buffer is as long as the widest kPadded that reads it, zeros beyond.
  const hiddenPad = Math.max(l0.wq, l0.wGate, bound.head, bound.embedding, roundUp(c.hiddenSize, 32));
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const r = (stride: number): RowsPlan => ({ rows: B, stride });
  const rows = {
    x: r(hiddenPad),
    // Matrix inputs are exactly their weight's kPadded apart (what matmulInt4 reads).
    xb: r(Math.max(l0.wq, l0.wGate)),
    delta: r(c.hiddenSize),
    q: r(qDim),
    k: r(kvDim),
    v: r(kvDim),
    att: r(Math.max(l0.wo, qDim)),
    gate: r(c.intermediateSize),
    up: r(c.intermediateSize),
    hb: r(Math.max(l0.wDown, c.intermediateSize)),
  };
  const rope = r(c.headDim / 2);
  const q8Widths = [...new Set([l0.wq, l0.wGate, l0.wo, l0.wDown, bound.head])].filter((k) => k % 32 === 0);
  const cells = contextSize * kvDim;
  const cache =
    kvCache === "f16" ? { kv: cells * 2, scales: 0 } : { kv: cells, scales: contextSize * c.numKvHeads * 4 };

  // Byte sizes in allocation order (each 16-byte aligned by the allocator).
  const sizes: number[] = [
    ...Object.values(rows).map((p) => p.rows * p.stride * 4),
    hiddenPad * 4,
    headRows * c.vocabSize * 4,
    rope.rows * rope.stride * 4,
    rope.rows * rope.stride * 4,
    // allocQ8Batch: codes, i16 operands, scales, scaled sums for B rows.
    ...q8Widths.flatMap((kp) => [B * kp, 2 * B * kp, (B * kp) / 8, (B * kp) / 8]),
  ];
  const bufferBytes = sizes.reduce((n, s) => n + roundUp(s, ALLOC_ALIGN), 0);
  const perLayer =
    kvCache === "f16" ? [cache.kv, cache.kv] : [cache.kv, cache.kv, cache.scales, cache.scales];
  const kvBytes = c.numLayers * perLayer.reduce((n, s) => n + roundUp(s, ALLOC_ALIGN), 0);
  const weightBytes = table.totalBytes;
  const end = roundUp(KERNELS_BASE_BYTES, WEIGHT_ALIGNMENT) + weightBytes + bufferBytes + kvBytes;
  return {
    contextSize,
    block: B,
    kvCache,
    rows,
    headRows,
    headIn: hiddenPad,
    logits: headRows * c.vocabSize,
    rope,
    q8Widths,
    kPadded,
    cache,
    weightBytes,
    bufferBytes,
    kvBytes,
    totalBytes: roundUp(end, PAGE),
  };
}
