// int4 weights x Q8 activations (quantize.ts): the decode matvec and the batched matmul (prefill,
// speculative verification). Weight layout: src/format/int4.ts (16-byte chunks, byte j = codes for
// k = j (low nibble) and k = j + 16 (high nibble)). Zero points and fp16 mins never enter the integer dot:
// each group's term z * scale * sum(x) (or -min * sum(x)) is subtracted once per group (prep_supergroup /
// prep_scales_gz).
//
// Integer dot of one chunk (32 codes) with one activation block, per build:
// - SIMD128: the chunk viewed as 8 i16 lanes holds nibbles c0..c3 (k = 2i, 16+2i, 2i+1, 17+2i) at bits
//   0, 4, 8, 12. Unmasked shifts give e1 = c1 + 16 c2 + 256 c3, e2 = c2 + 16 c3, e3 = c3; the activation
//   side cancels the extra terms (quantize.ts stores b2 = a2 - 16 a1, b3 = a3 - 16 a2), so
//   (v & 15).a0 + e1.a1 + e2.b2 + e3.b3 = sum c.a exactly with 4 unpack ops instead of 6 (|b| <= 2159,
//   |e| <= 4095: every i32x4.dot_i16x8_s product and pair sum fits i32).
// - relaxed SIMD, dot-add (DOT_ADD = 1: kernels-relaxed.wasm, workerd and browsers): the low / high nibble
//   bytes (0..15) are the 7-bit operand of i32x4.relaxed_dot_i8x16_i7x16_add_s against the int8 codes in
//   k order, accumulated in i32 (4 products per lane, exact). V8 lowers it to one AVX-VNNI vpdpbusd where
//   the CPU has it (workerd's matvec: 7.3 -> 8.0 GB/s over the i16 form on this machine).
// - relaxed SIMD, i16 (DOT_ADD = 0: kernels-relaxed-i16.wasm, Node 20 behind a flag): the same operands
//   in i16x8.relaxed_dot_i8x16_i7x16_s; the two i16 results are added (|sum| <= 4 * 15 * 127 = 7620, no
//   i16 overflow); 4 rows' partials are folded once more in i16 (<= 15240) and then widened
//   (reduce4_i16). Node 20's V8 has no VNNI lowering of the dot-add (6.6 vs 10 GB/s) and its baseline
//   tier returns 2 * dot and drops the accumulator (test/kernels-relaxed.test.ts pins both facts).
// Both instructions' results are only defined when the second operand is in 0..127, which nibbles
// always are; the integer dots are exact, so every build gives bit-identical outputs.

import {
  log2_cpg, pad_sums, prep_supergroup, reduce4_i32, h2f4, store_neg_mins4, zraw4,
} from "./common";

/** Relaxed-SIMD i16x8 partials of nibble bytes lo (k 0..15) / hi (k 16..31) against int8 codes q0 / q1: |lane| <= 7620. */
// @ts-ignore: decorator
@inline function nibble_i16_relaxed(lo: v128, hi: v128, q0: v128, q1: v128): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(q1, hi));
}

/** sums[g] = sum of xds over the blocks of group g (sum of the dequantized activations). */
function block_group_sums(xds: usize, ng: i32, cpg: i32, out: usize): void {
  for (let g = 0; g < ng; g++) {
    let s: f32 = 0;
    for (let c = 0; c < cpg; c++) {
      s += load<f32>(xds);
      xds += 4;
    }
    store<f32>(out + (<usize>g << 2), s);
  }
  pad_sums(out, ng);
}

/**
 * [sum R0, sum R1, sum R2, sum R3] of four i16x8 row partials whose lanes are at most 7620 in magnitude
 * (relaxed chunk dots): two i16 folds (lane sums <= 15240, then <= 30480: no overflow) leave one
 * widening dot; ones = i16x8.splat(1) held in a register (a constant is re-materialized by V8 on every use).
 */
// @ts-ignore: decorator
@inline function reduce4_i16(r0: v128, r1: v128, r2: v128, r3: v128, ones: v128): v128 {
  const t01 = i16x8.add(v128.shuffle<i64>(r0, r1, 0, 2), v128.shuffle<i64>(r0, r1, 1, 3));
  const t23 = i16x8.add(v128.shuffle<i64>(r2, r3, 0, 2), v128.shuffle<i64>(r2, r3, 1, 3));
  return fold_pairs_i16(t01, t23, ones);
}

/**
 * [sum row a, sum row b, sum row c, sum row d] of two i16x8 vectors holding rows a | b (lanes 0-3 | 4-7)
 * and c | d, lanes at most 15360 in magnitude: one more i16 fold (<= 30720) and one widening dot.
 */
// @ts-ignore: decorator
@inline function fold_pairs_i16(p01: v128, p23: v128, ones: v128): v128 {
  const u = i16x8.add(v128.shuffle<i32>(p01, p23, 0, 2, 4, 6), v128.shuffle<i32>(p01, p23, 1, 3, 5, 7));
  return i32x4.dot_i16x8_s(u, ones);
}

/** Relaxed-SIMD i16x8 partials of one chunk v against int8 codes q0 (k 0..15) / q1 (k 16..31): |lane| <= 7620. */
// @ts-ignore: decorator
@inline function chunk_i16_relaxed(v: v128, q0: v128, q1: v128): v128 {
  const m = i8x16.splat(15);
  return nibble_i16_relaxed(v128.and(v, m), v128.and(i16x8.shr_u(v, 4), m), q0, q1);
}

/** i32x4 partials (4 lanes of one row, exact) of one chunk v against int8 codes q0 (k 0..15) / q1 (k 16..31). */
// @ts-ignore: decorator
@inline function chunk_i32_dot_add(v: v128, q0: v128, q1: v128): v128 {
  const m = i8x16.splat(15);
  const lo = v128.and(v, m);
  const hi = v128.and(i16x8.shr_u(v, 4), m);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, hi, i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, lo, i32x4.splat(0)));
}

