/**
 * Int8 blob format, in-place tensors (int4At / int8At), int8-weight matvecs, embedding row lookups and the
 * small fp32 helpers, each against a plain-TS reference.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { matmulInt8Q8Array, matvecInt4Array, matvecInt8Array } from "../src/bench/kernel-arrays.ts";
import {
  BLOB_HEADER_BYTES,
  dequantizeInt4Row,
  dequantizeInt8,
  dequantizeInt8Row,
  deserializeInt8,
  f16ToF32,
  type Int4GroupSize,
  type Int8GroupSize,
  int4BlobGeometry,
  int4BlobLayout,
  int8BlobGeometry,
  int8BlobLayout,
  quantizeInt8Rtn,
  quantizeRtn,
  serializeInt4,
  serializeInt8,
} from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { emulateQ8, loadTestKernels, randn, refMatvec, relErr } from "./kernels-helpers.ts";

let kern: WasmKernels;
beforeAll(async () => {
  kern = await loadTestKernels();
});

const INT8_GROUPS: Int8GroupSize[] = ["row", 32, 64, 128];

/** Weights with a few outliers, so rows / groups get different scales. */
function weights(N: number, K: number, seed: number): Float32Array {
  const w = randn(N * K, seed, 0.05);
  for (let i = 0; i < w.length; i += 89) w[i] = w[i]! * 7;
  return w;
}

/** Copies a blob into wasm memory at a 64-byte aligned address with 16 bytes of slack; returns the address. */
function placeBlob(blob: Uint8Array): number {
  const ptr = kern.allocZeroed(blob.byteLength + 16, 64);
  kern.u8(ptr, blob.byteLength).set(blob);
  return ptr;
}

describe("int8 blob", () => {
  for (const gs of INT8_GROUPS) {
    for (const [N, K] of [
      [3, 40],
      [5, 172],
      [2, 768],
    ] as const) {
      it(`serialize / deserialize ${N}x${K} ${gs === "row" ? "per-row" : `g${gs}`}`, () => {
        const p = quantizeInt8Rtn(weights(N, K, N + K), N, K, { groupSize: gs });
        const blob = serializeInt8(p);
        const layout = int8BlobLayout(N, K, gs);
        expect(blob.byteLength).toBe(layout.byteLength);
        expect(layout.dataOffset).toBe(BLOB_HEADER_BYTES);
        expect(layout.scalesOffset % 16).toBe(0);
        // header bytes as documented
        const dv = new DataView(blob.buffer);
        expect(String.fromCharCode(...blob.subarray(0, 4))).toBe("SQ8G");
        expect(dv.getUint16(4, true)).toBe(1);
        expect(dv.getUint8(6)).toBe(gs === "row" ? 0 : gs);
        expect(dv.getUint8(7)).toBe(gs === "row" ? 1 : 0);
        expect([dv.getUint32(8, true), dv.getUint32(12, true)]).toEqual([N, K]);
        expect(dv.getUint32(16, true)).toBe(32);
        expect(dv.getUint32(20, true)).toBe(layout.scalesOffset);
        expect(dv.getUint32(24, true)).toBe(0);
        expect(dv.getUint32(28, true)).toBe(blob.byteLength);
        expect(int8BlobGeometry(blob)).toEqual(layout);

        const q = deserializeInt8(blob);
        expect(q).toMatchObject({ N, K, perRow: p.perRow, groupSize: p.groupSize, nGroups: p.nGroups });
        expect(Array.from(q.data)).toEqual(Array.from(p.data));
        expect(Array.from(q.scales)).toEqual(Array.from(p.scales));
        expect(dequantizeInt8(q)).toEqual(dequantizeInt8(p));

        // odd byte offset: scales are copied instead of viewed
        const shifted = new Uint8Array(blob.byteLength + 1);
        shifted.set(blob, 1);
        const r = deserializeInt8(shifted.subarray(1));
        expect(Array.from(r.scales)).toEqual(Array.from(p.scales));
      });
    }
  }

  it("rejects bad magic, version, truncation and inconsistent offsets", () => {
    const blob = serializeInt8(quantizeInt8Rtn(weights(2, 64, 1), 2, 64));
    const bad = (f: (dv: DataView) => void, re: RegExp, len = blob.byteLength) => {
      const b = blob.slice(0, len);
      f(new DataView(b.buffer));
      expect(() => deserializeInt8(b)).toThrow(re);
    };
    bad((dv) => dv.setUint32(0, 0x47345153, true), /magic/);
    bad((dv) => dv.setUint16(4, 2, true), /version/);
    bad(() => {}, /truncated/, blob.byteLength - 1);
    bad((dv) => dv.setUint32(20, 48, true), /offsets/);
    bad((dv) => dv.setUint8(6, 32), /per-row/);
    expect(() => deserializeInt8(blob.subarray(0, 16))).toThrow(/too short/);
  });

  it("int4 header geometry matches serializeInt4 and rejects tampering", () => {
    for (const [N, K, groupSize, zeroPoint] of [
      [3, 172, 32, true],
      [4, 768, 128, false],
      [1, 40, 64, true],
    ] as [number, number, Int4GroupSize, boolean][]) {
      const blob = serializeInt4(quantizeRtn(weights(N, K, 3), N, K, { groupSize, zeroPoint }));
      const g = int4BlobGeometry(blob);
      expect(g).toEqual(int4BlobLayout(N, K, { groupSize, zeroPoint }));
      expect(g.byteLength).toBe(blob.byteLength);
      const b = blob.slice();
      new DataView(b.buffer).setUint32(20, g.scalesOffset + 16, true);
      expect(() => int4BlobGeometry(b)).toThrow(/offsets/);
    }
  });
});

