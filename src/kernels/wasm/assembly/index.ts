// shardlm WASM SIMD128 kernels (AssemblyScript, --runtime stub, no allocation inside wasm).
//
// Every pointer is a byte offset into the exported linear memory; the TypeScript side
// (src/kernels/wasm/index.ts) owns allocation. Int4 weights use the layout documented in
// src/format/int4.ts: planar qweight / fp16 scales / packed uint4 zero points, 16-byte chunks
// holding codes for k = j (low nibble) and k = j + 16 (high nibble).
// Activations are zero-padded to kp (= nGroups * groupSize) by the caller.

// ------------------------------------------------------------------------------------------
// small helpers

export function heap_base(): usize {
  return __heap_base;
}

/** 1 in the relaxed-SIMD build (kernels-relaxed.wasm, for workerd), else 0. */
export function relaxed_simd(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

/** IEEE binary16 bits -> f32; exact for normals, subnormals and zero (scales are finite). */
// @ts-ignore: decorator
@inline function h2f(h: u32): f32 {
  // Put the 15 magnitude bits under the f32 exponent/mantissa, then rebias by 2^(127-15).
  const mag = reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33;
  return reinterpret<f32>(reinterpret<u32>(mag) | ((h & 0x8000) << 16));
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(s, v128.shuffle<f32>(s, s, 1, 0, 3, 2)), 0);
}

// @ts-ignore: decorator
@inline function hsum_i32(v: v128): i32 {
  const s = i32x4.add(v, v128.shuffle<i32>(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(i32x4.add(s, v128.shuffle<i32>(s, s, 1, 0, 3, 2)), 0);
}

// @ts-ignore: decorator
@inline function zero_point(zp: usize, zpRow: usize, row: i32, g: i32): f32 {
  if (zp == 0) return 8.0;
  const b = <u32>load<u8>(zp + <usize>row * zpRow + <usize>(g >> 1));
  return <f32>((b >> ((<u32>g & 1) << 2)) & 15);
}

// Swizzle masks: bytes 4i..4i+3 of a chunk zero-extended into the four i32 lanes
// (indices with the top bit set read as 0).
// @ts-ignore: decorator
@inline function mask(i: i32): v128 {
  if (i == 0) return i8x16(0, -128, -128, -128, 1, -128, -128, -128, 2, -128, -128, -128, 3, -128, -128, -128);
  if (i == 1) return i8x16(4, -128, -128, -128, 5, -128, -128, -128, 6, -128, -128, -128, 7, -128, -128, -128);
  if (i == 2) return i8x16(8, -128, -128, -128, 9, -128, -128, -128, 10, -128, -128, -128, 11, -128, -128, -128);
  return i8x16(12, -128, -128, -128, 13, -128, -128, -128, 14, -128, -128, -128, 15, -128, -128, -128);
}

/** 4 fp16 bit patterns (low 64 bits of h) -> f32x4; same exactness as h2f. */
// @ts-ignore: decorator
@inline function h2f4(h: v128): v128 {
  return h2f4_u32(i32x4.extend_low_i16x8_u(h));
}

/** Same for the high 64 bits of h. */
// @ts-ignore: decorator
@inline function h2f4_high(h: v128): v128 {
  return h2f4_u32(i32x4.extend_high_i16x8_u(h));
}

/** fp16 bit patterns zero-extended in i32 lanes -> f32x4 (exact for finite values; inf/nan -> 65536-ish). */
// @ts-ignore: decorator
@inline function h2f4_u32(u: v128): v128 {
  // <<16 then >>s 3 leaves sign in bit 31 (plus 3 copies) and exp/mantissa at bit 13.
  const v = i32x4.shr_s(i32x4.shl(u, 16), 3);
  const bits = v128.and(v, i32x4.splat(0x8fffffff));
  return f32x4.mul(bits, f32x4.splat(5.192296858534828e33));
}

/** [sum(p0), sum(p1), sum(p2), sum(p3)] for f32x4 partials. */
// @ts-ignore: decorator
@inline function reduce4_f32(p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  const t0 = f32x4.add(v128.shuffle<f32>(p0, p1, 0, 1, 4, 5), v128.shuffle<f32>(p0, p1, 2, 3, 6, 7));
  const t1 = f32x4.add(v128.shuffle<f32>(p2, p3, 0, 1, 4, 5), v128.shuffle<f32>(p2, p3, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(t0, t1, 0, 2, 4, 6), v128.shuffle<f32>(t0, t1, 1, 3, 5, 7));
}

/** Same for i32x4 partials. */
// @ts-ignore: decorator
@inline function reduce4_i32(p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  const t0 = i32x4.add(v128.shuffle<i32>(p0, p1, 0, 1, 4, 5), v128.shuffle<i32>(p0, p1, 2, 3, 6, 7));
  const t1 = i32x4.add(v128.shuffle<i32>(p2, p3, 0, 1, 4, 5), v128.shuffle<i32>(p2, p3, 2, 3, 6, 7));
  return i32x4.add(v128.shuffle<i32>(t0, t1, 0, 2, 4, 6), v128.shuffle<i32>(t0, t1, 1, 3, 5, 7));
}

// The row loops below work on 4 rows r..r+3 at once (rows past n repeat row n-1; only valid lanes are
// stored) and on "super-groups" of 4 groups: the 4x4 (row, group) fp16 scales are widened in SIMD and
// transposed so each group gets one vector of its 4 rows' scales; per-row partial dots are reduced into
// one [row0..row3] vector per chunk/group, so scales, zero points and outputs are all 4-row vectors.
// Scale/zero loads may read up to 6 bytes past a row (the wrapper leaves 16 bytes of slack).

/** Stores lanes of v to y[r..] (all 4 unless the block is the ragged last one). */
// @ts-ignore: decorator
@inline function store_rows(y: usize, r: i32, n: i32, v: v128): void {
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
@inline function zraw4(zp: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32): v128 {
  const o = <usize>(g0 >> 1);
  let z = i32x4.splat(<i32>load<u16>(zp + <usize>r0 * zpRow + o));
  z = i32x4.replace_lane(z, 1, <i32>load<u16>(zp + <usize>r1 * zpRow + o));
  z = i32x4.replace_lane(z, 2, <i32>load<u16>(zp + <usize>r2 * zpRow + o));
  return i32x4.replace_lane(z, 3, <i32>load<u16>(zp + <usize>r3 * zpRow + o));
}

/**
 * Per super-group setup (4 rows x groups g0..g0+3): writes each group's 4-row scale vector to gbuf
 * (4 x 16 bytes, read back in the chunk loop instead of pinning 4 registers) and returns the
 * zero-point term sum_g scale * z * gsum[g] as a 4-row vector. gsums is zero past ng, so missing
 * groups of a ragged super-group contribute nothing.
 */
// @ts-ignore: decorator
@inline function prep_supergroup(
  sc: usize, scRow: usize, zp: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32,
  gsums: usize, gbuf: usize,
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
@inline function pad_sums(out: usize, ng: i32): void {
  for (let g = ng; g & 3; g++) store<f32>(out + (<usize>g << 2), 0);
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

// @ts-ignore: decorator
@inline function log2_cpg(gs: i32): i32 {
  return gs == 32 ? 0 : gs == 64 ? 1 : 2;
}

// ------------------------------------------------------------------------------------------
// int4 weights x fp32 activations: y[n] = sum_k W[n][k] x[k].
// tmp: 64 + 4 * (ng + 3) bytes of 16-byte aligned scratch.

export function matvec_q4_f32(
  qw: usize, sc: usize, zp: usize, x: usize, y: usize, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const gbuf = tmp;
  const gsums = tmp + 64;
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
      corr = f32x4.add(corr, prep_supergroup(sc, scRow, zp, zpRow, r, r1, r2, r3, g0, gsums, gbuf));
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

// ------------------------------------------------------------------------------------------
// Activations quantized to int8 per 32-block (Q8-style):
//   xq: kp int8 codes, xd: kp/32 f32 scales, xds: kp/32 f32 (= xd * sum of the block's codes).
// Codes are stored in kernel order, not k order: per block, [x0 x2 .. x14 | x16 x18 .. x30 |
// x1 x3 .. x15 | x17 .. x31], matching the four i16 nibble lanes of matvec_q4_q8 (the relaxed-SIMD
// build keeps k order: its byte-wise dot works on the low / high nibble bytes directly).

export function quantize_q8(x: usize, kp: i32, xq: usize, xd: usize, xds: usize): void {
  const nb = kp >> 5;
  for (let b = 0; b < nb; b++) {
    const v0 = v128.load(x, 0);
    const v1 = v128.load(x, 16);
    const v2 = v128.load(x, 32);
    const v3 = v128.load(x, 48);
    const v4 = v128.load(x, 64);
    const v5 = v128.load(x, 80);
    const v6 = v128.load(x, 96);
    const v7 = v128.load(x, 112);
    let m = f32x4.max(
      f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
      f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))),
    );
    m = f32x4.max(m, v128.shuffle<f32>(m, m, 2, 3, 0, 1));
    m = f32x4.max(m, v128.shuffle<f32>(m, m, 1, 0, 3, 2));
    const amax = f32x4.extract_lane(m, 0);
    const d: f32 = amax / 127.0;
    const id = f32x4.splat(amax > 0 ? <f32>127.0 / amax : 0);
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, id)));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, id)));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, id)));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, id)));
    const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, id)));
    const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, id)));
    const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, id)));
    const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, id)));
    const s = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
    const lo = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3));
    const hi = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7));
    if (ASC_FEATURE_RELAXED_SIMD) {
      // relaxed build: byte-wise dot products want plain k order
      v128.store(xq, lo, 0);
      v128.store(xq, hi, 16);
    } else {
      v128.store(xq, i8x16.shuffle(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), 0);
      v128.store(xq, i8x16.shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), 16);
    }
    store<f32>(xd + (<usize>b << 2), d);
    store<f32>(xds + (<usize>b << 2), d * <f32>hsum_i32(s));
    x += 128;
    xq += 32;
  }
}