/** SIMD128 dot of one chunk as a chain (one partial live per row: V8 spilled the tree form). */
// @ts-ignore: decorator
@inline function chunk_dot_chain(v: v128, b0: v128, b1: v128, b2: v128, b3: v128): v128 {
  let d = i32x4.dot_i16x8_s(v128.and(v, i16x8.splat(15)), b0);
  d = i32x4.add(d, i32x4.dot_i16x8_s(i16x8.shr_u(v, 4), b1));
  d = i32x4.add(d, i32x4.dot_i16x8_s(i16x8.shr_u(v, 8), b2));
  return i32x4.add(d, i32x4.dot_i16x8_s(i16x8.shr_u(v, 12), b3));
}

/**
 * Integer dots of one chunk of 4 weight rows (at w0 + o .. w3 + o) with the activation block at ap:
 * i32x4 [row 0 .. row 3], exact.
 */
// @ts-ignore: decorator
@inline function chunk_dot4(w0: usize, w1: usize, w2: usize, w3: usize, ap: usize, ones: v128, sp: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && DOT_ADD) {
    const q0 = v128.load(ap, 0);
    const q1 = v128.load(ap, 16);
    return reduce4_i32(
      chunk_i32_dot_add(v128.load(w0), q0, q1),
      chunk_i32_dot_add(v128.load(w1), q0, q1),
      chunk_i32_dot_add(v128.load(w2), q0, q1),
      chunk_i32_dot_add(v128.load(w3), q0, q1),
    );
  }
  if (ASC_FEATURE_RELAXED_SIMD) {
    const q0 = v128.load(ap, 0);
    const q1 = v128.load(ap, 16);
    return reduce4_i16(
      chunk_i16_relaxed(v128.load(w0), q0, q1),
      chunk_i16_relaxed(v128.load(w1), q0, q1),
      chunk_i16_relaxed(v128.load(w2), q0, q1),
      chunk_i16_relaxed(v128.load(w3), q0, q1),
      ones,
    );
  }
  const b0 = v128.load(ap, 0);
  const b1 = v128.load(ap, 16);
  const b2 = v128.load(ap, 32);
  const b3 = v128.load(ap, 48);
  // rows 0-1 go through scratch: the stores keep V8 from loading rows 2-3 before they are done
  v128.store(sp, chunk_dot_chain(v128.load(w0), b0, b1, b2, b3), 0);
  v128.store(sp, chunk_dot_chain(v128.load(w1), b0, b1, b2, b3), 16);
  const d2 = chunk_dot_chain(v128.load(w2), b0, b1, b2, b3);
  const d3 = chunk_dot_chain(v128.load(w3), b0, b1, b2, b3);
  return reduce4_i32(v128.load(sp, 0), v128.load(sp, 16), d2, d3);
}

/** acc + float(dot) * (4-row group scales * the block's activation scale): the one float order both kernels use. */
// @ts-ignore: decorator
@inline function scale_acc(acc: v128, dot: v128, gsv: v128, dp: usize): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dot), f32x4.mul(gsv, v128.load32_splat(dp))));
}

/** Activation bytes per 32-weight chunk: int8 codes (relaxed) or the 4 i16 vectors (SIMD128). */
// @ts-ignore: decorator
@inline function act_chunk_bytes(): usize {
  return ASC_FEATURE_RELAXED_SIMD ? 32 : 64;
}

/**
 * Lanes of v to y[r], y[r + n4], y[r + 2 n4], y[r + 3 n4] (those < n): the rows of one strided block.
 * Blocks take rows n4 apart (n4 = ceil(n / 4)) rather than 4 adjacent rows so that each of the 4 weight
 * streams runs in its own pages: the L2 streamer then prefetches each one (4 adjacent rows share a 4 KiB
 * page and were read at ~60% of the speed). Per-row arithmetic is the same either way.
 */
// @ts-ignore: decorator
@inline function store_strided(y: usize, r: i32, n4: i32, n: i32, v: v128): void {
  store<f32>(y + (<usize>r << 2), f32x4.extract_lane(v, 0));
  if (r + n4 < n) store<f32>(y + (<usize>(r + n4) << 2), f32x4.extract_lane(v, 1));
  if (r + 2 * n4 < n) store<f32>(y + (<usize>(r + 2 * n4) << 2), f32x4.extract_lane(v, 2));
  if (r + 3 * n4 < n) store<f32>(y + (<usize>(r + 3 * n4) << 2), f32x4.extract_lane(v, 3));
}

/**
 * matvec_q4_q8 for one chunks-per-group exponent lcpg (a constant after inlining, so the group-scale
 * index j >> lcpg folds). Not unrolled: V8 hoists the second chunk's loads and spills.
 */
// @ts-ignore: decorator
@inline function matvec_q4_q8_body(
  qw: usize, sc: usize, zp: usize, mn: usize, ap0: usize, xd: usize, y: usize, n: i32, ng: i32, lcpg: i32,
  rowBytes: usize, zpRow: usize, scRow: usize, gbuf: usize, gsums: usize, ones: v128, sp: usize, mbuf: usize,
): void {
  const ab = act_chunk_bytes();
  const n4 = (n + 3) >> 2;
  for (let r = 0; r < n4; r++) {
    const r1 = min(r + n4, n - 1);
    const r2 = min(r + 2 * n4, n - 1);
    const r3 = min(r + 3 * n4, n - 1);
    let w0 = qw + <usize>r * rowBytes;
    let w1 = qw + <usize>r1 * rowBytes;
    let w2 = qw + <usize>r2 * rowBytes;
    let w3 = qw + <usize>r3 * rowBytes;
    let acc = f32x4.splat(0);
    let corr = f32x4.splat(0);
    let ap = ap0;
    let dp = xd;
    for (let g0 = 0; g0 < ng; g0 += 4) {
      corr = f32x4.add(corr, prep_supergroup(sc, scRow, zp, mn, zpRow, r, r1, r2, r3, g0, gsums, gbuf, mbuf));
      const chunks = min(4, ng - g0) << lcpg;
      for (let j = 0; j < chunks; j++) {
        const d = chunk_dot4(w0, w1, w2, w3, ap, ones, sp);
        acc = scale_acc(acc, d, v128.load(gbuf + (<usize>(j >> lcpg) << 4)), dp);
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
        ap += ab;
        dp += 4;
      }
    }
    store_strided(y, r, n4, n, f32x4.sub(acc, corr));
  }
}

