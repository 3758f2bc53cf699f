/**
 * ggml block dequantization against known vectors. Each case picks the *meaning* of a block
 * (fp16 scales, sub-block scales/mins, integer quants), packs it into bytes with an encoder written
 * here from the layouts in ggml-common.h, and checks the importer's fp32 values against the formula
 * evaluated exactly and rounded once to fp32 (Q6_K: twice, as ggml's d*sc*q is two fp32 products).
 */
import { describe, expect, it } from "vitest";
import { f32ToF16 } from "../src/format/int4.ts";
import { decodeToF32, storageBytes } from "../src/model/import/dtypes.ts";
import { f16ToF32 } from "../src/model/import/ggml/f16.ts";
import { GGML_DTYPE_BY_ID, GGML_TYPE_INFO, type GgmlDType } from "../src/model/import/ggml/types.ts";
import { mulberry32 } from "./helpers/random.ts";

const rand = mulberry32(11);
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const ints = (n: number, lo: number, hi: number) => Array.from({ length: n }, () => int(lo, hi));
/** A random fp16 scale (bits and exact value); sometimes negative, tiny (subnormal) or zero. */
function half(kind: "normal" | "subnormal" | "zero" = "normal"): { bits: number; v: number } {
  const x =
    kind === "zero"
      ? 0
      : kind === "subnormal"
        ? (rand() - 0.5) * 2 ** -16
        : (rand() - 0.3) * 2 ** int(-12, 2);
  const bits = f32ToF16(x);
  return { bits, v: f16ToF32(bits) };
}
const putHalf = (b: Uint8Array, at: number, bits: number) => {
  b[at] = bits & 0xff;
  b[at + 1] = bits >> 8;
};

interface Case {
  bytes: Uint8Array;
  expected: number[];
}

/** The legacy 32-element types: nibble j (low) / j+16 (high) of qs byte j, 5th bits in a u32 qh. */
function legacy(type: "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q8_0", scale: ReturnType<typeof half>): Case {
  const withMin = type === "q4_1" || type === "q5_1";
  const bits = type === "q8_0" ? 8 : type.startsWith("q5") ? 5 : 4;
  const m = half();
  const q = type === "q8_0" ? ints(32, -128, 127) : ints(32, 0, 2 ** bits - 1);
  const b = new Uint8Array(GGML_TYPE_INFO[type].bytesPerBlock);
  putHalf(b, 0, scale.bits);
  let at = 2;
  if (withMin) {
    putHalf(b, 2, m.bits);
    at = 4;
  }
  if (bits === 5) {
    let qh = 0;
    q.forEach((v, i) => {
      if (v & 16) qh |= 1 << i;
    });
    new DataView(b.buffer).setUint32(at, qh >>> 0, true);
    at += 4;
  }
  if (bits === 8) {
    for (const [i, v] of q.entries()) new DataView(b.buffer).setInt8(at + i, v);
  } else for (let j = 0; j < 16; j++) b[at + j] = (q[j]! & 15) | ((q[j + 16]! & 15) << 4);
  const offset = withMin || bits === 8 ? 0 : bits === 4 ? 8 : 16;
  const expected = q.map((v) => Math.fround(withMin ? (v - offset) * scale.v + m.v : (v - offset) * scale.v));
  return { bytes: b, expected };
}

/** Bit position of element i's 2-bit field in Q2_K/Q3_K qs: byte (i/128)*32 + i%32, shift 2*((i%128)/32). */
const twoBitPos = (i: number) => ({
  byte: Math.floor(i / 128) * 32 + (i % 32),
  shift: 2 * Math.floor((i % 128) / 32),
});

function q2k(): Case {
  const d = half();
  const dmin = half();
  const sc = ints(16, 0, 15);
  const mn = ints(16, 0, 15);
  const q = ints(256, 0, 3);
  const b = new Uint8Array(84);
  sc.forEach((s, k) => {
    b[k] = s | (mn[k]! << 4);
  });
  q.forEach((v, i) => {
    const { byte, shift } = twoBitPos(i);
    b[16 + byte]! |= v << shift;
  });
  putHalf(b, 80, d.bits);
  putHalf(b, 82, dmin.bits);
  const sub = (i: number) => Math.floor(i / 16);
  return { bytes: b, expected: q.map((v, i) => Math.fround(d.v * sc[sub(i)]! * v - dmin.v * mn[sub(i)]!)) };
}

