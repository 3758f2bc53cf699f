import { beforeAll, describe, expect, it } from "vitest";
import {
  dequantize,
  f16ToF32,
  type Int4GroupSize,
  int4Code,
  int4ZeroPoint,
  quantizeRtn,
} from "../src/format/int4.ts";
import { q8Row, type WasmKernels } from "../src/kernels/wasm/index.ts";
import { matmulInt4Array, matmulInt4Q8Array, matvecInt4Array } from "./helpers/kernel-arrays.ts";
import { emulateQ8, loadTestKernels, randn, refMatvec, relErr } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
});

const KS = [64, 172, 288, 768];
const GROUPS: Int4GroupSize[] = [32, 64, 128];

/** Weights with a few outliers, so groups have different scales. */
function weights(N: number, K: number, seed: number): Float32Array {
  const w = randn(N * K, seed, 0.05);
  for (let i = 0; i < w.length; i += 97) w[i] = w[i]! * 6;
  return w;
}

describe("int4 matvec, fp32 activations, vs fp32 matvec over dequantize()", () => {
  for (const K of KS) {
    for (const groupSize of GROUPS) {
      for (const zeroPoint of [false, true]) {
        it(`K=${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}`, () => {
          const N = 13; // not a multiple of 4: exercises the ragged last row block
          const p = quantizeRtn(weights(N, K, K + groupSize), N, K, { groupSize, zeroPoint });
          const x = randn(K, K * 3 + groupSize);
          const ref = refMatvec(dequantize(p), x, N, K);
          const got = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x));
          expect(relErr(got, ref)).toBeLessThan(1e-4);
          // and elementwise against the row's own scale
          for (let n = 0; n < N; n++)
            expect(Math.abs(got[n]! - ref[n]!)).toBeLessThan(1e-4 * (Math.abs(ref[n]!) + 0.1));
        });
      }
    }
  }

  it("N = 1, 2, 3, 4, 5 rows and a single group", () => {
    for (const N of [1, 2, 3, 4, 5]) {
      const p = quantizeRtn(weights(N, 32, N), N, 32, { zeroPoint: N % 2 === 0 });
      const x = randn(32, 9);
      const got = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x));
      expect(relErr(got, refMatvec(dequantize(p), x, N, 32))).toBeLessThan(1e-4);
    }
  });
});

describe("int4 matvec, Q8 activations", () => {
  for (const K of KS) {
    for (const groupSize of GROUPS) {
      for (const zeroPoint of [false, true]) {
        it(`K=${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}: exact for its inputs, bounded vs fp32`, () => {
          const N = 9;
          const p = quantizeRtn(weights(N, K, 7 * K + groupSize), N, K, { groupSize, zeroPoint });
          const x = randn(K, K + 5 * groupSize);
          const got = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x, "q8"));

          // 1) what the kernel should compute from the quantized activations it was given
          const { q, d } = emulateQ8(x, p.kPadded);
          const exact = new Float32Array(N);
          const bound = new Float64Array(N);
          const dq = dequantize(p);
          for (let n = 0; n < N; n++) {
            let y = 0;
            for (let g = 0; g < p.nGroups; g++) {
              const s = f16ToF32(p.scales[n * p.nGroups + g]!);
              const z = int4ZeroPoint(p, n, g);
              for (let k = g * groupSize; k < (g + 1) * groupSize; k++) {
                y += s * (int4Code(p, n, k) - z) * q[k]! * d[k >> 5]!;
              }
            }
            exact[n] = y;
            // activation rounding error is at most d/2 per element
            for (let k = 0; k < K; k++) bound[n]! += Math.abs(dq[n * K + k]!) * d[k >> 5]! * 0.5;
          }
          expect(relErr(got, exact)).toBeLessThan(1e-5);

          // 2) within the quantization error of the fp32-activation result
          const ref = refMatvec(dq, x, N, K);
          const scale = Math.max(...Array.from(ref, Math.abs));
          for (let n = 0; n < N; n++) {
            expect(Math.abs(got[n]! - ref[n]!)).toBeLessThanOrEqual(bound[n]! * 1.001 + 1e-5 * scale);
          }
          // and, for these random inputs, about half a percent of the output scale
          expect(relErr(got, ref)).toBeLessThan(0.02);
        });
      }
    }
  }

  it("reuses one quantized activation vector for several weights (q/k/v style)", () => {
    const K = 288;
    const ps = [0, 1, 2].map((i) => quantizeRtn(weights(16, K, 50 + i), 16, K));
    const x = randn(K, 77);
    kern.scoped(() => {
      const xs = kern.uploadF32(x, K);
      const q8 = kern.quantizeQ8(xs, kern.allocQ8(K));
      for (const p of ps) {
        const t = kern.uploadInt4(p);
        const y = kern.alloc(16 * 4);
        kern.matvecInt4Q8(t, q8, y);
        expect(relErr(kern.f32(y, 16), refMatvec(dequantize(p), x, 16, K))).toBeLessThan(0.02);
      }
    });
  });
});