describe("in-place tensors (int4At / int8At)", () => {
  it("int4At: same results as an uploaded copy, pointers inside the blob", () => {
    for (const [N, K, groupSize, zeroPoint] of [
      [13, 172, 32, true],
      [9, 288, 64, false],
      [6, 768, 128, true],
    ] as [number, number, Int4GroupSize, boolean][]) {
      kern.scoped(() => {
        const p = quantizeRtn(weights(N, K, K), N, K, { groupSize, zeroPoint });
        const blob = serializeInt4(p);
        const ptr = placeBlob(blob);
        const t = kern.int4At(ptr);
        const g = int4BlobGeometry(blob);
        expect(t).toEqual({
          N,
          K,
          kPadded: p.kPadded,
          groupSize,
          nGroups: p.nGroups,
          qweight: ptr + g.qweightOffset,
          scales: ptr + g.scalesOffset,
          zeros: zeroPoint ? ptr + g.zerosOffset : 0,
          mins: 0,
        });
        const x = randn(K, 5);
        const copy = kern.uploadInt4(p);
        expect(matvecInt4Array(kern, t, x)).toEqual(matvecInt4Array(kern, copy, x));
        expect(matvecInt4Array(kern, t, x, "q8")).toEqual(matvecInt4Array(kern, copy, x, "q8"));
      });
    }
  });

  it("int8At: same results as an uploaded copy", () => {
    for (const gs of INT8_GROUPS) {
      kern.scoped(() => {
        const p = quantizeInt8Rtn(weights(11, 200, 4), 11, 200, { groupSize: gs });
        const blob = serializeInt8(p);
        const ptr = placeBlob(blob);
        const t = kern.int8At(ptr);
        expect(t.data).toBe(ptr + 32);
        expect(t).toMatchObject({
          N: 11,
          K: 200,
          perRow: gs === "row",
          kPadded: p.kPadded,
          nGroups: p.nGroups,
        });
        const x = randn(200, 6);
        const copy = kern.uploadInt8(p);
        expect(matvecInt8Array(kern, t, x)).toEqual(matvecInt8Array(kern, copy, x));
      });
    }
  });

  it("rejects misaligned, foreign and out-of-memory blobs", () => {
    kern.scoped(() => {
      const blob = serializeInt8(quantizeInt8Rtn(weights(2, 64, 1), 2, 64));
      const ptr = placeBlob(blob);
      expect(() => kern.int8At(ptr + 8)).toThrow(/aligned/);
      expect(() => kern.int4At(ptr)).toThrow(/magic/);
      const end = kern.memory.buffer.byteLength;
      expect(() => kern.int8At(end)).toThrow(/out of memory/);
      // a blob whose last bytes (or slack) would lie past the end of memory
      const tail = (end - blob.byteLength - 8) & ~15;
      kern.u8(tail, 32).set(blob.subarray(0, 32));
      expect(() => kern.int8At(tail)).toThrow(/past memory/);
    });
  });
});