/**
 * Integer dot of one 16-byte chunk (unsigned codes) with 32 int8 activations in kernel order, as i32x4
 * partials. Viewed as i16 lanes, lane i of a chunk holds bytes 2i, 2i+1, i.e. codes for k = 2i, 16+2i,
 * 2i+1, 17+2i in its four nibbles: shifts and one mask give four i16x8 code vectors, no unpacking.
 */
// @ts-ignore: decorator
@inline function chunk_dot_q8(v: v128, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const m = i16x8.splat(15);
  const e0 = v128.and(v, m);
  const e1 = v128.and(i16x8.shr_u(v, 4), m);
  const e2 = v128.and(i16x8.shr_u(v, 8), m);
  const e3 = i16x8.shr_u(v, 12);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(e0, a0), i32x4.dot_i16x8_s(e1, a1)),
    i32x4.add(i32x4.dot_i16x8_s(e2, a2), i32x4.dot_i16x8_s(e3, a3)),
  );
}

/**
 * Relaxed-SIMD (workerd) chunk dot: the nibble bytes are 0..15, valid "i7" operands of
 * relaxed_dot_i8x16_i7x16_add_s (pmaddubsw + pmaddwd on x64, sdot on arm64); q0 / q1 are the 32
 * activation codes in k order. Verified in workerd (test/kernels-workerd.test.ts); Node 20's
 * experimental relaxed SIMD (--experimental-wasm-relaxed-simd) computes wrong results for this kernel.
 */
// @ts-ignore: decorator
@inline function chunk_dot_q8_relaxed(v: v128, q0: v128, q1: v128): v128 {
  const m = i8x16.splat(15);
  const lo = v128.and(v, m);
  const hi = v128.and(i16x8.shr_u(v, 4), m);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, hi, i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, lo, i32x4.splat(0)));
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