/**
 * y = W x with Q8 activations (xq: int8 codes in k order, used by the relaxed build; xw: the SIMD128
 * build's i16 vectors; xd / xds: block scales and scale * code sums). 4 weight rows (n/4 apart, see
 * store_strided) share each activation load. zp / mn: zero points or fp16 mins (common.ts), 0 when absent.
 * tmp: 160 + 4 * (ng + 3) bytes of 16-byte aligned scratch.
 */
export function matvec_q4_q8(
  qw: usize, sc: usize, zp: usize, mn: usize, xq: usize, xw: usize, xd: usize, xds: usize, y: usize, n: i32,
  kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const gbuf = tmp;
  const sp = tmp + 64;
  const gsums = tmp + 96;
  const mbuf = gsums + (<usize>((ng + 3) & ~3) << 2);
  // 1 in every i16 lane, from a value the compiler cannot fold (kp > 0), so it stays in a register
  const ones = i16x8.splat(<i16>(1 + (kp >> 31)));
  block_group_sums(xds, ng, 1 << lcpg, gsums);
  const ap0 = ASC_FEATURE_RELAXED_SIMD ? xq : xw;
  if (lcpg == 0) matvec_q4_q8_body(qw, sc, zp, mn, ap0, xd, y, n, ng, 0, rowBytes, zpRow, scRow, gbuf, gsums, ones, sp, mbuf);
  else if (lcpg == 1) matvec_q4_q8_body(qw, sc, zp, mn, ap0, xd, y, n, ng, 1, rowBytes, zpRow, scRow, gbuf, gsums, ones, sp, mbuf);
  else matvec_q4_q8_body(qw, sc, zp, mn, ap0, xd, y, n, ng, 2, rowBytes, zpRow, scRow, gbuf, gsums, ones, sp, mbuf);
}

// ------------------------------------------------------------------------------------------
// int4 weights x M Q8 activation rows: Y[i][n] = sum_k W[n][k] X[i][k], row i of X quantized with
// quantize_q8 (codes at xq + i*kp, i16 vectors at xw + 2*i*kp, scales at xd / xds + i*kp/8). Same
// strided 4-weight-row blocking, integer dots and float operation order as matvec_q4_q8 (so row i is
// bit-identical to a matvec of row i), but each 16-byte weight chunk is unpacked once into an L1 buffer
// and reused for all m rows, and the per-super-group scale transpose / zero-point products are computed
// once for all rows. Accumulators live in tmp (m can exceed the register file).
// tmp: matmul_q4_q8_scratch(m, ng) bytes, 16-byte aligned.

export function matmul_q4_q8_scratch(m: i32, ng: i32): i32 {
  return 32 * m + 256 + 128 + m * (((ng + 3) & ~3) << 2);
}

/**
 * gbuf[g] = the 4 rows' scales of group g0 + g (transposed), gz[g] = gbuf[g] * zero points, or the negated
 * fp16 mins (4 x 16 bytes each).
 */
// @ts-ignore: decorator
@inline function prep_scales_gz(
  sc: usize, scRow: usize, zp: usize, mn: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32,
  gbuf: usize, gz: usize,
): void {
  const go = <usize>g0 << 1;
  const S0 = h2f4(v128.load64_zero(sc + <usize>r0 * scRow + go));
  const S1 = h2f4(v128.load64_zero(sc + <usize>r1 * scRow + go));
  const S2 = h2f4(v128.load64_zero(sc + <usize>r2 * scRow + go));
  const S3 = h2f4(v128.load64_zero(sc + <usize>r3 * scRow + go));
  const t0 = v128.shuffle<f32>(S0, S1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(S0, S1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(S2, S3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(S2, S3, 2, 6, 3, 7);
  const G0 = v128.shuffle<f32>(t0, t2, 0, 1, 4, 5);
  const G1 = v128.shuffle<f32>(t0, t2, 2, 3, 6, 7);
  const G2 = v128.shuffle<f32>(t1, t3, 0, 1, 4, 5);
  const G3 = v128.shuffle<f32>(t1, t3, 2, 3, 6, 7);
  v128.store(gbuf, G0, 0);
  v128.store(gbuf, G1, 16);
  v128.store(gbuf, G2, 32);
  v128.store(gbuf, G3, 48);
  if (mn != 0) {
    store_neg_mins4(mn, scRow, r0, r1, r2, r3, g0, gz);
  } else if (zp == 0) {
    const e = f32x4.splat(8.0);
    v128.store(gz, f32x4.mul(G0, e), 0);
    v128.store(gz, f32x4.mul(G1, e), 16);
    v128.store(gz, f32x4.mul(G2, e), 32);
    v128.store(gz, f32x4.mul(G3, e), 48);
  } else {
    const m15 = i32x4.splat(15);
    const Z = zraw4(zp, zpRow, r0, r1, r2, r3, g0);
    v128.store(gz, f32x4.mul(G0, f32x4.convert_i32x4_s(v128.and(Z, m15))), 0);
    v128.store(gz, f32x4.mul(G1, f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 4), m15))), 16);
    v128.store(gz, f32x4.mul(G2, f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 8), m15))), 32);
    v128.store(gz, f32x4.mul(G3, f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 12), m15))), 48);
  }
}

