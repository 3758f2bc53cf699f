/**
 * A/B of two kernel binaries in one process (`npm run bench -- --kernel-ab A.wasm B.wasm`): the same
 * weights and activations uploaded into both instances, then rounds that time every kernel of A and of
 * B once each (order A, B on even rounds, B, A on odd ones), so a kernel change is judged against load
 * that drifts during the run. Runtime-neutral (WasmKernels and a clock): runs in Node and in workerd
 * (src/bench/kernel-ab-worker.ts).
 */
import type { Int4Tensor, Q8Batch, WasmKernels } from "../kernels/wasm/index.ts";
import { int4Copies, type KernelShape, median } from "./kernel-table.ts";

export const AB_ROWS = [1, 2, 4, 8, 16] as const;

export interface AbRow {
  shape: string;
  /** Median µs per call of A and of B, keyed "mv" (matvec) and "mm<M>" (batched, M rows). */
  aUs: Record<string, number>;
  bUs: Record<string, number>;
  /** Per kernel, median over rounds of B's time / A's time in that round, and its [min, max]. */
  bOverA: Record<string, number>;
  spread: Record<string, [number, number]>;
  /** Per-row cost at M (µs per row / µs of the same binary's matvec), medians, for A and B. */
  aPerRow: Record<number, number>;
  bPerRow: Record<number, number>;
  rounds: number;
}

export interface AbOptions {
  shapes: KernelShape[];
  rounds?: number;
  batchMs?: number;
  streamBytes?: number;
  now?: () => number;
}

interface Side {
  kern: WasmKernels;
  ws: Int4Tensor[];
  q8: Q8Batch;
  y: number;
}

function side(kern: WasmKernels, N: number, K: number, copies: number): Side {
  const maxM = AB_ROWS[AB_ROWS.length - 1]!;
  const ws = int4Copies(kern, N, K, copies);
  const x = kern.alloc(maxM * K * 4);
  const xv = kern.f32(x, maxM * K);
  for (let i = 0; i < xv.length; i++) xv[i] = Math.sin(i * 0.37);
  return { kern, ws, q8: kern.quantizeQ8Batch(x, kern.allocQ8Batch(K, maxM)), y: kern.alloc(maxM * N * 4) };
}

function call(s: Side, m: number, i: number): void {
  if (m === 1)
    s.kern.matvecInt4Q8(
      s.ws[i]!,
      { kPadded: s.q8.kPadded, q: s.q8.q, w: s.q8.w, d: s.q8.d, ds: s.q8.ds },
      s.y,
    );
  else s.kern.matmulInt4Q8(s.ws[i]!, s.q8, s.y, m);
}

export function kernelAb(a: WasmKernels, b: WasmKernels, opts: AbOptions): AbRow[] {
  const rounds = opts.rounds ?? 9;
  const batchMs = opts.batchMs ?? 30;
  const now = opts.now ?? (() => performance.now());
  const out: AbRow[] = [];
  for (const { N, K } of opts.shapes) {
    const ma = a.mark();
    const mb = b.mark();
    try {
      const bytes = (N * K) / 2 + (N * K) / 16;
      const copies = Math.max(1, Math.ceil((opts.streamBytes ?? 48e6) / bytes));
      const sides = [side(a, N, K, copies), side(b, N, K, copies)];
      // calls per batch from A's speed (warms both up), the same for B
      const iters: Record<number, number> = {};
      for (const m of AB_ROWS) {
        for (const s of sides) for (let i = 0; i < 3 * copies; i++) call(s, m, i % copies);
        const t0 = now();
        for (let i = 0; i < copies; i++) call(sides[0]!, m, i);
        const dt = Math.max(now() - t0, 0.01);
        iters[m] = Math.max(copies, Math.round((copies * batchMs) / dt));
      }
      const us: Record<string, number[]>[] = [{}, {}];
      for (let r = 0; r < rounds; r++) {
        for (const m of AB_ROWS) {
          const order = r % 2 ? [1, 0] : [0, 1];
          for (const k of order) {
            const t0 = now();
            for (let i = 0; i < iters[m]!; i++) call(sides[k]!, m, i % copies);
            const t = ((now() - t0) * 1000) / iters[m]!;
            (us[k]![`mm${m}`] ??= []).push(t);
          }
        }
      }
      const key = (m: number) => (m === 1 ? "mv" : `mm${m}`);
      const row: AbRow = {
        shape: `${N}x${K}`,
        aUs: {},
        bUs: {},
        bOverA: {},
        spread: {},
        aPerRow: {},
        bPerRow: {},
        rounds,
      };
      for (const m of AB_ROWS) {
        const ta = us[0]![`mm${m}`]!;
        const tb = us[1]![`mm${m}`]!;
        const ratio = tb.map((t, r) => t / ta[r]!);
        row.aUs[key(m)] = median(ta);
        row.bUs[key(m)] = median(tb);
        row.bOverA[key(m)] = median(ratio);
        row.spread[key(m)] = [Math.min(...ratio), Math.max(...ratio)];
        row.aPerRow[m] = median(ta.map((t, r) => t / m / us[0]!.mm1![r]!));
        row.bPerRow[m] = median(tb.map((t, r) => t / m / us[1]!.mm1![r]!));
      }
      out.push(row);
    } finally {
      a.release(ma);
      b.release(mb);
    }
  }
  return out;
}