/** y = W x with Q8 activations; tmp: 64 + 4 * (ng + 3) bytes of 16-byte aligned scratch. */
export function matvec_q4_q8(
  qw: usize, sc: usize, zp: usize, xq: usize, xd: usize, xds: usize, y: usize, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const gbuf = tmp;
  const gsums = tmp + 64;
  block_group_sums(xds, ng, 1 << lcpg, gsums);
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
    let ap = xq;
    let dp = xd;
    for (let g0 = 0; g0 < ng; g0 += 4) {
      corr = f32x4.add(corr, prep_supergroup(sc, scRow, zp, zpRow, r, r1, r2, r3, g0, gsums, gbuf));
      const chunks = min(4, ng - g0) << lcpg;
      for (let j = 0; j < chunks; j++) {
        let dot: v128;
        if (ASC_FEATURE_RELAXED_SIMD) {
          const q0 = v128.load(ap, 0);
          const q1 = v128.load(ap, 16);
          dot = reduce4_i32(
            chunk_dot_q8_relaxed(v128.load(w0), q0, q1),
            chunk_dot_q8_relaxed(v128.load(w1), q0, q1),
            chunk_dot_q8_relaxed(v128.load(w2), q0, q1),
            chunk_dot_q8_relaxed(v128.load(w3), q0, q1),
          );
        } else {
          const a0 = v128.load8x8_s(ap, 0);
          const a1 = v128.load8x8_s(ap, 8);
          const a2 = v128.load8x8_s(ap, 16);
          const a3 = v128.load8x8_s(ap, 24);
          dot = reduce4_i32(
            chunk_dot_q8(v128.load(w0), a0, a1, a2, a3),
            chunk_dot_q8(v128.load(w1), a0, a1, a2, a3),
            chunk_dot_q8(v128.load(w2), a0, a1, a2, a3),
            chunk_dot_q8(v128.load(w3), a0, a1, a2, a3),
          );
        }
        const s = f32x4.mul(v128.load(gbuf + (<usize>(j >> lcpg) << 4)), v128.load32_splat(dp));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dot), s));
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
        ap += 32;
        dp += 4;
      }
    }
    store_rows(y, r, n, f32x4.sub(acc, corr));
  }
}

// ------------------------------------------------------------------------------------------
// int4 weights x M fp32 activation rows (prefill): Y[m][n] = sum_k W[n][k] X[m][k].
// X is [m][kp] (zero-padded rows), Y is [m][n]. tmp: 16 * m bytes of scratch (per-row accumulators).
// Each weight chunk is decoded once (scale and zero point folded in) and reused for all m rows.

export function matmul_q4_f32(
  qw: usize, sc: usize, zp: usize, x: usize, y: usize, m: i32, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const cpg = gs >> 5;
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const xStride = <usize>kp << 2;
  const m15 = i32x4.splat(15);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < m; i++) v128.store(tmp + (<usize>i << 4), f32x4.splat(0));
    let wp = qw + <usize>r * rowBytes;
    let xo: usize = 0;
    for (let g = 0; g < ng; g++) {
      const s = f32x4.splat(h2f(load<u16>(sc + (<usize>(r * ng + g) << 1))));
      const z = i32x4.splat(<i32>zero_point(zp, zpRow, r, g));
      for (let c = 0; c < cpg; c++) {
        const v = v128.load(wp);
        let b = i8x16.swizzle(v, mask(0));
        const l0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(v128.and(b, m15), z)), s);
        const h0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.shr_u(b, 4), z)), s);
        b = i8x16.swizzle(v, mask(1));
        const l1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(v128.and(b, m15), z)), s);
        const h1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.shr_u(b, 4), z)), s);
        b = i8x16.swizzle(v, mask(2));
        const l2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(v128.and(b, m15), z)), s);
        const h2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.shr_u(b, 4), z)), s);
        b = i8x16.swizzle(v, mask(3));
        const l3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(v128.and(b, m15), z)), s);
        const h3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.shr_u(b, 4), z)), s);
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

// ------------------------------------------------------------------------------------------
// fp32 matvec (baseline and for small fp32 tensors): W [n][k] row-major, any k.

export function matvec_f32(w: usize, x: usize, y: usize, n: i32, k: i32): void {
  const rowBytes = <usize>k << 2;
  const k4 = k & ~3;
  let r = 0;
  for (; r + 4 <= n; r += 4) {
    const w0 = w + <usize>r * rowBytes;
    const w1 = w0 + rowBytes;
    const w2 = w1 + rowBytes;
    const w3 = w2 + rowBytes;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let i = 0;
    for (; i < k4; i += 4) {
      const o = <usize>i << 2;
      const xv = v128.load(x + o);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(w0 + o), xv));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(w1 + o), xv));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(w2 + o), xv));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(w3 + o), xv));
    }
    let s0 = hsum(a0);
    let s1 = hsum(a1);
    let s2 = hsum(a2);
    let s3 = hsum(a3);
    for (; i < k; i++) {
      const o = <usize>i << 2;
      const xv = load<f32>(x + o);
      s0 += load<f32>(w0 + o) * xv;
      s1 += load<f32>(w1 + o) * xv;
      s2 += load<f32>(w2 + o) * xv;
      s3 += load<f32>(w3 + o) * xv;
    }
    const yp = y + (<usize>r << 2);
    store<f32>(yp, s0, 0);
    store<f32>(yp, s1, 4);
    store<f32>(yp, s2, 8);
    store<f32>(yp, s3, 12);
  }
  for (; r < n; r++) {
    const w0 = w + <usize>r * rowBytes;
    let a0 = f32x4.splat(0);
    let i = 0;
    for (; i < k4; i += 4) {
      const o = <usize>i << 2;
      a0 = f32x4.add(a0, f32x4.mul(v128.load(w0 + o), v128.load(x + o)));
    }
    let s0 = hsum(a0);
    for (; i < k; i++) s0 += load<f32>(w0 + (<usize>i << 2)) * load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>r << 2), s0);
  }
}

// ------------------------------------------------------------------------------------------
// fp32 helpers

/** e^x for 4 lanes (Cephes expf polynomial, ~1 ulp on the clamped range [-87.3, 88]). */
// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
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
@inline function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

/** out = x / sqrt(mean(x^2) + eps) * w. out may alias x. */
export function rmsnorm(x: usize, w: usize, out: usize, n: i32, eps: f32): void {
  const n4 = n & ~3;
  let a = f32x4.splat(0);
  let i = 0;
  for (; i < n4; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    a = f32x4.add(a, f32x4.mul(v, v));
  }
  let ss = hsum(a);
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    ss += v * v;
  }
  const scale: f32 = <f32>1.0 / Mathf.sqrt(ss / <f32>n + eps);
  const sv = f32x4.splat(scale);
  i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(f32x4.mul(v128.load(x + o), sv), v128.load(w + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(x + o) * scale * load<f32>(w + o));
  }
}

/** In-place softmax over n floats. */
export function softmax(x: usize, n: i32): void {
  const n4 = n & ~3;
  let mv = f32x4.splat(-Infinity);
  let i = 0;
  for (; i < n4; i += 4) mv = f32x4.max(mv, v128.load(x + (<usize>i << 2)));
  mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 2, 3, 0, 1));
  mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 1, 0, 3, 2));
  let mx = f32x4.extract_lane(mv, 0);
  for (; i < n; i++) mx = Mathf.max(mx, load<f32>(x + (<usize>i << 2)));
  const mxv = f32x4.splat(mx);
  let sv = f32x4.splat(0);
  i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    const e = exp4(f32x4.sub(v128.load(x + o), mxv));
    v128.store(x + o, e);
    sv = f32x4.add(sv, e);
  }
  let sum = hsum(sv);
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const e = exp1(load<f32>(x + o) - mx);
    store<f32>(x + o, e);
    sum += e;
  }
  const inv = f32x4.splat(<f32>1.0 / sum);
  i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), inv));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) / sum);
  }
}

