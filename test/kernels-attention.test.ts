/**
 * KV cache stores (fp16, int8) and decode attention over the cache, against plain TS: the reference reads
 * the same cache the kernel reads (fp16 bits decoded / int8 codes times scales) and computes in float64.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadTestKernels, randn, rng } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
});

describe("kvStoreF16", () => {
  it("matches f32ToF16 bit for bit (random bit patterns, ties, subnormals, overflow, inf, nan)", () => {
    const r = rng(42);
    const bits = new Uint32Array(4099);
    for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(r() * 2 ** 32);
    const special = [
      0,
      -0,
      1,
      -2,
      65504,
      65519.99,
      65520,
      -65520,
      1e9,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -25,
      2 ** -26,
      2 ** -14,
      2 ** -14 - 2 ** -25,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      6.1e-5,
      -3.0517578125e-5,
      1e-8,
      1e-40,
    ];
    const values = new Float32Array(bits.buffer);
    values.set(special);
    // plus the usual range of activations, where ties and rounding matter most
    values.set(randn(2000, 7, 3), special.length);
    for (const n of [values.length, 7, 8, 9, 1]) {
      const got = kern.scoped(() => {
        const src = kern.uploadF32(values.subarray(0, n));
        const dst = kern.alloc(n * 2 + 16);
        kern.kvStoreF16(src, dst, n);
        return new Uint16Array(kern.memory.buffer, dst, n).slice();
      });
      for (let i = 0; i < n; i++) {
        const want = f32ToF16(values[i]!);
        if (got[i] !== want)
          throw new Error(
            `value ${values[i]} (#${i}): got 0x${got[i]!.toString(16)} want 0x${want.toString(16)}`,
          );
      }
    }
  });
});

describe("kvStoreQ8", () => {
  for (const [nKv, hd] of [
    [1, 8],
    [3, 64],
    [2, 12],
    [4, 6],
  ] as const) {
    it(`${nKv} kv heads x ${hd}: scale = amax / 127, codes round to nearest, within scale / 2`, () => {
      const x = randn(nKv * hd, nKv * hd, 2);
      x[0] = 0; // a zero head value and an all-zero head below
      if (nKv > 1) x.fill(0, hd, 2 * hd);
      const { codes, scales } = kern.scoped(() => {
        const src = kern.uploadF32(x);
        const c = kern.alloc(nKv * hd + 16);
        const s = kern.alloc(nKv * 4);
        kern.kvStoreQ8(src, c, s, nKv, hd);
        return { codes: kern.i8(c, nKv * hd).slice(), scales: kern.f32(s, nKv).slice() };
      });
      for (let j = 0; j < nKv; j++) {
        let amax = 0;
        for (let i = 0; i < hd; i++) amax = Math.max(amax, Math.abs(x[j * hd + i]!));
        expect(scales[j]).toBe(Math.fround(amax / 127));
        for (let i = 0; i < hd; i++) {
          const c = codes[j * hd + i]!;
          expect(Math.abs(c)).toBeLessThanOrEqual(127);
          expect(Math.abs(c * scales[j]! - x[j * hd + i]!)).toBeLessThanOrEqual(
            scales[j]! * 0.5 * (1 + 1e-6),
          );
        }
      }
    });
  }
});

/** out[h] = softmax_p(scale * q_h . k_p) . v_p over p in first .. first + count - 1, in float64. */
function refAttention(
  q: Float32Array,
  k: Float64Array,
  v: Float64Array,
  nHeads: number,
  nKv: number,
  hd: number,
  first: number,
  count: number,
  scale: number,
): Float64Array {
  const out = new Float64Array(nHeads * hd);
  const group = nHeads / nKv;
  const rowLen = nKv * hd;
  const s = new Float64Array(count);
  for (let h = 0; h < nHeads; h++) {
    const j = Math.floor(h / group);
    let mx = Number.NEGATIVE_INFINITY;
    for (let p = 0; p < count; p++) {
      let d = 0;
      for (let i = 0; i < hd; i++) d += q[h * hd + i]! * k[(first + p) * rowLen + j * hd + i]!;
      s[p] = d * scale;
      mx = Math.max(mx, s[p]!);
    }
    let sum = 0;
    for (let p = 0; p < count; p++) sum += s[p] = Math.exp(s[p]! - mx);
    for (let p = 0; p < count; p++) {
      const w = s[p]! / sum;
      for (let i = 0; i < hd; i++) out[h * hd + i]! += w * v[(first + p) * rowLen + j * hd + i]!;
    }
  }
  return out;
}

