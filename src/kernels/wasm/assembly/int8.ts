// int8 weights (token embeddings / output head; layout in src/format/int4.ts):
//   data: [n][kp] int8 codes in k order (padding 0), scales: [n][ng] fp16, w = q * scale[group].
// ng = kp / gs; per-row scaling is gs = kp (ng = 1). Reads stay inside data/scales (no overrun).

import { h2f, hsum } from "./common";

/** Integer dot of 32 int8 weights at wp (k order) with 32 activation codes as i16x8 a0..a3 (k order). */
// @ts-ignore: decorator
@inline function row_dot_i8(wp: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  // load8x8_s sign-extends 8 codes to i16 in the load itself (pmovsxbw), so int8 x int8 needs no unpacking;
  // dot_i16x8_s sums adjacent pairs: |127 * 127 * 2| fits i32 with room to spare.
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(wp, 0), a0), i32x4.dot_i16x8_s(v128.load8x8_s(wp, 8), a1)),
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(wp, 16), a2), i32x4.dot_i16x8_s(v128.load8x8_s(wp, 24), a3)),
  );
}

/**
 * One output of W x: weight row at wp (kp int8 codes, k order), its ng fp16 scales at sp, against Q8
 * activation codes at ap and block scales at dp. matvec_q8w_q8 and matmul_q8w_q8 both compute each
 * output with this one body, so a batched row is bit-identical to a single-row matvec.
 */
// @ts-ignore: decorator
@inline function row_q8w_q8(wp: usize, sp: usize, ap: usize, dp: usize, ng: i32, bpg: i32): f32 {
  let acc = f32x4.splat(0);
  for (let g = 0; g < ng; g++) {
    let gacc = f32x4.splat(0);
    for (let c = 0; c < bpg; c++) {
      const dot = row_dot_i8(
        wp, v128.load8x8_s(ap, 0), v128.load8x8_s(ap, 8), v128.load8x8_s(ap, 16), v128.load8x8_s(ap, 24),
      );
      gacc = f32x4.add(gacc, f32x4.mul(f32x4.convert_i32x4_s(dot), v128.load32_splat(dp)));
      wp += 32;
      ap += 32;
      dp += 4;
    }
    acc = f32x4.add(acc, f32x4.mul(gacc, f32x4.splat(h2f(load<u16>(sp)))));
    sp += 2;
  }
  return hsum(acc);
}

/**
 * y = W x, int8 weights x Q8 activations (quantize_q8 output). One row at a time, unlike the int4 kernels:
 * rows are contiguous, so the whole matrix is read as one sequential stream. With 4 rows in flight (4
 * streams 1 row apart) the hardware prefetcher fell behind: 49152x576 took 6.2 ms (4.6 GB/s) vs 2.2 ms
 * (13 GB/s) this way, with equal speed on L2-resident shapes. The activation codes (kp bytes, k order)
 * and block scales stay in L1.
 */
export function matvec_q8w_q8(
  w: usize, sc: usize, xq: usize, xd: usize, y: usize, n: i32, kp: i32, gs: i32,
): void {
  const ng = kp / gs;
  const bpg = gs >> 5;
  const rowBytes = <usize>kp;
  const scRow = <usize>ng << 1;
  for (let r = 0; r < n; r++) {
    store<f32>(y + (<usize>r << 2), row_q8w_q8(w + <usize>r * rowBytes, sc + <usize>r * scRow, xq, xd, ng, bpg));
  }
}

/**
 * Y[i][r] = W X[i] for m Q8 activation rows (a Q8Batch: codes at xq + i*kp, block scales at xd + i*kp/8),
 * Y row i at y + i*n*4: the batched head of speculative verification. Each weight row is read from memory
 * once and dotted with all m activation rows while it sits in L1 (the matrix is still one sequential
 * stream); each output is row_q8w_q8, so row i is bit-identical to matvec_q8w_q8 of X[i].
 */
export function matmul_q8w_q8(
  w: usize, sc: usize, xq: usize, xd: usize, y: usize, m: i32, n: i32, kp: i32, gs: i32,
): void {
  const ng = kp / gs;
  const bpg = gs >> 5;
  const rowBytes = <usize>kp;
  const scRow = <usize>ng << 1;
  const dRow = <usize>(kp >> 3);
  const yRow = <usize>n << 2;
  for (let r = 0; r < n; r++) {
    const wp = w + <usize>r * rowBytes;
    const sp = sc + <usize>r * scRow;
    for (let i = 0; i < m; i++) {
      const v = row_q8w_q8(wp, sp, xq + <usize>i * rowBytes, xd + <usize>i * dRow, ng, bpg);
      store<f32>(y + <usize>i * yRow + (<usize>r << 2), v);
    }
  }
}

/** acc + the 8 int8 weights at wp (as f32) times xa (k 0..3) / xb (k 4..7). */
// @ts-ignore: decorator
@inline function i8_dot8_f32(acc: v128, wp: usize, xa: v128, xb: v128): v128 {
  const v = v128.load8x8_s(wp);
  const lo = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), xa);
  const hi = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), xb);
  return f32x4.add(acc, f32x4.add(lo, hi));
}

/**
 * y = W x, int8 weights x fp32 activations (x: kp floats, zero-padded). The exact fallback; one row at a
 * time for the same reason as matvec_q8w_q8, two accumulators for ILP.
 */
export function matvec_q8w_f32(w: usize, sc: usize, x: usize, y: usize, n: i32, kp: i32, gs: i32): void {
  const ng = kp / gs;
  let wp = w;
  let sp = sc;
  for (let r = 0; r < n; r++) {
    let acc = f32x4.splat(0);
    let xp = x;
    for (let g = 0; g < ng; g++) {
      let p0 = f32x4.splat(0);
      let p1 = f32x4.splat(0);
      for (let k = 0; k < gs; k += 16) {
        p0 = i8_dot8_f32(p0, wp, v128.load(xp, 0), v128.load(xp, 16));
        p1 = i8_dot8_f32(p1, wp + 8, v128.load(xp, 32), v128.load(xp, 48));
        wp += 16;
        xp += 64;
      }
      acc = f32x4.add(acc, f32x4.mul(f32x4.add(p0, p1), f32x4.splat(h2f(load<u16>(sp)))));
      sp += 2;
    }
    store<f32>(y + (<usize>r << 2), hsum(acc));
  }
}

/** out[0..kp) = q * scale for row `row` of an int8 tensor. */
export function embed_row_q8(w: usize, sc: usize, row: i32, kp: i32, gs: i32, out: usize): void {
  const ng = kp / gs;
  let wp = w + <usize>row * <usize>kp;
  let op = out;
  for (let g = 0; g < ng; g++) {
    const s = f32x4.splat(h2f(load<u16>(sc + ((<usize>row * <usize>ng + <usize>g) << 1))));
    for (let k = 0; k < gs; k += 8) {
      const v = v128.load8x8_s(wp);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), s), 0);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), s), 16);
      wp += 8;
      op += 32;
    }
  }
}