describe("int8 matvec", () => {
  const shapes: [number, number][] = [
    [1, 32],
    [3, 64],
    [13, 172],
    [64, 576],
    [9, 768],
  ];
  for (const gs of INT8_GROUPS) {
    for (const [N, K] of shapes) {
      it(`${N}x${K} ${gs === "row" ? "per-row" : `g${gs}`}: Q8 exact for its inputs, f32 vs dequantized`, () => {
        const p = quantizeInt8Rtn(weights(N, K, N * K), N, K, { groupSize: gs });
        const x = randn(K, K + 1);
        const dq = dequantizeInt8(p);
        const ref = refMatvec(dq, x, N, K);
        const t = kern.uploadInt8(p);
        // fp32 activations: the plain matvec over dequantized weights
        const gotF = matvecInt8Array(kern, t, x, "f32");
        expect(relErr(gotF, ref)).toBeLessThan(1e-5);
        // Q8 activations: exactly the integer dot products the kernel was given
        const gotQ = matvecInt8Array(kern, t, x, "q8");
        const { q, d } = emulateQ8(x, p.kPadded);
        const exact = new Float32Array(N);
        for (let n = 0; n < N; n++) {
          let y = 0;
          for (let k = 0; k < p.kPadded; k++) {
            const s = f16ToF32(p.scales[n * p.nGroups + Math.floor(k / p.groupSize)]!);
            y += p.data[n * p.kPadded + k]! * s * q[k]! * d[k >> 5]!;
          }
          exact[n] = y;
        }
        expect(relErr(gotQ, exact)).toBeLessThan(1e-5);
        expect(relErr(gotQ, ref)).toBeLessThan(0.02);
      });
    }
  }

  // The batched head of speculative verification: rows must equal single-row matvecs bit for bit.
  for (const gs of INT8_GROUPS) {
    for (const [N, K, M] of [
      [13, 172, 2],
      [64, 576, 5],
      [9, 768, 8],
    ] as const) {
      it(`matmulInt8Q8 ${N}x${K} ${gs === "row" ? "per-row" : `g${gs}`}, ${M} rows: each row bit-identical to matvecInt8Q8`, () => {
        const p = quantizeInt8Rtn(weights(N, K, N + K + M), N, K, { groupSize: gs });
        const x = randn(M * K, K + M, 1.5);
        kern.scoped(() => {
          const t = kern.uploadInt8(p);
          const batch = matmulInt8Q8Array(kern, t, x, M);
          for (let i = 0; i < M; i++) {
            const row = matvecInt8Array(kern, t, x.subarray(i * K, (i + 1) * K), "q8");
            expect(batch.subarray(i * N, (i + 1) * N)).toEqual(row);
          }
        });
      });
    }
  }

  it("matmulInt8Q8 rejects mismatched activations and row counts", () => {
    kern.scoped(() => {
      const t = kern.uploadInt8(quantizeInt8Rtn(weights(4, 64, 1), 4, 64));
      expect(() => kern.matmulInt8Q8(t, kern.allocQ8Batch(96, 2), kern.alloc(64))).toThrow(
        /96 vs weights 64/,
      );
      expect(() => kern.matmulInt8Q8(t, kern.allocQ8Batch(64, 2), kern.alloc(64), 3)).toThrow(RangeError);
      expect(() => kern.matmulInt8Q8(t, kern.allocQ8Batch(64, 2), kern.alloc(64), 0)).toThrow(RangeError);
    });
  });

  it("rejects mismatched activations", () => {
    kern.scoped(() => {
      const t = kern.uploadInt8(quantizeInt8Rtn(weights(4, 64, 1), 4, 64));
      expect(() => kern.matvecInt8Q8(t, kern.allocQ8(96), kern.alloc(16))).toThrow(/96 vs weights 64/);
    });
  });
});

