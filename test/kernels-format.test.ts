import { describe, expect, it } from "vitest";
import {
  dequantize,
  dequantizeInt8,
  deserializeInt4,
  f16ToF32,
  f32ToF16,
  fromMatMulNBits,
  type Int4GroupSize,
  int4ByteLength,
  int4Code,
  int4ZeroPoint,
  quantizeInt8Rtn,
  quantizeRtn,
  serializeInt4,
  toMatMulNBits,
} from "../src/format/int4.ts";
import { randn } from "./kernels-helpers.ts";

describe("fp16 conversion", () => {
  it("round-trips every finite fp16 value", () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue; // inf / nan
      const v = f16ToF32(h);
      const back = f32ToF16(v);
      // -0 and +0 both decode to a zero; keep the sign bit
      expect(back).toBe(h);
    }
  });

  it("rounds to nearest even, handles subnormals and overflow", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up to inf
    expect(f32ToF16(1e9)).toBe(0x7c00);
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie -> even (0)
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp -> tie -> even (2)
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie between 1 and next -> even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f16ToF32(0x8001)).toBe(-(2 ** -24));
  });
});

describe("int4 format", () => {
  const cases: [number, number, Int4GroupSize, boolean][] = [
    [5, 64, 32, false],
    [5, 172, 32, true],
    [3, 172, 64, false],
    [4, 172, 128, true],
    [2, 288, 128, false],
  ];

  for (const [N, K, groupSize, zeroPoint] of cases) {
    it(`quantizeRtn ${N}x${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}: layout, error bound, padding`, () => {
      const w = randn(N * K, N * 1000 + K, 0.05);
      const p = quantizeRtn(w, N, K, { groupSize, zeroPoint });
      expect(p.nGroups).toBe(Math.ceil(K / groupSize));
      expect(p.kPadded).toBe(p.nGroups * groupSize);
      expect(p.qweight.length).toBe((N * p.kPadded) / 2);
      expect(p.scales.length).toBe(N * p.nGroups);
      expect(p.zeros?.length ?? 0).toBe(zeroPoint ? N * Math.ceil(p.nGroups / 2) : 0);
      expect(int4ByteLength(N, K, { groupSize, zeroPoint })).toBe(
        p.qweight.length + p.scales.byteLength + (p.zeros?.length ?? 0),
      );
      const dq = dequantize(p);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < p.nGroups; g++) {
          const s = Math.abs(f16ToF32(p.scales[n * p.nGroups + g]!));
          const z = int4ZeroPoint(p, n, g);
          if (!zeroPoint) expect(z).toBe(8);
          for (let k = g * groupSize; k < (g + 1) * groupSize; k++) {
            if (k >= K) {
              // padding codes are the zero point: they dequantize to exactly 0
              expect(int4Code(p, n, k)).toBe(z);
              continue;
            }
            // RTN error: half a step, one step where symmetric clips +max to code 15
            const err = Math.abs(dq[n * K + k]! - w[n * K + k]!);
            expect(err).toBeLessThanOrEqual(s * (zeroPoint ? 0.5 : 1) * 1.001 + 1e-7);
          }
        }
      }
    });
  }

  it("nibble order: low nibble k = j, high nibble k = j + 16 within each 32-chunk", () => {
    // one row, K = 64, weights chosen so every code is distinct and predictable: w = (k % 16) - 8
    const K = 64;
    const w = new Float32Array(K);
    for (let k = 0; k < K; k++) w[k] = ((k * 7) % 16) - 8;
    w[0] = -8; // group max magnitude -8 -> scale exactly 1
    w[32] = -8;
    const p = quantizeRtn(w, 1, K, { groupSize: 32 });
    expect(f16ToF32(p.scales[0]!)).toBe(1);
    for (let c = 0; c < 2; c++) {
      for (let j = 0; j < 16; j++) {
        const byte = p.qweight[c * 16 + j]!;
        expect(byte & 15).toBe(w[c * 32 + j]! + 8);
        expect(byte >> 4).toBe(w[c * 32 + 16 + j]! + 8);
      }
    }
  });

  it("all-zero groups quantize to zero scale and dequantize to 0", () => {
    const w = new Float32Array(2 * 64);
    w.fill(0.5, 64, 96); // row 1, group 0 non-zero
    for (const zeroPoint of [false, true]) {
      const dq = dequantize(quantizeRtn(w, 2, 64, { zeroPoint }));
      expect(Array.from(dq.subarray(0, 64)).every((v) => v === 0)).toBe(true);
      expect(dq[64]).toBeCloseTo(0.5, 2);
    }
  });

  it("serialize / deserialize round trip (aligned and unaligned buffers)", () => {
    for (const zeroPoint of [false, true]) {
      const p = quantizeRtn(randn(7 * 172, 3), 7, 172, { groupSize: 64, zeroPoint });
      const blob = serializeInt4(p);
      expect(new DataView(blob.buffer).getUint32(28, true)).toBe(blob.length);
      const q = deserializeInt4(blob);
      expect(q).toMatchObject({ N: 7, K: 172, groupSize: 64, nGroups: 3, kPadded: 192 });
      expect(Array.from(q.qweight)).toEqual(Array.from(p.qweight));
      expect(Array.from(q.scales)).toEqual(Array.from(p.scales));
      expect(q.zeros ? Array.from(q.zeros) : null).toEqual(p.zeros ? Array.from(p.zeros) : null);
      const shifted = new Uint8Array(blob.length + 1);
      shifted.set(blob, 1);
      const r = deserializeInt4(shifted.subarray(1));
      expect(Array.from(r.scales)).toEqual(Array.from(p.scales));
    }
    expect(() => deserializeInt4(new Uint8Array(40))).toThrow(/magic/);
  });

  it("MatMulNBits conversion: ORT nibble order and a lossless round trip", () => {
    for (const zeroPoint of [false, true]) {
      const K = 172;
      const p = quantizeRtn(randn(3 * K, 11), 3, K, { groupSize: 32, zeroPoint });
      const m = toMatMulNBits(p);
      expect(m.B.length).toBe(3 * 6 * 16);
      for (let n = 0; n < 3; n++) {
        for (let k = 0; k < p.kPadded; k++) {
          const b = m.B[n * 96 + (k >> 1)]!;
          expect(k & 1 ? b >> 4 : b & 15).toBe(int4Code(p, n, k));
        }
      }
      expect(Array.from(m.scales as Float32Array)).toEqual(Array.from(p.scales, f16ToF32));
      const back = fromMatMulNBits(m);
      expect(Array.from(back.qweight)).toEqual(Array.from(p.qweight));
      expect(Array.from(back.scales)).toEqual(Array.from(p.scales));
      const back16 = fromMatMulNBits(toMatMulNBits(p, "float16"));
      expect(Array.from(back16.scales)).toEqual(Array.from(p.scales));
    }
  });
});

describe("int8 format", () => {
  for (const groupSize of ["row", 32, 128] as const) {
    it(`quantizeInt8Rtn group ${groupSize}: error within half a step`, () => {
      const N = 6;
      const K = 172;
      const w = randn(N * K, 5);
      const p = quantizeInt8Rtn(w, N, K, { groupSize });
      const dq = dequantizeInt8(p);
      expect(p.kPadded % 32).toBe(0);
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const s = f16ToF32(p.scales[n * p.nGroups + Math.floor(k / p.groupSize)]!);
          expect(Math.abs(dq[n * K + k]! - w[n * K + k]!)).toBeLessThanOrEqual(s * 0.5 * 1.001 + 1e-7);
        }
        for (let k = K; k < p.kPadded; k++) expect(p.data[n * p.kPadded + k]).toBe(0);
      }
    });
  }
});
