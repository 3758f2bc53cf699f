// Activations quantized to int8 per 32-block (Q8-style) for the int4 and int8 weight kernels:
//   xq:  kp int8 codes in k order (the relaxed-SIMD int4 kernels and the int8 kernels read these),
//   xw:  SIMD128 build only (0 to skip): per block, 4 x i16x8 = 64 bytes [b0 | b1 | b2 | b3] with
//        b0[i] = a(2i), b1[i] = a(16+2i), b2[i] = a(2i+1) - 16 a(16+2i), b3[i] = a(17+2i) - 16 a(2i+1)
//        (a = the block's codes): the operands of int4-q8.ts's 4-op unpack (see its header),
//   xd:  kp/32 f32 block scales (amax / 127), xds: kp/32 f32 (= xd * sum of the block's codes).
// codes = round-to-nearest-even(x * 127 / amax), in -127..127.

import { hsum_i32 } from "./common";

export function quantize_q8(x: usize, kp: i32, xq: usize, xw: usize, xd: usize, xds: usize): void {
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
    const s0 = i16x8.narrow_i32x4_s(q0, q1); // k 0..7
    const s1 = i16x8.narrow_i32x4_s(q2, q3); // k 8..15
    const s2 = i16x8.narrow_i32x4_s(q4, q5); // k 16..23
    const s3 = i16x8.narrow_i32x4_s(q6, q7); // k 24..31
    v128.store(xq, i8x16.narrow_i16x8_s(s0, s1), 0);
    v128.store(xq, i8x16.narrow_i16x8_s(s2, s3), 16);
    if (!ASC_FEATURE_RELAXED_SIMD && xw != 0) {
      const a0 = v128.shuffle<i16>(s0, s1, 0, 2, 4, 6, 8, 10, 12, 14); // k 2i
      const a2 = v128.shuffle<i16>(s0, s1, 1, 3, 5, 7, 9, 11, 13, 15); // k 2i+1
      const a1 = v128.shuffle<i16>(s2, s3, 0, 2, 4, 6, 8, 10, 12, 14); // k 16+2i
      const a3 = v128.shuffle<i16>(s2, s3, 1, 3, 5, 7, 9, 11, 13, 15); // k 17+2i
      v128.store(xw, a0, 0);
      v128.store(xw, a1, 16);
      v128.store(xw, i16x8.sub(a2, i16x8.shl(a1, 4)), 32);
      v128.store(xw, i16x8.sub(a3, i16x8.shl(a2, 4)), 48);
      xw += 64;
    }
    store<f32>(xd + (<usize>b << 2), d);
    store<f32>(xds + (<usize>b << 2), d * <f32>hsum_i32(s));
    x += 128;
    xq += 32;
  }
}