function q3k(): Case {
  const d = half();
  const s = ints(16, -32, 31);
  const q = ints(256, -4, 3);
  const b = new Uint8Array(110);
  q.forEach((v, i) => {
    const u = v + 4;
    if (u & 4) b[i % 32]! |= 1 << Math.floor(i / 32); // hmask: bit set means "no -4"
    const { byte, shift } = twoBitPos(i);
    b[32 + byte]! |= (u & 3) << shift;
  });
  s.forEach((v, k) => {
    const u = v + 32;
    if (k < 8) b[96 + k]! |= u & 15;
    else b[96 + k - 8]! |= (u & 15) << 4;
    b[96 + 8 + (k % 4)]! |= (u >> 4) << (2 * Math.floor(k / 4));
  });
  putHalf(b, 108, d.bits);
  return { bytes: b, expected: q.map((v, i) => Math.fround(d.v * s[Math.floor(i / 16)]! * v)) };
}

/** Q4_K/Q5_K: 8 (scale, min) 6-bit pairs packed in 12 bytes (the inverse of get_scale_min_k4). */
function packScaleMin(b: Uint8Array, at: number, sc: number[], mn: number[]): void {
  for (let j = 0; j < 4; j++) {
    b[at + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
    b[at + j + 4] = mn[j]! | ((mn[j + 4]! >> 4) << 6);
    b[at + j + 8] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
  }
}

function q45k(bits: 4 | 5): Case {
  const d = half();
  const dmin = half();
  const sc = ints(8, 0, 63);
  const mn = ints(8, 0, 63);
  const q = ints(256, 0, 2 ** bits - 1);
  const b = new Uint8Array(bits === 4 ? 144 : 176);
  putHalf(b, 0, d.bits);
  putHalf(b, 2, dmin.bits);
  packScaleMin(b, 4, sc, mn);
  const qs = bits === 4 ? 16 : 48;
  q.forEach((v, i) => {
    const g = Math.floor(i / 64);
    const high = Math.floor(i / 32) % 2; // second 32 of each 64 use the high nibble
    b[qs + g * 32 + (i % 32)]! |= (v & 15) << (4 * high);
    if (v & 16) b[16 + (i % 32)]! |= 1 << Math.floor(i / 32);
  });
  const sub = (i: number) => Math.floor(i / 32);
  return { bytes: b, expected: q.map((v, i) => Math.fround(d.v * sc[sub(i)]! * v - dmin.v * mn[sub(i)]!)) };
}

function q6k(): Case {
  const d = half();
  const sc = ints(16, -128, 127);
  const q = ints(256, -32, 31);
  const b = new Uint8Array(210);
  q.forEach((v, i) => {
    const u = v + 32;
    const h = Math.floor(i / 128);
    const k = Math.floor((i % 128) / 32);
    const l = i % 32;
    const lowByte = h * 64 + l + (k % 2) * 32;
    b[lowByte]! |= (u & 15) << (k >= 2 ? 4 : 0);
    b[128 + h * 32 + l]! |= (u >> 4) << (2 * k);
  });
  sc.forEach((v, k) => {
    b[192 + k] = v & 0xff;
  });
  putHalf(b, 208, d.bits);
  const expected = q.map((v, i) => Math.fround(Math.fround(d.v * sc[Math.floor(i / 16)]!) * v));
  return { bytes: b, expected };
}

function makeCase(type: GgmlDType): Case {
  switch (type) {
    case "q4_0":
    case "q4_1":
    case "q5_0":
    case "q5_1":
    case "q8_0":
      return legacy(type, half());
    case "q2_k":
      return q2k();
    case "q3_k":
      return q3k();
    case "q4_k":
      return q45k(4);
    case "q5_k":
      return q45k(5);
    case "q6_k":
      return q6k();
    default:
      throw new Error(`no case for ${type}`);
  }
}

const QUANT_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"] as const;

describe("ggml block dequantization (known vectors)", () => {
  it("has ggml's ids, block sizes and bytes per block", () => {
    const table = Object.fromEntries(
      QUANT_TYPES.map((t) => [
        t,
        [GGML_TYPE_INFO[t].id, GGML_TYPE_INFO[t].blockSize, GGML_TYPE_INFO[t].bytesPerBlock],
      ]),
    );
    expect(table).toEqual({
      q4_0: [2, 32, 18],
      q4_1: [3, 32, 20],
      q5_0: [6, 32, 22],
      q5_1: [7, 32, 24],
      q8_0: [8, 32, 34],
      q2_k: [10, 256, 84],
      q3_k: [11, 256, 110],
      q4_k: [12, 256, 144],
      q5_k: [13, 256, 176],
      q6_k: [14, 256, 210],
    });
    for (const t of QUANT_TYPES) expect(GGML_DTYPE_BY_ID.get(GGML_TYPE_INFO[t].id)).toBe(t);
  });

  it.each(QUANT_TYPES)("%s: three blocks of random fields decode to the formula, bit for bit", (type) => {
    const cases = [makeCase(type), makeCase(type), makeCase(type)];
    const n = GGML_TYPE_INFO[type].blockSize * cases.length;
    const bytes = new Uint8Array(storageBytes(type, n));
    for (const [k, c] of cases.entries()) bytes.set(c.bytes, k * c.bytes.length);
    const got = decodeToF32(type, bytes, n);
    expect(Array.from(got)).toEqual(cases.flatMap((c) => c.expected));
    // The vectors are not degenerate: many distinct values, both signs where the type has them.
    expect(new Set(got).size).toBeGreaterThan(cases.length * 8);
  });

  it.each(["q4_0", "q8_0", "q5_0"] as const)("%s: zero and subnormal fp16 scales", (type) => {
    for (const kind of ["zero", "subnormal"] as const) {
      const c = legacy(type, half(kind));
      expect(Array.from(decodeToF32(type, c.bytes, 32))).toEqual(c.expected);
    }
  });

  it("hand-written Q4_0 and Q4_1 blocks", () => {
    // d = 0.5 (fp16 0x3800), qs[j] = j | (15 - j) << 4: element j = (j - 8)/2, element j+16 = (7 - j)/2.
    const q40 = new Uint8Array(18);
    putHalf(q40, 0, 0x3800);
    for (let j = 0; j < 16; j++) q40[2 + j] = j | ((15 - j) << 4);
    const want40 = [
      ...Array.from({ length: 16 }, (_, j) => (j - 8) / 2),
      ...Array.from({ length: 16 }, (_, j) => (7 - j) / 2),
    ];
    expect(Array.from(decodeToF32("q4_0", q40, 32))).toEqual(want40);
    // Q4_1 with d = 0.25, m = -1 (0xbc00): element = q/4 - 1.
    const q41 = new Uint8Array(20);
    putHalf(q41, 0, 0x3400);
    putHalf(q41, 2, 0xbc00);
    for (let j = 0; j < 16; j++) q41[4 + j] = j | ((15 - j) << 4);
    const want41 = [
      ...Array.from({ length: 16 }, (_, j) => j / 4 - 1),
      ...Array.from({ length: 16 }, (_, j) => (15 - j) / 4 - 1),
    ];
    expect(Array.from(decodeToF32("q4_1", q41, 32))).toEqual(want41);
  });

  it("rejects byte counts that do not hold the values", () => {
    expect(() => decodeToF32("q4_k", new Uint8Array(143), 256)).toThrow(
      /Q4_K: 143 bytes cannot hold 256 values/,
    );
    expect(() => storageBytes("q6_k", 100)).toThrow(/not whole Q6_K blocks/);
  });
});
