// Helpers shared by the kernel families (all inlined): fp16 widening, horizontal sums, 4-row reductions
// and the int4 kernels' per-super-group scale / zero-point / fp16-min setup, exp.
//
// Group offsets of the int4 kernels: zp (uint4 zero points, w = (q - z) d) or mn (fp16 mins, w = q d + m,
// ggml Q4_1), at most one of them non-zero; neither = symmetric (z = 8). Both enter only through a
// per-group correction subtracted from the integer / code dot: z d sum(x), or -m sum(x).

/** IEEE binary16 bits -> f32; exact for normals, subnormals and zero (scales are finite). */
// @ts-ignore: decorator
@inline export function h2f(h: u32): f32 {
  // Put the 15 magnitude bits under the f32 exponent/mantissa, then rebias by 2^(127-15).
  const mag = reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33;
  return reinterpret<f32>(reinterpret<u32>(mag) | ((h & 0x8000) << 16));
}

// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(s, v128.shuffle<f32>(s, s, 1, 0, 3, 2)), 0);
}

// @ts-ignore: decorator
@inline export function hsum_i32(v: v128): i32 {
  const s = i32x4.add(v, v128.shuffle<i32>(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(i32x4.add(s, v128.shuffle<i32>(s, s, 1, 0, 3, 2)), 0);
}

// @ts-ignore: decorator
@inline export function zero_point(zp: usize, zpRow: usize, row: i32, g: i32): f32 {
  if (zp == 0) return 8.0;
  const b = <u32>load<u8>(zp + <usize>row * zpRow + <usize>(g >> 1));
  return <f32>((b >> ((<u32>g & 1) << 2)) & 15);
}

// Swizzle masks: bytes 4i..4i+3 of a chunk zero-extended into the four i32 lanes
// (indices with the top bit set read as 0).
// @ts-ignore: decorator
@inline export function mask(i: i32): v128 {
  if (i == 0) return i8x16(0, -128, -128, -128, 1, -128, -128, -128, 2, -128, -128, -128, 3, -128, -128, -128);
  if (i == 1) return i8x16(4, -128, -128, -128, 5, -128, -128, -128, 6, -128, -128, -128, 7, -128, -128, -128);
  if (i == 2) return i8x16(8, -128, -128, -128, 9, -128, -128, -128, 10, -128, -128, -128, 11, -128, -128, -128);
  return i8x16(12, -128, -128, -128, 13, -128, -128, -128, 14, -128, -128, -128, 15, -128, -128, -128);
}

/** 4 fp16 bit patterns (low 64 bits of h) -> f32x4; same exactness as h2f. */
// @ts-ignore: decorator
@inline export function h2f4(h: v128): v128 {
  return h2f4_u32(i32x4.extend_low_i16x8_u(h));
}

/** Same for the high 64 bits of h. */
// @ts-ignore: decorator
@inline export function h2f4_high(h: v128): v128 {
  return h2f4_u32(i32x4.extend_high_i16x8_u(h));
}

/** fp16 bit patterns zero-extended in i32 lanes -> f32x4 (exact for finite values; inf/nan -> 65536-ish). */
// @ts-ignore: decorator
@inline export function h2f4_u32(u: v128): v128 {
  // <<16 then >>s 3 leaves sign in bit 31 (plus 3 copies) and exp/mantissa at bit 13.
  const v = i32x4.shr_s(i32x4.shl(u, 16), 3);
  const bits = v128.and(v, i32x4.splat(0x8fffffff));
  return f32x4.mul(bits, f32x4.splat(5.192296858534828e33));
}

/** [sum(p0), sum(p1), sum(p2), sum(p3)] for f32x4 partials. */
// @ts-ignore: decorator
@inline export function reduce4_f32(p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  const t0 = f32x4.add(v128.shuffle<f32>(p0, p1, 0, 1, 4, 5), v128.shuffle<f32>(p0, p1, 2, 3, 6, 7));
  const t1 = f32x4.add(v128.shuffle<f32>(p2, p3, 0, 1, 4, 5), v128.shuffle<f32>(p2, p3, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(t0, t1, 0, 2, 4, 6), v128.shuffle<f32>(t0, t1, 1, 3, 5, 7));
}

/** Same for i32x4 partials. */
// @ts-ignore: decorator
@inline export function reduce4_i32(p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  const t0 = i32x4.add(v128.shuffle<i32>(p0, p1, 0, 1, 4, 5), v128.shuffle<i32>(p0, p1, 2, 3, 6, 7));
  const t1 = i32x4.add(v128.shuffle<i32>(p2, p3, 0, 1, 4, 5), v128.shuffle<i32>(p2, p3, 2, 3, 6, 7));
  return i32x4.add(v128.shuffle<i32>(t0, t1, 0, 2, 4, 6), v128.shuffle<i32>(t0, t1, 1, 3, 5, 7));
}

/** Stores lanes of v to y[r..] (all 4 unless the block is the ragged last one). */
// @ts-ignore: decorator
@inline export function store_rows(y: usize, r: i32, n: i32, v: v128): void {
  const yp = y + (<usize>r << 2);
  if (r + 4 <= n) {
    v128.store(yp, v);
  } else {
    store<f32>(yp, f32x4.extract_lane(v, 0));
    if (r + 1 < n) store<f32>(yp, f32x4.extract_lane(v, 1), 4);
    if (r + 2 < n) store<f32>(yp, f32x4.extract_lane(v, 2), 8);
  }
}

/** Raw zero-point nibbles of groups g0..g0+3 for 4 rows (u16 per row; lane >> 4*i & 15 = group g0+i). */
// @ts-ignore: decorator
@inline export function zraw4(zp: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32): v128 {
  const o = <usize>(g0 >> 1);
  let z = i32x4.splat(<i32>load<u16>(zp + <usize>r0 * zpRow + o));
  z = i32x4.replace_lane(z, 1, <i32>load<u16>(zp + <usize>r1 * zpRow + o));
  z = i32x4.replace_lane(z, 2, <i32>load<u16>(zp + <usize>r2 * zpRow + o));
  return i32x4.replace_lane(z, 3, <i32>load<u16>(zp + <usize>r3 * zpRow + o));
}

/**
 * The negated fp16 mins of groups g0..g0+3 for 4 rows (row stride mnRow bytes), transposed to one 4-row
 * vector per group, stored at dst (4 x 16 bytes): the mins' per-group factor of the correction term
 * (sum_k (q d + m) x = sum_k q d x - (-m) sum(x)). Reads 8 bytes per row (past ng: never used).
 */
// @ts-ignore: decorator
@inline export function store_neg_mins4(
  mn: usize, mnRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32, dst: usize,
): void {
  const go = <usize>g0 << 1;
  const M0 = h2f4(v128.load64_zero(mn + <usize>r0 * mnRow + go));
  const M1 = h2f4(v128.load64_zero(mn + <usize>r1 * mnRow + go));
  const M2 = h2f4(v128.load64_zero(mn + <usize>r2 * mnRow + go));
  const M3 = h2f4(v128.load64_zero(mn + <usize>r3 * mnRow + go));
  const t0 = v128.shuffle<f32>(M0, M1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(M0, M1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(M2, M3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(M2, M3, 2, 6, 3, 7);
  v128.store(dst, f32x4.neg(v128.shuffle<f32>(t0, t2, 0, 1, 4, 5)), 0);
  v128.store(dst, f32x4.neg(v128.shuffle<f32>(t0, t2, 2, 3, 6, 7)), 16);
  v128.store(dst, f32x4.neg(v128.shuffle<f32>(t1, t3, 0, 1, 4, 5)), 32);
  v128.store(dst, f32x4.neg(v128.shuffle<f32>(t1, t3, 2, 3, 6, 7)), 48);
}

/**
 * The correction of 4 rows for one super-group from 4 per-group factors at f (4 x 16 bytes: scale * z,
 * or -min) and the group activation sums A: (f0 A0 + f1 A1) + (f2 A2 + f3 A3), the one float order the
 * matvec and the batched matmul share.
 */
// @ts-ignore: decorator
@inline export function group_corr(f: usize, A: v128): v128 {
  return f32x4.add(
    f32x4.add(
      f32x4.mul(v128.load(f, 0), v128.shuffle<f32>(A, A, 0, 0, 0, 0)),
      f32x4.mul(v128.load(f, 16), v128.shuffle<f32>(A, A, 1, 1, 1, 1)),
    ),
    f32x4.add(
      f32x4.mul(v128.load(f, 32), v128.shuffle<f32>(A, A, 2, 2, 2, 2)),
      f32x4.mul(v128.load(f, 48), v128.shuffle<f32>(A, A, 3, 3, 3, 3)),
    ),
  );
}

/**
 * Per super-group setup (4 rows x groups g0..g0+3): writes each group's 4-row scale vector to gbuf
 * (4 x 16 bytes, read back in the chunk loop instead of pinning 4 registers) and returns the
 * zero-point term sum_g scale * z * gsum[g] (or, with fp16 mins at mn, -sum_g min * gsum[g]) as a
 * 4-row vector. gsums is zero past ng, so missing groups of a ragged super-group contribute nothing.
 * mbuf: 64 bytes of scratch for the mins (unused without them).
 */
// @ts-ignore: decorator
@inline export function prep_supergroup(
  sc: usize, scRow: usize, zp: usize, mn: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32,
  gsums: usize, gbuf: usize, mbuf: usize,
): v128 {
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
  const A = v128.load(gsums + (<usize>g0 << 2));
  const m15 = i32x4.splat(15);
  if (mn != 0) {
    store_neg_mins4(mn, scRow, r0, r1, r2, r3, g0, mbuf);
    return group_corr(mbuf, A);
  }
  if (zp == 0) {
    // symmetric: z = 8 for every group
    const a8 = f32x4.mul(A, f32x4.splat(8.0));
    return f32x4.add(
      f32x4.add(f32x4.mul(G0, v128.shuffle<f32>(a8, a8, 0, 0, 0, 0)), f32x4.mul(G1, v128.shuffle<f32>(a8, a8, 1, 1, 1, 1))),
      f32x4.add(f32x4.mul(G2, v128.shuffle<f32>(a8, a8, 2, 2, 2, 2)), f32x4.mul(G3, v128.shuffle<f32>(a8, a8, 3, 3, 3, 3))),
    );
  }
  const Z = zraw4(zp, zpRow, r0, r1, r2, r3, g0);
  const z0 = f32x4.convert_i32x4_s(v128.and(Z, m15));
  const z1 = f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 4), m15));
  const z2 = f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 8), m15));
  const z3 = f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(Z, 12), m15));
  return f32x4.add(
    f32x4.add(
      f32x4.mul(f32x4.mul(G0, z0), v128.shuffle<f32>(A, A, 0, 0, 0, 0)),
      f32x4.mul(f32x4.mul(G1, z1), v128.shuffle<f32>(A, A, 1, 1, 1, 1)),
    ),
    f32x4.add(
      f32x4.mul(f32x4.mul(G2, z2), v128.shuffle<f32>(A, A, 2, 2, 2, 2)),
      f32x4.mul(f32x4.mul(G3, z3), v128.shuffle<f32>(A, A, 3, 3, 3, 3)),
    ),
  );
}

/** Zeroes out[ng .. ng rounded up to 4) so ragged super-groups read zeros. */
// @ts-ignore: decorator
@inline export function pad_sums(out: usize, ng: i32): void {
  for (let g = ng; g & 3; g++) store<f32>(out + (<usize>g << 2), 0);
}

// @ts-ignore: decorator
@inline export function log2_cpg(gs: i32): i32 {
  return gs == 32 ? 0 : gs == 64 ? 1 : 2;
}

/** e^x for 4 lanes (Cephes expf polynomial, ~1 ulp on the clamped range [-87.3, 88]). */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.3)), f32x4.splat(88.0));
  const fx = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const e = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0));
  const pow2 = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(fx), i32x4.splat(127)), 23);
  return f32x4.mul(e, pow2);
}

// @ts-ignore: decorator
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}