/**
 * SIMD128 build: unpacks the chunks va, vb of two weight rows into 8 i16x8 vectors (128 bytes at dst),
 * the 4 nibble vectors of chunk_dot_chain for i16 lanes 0-3 ([row a | row b], bytes 0-7) and then for
 * lanes 4-7. Each is dotted with the matching half of an activation vector duplicated into both halves,
 * so the 8 dots sum to [a, a, b, b] i32 partials and 4 weight rows need one 3-op fold instead of
 * reduce4_i32's 9. Integer sums wrap mod 2^32 and the exact dot fits, so the order does not matter.
 */
// @ts-ignore: decorator
@inline function unpack_pair_i16(va: v128, vb: v128, dst: usize): void {
  const lo = v128.shuffle<i64>(va, vb, 0, 2);
  const hi = v128.shuffle<i64>(va, vb, 1, 3);
  const m = i16x8.splat(15);
  v128.store(dst, v128.and(lo, m), 0);
  v128.store(dst, i16x8.shr_u(lo, 4), 16);
  v128.store(dst, i16x8.shr_u(lo, 8), 32);
  v128.store(dst, i16x8.shr_u(lo, 12), 48);
  v128.store(dst, v128.and(hi, m), 64);
  v128.store(dst, i16x8.shr_u(hi, 4), 80);
  v128.store(dst, i16x8.shr_u(hi, 8), 96);
  v128.store(dst, i16x8.shr_u(hi, 12), 112);
}

/** [a, a, b, b] i32 partials of a pair unpacked by unpack_pair_i16 against the activation vectors at ap. */
// @ts-ignore: decorator
@inline function pair_dot_i16(u: usize, ap: usize): v128 {
  let d = i32x4.dot_i16x8_s(v128.load(u, 0), v128.load64_splat(ap));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 16), v128.load64_splat(ap + 16)));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 32), v128.load64_splat(ap + 32)));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 48), v128.load64_splat(ap + 48)));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 64), v128.load64_splat(ap + 8)));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 80), v128.load64_splat(ap + 24)));
  d = i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 96), v128.load64_splat(ap + 40)));
  return i32x4.add(d, i32x4.dot_i16x8_s(v128.load(u, 112), v128.load64_splat(ap + 56)));
}

/**
 * Relaxed build: unpacks the chunks va, vb of two weight rows into 4 nibble-byte vectors that hold 8
 * weights of each row, [row a | row b] for k = 0-7, 8-15, 16-23, 24-31 (64 bytes at dst). Each is dotted
 * with one 8-byte activation slice duplicated into both halves (v128.load64_splat), so the four dots sum
 * to [row a | row b] i16 partials directly: per activation row, 6 i16 adds and one fold for 4 weight rows
 * instead of 4 adds and a two-level fold (reduce4_i16).
 */
// @ts-ignore: decorator
@inline function unpack_pair(va: v128, vb: v128, dst: usize): void {
  const m = i8x16.splat(15);
  const lo = v128.shuffle<i64>(va, vb, 0, 2); // bytes 0-7 of each row: k 0-7 (low nibbles), 16-23 (high)
  const hi = v128.shuffle<i64>(va, vb, 1, 3); // bytes 8-15: k 8-15, 24-31
  v128.store(dst, v128.and(lo, m), 0);
  v128.store(dst, v128.and(hi, m), 16);
  v128.store(dst, v128.and(i16x8.shr_u(lo, 4), m), 32);
  v128.store(dst, v128.and(i16x8.shr_u(hi, 4), m), 48);
}

/** [row a | row b] i16 partials (|lane| <= 4 * 2 * 15 * 128 = 15360) of a pair unpacked by unpack_pair. */
// @ts-ignore: decorator
@inline function pair_i16_relaxed(u: usize, q0: v128, q1: v128, q2: v128, q3: v128): v128 {
  return i16x8.add(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q0, v128.load(u, 0)), i16x8.relaxed_dot_i8x16_i7x16_s(q1, v128.load(u, 16))),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q2, v128.load(u, 32)), i16x8.relaxed_dot_i8x16_i7x16_s(q3, v128.load(u, 48))),
  );
}

/** One activation row against the 4 unpacked weight rows in ubuf: acc (at acp) += the chunk's scaled dots. */
// @ts-ignore: decorator
@inline function arow_step(ubuf: usize, ap: usize, gsv: v128, dp: usize, acp: usize, ones: v128): void {
  let dot: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    // addresses computed here, not as load offsets: V8 hoists base + offset of a load-splat into a
    // register per offset, which spilled the loop's scalars
    const q0 = v128.load64_splat(ap);
    const q1 = v128.load64_splat(ap + 8);
    const q2 = v128.load64_splat(ap + 16);
    const q3 = v128.load64_splat(ap + 24);
    dot = fold_pairs_i16(pair_i16_relaxed(ubuf, q0, q1, q2, q3), pair_i16_relaxed(ubuf + 64, q0, q1, q2, q3), ones);
  } else {
    const p01 = pair_dot_i16(ubuf, ap);
    const p23 = pair_dot_i16(ubuf + 128, ap);
    dot = i32x4.add(v128.shuffle<i32>(p01, p23, 0, 2, 4, 6), v128.shuffle<i32>(p01, p23, 1, 3, 5, 7));
  }
  v128.store(acp, scale_acc(v128.load(acp), dot, gsv, dp));
}

/**
 * SIMD128 and i16 relaxed builds: one 16-byte chunk of 4 weight rows unpacked once into the L1 buffer
 * ubuf, then acc[i] (16 bytes per row at accs) += the chunk's scaled dots for each of the m activation rows.
 * Relaxed: two activation rows per pass (half the loop's overhead; four per pass spilled scalar addresses);
 * the first row's accumulator store keeps V8 from hoisting the second row's loads above it (which
 * spilled). SIMD128 keeps one row per pass (its 16 unpacked vectors per row already spill; two rows
 * measured 0-5% slower).
 */