/** out = silu(g) * u = g / (1 + e^-g) * u. out may alias g or u. */
export function silu_gate(g: usize, u: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  const one = f32x4.splat(1.0);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    const s = f32x4.div(gv, f32x4.add(one, exp4(f32x4.neg(gv))));
    v128.store(out + o, f32x4.mul(s, v128.load(u + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o);
    store<f32>(out + o, (gv / (<f32>1.0 + exp1(-gv))) * load<f32>(u + o));
  }
}

/** cos/sin tables for one position: angle_i = pos * theta^(-2i / ropeDim), i < ropeDim / 2. */
export function rope_table(pos: f64, theta: f64, ropeDim: i32, cosOut: usize, sinOut: usize): void {
  const half = ropeDim >> 1;
  for (let i = 0; i < half; i++) {
    const a = pos * Math.pow(theta, -<f64>(2 * i) / <f64>ropeDim);
    store<f32>(cosOut + (<usize>i << 2), <f32>Math.cos(a));
    store<f32>(sinOut + (<usize>i << 2), <f32>Math.sin(a));
  }
}

/**
 * In-place rotary embedding of nHeads heads of headDim floats (first ropeDim dims rotated).
 * neox = 0: pairs (2i, 2i+1) ("interleaved", llama.cpp GGUF); neox = 1: pairs (i, i + ropeDim/2) (HF).
 */
export function rope(x: usize, nHeads: i32, headDim: i32, ropeDim: i32, cosT: usize, sinT: usize, neox: i32): void {
  const half = ropeDim >> 1;
  for (let h = 0; h < nHeads; h++) {
    const base = x + (<usize>(h * headDim) << 2);
    if (neox != 0) {
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const o = <usize>i << 2;
        const a = v128.load(base + o);
        const b = v128.load(base + o + (<usize>half << 2));
        const c = v128.load(cosT + o);
        const s = v128.load(sinT + o);
        v128.store(base + o, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
        v128.store(base + o + (<usize>half << 2), f32x4.add(f32x4.mul(a, s), f32x4.mul(b, c)));
      }
      for (; i < half; i++) {
        const o = <usize>i << 2;
        const a = load<f32>(base + o);
        const b = load<f32>(base + o + (<usize>half << 2));
        const c = load<f32>(cosT + o);
        const s = load<f32>(sinT + o);
        store<f32>(base + o, a * c - b * s);
        store<f32>(base + o + (<usize>half << 2), a * s + b * c);
      }
    } else {
      let i = 0;
      const sign = f32x4(-1.0, 1.0, -1.0, 1.0);
      for (; i + 2 <= half; i += 2) {
        // Two pairs per vector: (x0, x1, x2, x3) with (c0, c0, c1, c1) and (s0, s0, s1, s1).
        const o = <usize>i << 2;
        const v = v128.load(base + (o << 1));
        const c2 = v128.load64_zero(cosT + o);
        const s2 = v128.load64_zero(sinT + o);
        const c = v128.shuffle<f32>(c2, c2, 0, 0, 1, 1);
        const s = f32x4.mul(v128.shuffle<f32>(s2, s2, 0, 0, 1, 1), sign);
        const sw = v128.shuffle<f32>(v, v, 1, 0, 3, 2);
        v128.store(base + (o << 1), f32x4.add(f32x4.mul(v, c), f32x4.mul(sw, s)));
      }
      for (; i < half; i++) {
        const o = <usize>i << 2;
        const a = load<f32>(base + (o << 1));
        const b = load<f32>(base + (o << 1) + 4);
        const c = load<f32>(cosT + o);
        const s = load<f32>(sinT + o);
        store<f32>(base + (o << 1), a * c - b * s);
        store<f32>(base + (o << 1) + 4, a * s + b * c);
      }
    }
  }
}

/** Index of the first maximum (NaNs ignored); -1 when n == 0. */
export function argmax(x: usize, n: i32): i32 {
  if (n <= 0) return -1;
  const n4 = n & ~3;
  let mv = f32x4.splat(-Infinity);
  let i = 0;
  for (; i < n4; i += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize>i << 2)));
  mv = f32x4.pmax(mv, v128.shuffle<f32>(mv, mv, 2, 3, 0, 1));
  mv = f32x4.pmax(mv, v128.shuffle<f32>(mv, mv, 1, 0, 3, 2));
  let mx = f32x4.extract_lane(mv, 0);
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v > mx) mx = v;
  }
  for (i = 0; i < n; i++) if (load<f32>(x + (<usize>i << 2)) == mx) return i;
  return 0;
}

// ------------------------------------------------------------------------------------------
// int8 weights (token embeddings / output head; layout in src/format/int4.ts):
//   data: [n][kp] int8 codes in k order (padding 0), scales: [n][ng] fp16, w = q * scale[group].
// ng = kp / gs; per-row scaling is gs = kp (ng = 1). Reads stay inside data/scales (no overrun).

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
 * Q8 activation codes in k order. The SIMD128 build stores them in the int4 kernel's lane order
 * ([x0 x2 .. x14 | x16 .. x30 | x1 .. x15 | x17 .. x31] per block), so it interleaves them back into
 * tmp once per call (kp/32 pairs of shuffles); the relaxed build already stores k order.
 */
// @ts-ignore: decorator
@inline function q8_k_order(xq: usize, kp: i32, tmp: usize): usize {
  if (ASC_FEATURE_RELAXED_SIMD) return xq;
  const nb = kp >> 5;
  for (let b = 0; b < nb; b++) {
    const o = <usize>b << 5;
    const lo = v128.load(xq + o, 0);
    const hi = v128.load(xq + o, 16);
    v128.store(tmp + o, i8x16.shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 0);
    v128.store(tmp + o, i8x16.shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 16);
  }
  return tmp;
}

