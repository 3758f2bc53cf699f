/**
 * onnxruntime-web's com.microsoft MatMulNBits as an independent oracle: the same packed weights, converted
 * with toMatMulNBits, run through ORT's own kernel (WASM EP, one thread) must give our kernels' outputs.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { matmulInt4Array, matvecInt4Array } from "../src/bench/kernel-arrays.ts";
import {
  type Int4GroupSize,
  quantizeRtn,
  toMatMulNBits,
  toMatMulNBitsFloatZeros,
} from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadOrt, loadTestKernels, ortMatMulNBits, q4_1Tensor, randn, relErr } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
  await loadOrt();
});

describe("int4 kernels vs onnxruntime MatMulNBits", () => {
  for (const K of [64, 172, 288, 768]) {
    for (const groupSize of [32, 64, 128] as Int4GroupSize[]) {
      for (const zeroPoint of [false, true]) {
        it(`K=${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}`, async () => {
          const N = 11;
          const w = randn(N * K, 13 * K + groupSize, 0.05);
          const p = quantizeRtn(w, N, K, { groupSize, zeroPoint });
          const ort = await ortMatMulNBits(toMatMulNBits(p));
          try {
            // matvec (M = 1)
            const x = randn(K, K + 1);
            const expected = await ort.run(x, 1);
            const got = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x));
            expect(relErr(got, expected)).toBeLessThan(1e-4);
            // matmul (M = 3), row by row
            const M = 3;
            const xm = randn(M * K, K + 2);
            const expectedM = await ort.run(xm, M);
            const gotM = kern.scoped(() => matmulInt4Array(kern, kern.uploadInt4(p), xm, M));
            for (let m = 0; m < M; m++) {
              expect(
                relErr(gotM.subarray(m * N, (m + 1) * N), expectedM.subarray(m * N, (m + 1) * N)),
              ).toBeLessThan(1e-4);
            }
          } finally {
            await ort.release();
          }
        });
      }
    }
  }

  for (const [N, K] of [
    [11, 96],
    [576, 1536],
  ] as const) {
    it(`${N}x${K} fp16 mins (Q4_1) with float zero points -m/d`, async () => {
      const p = q4_1Tensor(N, K, N * 3 + K);
      const ort = await ortMatMulNBits(toMatMulNBitsFloatZeros(p));
      try {
        const M = 3;
        const x = randn(M * K, K + 3);
        const expected = await ort.run(x, M);
        const gotM = kern.scoped(() => matmulInt4Array(kern, kern.uploadInt4(p), x, M));
        const got1 = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x.subarray(0, K)));
        // -m/d is rounded to fp32 and ORT dequantizes (q - z) * d: a tolerance, not bit equality
        expect(relErr(got1, expected.subarray(0, N))).toBeLessThan(1e-4);
        for (let m = 0; m < M; m++) {
          expect(
            relErr(gotM.subarray(m * N, (m + 1) * N), expected.subarray(m * N, (m + 1) * N)),
          ).toBeLessThan(1e-4);
        }
      } finally {
        await ort.release();
      }
    });
  }

  it("a real layer shape: 768x2048 (stories110M ffn_down), g32 symmetric", async () => {
    const N = 768;
    const K = 2048;
    const p = quantizeRtn(randn(N * K, 99, 0.02), N, K);
    const ort = await ortMatMulNBits(toMatMulNBits(p));
    try {
      const x = randn(K, 100);
      const got = kern.scoped(() => matvecInt4Array(kern, kern.uploadInt4(p), x));
      expect(relErr(got, await ort.run(x, 1))).toBeLessThan(1e-4);
    } finally {
      await ort.release();
    }
  });
});