describe("embedding rows", () => {
  for (const [K, groupSize, zeroPoint] of [
    [64, 32, false],
    [172, 32, true],
    [200, 64, true],
    [576, 128, false],
  ] as [number, Int4GroupSize, boolean][]) {
    it(`embedRowInt4 K=${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}: exact, zero-padded`, () => {
      const N = 7;
      const p = quantizeRtn(weights(N, K, K * 7), N, K, { groupSize, zeroPoint });
      kern.scoped(() => {
        const t = kern.uploadInt4(p);
        const out = kern.alloc(p.kPadded * 4);
        for (const row of [0, 3, N - 1]) {
          kern.f32(out, p.kPadded).fill(Number.NaN);
          kern.embedRowInt4(t, row, out);
          const want = new Float32Array(p.kPadded);
          dequantizeInt4Row(p, row, want);
          // (padding code - z) * a negative scale is -0: equal as numbers
          expect(Array.from(kern.f32(out, p.kPadded), (v) => v + 0)).toEqual(Array.from(want, (v) => v + 0));
        }
        expect(() => kern.embedRowInt4(t, N, out)).toThrow(RangeError);
        expect(() => kern.embedRowInt4(t, -1, out)).toThrow(RangeError);
      });
    });
  }

  for (const gs of INT8_GROUPS) {
    it(`embedRowInt8 ${gs === "row" ? "per-row" : `g${gs}`}: exact, zero-padded`, () => {
      const N = 6;
      const K = 200;
      const p = quantizeInt8Rtn(weights(N, K, 17), N, K, { groupSize: gs });
      kern.scoped(() => {
        const t = kern.uploadInt8(p);
        const out = kern.alloc(p.kPadded * 4);
        for (const row of [0, 2, N - 1]) {
          kern.f32(out, p.kPadded).fill(Number.NaN);
          kern.embedRowInt8(t, row, out);
          const want = new Float32Array(p.kPadded);
          dequantizeInt8Row(p, row, want);
          expect(Array.from(kern.f32(out, p.kPadded), (v) => v + 0)).toEqual(Array.from(want, (v) => v + 0));
        }
        expect(() => kern.embedRowInt8(t, N, out)).toThrow(RangeError);
      });
    });
  }

  it("embedRowF32 copies one row", () => {
    kern.scoped(() => {
      const table = randn(5 * 12, 3);
      const tp = kern.uploadF32(table);
      const out = kern.allocZeroed(16 * 4);
      kern.embedRowF32(tp, 3, 12, out);
      expect(kern.f32(out, 12)).toEqual(table.subarray(36, 48));
      expect(kern.f32(out + 48, 4)).toEqual(new Float32Array(4));
    });
  });
});

describe("small fp32 helpers", () => {
  it("addF32 / addBias / copyF32 (ragged lengths, aliasing)", () => {
    for (const n of [1, 3, 4, 7, 576, 771]) {
      kern.scoped(() => {
        const a = randn(n, n);
        const b = randn(n, n + 1);
        const pa = kern.uploadF32(a);
        const pb = kern.uploadF32(b);
        kern.addF32(pa, pb, n);
        expect(kern.f32(pa, n)).toEqual(a.map((v, i) => Math.fround(v + b[i]!)));
        kern.addBias(pa, pa, n); // x += x
        expect(kern.f32(pa, n)).toEqual(a.map((v, i) => Math.fround(2 * Math.fround(v + b[i]!))));
        kern.copyF32(pa, pb, n);
        expect(kern.f32(pa, n)).toEqual(b);
        // overlapping copy (memmove)
        kern.copyF32(pb + 4, pb, n - 1);
        expect(kern.f32(pb + 4, n - 1)).toEqual(b.subarray(0, n - 1));
      });
    }
  });
});