/**
 * y = W x, int8 weights x Q8 activations (quantize_q8 output). One row at a time, unlike the int4 kernels:
 * rows are contiguous, so the whole matrix is read as one sequential stream. With 4 rows in flight (4
 * streams 1 row apart) the hardware prefetcher fell behind: 49152x576 took 6.2 ms (4.6 GB/s) vs 2.2 ms
 * (13 GB/s) this way, with equal speed on L2-resident shapes. The activation codes (kp bytes) and block
 * scales stay in L1. tmp: kp bytes (SIMD128 build, k-order copy of the codes).
 */
export function matvec_q8w_q8(
  w: usize, sc: usize, xq: usize, xd: usize, y: usize, n: i32, kp: i32, gs: i32, tmp: usize,
): void {
  const ng = kp / gs;
  const bpg = gs >> 5;
  const a = q8_k_order(xq, kp, tmp);
  let wp = w;
  let sp = sc;
  for (let r = 0; r < n; r++) {
    let acc = f32x4.splat(0);
    let ap = a;
    let dp = xd;
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
    store<f32>(y + (<usize>r << 2), hsum(acc));
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

// ------------------------------------------------------------------------------------------
// Embedding rows: dequantize one row to kp floats (padding codes dequantize to exactly 0).

/** out[0..kp) = (q - z) * scale for row `row` of an int4 tensor. */
export function embed_row_q4(qw: usize, sc: usize, zp: usize, row: i32, kp: i32, gs: i32, out: usize): void {
  const ng = kp / gs;
  const cpg = gs >> 5;
  const zpRow = <usize>((ng + 1) >> 1);
  let wp = qw + <usize>row * <usize>(kp >> 1);
  let op = out;
  for (let g = 0; g < ng; g++) {
    const s = f32x4.splat(h2f(load<u16>(sc + ((<usize>row * <usize>ng + <usize>g) << 1))));
    const z = i32x4.splat(<i32>zero_point(zp, zpRow, row, g));
    for (let c = 0; c < cpg; c++) {
      const v = v128.load(wp);
      const lo = v128.and(v, i8x16.splat(15)); // k 0..15
      const hi = i8x16.shr_u(v, 4); // k 16..31
      const l0 = i16x8.extend_low_i8x16_u(lo);
      const l1 = i16x8.extend_high_i8x16_u(lo);
      const h0 = i16x8.extend_low_i8x16_u(hi);
      const h1 = i16x8.extend_high_i8x16_u(hi);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_low_i16x8_u(l0), z)), s), 0);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_high_i16x8_u(l0), z)), s), 16);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_low_i16x8_u(l1), z)), s), 32);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_high_i16x8_u(l1), z)), s), 48);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_low_i16x8_u(h0), z)), s), 64);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_high_i16x8_u(h0), z)), s), 80);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_low_i16x8_u(h1), z)), s), 96);
      v128.store(op, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(i32x4.extend_high_i16x8_u(h1), z)), s), 112);
      wp += 16;
      op += 128;
    }
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

// ------------------------------------------------------------------------------------------
// Small fp32 helpers

/** x[i] += y[i] (residual add, bias add). */
export function add_f32(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.add(v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) + load<f32>(y + o));
  }
}

// ------------------------------------------------------------------------------------------
// KV cache stores

/**
 * fp32 -> fp16 bits for 4 lanes (i32 lanes holding u16), round to nearest even, subnormals, overflow
 * to inf, NaN -> 0x7e00. Branch-free float trick from Maratyszcza's FP16 library: scaling by 2^112
 * then 2^-110 makes the f32 adder itself round the mantissa at the fp16 position (including the
 * subnormal range, where `bias` pins the exponent), so there is no explicit rounding code.
 */
// @ts-ignore: decorator
@inline function f2h4(f: v128): v128 {
  const shl1 = i32x4.add(f, f);
  const sign = v128.and(f, i32x4.splat(<i32>0x80000000));
  const bias = i32x4.max_u(v128.and(shl1, i32x4.splat(<i32>0xff000000)), i32x4.splat(0x71000000));
  let base = f32x4.mul(f32x4.mul(f32x4.abs(f), f32x4.splat(5.192296858534828e33)), f32x4.splat(7.703719777548943e-34));
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const nonsign = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0x0fff)));
  const nan = i32x4.gt_u(shl1, i32x4.splat(<i32>0xff000000));
  return v128.or(i32x4.shr_u(sign, 16), v128.bitselect(i32x4.splat(0x7e00), nonsign, nan));
}

/** dst[i] = fp16(src[i]) for n floats (one KV cache row). */
export function kv_store_f16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = f2h4(v128.load(src + (<usize>i << 2)));
    const b = f2h4(v128.load(src + (<usize>i << 2), 16));
    // lanes are 0..0xffff, so the saturating narrow is exact
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) {
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(f2h4(f32x4.splat(load<f32>(src + (<usize>i << 2)))), 0));
  }
}

/**
 * Symmetric int8 per (position, kv head): for each of nKv heads of hd floats at src, scale = amax / 127
 * (f32, to dstScales[j]) and codes = round-to-nearest-even(x * 127 / amax) (to dstCodes + j * hd).
 */
export function kv_store_q8(src: usize, codes: usize, scales: usize, nKv: i32, hd: i32): void {
  for (let j = 0; j < nKv; j++) {
    const x = src + (<usize>(j * hd) << 2);
    const c = codes + <usize>(j * hd);
    let mv = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= hd; i += 4) mv = f32x4.max(mv, f32x4.abs(v128.load(x + (<usize>i << 2))));
    mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 2, 3, 0, 1));
    mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 1, 0, 3, 2));
    let amax = f32x4.extract_lane(mv, 0);
    for (; i < hd; i++) amax = Mathf.max(amax, Mathf.abs(load<f32>(x + (<usize>i << 2))));
    store<f32>(scales + (<usize>j << 2), amax / <f32>127.0);
    const ids: f32 = amax > 0 ? <f32>127.0 / amax : 0;
    const id = f32x4.splat(ids);
    i = 0;
    for (; i + 8 <= hd; i += 8) {
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x + (<usize>i << 2)), id)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x + (<usize>i << 2), 16), id)));
      const q = i16x8.narrow_i32x4_s(q0, q1);
      v128.store64_lane(c + <usize>i, i8x16.narrow_i16x8_s(q, q), 0);
    }
    for (; i < hd; i++) store<i8>(c + <usize>i, <i8><i32>nearest<f32>(load<f32>(x + (<usize>i << 2)) * ids));
  }
}

