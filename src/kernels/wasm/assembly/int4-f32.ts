// int4 weights x fp32 activations (the exact path; decode uses int4-q8.ts) and int4 embedding rows.
// Layout: src/format/int4.ts. Activations are zero-padded to kp (= nGroups * groupSize) by the caller.

import {
  h2f, hsum, log2_cpg, mask, pad_sums, prep_supergroup, reduce4_f32, store_rows, zero_point,
} from "./common";

/** (q - z) * s, plus the group's fp16 min when the tensor has mins (w = q d + m; z is then 0). */
// @ts-ignore: decorator
@inline function deq4(q: v128, z: v128, s: v128, mv: v128, hasMin: bool): v128 {
  const v = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(q, z)), s);
  return hasMin ? f32x4.add(v, mv) : v;
}

/** The fp16 min of group g of row `row` (mins laid out like the scales), as 4 lanes; 0 without mins. */
// @ts-ignore: decorator
@inline function min_at(mn: usize, row: usize, ng: usize, g: usize): v128 {
  return f32x4.splat(mn == 0 ? <f32>0 : h2f(load<u16>(mn + ((row * ng + g) << 1))));
}

/** sums[g] = sum of x over group g (the zero-point term: sum((q - z) x) = sum(q x) - z sum(x)). */
function group_sums(x: usize, ng: i32, gs: i32, out: usize): void {
  for (let g = 0; g < ng; g++) {
    let a = f32x4.splat(0);
    let b = f32x4.splat(0);
    for (let k = 0; k < gs; k += 8) {
      a = f32x4.add(a, v128.load(x, 0));
      b = f32x4.add(b, v128.load(x, 16));
      x += 32;
    }
    store<f32>(out + (<usize>g << 2), hsum(f32x4.add(a, b)));
  }
  pad_sums(out, ng);
}

/**
 * acc + dot(codes of one 16-byte chunk, 32 floats at xp). Bytes are widened with load8x8_u (bytes -> u16
 * lanes, so the high nibble needs no mask), then to i32 lanes and converted.
 */
// @ts-ignore: decorator
@inline function chunk_dot_f32(acc: v128, wp: usize, xp: usize): v128 {
  const m15 = i16x8.splat(15);
  const L = v128.load8x8_u(wp, 0); // bytes 0..7
  const H = v128.load8x8_u(wp, 8); // bytes 8..15
  const Ll = v128.and(L, m15); // k 0..7
  const Lh = i16x8.shr_u(L, 4); // k 16..23
  const Hl = v128.and(H, m15); // k 8..15
  const Hh = i16x8.shr_u(H, 4); // k 24..31
  let p = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(Ll)), v128.load(xp, 0));
  let q = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(Ll)), v128.load(xp, 16));
  p = f32x4.add(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(Hl)), v128.load(xp, 32)));
  q = f32x4.add(q, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(Hl)), v128.load(xp, 48)));
  p = f32x4.add(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(Lh)), v128.load(xp, 64)));
  q = f32x4.add(q, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(Lh)), v128.load(xp, 80)));
  p = f32x4.add(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(Hh)), v128.load(xp, 96)));
  q = f32x4.add(q, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(Hh)), v128.load(xp, 112)));
  return f32x4.add(acc, f32x4.add(p, q));
}

/** acc + dot of 4 code bytes at wp (8 weights: k = 4i..4i+3 low nibbles, 16+4i.. high) with xl / xh. */
// @ts-ignore: decorator
@inline function slice_dot_f32(acc: v128, wp: usize, xl: v128, xh: v128): v128 {
  const b = i8x16.swizzle(v128.load32_zero(wp), mask(0));
  const lo = f32x4.mul(f32x4.convert_i32x4_s(v128.and(b, i32x4.splat(15))), xl);
  const hi = f32x4.mul(f32x4.convert_i32x4_s(i32x4.shr_u(b, 4)), xh);
  return f32x4.add(acc, f32x4.add(lo, hi));
}

// y[n] = sum_k W[n][k] x[k]. zp / mn: zero points or fp16 mins (common.ts), 0 when absent.
// tmp: 128 + 4 * (ng + 3) bytes of 16-byte aligned scratch.

