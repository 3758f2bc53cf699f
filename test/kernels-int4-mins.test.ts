/**
 * int4 with fp16 per-group mins (w = q * d + m, ggml Q4_1; src/format/int4.ts): the blob format
 * (round trip, garbage), and every WASM kernel on such tensors against the fp32 reference over
 * dequantize(), the Q8 matvec against its exact integer emulation, the batched matmul bit-identical to
 * per-row matvecs, embedding rows equal to dequantize().
 */
import { beforeAll, describe, expect, it } from "vitest";
import { matmulInt4Array, matmulInt4Q8Array, matvecInt4Array } from "../src/bench/kernel-arrays.ts";
import {
  dequantize,
  dequantizeInt4Row,
  deserializeInt4,
  f16ToF32,
  int4BlobGeometry,
  int4BlobLayout,
  int4ByteLength,
  int4Code,
  serializeInt4,
} from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { emulateQ8, loadTestKernels, q4_1Tensor, randn, refMatvec, relErr } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
});

describe("int4 blob with fp16 mins", () => {
  it("round-trips through serializeInt4 / deserializeInt4 with flag bit 1 and a mins section", () => {
    const p = q4_1Tensor(5, 96, 1);
    const blob = serializeInt4(p);
    expect(blob[7]).toBe(2);
    const g = int4BlobGeometry(blob);
    expect(g).toMatchObject({ mins: true, zeroPoint: false, N: 5, K: 96, nGroups: 3 });
    expect(g.byteLength).toBe(int4BlobLayout(5, 96, { mins: true }).byteLength);
    expect(g.zerosOffset % 16).toBe(0);
    const back = deserializeInt4(blob);
    expect(Array.from(back.mins!)).toEqual(Array.from(p.mins!));
    expect(Array.from(back.scales)).toEqual(Array.from(p.scales));
    expect(back.zeros).toBeNull();
    expect(dequantize(back)).toEqual(dequantize(p));
    // 2 bytes more per group than the symmetric form
    expect(int4ByteLength(5, 96, { mins: true }) - int4ByteLength(5, 96)).toBe(5 * 3 * 2);
  });

  it("dequantizes to q * d + m", () => {
    const p = q4_1Tensor(3, 64, 2);
    const row = dequantizeInt4Row(p, 2, new Float32Array(64));
    for (let k = 0; k < 64; k++) {
      const g = 2 * p.nGroups + (k >> 5);
      expect(row[k]).toBe(Math.fround(int4Code(p, 2, k) * f16ToF32(p.scales[g]!) + f16ToF32(p.mins![g]!)));
    }
  });

  it("existing blobs are unchanged: symmetric and zero-point flags stay 0 and 1", async () => {
    const { quantizeRtn } = await import("../src/format/int4.ts");
    const w = randn(4 * 64, 3);
    expect(serializeInt4(quantizeRtn(w, 4, 64))[7]).toBe(0);
    expect(serializeInt4(quantizeRtn(w, 4, 64, { zeroPoint: true }))[7]).toBe(1);
  });

  it("rejects malformed blobs with clear errors", () => {
    const blob = serializeInt4(q4_1Tensor(4, 64, 3));
    const flags = (f: number) => {
      const b = blob.slice();
      b[7] = f;
      return b;
    };
    expect(() => int4BlobGeometry(flags(3))).toThrow(/flags 3/);
    expect(() => int4BlobGeometry(flags(6))).toThrow(/flags 6/);
    // flag says zero points: the offsets no longer match that layout
    expect(() => int4BlobGeometry(flags(1))).toThrow(/section offsets/);
    // ragged K with mins
    const ragged = blob.slice();
    new DataView(ragged.buffer).setUint32(12, 63, true);
    expect(() => int4BlobGeometry(ragged)).toThrow(/mins with K 63/);
    expect(() => deserializeInt4(blob.subarray(0, blob.byteLength - 2))).toThrow(/truncated/);
    const garbage = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 255);
    expect(() => int4BlobGeometry(garbage)).toThrow(/bad magic/);
    expect(() => int4BlobLayout(4, 64, { mins: true, zeroPoint: true })).toThrow(/exclude/);
    expect(() => int4BlobLayout(4, 72, { mins: true })).toThrow(/multiple of 32/);
    const p = q4_1Tensor(2, 32, 4);
    expect(() => serializeInt4({ ...p, zeros: new Uint8Array(2) })).toThrow(/not both/);
    expect(() => serializeInt4({ ...p, mins: new Uint16Array(1) })).toThrow(/length/);
  });
});