// ------------------------------------------------------------------------------------------
// Attention over a KV cache, one query position (decode).
//   q, out: [nHeads][hd] f32. Cache rows: position p of kv head j at cache + (p * nKv + j) * hd * esize
//   (esize 2 for fp16, 1 for int8 codes with f32 scales at scales + (p * nKv + j) * 4).
//   Query head h reads kv head h / (nHeads / nKv). Positions first .. first + count - 1.
// Single pass with an online softmax (running max m, running sum l, out rescaled when m grows), in blocks
// of ATT_B positions: per kv head, each block of K and V rows is widened to f32 once into scratch and
// then used by every query head of the group (GQA), so the cache is read once per token per layer and no
// count-sized score buffer is needed.
// tmp: att_scratch_bytes(nHeads / nKv, hd) bytes, 16-byte aligned.

const ATT_B: i32 = 32;

export function att_scratch_bytes(group: i32, hd: i32): i32 {
  return 2 * ATT_B * hd * 4 + group * ATT_B * 4 + group * 16 + 64;
}

/** nb fp16 rows of hd values (rowStride bytes apart) -> f32 [nb][hd] at dst. */
function cvt_rows_f16(src: usize, rowStride: usize, nb: i32, hd: i32, dst: usize): void {
  for (let p = 0; p < nb; p++) {
    let i = 0;
    for (; i + 8 <= hd; i += 8) {
      const h = v128.load(src + (<usize>i << 1));
      v128.store(dst + (<usize>i << 2), h2f4(h), 0);
      v128.store(dst + (<usize>i << 2), h2f4_high(h), 16);
    }
    for (; i < hd; i++) store<f32>(dst + (<usize>i << 2), h2f(load<u16>(src + (<usize>i << 1))));
    src += rowStride;
    dst += <usize>hd << 2;
  }
}

/** nb int8 rows (rowStride bytes apart, f32 scale each, scStride bytes apart) -> f32 [nb][hd] at dst. */
function cvt_rows_q8(src: usize, rowStride: usize, sc: usize, scStride: usize, nb: i32, hd: i32, dst: usize): void {
  for (let p = 0; p < nb; p++) {
    const ss = load<f32>(sc);
    const s = f32x4.splat(ss);
    let i = 0;
    for (; i + 8 <= hd; i += 8) {
      const v = v128.load8x8_s(src + <usize>i);
      v128.store(dst + (<usize>i << 2), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), s), 0);
      v128.store(dst + (<usize>i << 2), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), s), 16);
    }
    for (; i < hd; i++) store<f32>(dst + (<usize>i << 2), <f32>load<i8>(src + <usize>i) * ss);
    src += rowStride;
    sc += scStride;
    dst += <usize>hd << 2;
  }
}

/** dot(q, row) for one f32 row of hd values. */
// @ts-ignore: decorator
@inline function dot_row(q: usize, k: usize, hd: i32): f32 {
  let a = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= hd; i += 4) a = f32x4.add(a, f32x4.mul(v128.load(q + (<usize>i << 2)), v128.load(k + (<usize>i << 2))));
  let s = hsum(a);
  for (; i < hd; i++) s += load<f32>(q + (<usize>i << 2)) * load<f32>(k + (<usize>i << 2));
  return s;
}

/** [dot(q, row0) .. dot(q, row3)] for 4 consecutive f32 rows of hd values. */
// @ts-ignore: decorator
@inline function dot_rows4(q: usize, k: usize, hd: i32): v128 {
  const st = <usize>hd << 2;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= hd; i += 4) {
    const o = <usize>i << 2;
    const qv = v128.load(q + o);
    a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k + o)));
    a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k + st + o)));
    a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k + 2 * st + o)));
    a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k + 3 * st + o)));
  }
  let r = reduce4_f32(a0, a1, a2, a3);
  if (i < hd) {
    let t0: f32 = 0;
    let t1: f32 = 0;
    let t2: f32 = 0;
    let t3: f32 = 0;
    for (; i < hd; i++) {
      const o = <usize>i << 2;
      const qs = load<f32>(q + o);
      t0 += qs * load<f32>(k + o);
      t1 += qs * load<f32>(k + st + o);
      t2 += qs * load<f32>(k + 2 * st + o);
      t3 += qs * load<f32>(k + 3 * st + o);
    }
    let t = f32x4.splat(t0);
    t = f32x4.replace_lane(t, 1, t1);
    t = f32x4.replace_lane(t, 2, t2);
    t = f32x4.replace_lane(t, 3, t3);
    r = f32x4.add(r, t);
  }
  return r;
}

/** o[0..hd) = o * alpha + sum_{p < nb} pr[p] * v[p][0..hd). */
function pv_accumulate(o: usize, alpha: f32, pr: usize, v: usize, nb: i32, hd: i32): void {
  const st = <usize>hd << 2;
  const al = f32x4.splat(alpha);
  let d = 0;
  for (; d + 16 <= hd; d += 16) {
    const od = o + (<usize>d << 2);
    let a0 = f32x4.mul(v128.load(od, 0), al);
    let a1 = f32x4.mul(v128.load(od, 16), al);
    let a2 = f32x4.mul(v128.load(od, 32), al);
    let a3 = f32x4.mul(v128.load(od, 48), al);
    let vp = v + (<usize>d << 2);
    for (let p = 0; p < nb; p++) {
      const pv = v128.load32_splat(pr + (<usize>p << 2));
      a0 = f32x4.add(a0, f32x4.mul(pv, v128.load(vp, 0)));
      a1 = f32x4.add(a1, f32x4.mul(pv, v128.load(vp, 16)));
      a2 = f32x4.add(a2, f32x4.mul(pv, v128.load(vp, 32)));
      a3 = f32x4.add(a3, f32x4.mul(pv, v128.load(vp, 48)));
      vp += st;
    }
    v128.store(od, a0, 0);
    v128.store(od, a1, 16);
    v128.store(od, a2, 32);
    v128.store(od, a3, 48);
  }
  for (; d + 4 <= hd; d += 4) {
    const od = o + (<usize>d << 2);
    let a0 = f32x4.mul(v128.load(od), al);
    let vp = v + (<usize>d << 2);
    for (let p = 0; p < nb; p++) {
      a0 = f32x4.add(a0, f32x4.mul(v128.load32_splat(pr + (<usize>p << 2)), v128.load(vp)));
      vp += st;
    }
    v128.store(od, a0);
  }
  for (; d < hd; d++) {
    const od = o + (<usize>d << 2);
    let a = load<f32>(od) * alpha;
    let vp = v + (<usize>d << 2);
    for (let p = 0; p < nb; p++) {
      a += load<f32>(pr + (<usize>p << 2)) * load<f32>(vp);
      vp += st;
    }
    store<f32>(od, a);
  }
}