// @ts-ignore: decorator
@inline function matmul_chunk_l1(
  w0: usize, w1: usize, w2: usize, w3: usize, ubuf: usize, ap: usize, dp: usize, accs: usize, gsv: v128,
  m: i32, aRow: usize, dStride: usize, ones: v128,
): void {
  if (ASC_FEATURE_RELAXED_SIMD) {
    unpack_pair(v128.load(w0), v128.load(w1), ubuf);
    unpack_pair(v128.load(w2), v128.load(w3), ubuf + 64);
  } else {
    unpack_pair_i16(v128.load(w0), v128.load(w1), ubuf);
    unpack_pair_i16(v128.load(w2), v128.load(w3), ubuf + 128);
  }
  let acp = accs;
  let i = 0;
  for (; ASC_FEATURE_RELAXED_SIMD && i + 1 < m; i += 2) {
    arow_step(ubuf, ap, gsv, dp, acp, ones);
    arow_step(ubuf, ap + aRow, gsv, dp + dStride, acp + 16, ones);
    ap += aRow << 1;
    dp += dStride << 1;
    acp += 32;
  }
  for (; i < m; i++) {
    arow_step(ubuf, ap, gsv, dp, acp, ones);
    ap += aRow;
    dp += dStride;
    acp += 16;
  }
}

/**
 * Dot-add build: one 16-byte chunk of 4 weight rows (at w0..w3) against m activation rows, acc[i] (16
 * bytes per row at accs) += the chunk's scaled dots. The chunk is unpacked as unpack_pair does, into 8
 * vectors that stay in registers across the rows (a spill goes to the native stack, which workerd does
 * not bounds-check, unlike an L1 buffer in linear memory: per-row cost at M = 4 went from 0.74 to 0.59
 * of a matvec there); per row, 4 activation slices duplicated into both halves, 8 i32 dot-adds into
 * [a, a, b, b] / [c, c, d, d] and one 3-op fold.
 */
// @ts-ignore: decorator
@inline function chunk_rows_dot_add(
  w0: usize, w1: usize, w2: usize, w3: usize, ap: usize, dp: usize, accs: usize, gsv: v128, m: i32,
  aRow: usize, dStride: usize,
): void {
  const mk = i8x16.splat(15);
  const va = v128.load(w0);
  const vb = v128.load(w1);
  const vc = v128.load(w2);
  const vd = v128.load(w3);
  const lo01 = v128.shuffle<i64>(va, vb, 0, 2); // bytes 0-7 of rows a | b: k 0-7 (low nibbles), 16-23 (high)
  const hi01 = v128.shuffle<i64>(va, vb, 1, 3); // bytes 8-15: k 8-15, 24-31
  const lo23 = v128.shuffle<i64>(vc, vd, 0, 2);
  const hi23 = v128.shuffle<i64>(vc, vd, 1, 3);
  const u0 = v128.and(lo01, mk);
  const u1 = v128.and(hi01, mk);
  const u2 = v128.and(i16x8.shr_u(lo01, 4), mk);
  const u3 = v128.and(i16x8.shr_u(hi01, 4), mk);
  const u4 = v128.and(lo23, mk);
  const u5 = v128.and(hi23, mk);
  const u6 = v128.and(i16x8.shr_u(lo23, 4), mk);
  const u7 = v128.and(i16x8.shr_u(hi23, 4), mk);
  let acp = accs;
  for (let i = 0; i < m; i++) {
    const q0 = v128.load64_splat(ap);
    const q1 = v128.load64_splat(ap + 8);
    const q2 = v128.load64_splat(ap + 16);
    const q3 = v128.load64_splat(ap + 24);
    const z = i32x4.splat(0);
    let p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u0, z);
    let p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u4, z);
    p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u1, p01);
    p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u5, p23);
    p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u2, p01);
    p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u6, p23);
    p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u3, p01);
    p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u7, p23);
    const dot = i32x4.add(v128.shuffle<i32>(p01, p23, 0, 2, 4, 6), v128.shuffle<i32>(p01, p23, 1, 3, 5, 7));
    v128.store(acp, scale_acc(v128.load(acp), dot, gsv, dp));
    ap += aRow;
    dp += dStride;
    acp += 16;
  }
}

/** One activation row against the register-held chunk u0..u7 (chunk_rows_dot_add's per-row work): acc + scaled dots. */
// @ts-ignore: decorator
@inline function row_dot_add(
  ap: usize, dp: usize, u0: v128, u1: v128, u2: v128, u3: v128, u4: v128, u5: v128, u6: v128, u7: v128,
  gsv: v128, acc: v128,
): v128 {
  const q0 = v128.load64_splat(ap);
  const q1 = v128.load64_splat(ap + 8);
  const q2 = v128.load64_splat(ap + 16);
  const q3 = v128.load64_splat(ap + 24);
  const z = i32x4.splat(0);
  let p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u0, z);
  let p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u4, z);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u1, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u5, p23);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u2, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u6, p23);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u3, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u7, p23);
  const dot = i32x4.add(v128.shuffle<i32>(p01, p23, 0, 2, 4, 6), v128.shuffle<i32>(p01, p23, 1, 3, 5, 7));
  return scale_acc(acc, dot, gsv, dp);
}

/**
 * Dot-add build: T (2 or 4, a constant after inlining) activation rows against the `chunks` chunks of
 * one super-group of 4 weight rows (at w0..w3), accumulators loaded from accs once, held in registers
 * across the chunks and stored once (chunk_rows_dot_add loads and stores them per chunk: each access to
 * linear memory is bounds-checked in workerd, a spill to the native stack is not). Per row and chunk the
 * same dots, fold and scale_acc in the same order as the matvec, so the result is bit-identical.
 */