describe("int4 matmul (prefill, M rows)", () => {
  const shapes: [number, number, Int4GroupSize, boolean][] = [
    [13, 172, 32, true],
    [8, 288, 64, false],
    [6, 768, 128, true],
  ];
  for (const [N, K, groupSize, zeroPoint] of shapes) {
    for (const M of [1, 2, 5, 16]) {
      it(`${N}x${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}, M=${M}`, () => {
        const p = quantizeRtn(weights(N, K, N + K), N, K, { groupSize, zeroPoint });
        const x = randn(M * K, M * 31 + K);
        const got = kern.scoped(() => matmulInt4Array(kern, kern.uploadInt4(p), x, M));
        const dq = dequantize(p);
        for (let m = 0; m < M; m++) {
          const ref = refMatvec(dq, x.subarray(m * K, (m + 1) * K), N, K);
          expect(relErr(got.subarray(m * N, (m + 1) * N), ref)).toBeLessThan(1e-4);
        }
      });
    }
  }

  it("rejects M outside 1..16", () => {
    const p = quantizeRtn(weights(4, 32, 1), 4, 32);
    kern.scoped(() => {
      const t = kern.uploadInt4(p);
      expect(() => matmulInt4Array(kern, t, new Float32Array(17 * 32), 17)).toThrow(/1\.\.16/);
    });
  });
});

describe("int4 matmul, Q8 activations (prefill)", () => {
  const shapes: [number, number, Int4GroupSize, boolean][] = [
    [13, 172, 32, true],
    [8, 288, 64, false],
    [6, 768, 128, true],
    [21, 2048, 32, false],
  ];
  for (const [N, K, groupSize, zeroPoint] of shapes) {
    for (const M of [1, 2, 3, 4, 5, 8, 16, 33]) {
      it(`${N}x${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}, M=${M}: bit-identical to per-row matvecInt4Q8`, () => {
        const p = quantizeRtn(weights(N, K, 3 * N + K), N, K, { groupSize, zeroPoint });
        const x = randn(M * K, M * 17 + K);
        const got = kern.scoped(() => matmulInt4Q8Array(kern, kern.uploadInt4(p), x, M));
        const dq = dequantize(p);
        kern.scoped(() => {
          const t = kern.uploadInt4(p);
          for (let m = 0; m < M; m++) {
            const xm = x.subarray(m * K, (m + 1) * K);
            const row = got.subarray(m * N, (m + 1) * N);
            expect(row).toEqual(matvecInt4Array(kern, t, xm, "q8"));
            expect(relErr(row, refMatvec(dq, xm, N, K))).toBeLessThan(0.02);
          }
        });
      });
    }
  }

  it("q8Row views one row of a batch; validates m and widths", () => {
    kern.scoped(() => {
      const b = kern.allocQ8Batch(64, 3);
      expect(q8Row(b, 2)).toEqual({ kPadded: 64, q: b.q + 128, w: b.w + 256, d: b.d + 16, ds: b.ds + 16 });
      expect(() => q8Row(b, 3)).toThrow(RangeError);
      const t = kern.uploadInt4(quantizeRtn(weights(4, 64, 1), 4, 64));
      expect(() => kern.matmulInt4Q8(t, b, kern.alloc(64), 4)).toThrow(RangeError);
      expect(() => kern.matmulInt4Q8(t, kern.allocQ8Batch(96, 2), kern.alloc(64))).toThrow(
        /96 vs weights 64/,
      );
    });
  });
});

describe("wasm memory management", () => {
  it("grows memory on demand and release() rewinds the bump pointer", () => {
    const m = kern.mark();
    const before = kern.memory.buffer.byteLength;
    const ptr = kern.alloc(before + 1_000_000);
    expect(ptr % 16).toBe(0);
    expect(kern.memory.buffer.byteLength).toBeGreaterThanOrEqual(ptr + before + 1_000_000);
    kern.release(m);
    expect(kern.heapTop).toBe(m);
    expect(kern.alloc(16)).toBe((m + 15) & ~15);
    kern.release(m);
  });
});