function attention_impl(
  q8: bool, q: usize, kc: usize, ks: usize, vc: usize, vs: usize, out: usize,
  nHeads: i32, nKv: i32, hd: i32, first: i32, count: i32, scale: f32, tmp: usize,
): void {
  const group = nHeads / nKv;
  const esize: usize = q8 ? 1 : 2;
  const rowStride = <usize>(nKv * hd) * esize;
  const scStride = <usize>nKv << 2;
  const headBytes = <usize>hd << 2;
  const kf = tmp;
  const vf = kf + (<usize>(ATT_B * hd) << 2);
  const sb = vf + (<usize>(ATT_B * hd) << 2); // [group][ATT_B] scores -> probabilities
  const stats = sb + (<usize>(group * ATT_B) << 2); // [group] (m, l)
  const sv = f32x4.splat(scale);
  for (let j = 0; j < nKv; j++) {
    for (let r = 0; r < group; r++) {
      const o = out + <usize>(j * group + r) * headBytes;
      for (let d = 0; d < hd; d++) store<f32>(o + (<usize>d << 2), 0);
      store<f32>(stats + (<usize>r << 4), -Infinity);
      store<f32>(stats + (<usize>r << 4), 0, 4);
    }
    for (let p0 = 0; p0 < count; p0 += ATT_B) {
      const nb = min(ATT_B, count - p0);
      const pos = <usize>(first + p0);
      const ko = pos * rowStride + <usize>j * <usize>hd * esize;
      if (q8) {
        const so = pos * scStride + (<usize>j << 2);
        cvt_rows_q8(kc + ko, rowStride, ks + so, scStride, nb, hd, kf);
        cvt_rows_q8(vc + ko, rowStride, vs + so, scStride, nb, hd, vf);
      } else {
        cvt_rows_f16(kc + ko, rowStride, nb, hd, kf);
        cvt_rows_f16(vc + ko, rowStride, nb, hd, vf);
      }
      for (let r = 0; r < group; r++) {
        const h = j * group + r;
        const qh = q + <usize>h * headBytes;
        const s = sb + (<usize>(r * ATT_B) << 2);
        // scores, 4 positions per pass (one query load feeds 4 rows)
        let p = 0;
        let mv = f32x4.splat(-Infinity);
        for (; p + 4 <= nb; p += 4) {
          const d4 = f32x4.mul(dot_rows4(qh, kf + <usize>p * headBytes, hd), sv);
          v128.store(s + (<usize>p << 2), d4);
          mv = f32x4.max(mv, d4);
        }
        mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 2, 3, 0, 1));
        mv = f32x4.max(mv, v128.shuffle<f32>(mv, mv, 1, 0, 3, 2));
        let bm = f32x4.extract_lane(mv, 0);
        for (; p < nb; p++) {
          const d1 = dot_row(qh, kf + <usize>p * headBytes, hd) * scale;
          store<f32>(s + (<usize>p << 2), d1);
          bm = Mathf.max(bm, d1);
        }
        // online softmax update
        const st = stats + (<usize>r << 4);
        const mOld = load<f32>(st);
        const mNew = Mathf.max(mOld, bm);
        // first block: nothing to rescale (out and l are 0); same max: exp(0) = 1 exactly, skip the call
        const alpha: f32 = mOld == -Infinity ? 0 : mOld == mNew ? 1 : exp1(mOld - mNew);
        const mn = f32x4.splat(mNew);
        let lv = f32x4.splat(0);
        p = 0;
        for (; p + 4 <= nb; p += 4) {
          const e = exp4(f32x4.sub(v128.load(s + (<usize>p << 2)), mn));
          v128.store(s + (<usize>p << 2), e);
          lv = f32x4.add(lv, e);
        }
        let l = hsum(lv);
        for (; p < nb; p++) {
          const e = exp1(load<f32>(s + (<usize>p << 2)) - mNew);
          store<f32>(s + (<usize>p << 2), e);
          l += e;
        }
        store<f32>(st, mNew);
        store<f32>(st, load<f32>(st, 4) * alpha + l, 4);
        pv_accumulate(out + <usize>h * headBytes, alpha, s, vf, nb, hd);
      }
    }
    for (let r = 0; r < group; r++) {
      const o = out + <usize>(j * group + r) * headBytes;
      const inv: f32 = <f32>1.0 / load<f32>(stats + (<usize>r << 4), 4);
      const iv = f32x4.splat(inv);
      let d = 0;
      for (; d + 4 <= hd; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), iv));
      for (; d < hd; d++) store<f32>(o + (<usize>d << 2), load<f32>(o + (<usize>d << 2)) * inv);
    }
  }
}

/** Attention over an fp16 KV cache (see the block comment above). */
export function attention_f16(
  q: usize, kc: usize, vc: usize, out: usize, nHeads: i32, nKv: i32, hd: i32, first: i32, count: i32,
  scale: f32, tmp: usize,
): void {
  attention_impl(false, q, kc, 0, vc, 0, out, nHeads, nKv, hd, first, count, scale, tmp);
}

/** Attention over an int8 KV cache with per (position, kv head) f32 scales. */
export function attention_q8(
  q: usize, kc: usize, ks: usize, vc: usize, vs: usize, out: usize, nHeads: i32, nKv: i32, hd: i32,
  first: i32, count: i32, scale: f32, tmp: usize,
): void {
  attention_impl(true, q, kc, ks, vc, vs, out, nHeads, nKv, hd, first, count, scale, tmp);
}



// ------------------------------------------------------------------------------------------
// int4 weights x M Q8 activation rows (prefill): Y[i][n] = sum_k W[n][k] X[i][k], X quantized per row with
// quantize_q8 (row i: codes at xq + i*kp, scales at xd / xds + i*kp/8). Same 4-weight-row blocking and
// integer dots as matvec_q4_q8, but each 16-byte weight chunk is split into its nibble vectors once (into
// an L1 buffer) and reused for all m rows, and the per-super-group scale transpose / zero-point products
// are computed once for all rows. Accumulators live in tmp (m can exceed the register file).
// tmp: matmul_q4_q8_scratch(m, ng) bytes, 16-byte aligned.

export function matmul_q4_q8_scratch(m: i32, ng: i32): i32 {
  return 32 * m + 256 + 128 + m * (((ng + 3) & ~3) << 2);
}

