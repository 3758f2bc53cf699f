// fp32 ops: the fp32 matvec (baseline, small fp32 tensors), norms, softmax, SiLU gate, RoPE, argmax,
// residual add.

import { exp1, exp4, hsum } from "./common";

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
