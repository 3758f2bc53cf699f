/**
 * The kernel table of `npm run bench`: int4 x Q8 matvec speed (GB/s of weight traffic) per layer shape,
 * and the batched matmul's per-row cost against M. Runtime-neutral (only WasmKernels and a clock), so
 * the same code runs in Node and inside workerd (scripts/bench/kernel-worker.ts).
 *
 * Weights stream as in decode: each shape is uploaded as enough copies to fill `streamBytes`, and the
 * calls cycle through them, so a call reads its matrix from memory, not from cache (one token of
 * stories110M reads ~60 MB). Weight values do not change the kernels' speed (no data-dependent
 * branches), so codes are pseudo-random bytes and scales a constant.
 *
 * Timing: alternating rounds in one process (each round times every kernel once, in a fixed order
 * reversed on odd rounds), medians and [min, max] of the per-round ratios, so that load drifting
 * during the table hits the matvec and the batched kernels alike.
 *
 * With a bench build (`ensureKernelsWasm({ ...flavor, bench: true })`, whose kernels are the production
 * ones plus the floor) the table also times the floor of the batched kernel (matmul_q4_q8_floor,
 * int4-q8.ts: weight loads and unpack once per chunk, per activation row only its activation loads and
 * dots; NOT EXACT, bench only): the per-row cost no kernel with this chunk unpack and these dot
 * instructions can go below, on the same weights and activations.
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
/** Row counts the floor kernel is specialized for. */
export const FLOOR_ROWS = [1, 2, 4, 8] as const;

export interface KernelRow {
  model: string;
  shape: string;
  /** µs per matvecInt4Q8 call (median of the rounds). */
  matvecUs: number;
  /** Weight bytes (codes + fp16 scales) per µs / 1000, at matvecUs. */
  gbs: number;
  /**
   * µs per activation row of matmulInt4Q8 at M rows / µs of one matvec in the same round, median over
   * the rounds (M = 1 is the matvec itself).
   */
  perRow: Record<number, number>;
  /** [min, max] over the rounds of the same ratio. */
  perRowSpread: Record<number, [number, number]>;
  /** The floor kernel's µs per activation row / µs of one matvec, median (bench builds only). */
  floorPerRow?: Record<number, number>;
  floorSpread?: Record<number, [number, number]>;
  /** Alternating rounds behind the medians. */
  rounds: number;
}

export interface KernelTableOptions {
  shapes?: KernelShape[];
  /** Working set the copies of one matrix fill (bytes). */
  streamBytes?: number;
  /** Alternating rounds (each times every kernel once). */
  batches?: number;
  /** Wall time per kernel and round (ms). */
  batchMs?: number;
  now?: () => number;
}

export function int4Copies(kern: WasmKernels, N: number, K: number, copies: number): Int4Tensor[] {
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

/** Calls per timed batch so that one batch of fn(i) (i cycling through the copies) takes ~batchMs. */
export function itersFor(fn: (i: number) => void, copies: number, o: Required<KernelTableOptions>): number {
  let iters = copies;
  for (;;) {
    const t0 = o.now();
    for (let i = 0; i < iters; i++) fn(i % copies);
    const dt = o.now() - t0;
    if (dt >= o.batchMs / 4 || iters > 1 << 16)
      return Math.max(copies, Math.round((iters * o.batchMs) / Math.max(dt, 0.01)));
    iters *= 2;
  }
}

export function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** True when kern is a bench build (the floor kernel compiled in; production builds return -1). */
export function hasFloorKernel(kern: WasmKernels): boolean {
  return kern.raw.matmul_q4_q8_floor(0, 0, 0, 0, 1, 0, 32, 0) === 1;
}

/**
 * The floor kernel over m activation rows of a Q8 batch (m in FLOOR_ROWS; bench builds only). y gets
 * 16 * ceil(N / 4) bytes of garbage; tmp: 256 bytes of scratch.
 */
export function matmulFloor(
  kern: WasmKernels,
  w: Int4Tensor,
  x: Q8Batch,
  y: number,
  m: number,
  tmp: number,
): void {
  if (kern.raw.matmul_q4_q8_floor(w.qweight, x.q, x.w, y, m, w.N, w.kPadded, tmp) !== m)
    throw new Error(`matmulFloor: m = ${m} (one of ${FLOOR_ROWS.join(", ")}) needs a bench build`);
}

export function kernelTable(kern: WasmKernels, opts: KernelTableOptions = {}): KernelRow[] {
  const o: Required<KernelTableOptions> = {
    shapes: opts.shapes ?? KERNEL_SHAPES,
    streamBytes: opts.streamBytes ?? 48e6,
    batches: opts.batches ?? 7,
    batchMs: opts.batchMs ?? 40,
    now: opts.now ?? (() => performance.now()),
  };
  const floor = hasFloorKernel(kern);
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
      const y = kern.alloc(maxM * N * 4 + 16);
      const tmp = kern.alloc(256);
      const row0 = { kPadded: K, q: q8.q, w: q8.w, d: q8.d, ds: q8.ds };
      // every kernel timed, keyed "mv", "mm<M>" (real batched), "fl<M>" (floor); M: rows per call
      const kernels: { key: string; m: number; fn: (i: number) => void }[] = [
        { key: "mv", m: 1, fn: (i) => kern.matvecInt4Q8(ws[i]!, row0, y) },
        ...BATCH_ROWS.filter((m) => m > 1).map((m) => ({
          key: `mm${m}`,
          m,
          fn: (i: number) => kern.matmulInt4Q8(ws[i]!, q8, y, m),
        })),
        ...(floor ? FLOOR_ROWS : []).map((m) => ({
          key: `fl${m}`,
          m,
          fn: (i: number) => matmulFloor(kern, ws[i]!, q8, y, m, tmp),
        })),
      ];
      const iters = kernels.map((k) => itersFor(k.fn, copies, o));
      const us: Record<string, number[]> = Object.fromEntries(kernels.map((k) => [k.key, []]));
      for (let r = 0; r < o.batches; r++) {
        const order = kernels.map((_, i) => i);
        if (r % 2) order.reverse();
        for (const i of order) {
          const { key, fn } = kernels[i]!;
          const t0 = o.now();
          for (let j = 0; j < iters[i]!; j++) fn(j % copies);
          us[key]!.push(((o.now() - t0) * 1000) / iters[i]!);
        }
      }
      const ratio = (key: string, m: number) => us[key]!.map((t, r) => t / m / us.mv![r]!);
      const stats = (prefix: string, ms: readonly number[]) => {
        const med: Record<number, number> = {};
        const spread: Record<number, [number, number]> = {};
        for (const m of ms) {
          const v = m === 1 && prefix === "mm" ? us.mv!.map(() => 1) : ratio(`${prefix}${m}`, m);
          med[m] = median(v);
          spread[m] = [Math.min(...v), Math.max(...v)];
        }
        return { med, spread };
      };
      const real = stats("mm", BATCH_ROWS);
      const matvecUs = median(us.mv!);
      const r: KernelRow = {
        model,
        shape: `${N}x${K}`,
        matvecUs,
        gbs: bytes / matvecUs / 1000,
        perRow: real.med,
        perRowSpread: real.spread,
        rounds: o.batches,
      };
      if (floor) {
        const f = stats("fl", FLOOR_ROWS);
        r.floorPerRow = f.med;
        r.floorSpread = f.spread;
      }
      rows.push(r);
    });
  }
  return rows;
}