/** gbuf[g] = the 4 rows' scales of group g0 + g (transposed), gz[g] = gbuf[g] * zero points (4 x 16 bytes each). */
// @ts-ignore: decorator
@inline function prep_scales_gz(
  sc: usize, scRow: usize, zp: usize, zpRow: usize, r0: i32, r1: i32, r2: i32, r3: i32, g0: i32, gbuf: usize, gz: usize,
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
  if (zp == 0) {
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

/** Splits one weight chunk into the operand vectors of chunk_dot_q8 (4 x i16x8) or the relaxed dot (2 x i8x16). */
// @ts-ignore: decorator
@inline function decode_chunk(v: v128, dst: usize): void {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const m = i8x16.splat(15);
    v128.store(dst, v128.and(v, m), 0);
    v128.store(dst, v128.and(i16x8.shr_u(v, 4), m), 16);
  } else {
    const m = i16x8.splat(15);
    v128.store(dst, v128.and(v, m), 0);
    v128.store(dst, v128.and(i16x8.shr_u(v, 4), m), 16);
    v128.store(dst, v128.and(i16x8.shr_u(v, 8), m), 32);
    v128.store(dst, i16x8.shr_u(v, 12), 48);
  }
}

export function matmul_q4_q8(
  qw: usize, sc: usize, zp: usize, xq: usize, xd: usize, xds: usize, y: usize, m: i32, n: i32, kp: i32, gs: i32,
  tmp: usize,
): void {
  const ng = kp / gs;
  const lcpg = log2_cpg(gs);
  const rowBytes = <usize>(kp >> 1);
  const zpRow = <usize>((ng + 1) >> 1);
  const scRow = <usize>ng << 1;
  const nb = <usize>(kp >> 5);
  const accs = tmp;
  const corrs = accs + (<usize>m << 4);
  const dbuf = corrs + (<usize>m << 4);
  const gbuf = dbuf + 256;
  const gz = gbuf + 64;
  const gsStride = <usize>(((ng + 3) & ~3) << 2);
  const gsums = gz + 64;
  for (let i = 0; i < m; i++) block_group_sums(xds + <usize>i * (nb << 2), ng, 1 << lcpg, gsums + <usize>i * gsStride);
  // row-major decode buffer: 64 bytes per weight row (16 bytes used by 2 of the relaxed vectors)
  for (let r = 0; r < n; r += 4) {
    const r1 = min(r + 1, n - 1);
    const r2 = min(r + 2, n - 1);
    const r3 = min(r + 3, n - 1);
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
      prep_scales_gz(sc, scRow, zp, zpRow, r, r1, r2, r3, g0, gbuf, gz);
      const Z0 = v128.load(gz, 0);
      const Z1 = v128.load(gz, 16);
      const Z2 = v128.load(gz, 32);
      const Z3 = v128.load(gz, 48);
      for (let i = 0; i < m; i++) {
        // zero-point term, as in prep_supergroup; gsums is 0 past ng
        const A = v128.load(gsums + <usize>i * gsStride + (<usize>g0 << 2));
        const c = f32x4.add(
          f32x4.add(f32x4.mul(Z0, v128.shuffle<f32>(A, A, 0, 0, 0, 0)), f32x4.mul(Z1, v128.shuffle<f32>(A, A, 1, 1, 1, 1))),
          f32x4.add(f32x4.mul(Z2, v128.shuffle<f32>(A, A, 2, 2, 2, 2)), f32x4.mul(Z3, v128.shuffle<f32>(A, A, 3, 3, 3, 3))),
        );
        const cp = corrs + (<usize>i << 4);
        v128.store(cp, f32x4.add(v128.load(cp), c));
      }
      const chunks = min(4, ng - g0) << lcpg;
      for (let j = 0; j < chunks; j++) {
        decode_chunk(v128.load(w0), dbuf);
        decode_chunk(v128.load(w1), dbuf + 64);
        decode_chunk(v128.load(w2), dbuf + 128);
        decode_chunk(v128.load(w3), dbuf + 192);
        const gsv = v128.load(gbuf + (<usize>(j >> lcpg) << 4));
        let ap = xq + (chunk << 5);
        let dp = xd + (chunk << 2);
        let acp = accs;
        for (let i = 0; i < m; i++) {
          let dot: v128;
          if (ASC_FEATURE_RELAXED_SIMD) {
            const q0 = v128.load(ap, 0);
            const q1 = v128.load(ap, 16);
            const z = i32x4.splat(0);
            dot = reduce4_i32(
              i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, v128.load(dbuf, 16), i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, v128.load(dbuf, 0), z)),
              i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, v128.load(dbuf, 80), i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, v128.load(dbuf, 64), z)),
              i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, v128.load(dbuf, 144), i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, v128.load(dbuf, 128), z)),
              i32x4.relaxed_dot_i8x16_i7x16_add_s(q1, v128.load(dbuf, 208), i32x4.relaxed_dot_i8x16_i7x16_add_s(q0, v128.load(dbuf, 192), z)),
            );
          } else {
            const a0 = v128.load8x8_s(ap, 0);
            const a1 = v128.load8x8_s(ap, 8);
            const a2 = v128.load8x8_s(ap, 16);
            const a3 = v128.load8x8_s(ap, 24);
            dot = reduce4_i32(
              decoded_dot(dbuf, a0, a1, a2, a3),
              decoded_dot(dbuf + 64, a0, a1, a2, a3),
              decoded_dot(dbuf + 128, a0, a1, a2, a3),
              decoded_dot(dbuf + 192, a0, a1, a2, a3),
            );
          }
          const s = f32x4.mul(gsv, v128.load32_splat(dp));
          v128.store(acp, f32x4.add(v128.load(acp), f32x4.mul(f32x4.convert_i32x4_s(dot), s)));
          ap += <usize>kp;
          dp += nb << 2;
          acp += 16;
        }
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
        chunk++;
      }
    }
    for (let i = 0; i < m; i++) {
      store_rows(y + ((<usize>i * <usize>n) << 2), r, n, f32x4.sub(v128.load(accs + (<usize>i << 4)), v128.load(corrs + (<usize>i << 4))));
    }
  }
}

/** chunk_dot_q8 on a chunk already split by decode_chunk (SIMD128 build). */
// @ts-ignore: decorator
@inline function decoded_dot(e: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.load(e, 0), a0), i32x4.dot_i16x8_s(v128.load(e, 16), a1)),
    i32x4.add(i32x4.dot_i16x8_s(v128.load(e, 32), a2), i32x4.dot_i16x8_s(v128.load(e, 48), a3)),
  );
}