// @ts-ignore: decorator
@inline function tile_dot_add(
  w0: usize, w1: usize, w2: usize, w3: usize, chunks: i32, lcpg: i32, gbuf: usize, ap: usize, dp: usize,
  accs: usize, aRow: usize, dStride: usize, T: i32,
): void {
  let c0 = v128.load(accs, 0);
  let c1 = v128.load(accs, 16);
  let c2 = c0;
  let c3 = c0;
  if (T > 2) {
    c2 = v128.load(accs, 32);
    c3 = v128.load(accs, 48);
  }
  const mk = i8x16.splat(15);
  for (let j = 0; j < chunks; j++) {
    const gsv = v128.load(gbuf + (<usize>(j >> lcpg) << 4));
    const va = v128.load(w0);
    const vb = v128.load(w1);
    const vc = v128.load(w2);
    const vd = v128.load(w3);
    const lo01 = v128.shuffle<i64>(va, vb, 0, 2);
    const hi01 = v128.shuffle<i64>(va, vb, 1, 3);
    const lo23 = v128.shuffle<i64>(vc, vd, 0, 2);
    const hi23 = v128.shuffle<i64>(vc, vd, 1, 3);
    const u0 = v128.and(lo01, mk);
    const u1 = v128.and(hi01, mk);
    const u2 = v128.and(i16x8.shr_u(lo01, 4), mk);
    const u3 = v128.and(i16x8.shr_u(hi01, 4), mk);
    const u4 = v128.and(lo23, mk);
    const u5 = v128.and(hi23, mk);
    const u6 = v128.and(i16x8.shr_u(lo23, 4), mk);
    const u7 = v128.and(i16x8.shr_u(hi23, 4), mk);
    c0 = row_dot_add(ap, dp, u0, u1, u2, u3, u4, u5, u6, u7, gsv, c0);
    c1 = row_dot_add(ap + aRow, dp + dStride, u0, u1, u2, u3, u4, u5, u6, u7, gsv, c1);
    if (T > 2) {
      c2 = row_dot_add(ap + (aRow << 1), dp + (dStride << 1), u0, u1, u2, u3, u4, u5, u6, u7, gsv, c2);
      c3 = row_dot_add(ap + aRow * 3, dp + dStride * 3, u0, u1, u2, u3, u4, u5, u6, u7, gsv, c3);
    }
    w0 += 16;
    w1 += 16;
    w2 += 16;
    w3 += 16;
    ap += 32;
    dp += 4;
  }
  v128.store(accs, c0, 0);
  v128.store(accs, c1, 16);
  if (T > 2) {
    v128.store(accs, c2, 32);
    v128.store(accs, c3, 48);
  }
}

export function matmul_q4_q8(
  qw: usize, sc: usize, zp: usize, mn: usize, xq: usize, xw: usize, xd: usize, xds: usize, y: usize, m: i32, n: i32,
  kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const nb = <usize>(kp >> 5);
  const accs = tmp;
  const corrs = accs + (<usize>m << 4);
  const ubuf = corrs + (<usize>m << 4); // 4 weight rows' unpacked chunk (256 bytes SIMD128, 128 relaxed i16)
  const gbuf = ubuf + 256;
  const gz = gbuf + 64;
  const gsStride = <usize>(((ng + 3) & ~3) << 2);
  const gsums = gz + 64;
  // activation stride per row and per chunk: int8 codes (relaxed) or i16 vectors (SIMD128)
  const aRow: usize = ASC_FEATURE_RELAXED_SIMD ? <usize>kp : <usize>kp << 1;
  const aChunk: usize = ASC_FEATURE_RELAXED_SIMD ? 32 : 64;
  const a0p = ASC_FEATURE_RELAXED_SIMD ? xq : xw;
  const ones = i16x8.splat(<i16>(1 + (kp >> 31))); // as in matvec_q4_q8
  for (let i = 0; i < m; i++) block_group_sums(xds + <usize>i * (nb << 2), ng, 1 << lcpg, gsums + <usize>i * gsStride);
  const n4 = (n + 3) >> 2; // strided blocks, as in matvec_q4_q8
  for (let r = 0; r < n4; r++) {
    const r1 = min(r + n4, n - 1);
    const r2 = min(r + 2 * n4, n - 1);
    const r3 = min(r + 3 * n4, n - 1);
    let w0 = qw + <usize>r * rowBytes;
    let w1 = qw + <usize>r1 * rowBytes;
    let w2 = qw + <usize>r2 * rowBytes;
    let w3 = qw + <usize>r3 * rowBytes;
    for (let i = 0; i < m; i++) {
      v128.store(accs + (<usize>i << 4), f32x4.splat(0));
      v128.store(corrs + (<usize>i << 4), f32x4.splat(0));
    }
    let chunk: usize = 0;
    for (let g0 = 0; g0 < ng; g0 += 4) {
      prep_scales_gz(sc, scRow, zp, mn, zpRow, r, r1, r2, r3, g0, gbuf, gz);
      const Z0 = v128.load(gz, 0);
      const Z1 = v128.load(gz, 16);
      const Z2 = v128.load(gz, 32);
      const Z3 = v128.load(gz, 48);
      for (let i = 0; i < m; i++) {
        // zero-point / min term, as in prep_supergroup (group_corr's order); gsums is 0 past ng. The 4 group
        // sums are broadcast by the loads (vbroadcastss from memory: no shuffle on the vector ports)
        const A = gsums + <usize>i * gsStride + (<usize>g0 << 2);
        const c = f32x4.add(
          f32x4.add(f32x4.mul(Z0, v128.load32_splat(A)), f32x4.mul(Z1, v128.load32_splat(A + 4))),
          f32x4.add(f32x4.mul(Z2, v128.load32_splat(A + 8)), f32x4.mul(Z3, v128.load32_splat(A + 12))),
        );
        const cp = corrs + (<usize>i << 4);
        v128.store(cp, f32x4.add(v128.load(cp), c));
      }
      const chunks = min(4, ng - g0) << lcpg;
      if (ASC_FEATURE_RELAXED_SIMD && DOT_ADD && (m == 2 || m == 4)) {
        // m = 2, 4 (a verify pass of 2 / 4 tokens): all rows in one register tile (measured in workerd,
        // same-run A/B: tiles of 4 then 2 were slower from m = 8 on, where each extra tile unpacks again)
        const ap = a0p + chunk * aChunk;
        const dp = xd + (chunk << 2);
        const dStride = nb << 2;
        if (m == 4) tile_dot_add(w0, w1, w2, w3, chunks, lcpg, gbuf, ap, dp, accs, aRow, dStride, 4);
        else tile_dot_add(w0, w1, w2, w3, chunks, lcpg, gbuf, ap, dp, accs, aRow, dStride, 2);
        const adv = <usize>chunks << 4;
        w0 += adv;
        w1 += adv;
        w2 += adv;
        w3 += adv;
        chunk += <usize>chunks;
        continue;
      }
      for (let j = 0; j < chunks; j++) {
        const gsv = v128.load(gbuf + (<usize>(j >> lcpg) << 4));
        const ap = a0p + chunk * aChunk;
        const dp = xd + (chunk << 2);
        if (ASC_FEATURE_RELAXED_SIMD && DOT_ADD) chunk_rows_dot_add(w0, w1, w2, w3, ap, dp, accs, gsv, m, aRow, nb << 2);
        else matmul_chunk_l1(w0, w1, w2, w3, ubuf, ap, dp, accs, gsv, m, aRow, nb << 2, ones);
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
        chunk++;
      }
    }
    for (let i = 0; i < m; i++) {
      store_strided(y + ((<usize>i * <usize>n) << 2), r, n4, n, f32x4.sub(v128.load(accs + (<usize>i << 4)), v128.load(corrs + (<usize>i << 4))));
    }
  }
}