describe("WASM int4 kernels on fp16-min tensors", () => {
  const shapes: [number, number][] = [
    [13, 96],
    [9, 576],
    [21, 1536],
  ];
  for (const [N, K] of shapes) {
    it(`${N}x${K}: fp32 matvec and matmul vs the fp32 reference over dequantize()`, () => {
      const p = q4_1Tensor(N, K, N + K);
      const dq = dequantize(p);
      const x = randn(3 * K, K + 1);
      kern.scoped(() => {
        const t = kern.uploadInt4(p);
        expect(t.mins).not.toBe(0);
        const got = matvecInt4Array(kern, t, x.subarray(0, K));
        expect(relErr(got, refMatvec(dq, x.subarray(0, K), N, K))).toBeLessThan(1e-4);
        const mm = matmulInt4Array(kern, t, x, 3);
        for (let m = 0; m < 3; m++) {
          const ref = refMatvec(dq, x.subarray(m * K, (m + 1) * K), N, K);
          expect(relErr(mm.subarray(m * N, (m + 1) * N), ref)).toBeLessThan(1e-4);
        }
      });
    });

    it(`${N}x${K}: Q8 matvec exact for its inputs; batched rows bit-identical to matvecs`, () => {
      const p = q4_1Tensor(N, K, 3 * N + K);
      const dq = dequantize(p);
      const M = 5;
      const x = randn(M * K, 7 * K);
      kern.scoped(() => {
        const t = kern.uploadInt4(p);
        const batch = matmulInt4Q8Array(kern, t, x, M);
        for (let m = 0; m < M; m++) {
          const xm = x.subarray(m * K, (m + 1) * K);
          const got = matvecInt4Array(kern, t, xm, "q8");
          expect(batch.subarray(m * N, (m + 1) * N)).toEqual(got);
          const { q, d } = emulateQ8(xm, K);
          const exact = new Float32Array(N);
          for (let n = 0; n < N; n++) {
            let y = 0;
            for (let g = 0; g < p.nGroups; g++) {
              const s = f16ToF32(p.scales[n * p.nGroups + g]!);
              const mn = f16ToF32(p.mins![n * p.nGroups + g]!);
              for (let k = g * 32; k < (g + 1) * 32; k++)
                y += (s * int4Code(p, n, k) + mn) * q[k]! * d[k >> 5]!;
            }
            exact[n] = y;
          }
          expect(relErr(got, exact)).toBeLessThan(1e-5);
          expect(relErr(got, refMatvec(dq, xm, N, K))).toBeLessThan(0.02);
        }
      });
    });
  }

  it("embedding rows equal dequantize() exactly, in place from a blob too", () => {
    const p = q4_1Tensor(7, 96, 5);
    const dq = dequantize(p);
    kern.scoped(() => {
      const blob = serializeInt4(p);
      const ptr = kern.alloc(blob.byteLength + 16);
      kern.u8(ptr, blob.byteLength).set(blob);
      const inPlace = kern.int4At(ptr);
      expect(inPlace.mins).toBe(ptr + int4BlobGeometry(blob).zerosOffset);
      expect(inPlace.zeros).toBe(0);
      for (const t of [kern.uploadInt4(p), inPlace]) {
        const out = kern.alloc(96 * 4);
        for (const row of [0, 3, 6]) {
          kern.embedRowInt4(t, row, out);
          expect(kern.f32(out, 96).slice()).toEqual(dq.subarray(row * 96, (row + 1) * 96));
        }
      }
      const x = randn(96, 8);
      expect(matvecInt4Array(kern, inPlace, x, "q8")).toEqual(
        matvecInt4Array(kern, kern.uploadInt4(p), x, "q8"),
      );
    });
  });
});