export function matvec_q4_f32(
  qw: usize, sc: usize, zp: usize, mn: usize, x: usize, y: usize, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const gbuf = tmp;
  const gsums = tmp + 64;
  const mbuf = gsums + (<usize>((ng + 3) & ~3) << 2);
  group_sums(x, ng, gs, gsums);
  for (let r = 0; r < n; r += 4) {
    const r1 = min(r + 1, n - 1);
    const r2 = min(r + 2, n - 1);
    const r3 = min(r + 3, n - 1);
    let w0 = qw + <usize>r * rowBytes;
    let w1 = qw + <usize>r1 * rowBytes;
    let w2 = qw + <usize>r2 * rowBytes;
    let w3 = qw + <usize>r3 * rowBytes;
    let acc = f32x4.splat(0);
    let corr = f32x4.splat(0);
    let xp = x;
    for (let g0 = 0; g0 < ng; g0 += 4) {
      corr = f32x4.add(corr, prep_supergroup(sc, scRow, zp, mn, zpRow, r, r1, r2, r3, g0, gsums, gbuf, mbuf));
      const chunks = min(4, ng - g0) << lcpg;
      for (let j = 0; j < chunks; j++) {
        // Four 8-weight slices per chunk: slice i holds bytes 4i..4i+3 (k = 4i.. and 16+4i..). Only two
        // activation vectors and four row partials are live, so V8 keeps everything in registers.
        let p0 = f32x4.splat(0);
        let p1 = f32x4.splat(0);
        let p2 = f32x4.splat(0);
        let p3 = f32x4.splat(0);
        for (let i: usize = 0; i < 16; i += 4) {
          const xl = v128.load(xp + (i << 2));
          const xh = v128.load(xp + (i << 2), 64);
          p0 = slice_dot_f32(p0, w0 + i, xl, xh);
          p1 = slice_dot_f32(p1, w1 + i, xl, xh);
          p2 = slice_dot_f32(p2, w2 + i, xl, xh);
          p3 = slice_dot_f32(p3, w3 + i, xl, xh);
        }
        const p = reduce4_f32(p0, p1, p2, p3);
        acc = f32x4.add(acc, f32x4.mul(p, v128.load(gbuf + (<usize>(j >> lcpg) << 4))));
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
        xp += 128;
      }
    }
    store_rows(y, r, n, f32x4.sub(acc, corr));
  }
}

// Y[m][n] = sum_k W[n][k] X[m][k] (prefill): X is [m][kp] (zero-padded rows), Y is [m][n]. tmp: 16 * m
// bytes of scratch (per-row accumulators). Each weight chunk is decoded once (scale and zero point folded
// in) and reused for all m rows.