// ------------------------------------------------------------------------------------------
// BENCH ONLY, NOT EXACT: the arithmetic floor of the batched kernel (issue 12). It keeps what every
// activation row must pay in matmul_q4_q8 and drops the rest, so the bench can show how far the real
// kernel is from what this instruction set allows: per 16-byte chunk of 4 weight rows the same weight
// loads and unpack (once, for all rows), and per activation row only its activation loads and its dots;
// no group scales, zero-point terms, horizontal fold, float conversion / scaling or accumulator memory.
// Each row's dots are summed into one i32 register accumulator by 2 adds (as the real kernel's chains
// start from zero per chunk, so the dots of successive chunks still overlap); one store per 4-row block
// keeps the work live. Its output is garbage by design: no caller but src/bench/kernel-table.ts.
// Compiled in only with BENCH_FLOOR = 1 (the *-bench.wasm builds of src/kernels/wasm/build.ts, which the
// kernel table loads); the production builds keep a stub export (the floor's 4 specializations are ~5-7
// KB, 12-16% of a build). The bench builds' real kernels are the same code as production's: they are
// timed against the floor in one instance and memory.

/** Dot-add build: one activation row (int8 codes at ap) against the unpacked chunk, added to acc. */
// @ts-ignore: decorator
@inline function floor_row_dot_add(ap: usize, u0: v128, u1: v128, u2: v128, u3: v128, u4: v128, u5: v128, u6: v128, u7: v128, acc: v128): v128 {
  const q0 = v128.load64_splat(ap);
  const q1 = v128.load64_splat(ap + 8);
  const q2 = v128.load64_splat(ap + 16);
  const q3 = v128.load64_splat(ap + 24);
  const z = i32x4.splat(0);
  let p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u0, z);
  let p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, u4, z);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u1, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, u5, p23);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u2, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q2, u6, p23);
  p01 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u3, p01);
  p23 = i32x4.relaxed_dot_i8x16_i7x16_add_s(q3, u7, p23);
  return i32x4.add(acc, i32x4.add(p01, p23));
}

/** i16 relaxed build: the same with i16x8.relaxed_dot_i8x16_i7x16_s (pair_i16_relaxed's adds; wraps). */
// @ts-ignore: decorator
@inline function floor_row_i16(ap: usize, u0: v128, u1: v128, u2: v128, u3: v128, u4: v128, u5: v128, u6: v128, u7: v128, acc: v128): v128 {
  const q0 = v128.load64_splat(ap);
  const q1 = v128.load64_splat(ap + 8);
  const q2 = v128.load64_splat(ap + 16);
  const q3 = v128.load64_splat(ap + 24);
  const p01 = i16x8.add(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q0, u0), i16x8.relaxed_dot_i8x16_i7x16_s(q1, u1)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q2, u2), i16x8.relaxed_dot_i8x16_i7x16_s(q3, u3)),
  );
  const p23 = i16x8.add(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q0, u4), i16x8.relaxed_dot_i8x16_i7x16_s(q1, u5)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(q2, u6), i16x8.relaxed_dot_i8x16_i7x16_s(q3, u7)),
  );
  return i16x8.add(acc, i16x8.add(p01, p23));
}

/** One relaxed-build activation row (dot-add or i16, per build). */
// @ts-ignore: decorator
@inline function floor_row(ap: usize, u0: v128, u1: v128, u2: v128, u3: v128, u4: v128, u5: v128, u6: v128, u7: v128, acc: v128): v128 {
  if (DOT_ADD) return floor_row_dot_add(ap, u0, u1, u2, u3, u4, u5, u6, u7, acc);
  return floor_row_i16(ap, u0, u1, u2, u3, u4, u5, u6, u7, acc);
}

/** SIMD128 build: one activation row (i16 vectors at ap) against the chunk unpacked into ubuf, added to acc. */
// @ts-ignore: decorator
@inline function floor_row_simd(ubuf: usize, ap: usize, acc: v128): v128 {
  return i32x4.add(acc, i32x4.add(pair_dot_i16(ubuf, ap), pair_dot_i16(ubuf + 128, ap)));
}

