import { beforeAll, describe, expect, it } from "vitest";
import type { RopeStyle } from "../src/format/model.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadTestKernels, randn, refMatvec, relErr } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
});

/** Runs fn with `arrays` uploaded; returns the arrays read back (after fn mutated them). */
function withArrays(arrays: Float32Array[], fn: (ptrs: number[]) => void): Float32Array[] {
  return kern.scoped(() => {
    const ptrs = arrays.map((a) => kern.uploadF32(a));
    fn(ptrs);
    return ptrs.map((p, i) => kern.f32(p, arrays[i]!.length).slice());
  });
}

describe("fp32 helper kernels vs plain TS", () => {
  it("matvec_f32 (N and K not multiples of 4)", () => {
    for (const [N, K] of [
      [1, 1],
      [7, 13],
      [64, 172],
      [5, 768],
    ] as const) {
      const w = randn(N * K, N + K);
      const x = randn(K, 3);
      const [, , y] = withArrays([w, x, new Float32Array(N)], ([pw, px, py]) =>
        kern.matvecF32(pw!, px!, py!, N, K),
      );
      expect(relErr(y!, refMatvec(w, x, N, K))).toBeLessThan(1e-5);
    }
  });

  it("rmsnorm (in place and out of place)", () => {
    for (const n of [5, 64, 288, 770]) {
      const x = randn(n, n, 3);
      const w = randn(n, n + 1);
      const eps = 1e-5;
      let ss = 0;
      for (const v of x) ss += v * v;
      const inv = 1 / Math.sqrt(ss / n + eps);
      const ref = x.map((v, i) => v * inv * w[i]!);
      const [, , out] = withArrays([x, w, new Float32Array(n)], ([px, pw, po]) =>
        kern.rmsnorm(px!, pw!, po!, n, eps),
      );
      expect(relErr(out!, ref)).toBeLessThan(1e-5);
      const [inPlace] = withArrays([x, w], ([px, pw]) => kern.rmsnorm(px!, pw!, px!, n, eps));
      expect(relErr(inPlace!, ref)).toBeLessThan(1e-5);
    }
  });

  it("softmax (large vocab, wide range, ragged tail)", () => {
    for (const n of [1, 3, 32, 1001, 49152]) {
      const x = randn(n, n, 8);
      if (n > 10) x[7] = 40; // a dominant logit
      let mx = Number.NEGATIVE_INFINITY;
      for (const v of x) mx = Math.max(mx, v);
      let sum = 0;
      const e = Array.from(x, (v) => Math.exp(v - mx));
      for (const v of e) sum += v;
      const ref = Float32Array.from(e, (v) => v / sum);
      const [got] = withArrays([x], ([px]) => kern.softmax(px!, n));
      for (let i = 0; i < n; i++) {
        expect(Math.abs(got![i]! - ref[i]!)).toBeLessThanOrEqual(2e-6 * ref[i]! + 1e-12);
      }
      let total = 0;
      for (const v of got!) total += v;
      expect(total).toBeCloseTo(1, 5);
    }
  });

  it("silu_gate, including large |g| (no overflow to NaN)", () => {
    const n = 1539;
    const g = randn(n, 1, 4);
    g[0] = -200;
    g[1] = 200;
    g[2] = 0;
    const u = randn(n, 2);
    const ref = Float32Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
    const [, , out] = withArrays([g, u, new Float32Array(n)], ([pg, pu, po]) =>
      kern.siluGate(pg!, pu!, po!, n),
    );
    for (let i = 0; i < n; i++)
      expect(Math.abs(out![i]! - ref[i]!)).toBeLessThanOrEqual(2e-6 * Math.abs(ref[i]!) + 1e-7);
  });

  for (const style of ["interleaved", "neox"] as RopeStyle[]) {
    it(`rope (${style}), tables from rope_table, full and partial rotary dims`, () => {
      for (const [nHeads, headDim, ropeDim, pos] of [
        [12, 64, 64, 0],
        [9, 64, 64, 17],
        [3, 48, 48, 4095],
        [2, 64, 32, 5],
        [4, 6, 6, 3],
      ] as const) {
        const theta = 10000;
        const x = randn(nHeads * headDim, pos + headDim);
        const ref = x.slice();
        const half = ropeDim / 2;
        for (let h = 0; h < nHeads; h++) {
          for (let i = 0; i < half; i++) {
            const a = pos * theta ** ((-2 * i) / ropeDim);
            const [c, s] = [Math.cos(a), Math.sin(a)];
            const i0 = h * headDim + (style === "interleaved" ? 2 * i : i);
            const i1 = style === "interleaved" ? i0 + 1 : i0 + half;
            const [x0, x1] = [x[i0]!, x[i1]!];
            ref[i0] = x0 * c - x1 * s;
            ref[i1] = x0 * s + x1 * c;
          }
        }
        const [got, cos, sin] = withArrays(
          [x, new Float32Array(half), new Float32Array(half)],
          ([px, pc, ps]) => {
            kern.ropeTable(pos, theta, ropeDim, pc!, ps!);
            kern.rope(px!, nHeads, headDim, ropeDim, pc!, ps!, style);
          },
        );
        for (let i = 0; i < half; i++) {
          const a = pos * theta ** ((-2 * i) / ropeDim);
          expect(cos![i]).toBeCloseTo(Math.cos(a), 6);
          expect(sin![i]).toBeCloseTo(Math.sin(a), 6);
        }
        expect(relErr(got!, ref)).toBeLessThan(1e-5);
      }
    });
  }

  it("argmax: first maximum, ragged tail, negatives, NaN ignored", () => {
    const cases: [number[], number][] = [
      [[1], 0],
      [[-3, -1, -2], 1],
      [[0, 5, 5, 1, 5], 1],
      [[1, 2, 3, 4, 5, 6, 7, 8, 9], 8],
      [[Number.NaN, 2, 1, 2], 1],
    ];
    for (const [xs, want] of cases) {
      const [, got] = kern.scoped(() => {
        const p = kern.uploadF32(Float32Array.from(xs));
        return [0, kern.argmax(p, xs.length)];
      });
      expect(got).toBe(want);
    }
    const big = randn(49152, 4);
    big[40000] = 100;
    big[45000] = 100;
    expect(kern.scoped(() => kern.argmax(kern.uploadF32(big), big.length))).toBe(40000);
    expect(kern.argmax(0, 0)).toBe(-1);
  });
});
