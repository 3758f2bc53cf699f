/**
 * The kernel table of `npm run bench`: int4 x Q8 matvec speed (GB/s of weight traffic) per layer shape,
 * and the batched matmul's per-row cost against M. Runtime-neutral (only WasmKernels and a clock), so
 * the same code runs in Node and inside workerd (scripts/bench/kernel-worker.ts).
 *
 * Weights stream as in decode: each shape is uploaded as enough copies to fill `streamBytes`, and the
 * calls cycle through them, so a call reads its matrix from memory, not from cache (one token of
 * stories110M reads ~60 MB). Weight values do not change the kernels' speed (no data-dependent
 * branches), so codes are pseudo-random bytes and scales a constant.
 */
import type { Int4Tensor, Q8Batch, WasmKernels } from "../../src/kernels/wasm/index.ts";

export interface KernelShape {
  model: string;
  N: number;
  K: number;
}

export const KERNEL_SHAPES: KernelShape[] = [
  { model: "stories110M", N: 768, K: 768 },
  { model: "stories110M", N: 2048, K: 768 },
  { model: "stories110M", N: 768, K: 2048 },
  { model: "SmolLM2-135M", N: 576, K: 576 },
  { model: "SmolLM2-135M", N: 1536, K: 576 },
  { model: "SmolLM2-135M", N: 576, K: 1536 },
];

export const BATCH_ROWS = [1, 2, 4, 8, 16] as const;

export interface KernelRow {
  model: string;
  shape: string;
  /** µs per matvecInt4Q8 call (best of the batches). */
  matvecUs: number;
  /** Weight bytes (codes + fp16 scales) per µs / 1000. */
  gbs: number;
  /** µs per activation row of matmulInt4Q8 at M rows / µs of one matvec (M = 1 is the matvec itself). */
  perRow: Record<number, number>;
}

export interface KernelTableOptions {
  shapes?: KernelShape[];
  /** Working set the copies of one matrix fill (bytes). */
  streamBytes?: number;
  /** Timed batches per measurement; the minimum is kept (shared machines). */
  batches?: number;
  /** Wall time per batch (ms). */
  batchMs?: number;
  now?: () => number;
}

function int4Copies(kern: WasmKernels, N: number, K: number, copies: number): Int4Tensor[] {
  const nGroups = K / 32;
  const codes = new Uint8Array((N * K) / 2);
  let s = 0x9e3779b9;
  for (let i = 0; i < codes.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    codes[i] = s >>> 24;
  }
  const scales = new Uint16Array(N * nGroups).fill(0x2000);
  const p = {
    format: "int4",
    N,
    K,
    groupSize: 32,
    nGroups,
    kPadded: K,
    qweight: codes,
    scales,
    zeros: null,
  } as const;
  return Array.from({ length: copies }, () => kern.uploadInt4(p));
}

/** Best µs per call of fn(i) over `batches` batches of ~batchMs, cycling i through the copies. */
function bestUs(fn: (i: number) => void, copies: number, o: Required<KernelTableOptions>): number {
  let iters = copies;
  for (;;) {
    const t0 = o.now();
    for (let i = 0; i < iters; i++) fn(i % copies);
    const dt = o.now() - t0;
    if (dt >= o.batchMs / 4 || iters > 1 << 16) {
      iters = Math.max(copies, Math.round((iters * o.batchMs) / Math.max(dt, 0.01)));
      break;
    }
    iters *= 2;
  }
  let best = Number.POSITIVE_INFINITY;
  for (let b = 0; b < o.batches; b++) {
    const t0 = o.now();
    for (let i = 0; i < iters; i++) fn(i % copies);
    best = Math.min(best, ((o.now() - t0) * 1000) / iters);
  }
  return best;
}

export function kernelTable(kern: WasmKernels, opts: KernelTableOptions = {}): KernelRow[] {
  const o: Required<KernelTableOptions> = {
    shapes: opts.shapes ?? KERNEL_SHAPES,
    streamBytes: opts.streamBytes ?? 48e6,
    batches: opts.batches ?? 7,
    batchMs: opts.batchMs ?? 40,
    now: opts.now ?? (() => performance.now()),
  };
  const maxM = BATCH_ROWS[BATCH_ROWS.length - 1]!;
  const rows: KernelRow[] = [];
  for (const { model, N, K } of o.shapes) {
    kern.scoped(() => {
      const bytes = (N * K) / 2 + (N * K) / 16;
      const copies = Math.max(1, Math.ceil(o.streamBytes / bytes));
      const ws = int4Copies(kern, N, K, copies);
      const x = kern.alloc(maxM * K * 4);
      const xv = kern.f32(x, maxM * K);
      for (let i = 0; i < xv.length; i++) xv[i] = Math.sin(i * 0.37);
      const q8: Q8Batch = kern.quantizeQ8Batch(x, kern.allocQ8Batch(K, maxM));
      const y = kern.alloc(maxM * N * 4);
      const row0 = { kPadded: K, q: q8.q, w: q8.w, d: q8.d, ds: q8.ds };
      const matvecUs = bestUs((i) => kern.matvecInt4Q8(ws[i]!, row0, y), copies, o);
      const perRow: Record<number, number> = { 1: 1 };
      for (const m of BATCH_ROWS) {
        if (m === 1) continue;
        const us = bestUs((i) => kern.matmulInt4Q8(ws[i]!, q8, y, m), copies, o);
        perRow[m] = us / m / matvecUs;
      }
      rows.push({ model, shape: `${N}x${K}`, matvecUs, gbs: bytes / matvecUs / 1000, perRow });
    });
  }
  return rows;
}