/** Worst per-head max |got - ref| / max |ref| (each head's output has its own scale). */
function headRelErr(got: Float32Array, ref: Float64Array, nHeads: number, hd: number): number {
  let worst = 0;
  for (let h = 0; h < nHeads; h++) {
    let d = 0;
    let m = 0;
    for (let i = h * hd; i < (h + 1) * hd; i++) {
      d = Math.max(d, Math.abs(got[i]! - ref[i]!));
      m = Math.max(m, Math.abs(ref[i]!));
    }
    worst = Math.max(worst, d / m);
  }
  return worst;
}

const COUNTS = [
  ...Array.from({ length: 40 }, (_, i) => i + 1),
  47,
  63,
  64,
  65,
  95,
  96,
  97,
  127,
  128,
  129,
  200,
  255,
  256,
  257,
  299,
  300,
];

describe("attention over a KV cache (decode)", () => {
  const nKv = 2;
  const FIRST = 5; // a sliding-window style start: positions before it hold NaN and must not be read
  for (const kind of ["f16", "q8"] as const) {
    for (const hd of [8, 32, 64, 4, 12, 20, 6]) {
      for (const ratio of [1, 2, 3, 4]) {
        it(`${kind} cache, headDim ${hd}, GQA ${ratio}:1, counts 1..300`, () => {
          const nHeads = nKv * ratio;
          const rowLen = nKv * hd;
          const capacity = FIRST + 300 + 3;
          const seed = hd * 100 + ratio + (kind === "q8" ? 7 : 0);
          // sharper attention for some heads: exercises the online-softmax rescaling
          const q = randn(nHeads * hd, seed, 1.5);
          const kAll = randn(capacity * rowLen, seed + 1);
          const vAll = randn(capacity * rowLen, seed + 2);
          const scale = 1 / Math.sqrt(hd);
          kern.scoped(() => {
            const esize = kind === "f16" ? 2 : 1;
            const kc = kern.alloc(capacity * rowLen * esize + 16);
            const vc = kern.alloc(capacity * rowLen * esize + 16);
            const ks = kern.alloc(capacity * nKv * 4);
            const vs = kern.alloc(capacity * nKv * 4);
            const row = kern.alloc(rowLen * 4);
            for (let p = 0; p < capacity; p++) {
              for (const [src, cache, sc] of [
                [kAll, kc, ks],
                [vAll, vc, vs],
              ] as const) {
                kern.f32(row, rowLen).set(src.subarray(p * rowLen, (p + 1) * rowLen));
                if (kind === "f16") kern.kvStoreF16(row, cache + p * rowLen * 2, rowLen);
                else kern.kvStoreQ8(row, cache + p * rowLen, sc + p * nKv * 4, nKv, hd);
              }
            }
            // what the cache holds, as the reference sees it
            const decode = (cache: number, sc: number): Float64Array => {
              const out = new Float64Array(capacity * rowLen);
              if (kind === "f16") {
                const h = new Uint16Array(kern.memory.buffer, cache, capacity * rowLen);
                for (let i = 0; i < out.length; i++) out[i] = f16ToF32(h[i]!);
              } else {
                const c = kern.i8(cache, capacity * rowLen);
                const s = kern.f32(sc, capacity * nKv);
                for (let i = 0; i < out.length; i++) out[i] = c[i]! * s[Math.floor(i / hd)]!;
              }
              return out;
            };
            const kRef = decode(kc, ks);
            const vRef = decode(vc, vs);
            // poison positions before FIRST: a kernel reading them would produce NaN
            const poison = (cache: number, sc: number) => {
              if (kind === "f16") new Uint16Array(kern.memory.buffer, cache, FIRST * rowLen).fill(0x7e00);
              else kern.f32(sc, FIRST * nKv).fill(Number.NaN);
            };
            poison(kc, ks);
            poison(vc, vs);

            const qp = kern.uploadF32(q);
            const out = kern.alloc(nHeads * hd * 4);
            let worst = 0;
            for (const count of COUNTS) {
              const ref = refAttention(q, kRef, vRef, nHeads, nKv, hd, FIRST, count, scale);
              // poison the position right after the window too (restored below)
              const after = FIRST + count;
              const saved = kern.u8(kc + after * rowLen * esize, rowLen * esize).slice();
              kern.u8(kc + after * rowLen * esize, rowLen * esize).fill(kind === "f16" ? 0x7e : 0x80);
              kern.f32(out, nHeads * hd).fill(Number.NaN);
              if (kind === "f16") {
                kern.attentionF16(qp, kc, vc, out, nHeads, nKv, hd, FIRST, count, scale);
              } else {
                kern.attentionQ8(qp, kc, ks, vc, vs, out, nHeads, nKv, hd, FIRST, count, scale);
              }
              kern.u8(kc + after * rowLen * esize, rowLen * esize).set(saved);
              const err = headRelErr(kern.f32(out, nHeads * hd), ref, nHeads, hd);
              if (!(err < 1e-5)) throw new Error(`count ${count}: relative error ${err}`);
              worst = Math.max(worst, err);
            }
            expect(worst).toBeLessThan(1e-5);
          });
        });
      }
    }
  }

  it("q8 cache stays within the int8 quantization error of the fp32 result", () => {
    const [nHeads, nKvH, hd, count] = [6, 2, 64, 257];
    const rowLen = nKvH * hd;
    const q = randn(nHeads * hd, 1);
    const kAll = randn(count * rowLen, 2);
    const vAll = randn(count * rowLen, 3);
    const scale = 1 / Math.sqrt(hd);
    const got = kern.scoped(() => {
      const kc = kern.alloc(count * rowLen);
      const vc = kern.alloc(count * rowLen);
      const ks = kern.alloc(count * nKvH * 4);
      const vs = kern.alloc(count * nKvH * 4);
      const kp = kern.uploadF32(kAll);
      const vp = kern.uploadF32(vAll);
      for (let p = 0; p < count; p++) {
        kern.kvStoreQ8(kp + p * rowLen * 4, kc + p * rowLen, ks + p * nKvH * 4, nKvH, hd);
        kern.kvStoreQ8(vp + p * rowLen * 4, vc + p * rowLen, vs + p * nKvH * 4, nKvH, hd);
      }
      const out = kern.alloc(nHeads * hd * 4);
      kern.attentionQ8(kern.uploadF32(q), kc, ks, vc, vs, out, nHeads, nKvH, hd, 0, count, scale);
      return kern.f32(out, nHeads * hd).slice();
    });
    const ref = refAttention(
      q,
      Float64Array.from(kAll),
      Float64Array.from(vAll),
      nHeads,
      nKvH,
      hd,
      0,
      count,
      scale,
    );
    // codes are within amax/254 per element (~0.4% of a head's range): a few percent of the output scale at most
    expect(headRelErr(got, ref, nHeads, hd)).toBeLessThan(0.03);
  });

  it("several query rows at once (prefill, verify) equal one call per row bit for bit", () => {
    for (const kind of ["f16", "q8"] as const) {
      for (const [nHeads, nKvH, hd] of [
        [9, 3, 64],
        [4, 4, 12],
        [8, 2, 20],
      ] as const) {
        const rowLen = nKvH * hd;
        const capacity = 120;
        const seed = nHeads * 10 + hd + (kind === "q8" ? 1 : 0);
        const kAll = randn(capacity * rowLen, seed);
        const vAll = randn(capacity * rowLen, seed + 1);
        const scale = 1 / Math.sqrt(hd);
        kern.scoped(() => {
          const kc = kern.alloc(capacity * rowLen * 2 + 16);
          const vc = kern.alloc(capacity * rowLen * 2 + 16);
          const ks = kern.alloc(capacity * nKvH * 4);
          const vs = kern.alloc(capacity * nKvH * 4);
          const kp = kern.uploadF32(kAll);
          const vp = kern.uploadF32(vAll);
          for (let p = 0; p < capacity; p++) {
            if (kind === "f16") {
              kern.kvStoreF16(kp + p * rowLen * 4, kc + p * rowLen * 2, rowLen);
              kern.kvStoreF16(vp + p * rowLen * 4, vc + p * rowLen * 2, rowLen);
            } else {
              kern.kvStoreQ8(kp + p * rowLen * 4, kc + p * rowLen, ks + p * nKvH * 4, nKvH, hd);
              kern.kvStoreQ8(vp + p * rowLen * 4, vc + p * rowLen, vs + p * nKvH * 4, nKvH, hd);
            }
          }
          // Rows padded apart (strides wider than a row), counts crossing 32-position blocks.
          const qStride = nHeads * hd + 8;
          const outStride = nHeads * hd + 4;
          const m = Math.min(16, kern.maxAttentionRows(nHeads, nKvH, hd));
          const q = kern.uploadF32(randn(m * qStride, seed + 2, 1.5));
          const out = kern.alloc(m * outStride * 4);
          const one = kern.alloc(nHeads * hd * 4);
          for (const count0 of [1, 2, 29, 31, 32, 33, 64, 100]) {
            const rows = Math.min(m, capacity - count0 + 1);
            kern.f32(out, m * outStride).fill(Number.NaN);
            if (kind === "f16")
              kern.attentionRowsF16(
                q,
                qStride,
                kc,
                vc,
                out,
                outStride,
                rows,
                nHeads,
                nKvH,
                hd,
                0,
                count0,
                scale,
              );
            else
              kern.attentionRowsQ8(
                q,
                qStride,
                kc,
                ks,
                vc,
                vs,
                out,
                outStride,
                rows,
                nHeads,
                nKvH,
                hd,
                0,
                count0,
                scale,
              );
            for (let i = 0; i < rows; i++) {
              const qi = q + i * qStride * 4;
              if (kind === "f16") kern.attentionF16(qi, kc, vc, one, nHeads, nKvH, hd, 0, count0 + i, scale);
              else kern.attentionQ8(qi, kc, ks, vc, vs, one, nHeads, nKvH, hd, 0, count0 + i, scale);
              const got = kern.f32(out + i * outStride * 4, nHeads * hd);
              expect(got, `${kind} ${nHeads}/${nKvH}x${hd} count0 ${count0} row ${i}`).toEqual(
                kern.f32(one, nHeads * hd),
              );
            }
          }
        });
      }
    }
  });

  it("validates its arguments", () => {
    expect(() => kern.attentionRowsF16(0, 8, 0, 0, 0, 8, 0, 4, 2, 4, 0, 1, 1)).toThrow(/m/);
    expect(() => kern.attentionRowsF16(0, 8, 0, 0, 0, 8, 1000, 4, 2, 64, 0, 1, 1)).toThrow(/scratch/);
    expect(() => kern.attentionF16(0, 0, 0, 0, 6, 4, 8, 0, 1, 1)).toThrow(/multiple/);
    expect(() => kern.attentionF16(0, 0, 0, 0, 4, 2, 8, 0, 0, 1)).toThrow(/count/);
    expect(() => kern.attentionQ8(0, 0, 0, 0, 0, 0, 4, 2, 8, -1, 3, 1)).toThrow(/first/);
    expect(() => kern.attentionF16(0, 0, 0, 0, 4, 2, 1024, 0, 3, 1)).toThrow(/scratch/);
  });
});