export function matmul_q4_f32(
  qw: usize, sc: usize, zp: usize, mn: usize, x: usize, y: usize, m: i32, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const cpg = gs >> 5;
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const xStride = <usize>kp << 2;
  const m15 = i32x4.splat(15);
  const hasMin = mn != 0;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < m; i++) v128.store(tmp + (<usize>i << 4), f32x4.splat(0));
    let wp = qw + <usize>r * rowBytes;
    let xo: usize = 0;
    for (let g = 0; g < ng; g++) {
      const s = f32x4.splat(h2f(load<u16>(sc + (<usize>(r * ng + g) << 1))));
      const z = i32x4.splat(hasMin ? 0 : <i32>zero_point(zp, zpRow, r, g));
      const mv = min_at(mn, <usize>r, <usize>ng, <usize>g);
      for (let c = 0; c < cpg; c++) {
        const v = v128.load(wp);
        let b = i8x16.swizzle(v, mask(0));
        const l0 = deq4(v128.and(b, m15), z, s, mv, hasMin);
        const h0 = deq4(i32x4.shr_u(b, 4), z, s, mv, hasMin);
        b = i8x16.swizzle(v, mask(1));
        const l1 = deq4(v128.and(b, m15), z, s, mv, hasMin);
        const h1 = deq4(i32x4.shr_u(b, 4), z, s, mv, hasMin);
        b = i8x16.swizzle(v, mask(2));
        const l2 = deq4(v128.and(b, m15), z, s, mv, hasMin);
        const h2 = deq4(i32x4.shr_u(b, 4), z, s, mv, hasMin);
        b = i8x16.swizzle(v, mask(3));
        const l3 = deq4(v128.and(b, m15), z, s, mv, hasMin);
        const h3 = deq4(i32x4.shr_u(b, 4), z, s, mv, hasMin);
        let xp = x + xo;
        let tp = tmp;
        for (let i = 0; i < m; i++) {
          let p = f32x4.add(f32x4.mul(l0, v128.load(xp, 0)), f32x4.mul(h0, v128.load(xp, 64)));
          let q = f32x4.add(f32x4.mul(l1, v128.load(xp, 16)), f32x4.mul(h1, v128.load(xp, 80)));
          p = f32x4.add(p, f32x4.add(f32x4.mul(l2, v128.load(xp, 32)), f32x4.mul(h2, v128.load(xp, 96))));
          q = f32x4.add(q, f32x4.add(f32x4.mul(l3, v128.load(xp, 48)), f32x4.mul(h3, v128.load(xp, 112))));
          v128.store(tp, f32x4.add(v128.load(tp), f32x4.add(p, q)));
          xp += xStride;
          tp += 16;
        }
        wp += 16;
        xo += 128;
      }
    }
    for (let i = 0; i < m; i++) {
      store<f32>(y + ((<usize>i * <usize>n + <usize>r) << 2), hsum(v128.load(tmp + (<usize>i << 4))));
    }
  }
}

/** out[0..kp) = (q - z) * scale (or q * scale + min) for row `row` of an int4 tensor. */
export function embed_row_q4(
  qw: usize, sc: usize, zp: usize, mn: usize, row: i32, kp: i32, gs: i32, out: usize,
): void {
  const hasMin = mn != 0;
  const ng = kp / gs;
  const cpg = gs >> 5;
  const zpRow = <usize>((ng + 1) >> 1);
  let wp = qw + <usize>row * <usize>(kp >> 1);
  let op = out;
  for (let g = 0; g < ng; g++) {
    const s = f32x4.splat(h2f(load<u16>(sc + ((<usize>row * <usize>ng + <usize>g) << 1))));
    const z = i32x4.splat(hasMin ? 0 : <i32>zero_point(zp, zpRow, row, g));
    const mv = min_at(mn, <usize>row, <usize>ng, <usize>g);
    for (let c = 0; c < cpg; c++) {
      const v = v128.load(wp);
      const lo = v128.and(v, i8x16.splat(15)); // k 0..15
      const hi = i8x16.shr_u(v, 4); // k 16..31
      const l0 = i16x8.extend_low_i8x16_u(lo);
      const l1 = i16x8.extend_high_i8x16_u(lo);
      const h0 = i16x8.extend_low_i8x16_u(hi);
      const h1 = i16x8.extend_high_i8x16_u(hi);
      v128.store(op, deq4(i32x4.extend_low_i16x8_u(l0), z, s, mv, hasMin), 0);
      v128.store(op, deq4(i32x4.extend_high_i16x8_u(l0), z, s, mv, hasMin), 16);
      v128.store(op, deq4(i32x4.extend_low_i16x8_u(l1), z, s, mv, hasMin), 32);
      v128.store(op, deq4(i32x4.extend_high_i16x8_u(l1), z, s, mv, hasMin), 48);
      v128.store(op, deq4(i32x4.extend_low_i16x8_u(h0), z, s, mv, hasMin), 64);
      v128.store(op, deq4(i32x4.extend_high_i16x8_u(h0), z, s, mv, hasMin), 80);
      v128.store(op, deq4(i32x4.extend_low_i16x8_u(h1), z, s, mv, hasMin), 96);
      v128.store(op, deq4(i32x4.extend_high_i16x8_u(h1), z, s, mv, hasMin), 112);
      wp += 16;
      op += 128;
    }
  }
}
