// KV cache stores (fp16 / int8) and decode attention over the cache.

import { exp1, exp4, h2f, h2f4, h2f4_high, hsum, reduce4_f32 } from "./common";

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

// Several query rows at once (prefill, speculative verification): row i is the query of position
// first + count0 - 1 + i and sees positions first .. first + count0 - 1 + i (causal). Each block of K and V
// rows is widened once for every row and query head; row i runs exactly the ops the single-row kernel
// runs for it (same blocks, same order), so its output is bit-identical to a call with count0 + i.
//   q: m rows of [nHeads][hd] f32, qStride bytes apart; out likewise, outStride bytes apart.
// tmp: att_scratch_bytes(m * nHeads / nKv, hd) bytes, 16-byte aligned.
function attention_impl(
  q8: bool, q: usize, qStride: usize, kc: usize, ks: usize, vc: usize, vs: usize, out: usize, outStride: usize,
  m: i32, nHeads: i32, nKv: i32, hd: i32, first: i32, count0: i32, scale: f32, tmp: usize,
): void {
  const group = nHeads / nKv;
  const slots = m * group; // (row, query head of the kv group) pairs
  const esize: usize = q8 ? 1 : 2;
  const rowStride = <usize>(nKv * hd) * esize;
  const scStride = <usize>nKv << 2;
  const headBytes = <usize>hd << 2;
  const kf = tmp;
  const vf = kf + (<usize>(ATT_B * hd) << 2);
  const sb = vf + (<usize>(ATT_B * hd) << 2); // [slots][ATT_B] scores -> probabilities
  const stats = sb + (<usize>(slots * ATT_B) << 2); // [slots] (m, l)
  const sv = f32x4.splat(scale);
  const countMax = count0 + m - 1;
  for (let j = 0; j < nKv; j++) {
    for (let i = 0; i < m; i++) {
      for (let r = 0; r < group; r++) {
        const o = out + <usize>i * outStride + <usize>(j * group + r) * headBytes;
        for (let d = 0; d < hd; d++) store<f32>(o + (<usize>d << 2), 0);
        const st = stats + (<usize>(i * group + r) << 4);
        store<f32>(st, -Infinity);
        store<f32>(st, 0, 4);
      }
    }
    for (let p0 = 0; p0 < countMax; p0 += ATT_B) {
      const nbMax = min(ATT_B, countMax - p0);
      const pos = <usize>(first + p0);
      const ko = pos * rowStride + <usize>j * <usize>hd * esize;
      if (q8) {
        const so = pos * scStride + (<usize>j << 2);
        cvt_rows_q8(kc + ko, rowStride, ks + so, scStride, nbMax, hd, kf);
        cvt_rows_q8(vc + ko, rowStride, vs + so, scStride, nbMax, hd, vf);
      } else {
        cvt_rows_f16(kc + ko, rowStride, nbMax, hd, kf);
        cvt_rows_f16(vc + ko, rowStride, nbMax, hd, vf);
      }
      for (let i = 0; i < m; i++) {
        const nb = min(ATT_B, count0 + i - p0);
        if (nb <= 0) continue; // this row's positions end before the block
        for (let r = 0; r < group; r++) {
          const h = j * group + r;
          const qh = q + <usize>i * qStride + <usize>h * headBytes;
          const slot = i * group + r;
          const s = sb + (<usize>(slot * ATT_B) << 2);
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
          const st = stats + (<usize>slot << 4);
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
          pv_accumulate(out + <usize>i * outStride + <usize>h * headBytes, alpha, s, vf, nb, hd);
        }
      }
    }
    for (let i = 0; i < m; i++) {
      for (let r = 0; r < group; r++) {
        const o = out + <usize>i * outStride + <usize>(j * group + r) * headBytes;
        const inv: f32 = <f32>1.0 / load<f32>(stats + (<usize>(i * group + r) << 4), 4);
        const iv = f32x4.splat(inv);
        let d = 0;
        for (; d + 4 <= hd; d += 4) v128.store(o + (<usize>d << 2), f32x4.mul(v128.load(o + (<usize>d << 2)), iv));
        for (; d < hd; d++) store<f32>(o + (<usize>d << 2), load<f32>(o + (<usize>d << 2)) * inv);
      }
    }
  }
}

/** Attention over an fp16 KV cache (see the block comment above). */
export function attention_f16(
  q: usize, kc: usize, vc: usize, out: usize, nHeads: i32, nKv: i32, hd: i32, first: i32, count: i32,
  scale: f32, tmp: usize,
): void {
  attention_impl(false, q, 0, kc, 0, vc, 0, out, 0, 1, nHeads, nKv, hd, first, count, scale, tmp);
}

/** Attention over an int8 KV cache with per (position, kv head) f32 scales. */
export function attention_q8(
  q: usize, kc: usize, ks: usize, vc: usize, vs: usize, out: usize, nHeads: i32, nKv: i32, hd: i32,
  first: i32, count: i32, scale: f32, tmp: usize,
): void {
  attention_impl(true, q, 0, kc, ks, vc, vs, out, 0, 1, nHeads, nKv, hd, first, count, scale, tmp);
}

/** attention_f16 for m consecutive query rows (see attention_impl): row i sees count0 + i positions. */
export function attention_rows_f16(
  q: usize, qStride: i32, kc: usize, vc: usize, out: usize, outStride: i32, m: i32, nHeads: i32, nKv: i32,
  hd: i32, first: i32, count0: i32, scale: f32, tmp: usize,
): void {
  attention_impl(false, q, <usize>qStride, kc, 0, vc, 0, out, <usize>outStride, m, nHeads, nKv, hd, first, count0, scale, tmp);
}

/** attention_q8 for m consecutive query rows (see attention_impl): row i sees count0 + i positions. */
export function attention_rows_q8(
  q: usize, qStride: i32, kc: usize, ks: usize, vc: usize, vs: usize, out: usize, outStride: i32, m: i32,
  nHeads: i32, nKv: i32, hd: i32, first: i32, count0: i32, scale: f32, tmp: usize,
): void {
  attention_impl(true, q, <usize>qStride, kc, ks, vc, vs, out, <usize>outStride, m, nHeads, nKv, hd, first, count0, scale, tmp);
}