/**
 * The floor for a compile-time row count M (1, 2, 4 or 8): accumulators a0..a7 are locals, so after
 * inlining rows past M vanish and the rest live in registers (or V8's spill slots).
 */
// @ts-ignore: decorator
@inline function floor_body(qw: usize, a0p: usize, y: usize, n: i32, kp: i32, M: i32, ubuf: usize): void {
  const rowBytes = <usize>(kp >> 1);
  const nb = kp >> 5;
  const aRow: usize = ASC_FEATURE_RELAXED_SIMD ? <usize>kp : <usize>kp << 1;
  const aChunk: usize = ASC_FEATURE_RELAXED_SIMD ? 32 : 64;
  const n4 = (n + 3) >> 2;
  for (let r = 0; r < n4; r++) {
    let w0 = qw + <usize>r * rowBytes;
    let w1 = qw + <usize>min(r + n4, n - 1) * rowBytes;
    let w2 = qw + <usize>min(r + 2 * n4, n - 1) * rowBytes;
    let w3 = qw + <usize>min(r + 3 * n4, n - 1) * rowBytes;
    let a0 = i32x4.splat(0);
    let a1 = a0;
    let a2 = a0;
    let a3 = a0;
    let a4 = a0;
    let a5 = a0;
    let a6 = a0;
    let a7 = a0;
    let ap = a0p;
    for (let j = 0; j < nb; j++) {
      if (ASC_FEATURE_RELAXED_SIMD) {
        // chunk_rows_dot_add's loads and unpack (unpack_pair's 4 vectors per row pair, in registers)
        const mk = i8x16.splat(15);
        const va = v128.load(w0);
        const vb = v128.load(w1);
        const vc = v128.load(w2);
        const vd = v128.load(w3);
        const lo01 = v128.shuffle<i64>(va, vb, 0, 2);
        const hi01 = v128.shuffle<i64>(va, vb, 1, 3);
        const lo23 = v128.shuffle<i64>(vc, vd, 0, 2);
        const hi23 = v128.shuffle<i64>(vc, vd, 1, 3);
        const u0 = v128.and(lo01, mk);
        const u1 = v128.and(hi01, mk);
        const u2 = v128.and(i16x8.shr_u(lo01, 4), mk);
        const u3 = v128.and(i16x8.shr_u(hi01, 4), mk);
        const u4 = v128.and(lo23, mk);
        const u5 = v128.and(hi23, mk);
        const u6 = v128.and(i16x8.shr_u(lo23, 4), mk);
        const u7 = v128.and(i16x8.shr_u(hi23, 4), mk);
        let p = ap;
        a0 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a0);
        if (M > 1) {
          p += aRow;
          a1 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a1);
        }
        if (M > 2) {
          p += aRow;
          a2 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a2);
          p += aRow;
          a3 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a3);
        }
        if (M > 4) {
          p += aRow;
          a4 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a4);
          p += aRow;
          a5 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a5);
          p += aRow;
          a6 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a6);
          p += aRow;
          a7 = floor_row(p, u0, u1, u2, u3, u4, u5, u6, u7, a7);
        }
      } else {
        // matmul_chunk_l1's SIMD128 unpack into the L1 buffer (16 i16 vectors do not fit in registers)
        unpack_pair_i16(v128.load(w0), v128.load(w1), ubuf);
        unpack_pair_i16(v128.load(w2), v128.load(w3), ubuf + 128);
        let p = ap;
        a0 = floor_row_simd(ubuf, p, a0);
        if (M > 1) {
          p += aRow;
          a1 = floor_row_simd(ubuf, p, a1);
        }
        if (M > 2) {
          p += aRow;
          a2 = floor_row_simd(ubuf, p, a2);
          p += aRow;
          a3 = floor_row_simd(ubuf, p, a3);
        }
        if (M > 4) {
          p += aRow;
          a4 = floor_row_simd(ubuf, p, a4);
          p += aRow;
          a5 = floor_row_simd(ubuf, p, a5);
          p += aRow;
          a6 = floor_row_simd(ubuf, p, a6);
          p += aRow;
          a7 = floor_row_simd(ubuf, p, a7);
        }
      }
      w0 += 16;
      w1 += 16;
      w2 += 16;
      w3 += 16;
      ap += aChunk;
    }
    const s = i32x4.add(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), i32x4.add(i32x4.add(a4, a5), i32x4.add(a6, a7)));
    v128.store(y + (<usize>r << 4), s);
  }
}

/**
 * BENCH ONLY, NOT EXACT (see above): the batched kernel's unavoidable work for m = 1, 2, 4 or 8
 * activation rows (other m: nothing is done, returns 0) over matmul_q4_q8's weights (qw: codes) and
 * activations (xq: int8 codes, relaxed builds; xw: i16 vectors, SIMD128). y: 16 * ceil(n / 4) bytes of
 * garbage out. tmp: 256 bytes of 16-byte aligned scratch (SIMD128's unpacked chunk). Returns m, or -1
 * in a production build (BENCH_FLOOR = 0: a stub).
 */
export function matmul_q4_q8_floor(qw: usize, xq: usize, xw: usize, y: usize, m: i32, n: i32, kp: i32, tmp: usize): i32 {
  if (!BENCH_FLOOR) return -1;
  const a0p = ASC_FEATURE_RELAXED_SIMD ? xq : xw;
  if (m == 1) floor_body(qw, a0p, y, n, kp, 1, tmp);
  else if (m == 2) floor_body(qw, a0p, y, n, kp, 2, tmp);
  else if (m == 4) floor_body(qw, a0p, y, n, kp, 4, tmp);
  else if (m == 8) floor_body(qw, a0p, y, n, kp, 8, tmp);
  else return 0;
  return m;
}
