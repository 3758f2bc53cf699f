/** Writer encoders on hand-made blocks whose ggml reference encoding is worked out by hand, and GGUF KV types. */
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { describe, expect, it } from "vitest";
import {
  encodeBf16,
  encodeF16,
  f32ToBf16,
  quantizeQ4_0,
  quantizeQ4_1,
  quantizeQ8_0,
} from "../src/model/export/encode.ts";
import { type GgufValue, writeGgufFile } from "../src/model/export/gguf-file.ts";
import { decodeToF32 } from "../src/model/import/dtypes.ts";
import { tempDirs } from "./helpers/paths.ts";

function block(values: Record<number, number>): Float32Array {
  const x = new Float32Array(32);
  for (const [i, v] of Object.entries(values)) x[Number(i)] = v;
  return x;
}

describe("Q8_0 (quantize_row_q8_0_ref)", () => {
  it("scales by amax/127 and rounds halves away from zero (C roundf)", () => {
    const q = quantizeQ8_0(block({ 0: 127, 1: -63.5, 2: 0.5, 3: -0.5, 4: 1.5, 5: 2.5, 6: -2.5 }));
    // d = 1 -> fp16 0x3c00; Math.round would give -63 and banker's rounding 2 for 2.5.
    expect([...q.subarray(0, 9)]).toEqual([0x00, 0x3c, 127, 0xc0, 1, 0xff, 2, 3, 0xfd]);
    expect(q.subarray(9).every((b) => b === 0)).toBe(true);
  });

  it("encodes an all-zero block as d = 0, q = 0 and decodes back with the importer", () => {
    expect(quantizeQ8_0(new Float32Array(32)).every((b) => b === 0)).toBe(true);
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * (i < 32 ? 1 : 100));
    const back = decodeToF32("q8_0", quantizeQ8_0(x), 64);
    for (let i = 0; i < 64; i++) expect(Math.abs(back[i]! - x[i]!)).toBeLessThan((i < 32 ? 1 : 100) / 127);
  });

  it("refuses partial blocks", () => {
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(/blocks of 32/);
  });
});

describe("Q4_0 (quantize_row_q4_0_ref)", () => {
  it("uses d = max/-8, q = min(15, trunc(x/d + 8.5)), element j low nibble, j+16 high nibble", () => {
    const q = quantizeQ4_0(block({ 0: -8, 2: 7.6, 3: -0.6, 4: 0.5, 5: 0.49, 16: 3, 17: -3 }));
    expect([...q.subarray(0, 8)]).toEqual([0x00, 0x3c, 0xb0, 0x58, 0x8f, 0x87, 0x89, 0x88]);
    expect(q.subarray(8).every((b) => b === 0x88)).toBe(true);
    expect(q.length).toBe(18);
  });

  it("takes the sign of d from the largest-magnitude value", () => {
    // max = +8 -> d = -1 (fp16 0xbc00); 8 maps to nibble 0, zeros to 8.
    const q = quantizeQ4_0(block({ 0: 8 }));
    expect([...q.subarray(0, 3)]).toEqual([0x00, 0xbc, 0x80]);
  });
});

describe("Q4_1 (quantize_row_q4_1_ref)", () => {
  it("uses d = (max - min)/15, m = min, q = min(15, trunc((x - min)/d + 0.5)), nibbles as Q4_0", () => {
    const q = quantizeQ4_1(block({ 0: -1, 1: 14, 2: 0.5, 3: 0.49, 16: 3, 17: -0.6 }));
    // d = 1 (0x3c00), m = -1 (0xbc00); zeros map to trunc(1.5) = 1.
    expect([...q.subarray(0, 8)]).toEqual([0x00, 0x3c, 0x00, 0xbc, 0x40, 0x0f, 0x12, 0x11]);
    expect(q.subarray(8).every((b) => b === 0x11)).toBe(true);
    expect(q.length).toBe(20);
  });

  it("decodes back with the importer within half a step, and refuses partial blocks", () => {
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * (i < 32 ? 1 : 100) + 3);
    const back = decodeToF32("q4_1", quantizeQ4_1(x), 64);
    // Half a step (range/15) plus the fp16 rounding of d and m.
    for (let i = 0; i < 64; i++) {
      const scale = i < 32 ? 1 : 100;
      expect(Math.abs(back[i]! - x[i]!)).toBeLessThan((0.55 * 2 * scale) / 15 + 1e-3 * scale);
    }
    expect(() => quantizeQ4_1(new Float32Array(33))).toThrow(/blocks of 32/);
  });
});

describe("f16 / bf16", () => {
  it("rounds bf16 to nearest even and keeps NaN quiet", () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(-2)).toBe(0xc000);
    expect(f32ToBf16(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(f32ToBf16(Number.NaN) & 0x7fc0).toBe(0x7fc0);
    const x = new Float32Array([1, 1 + 3 * 2 ** -8, -2, 0.1]);
    expect([...new Uint16Array(encodeBf16(x).buffer)]).toEqual([...x].map(f32ToBf16));
  });

  it("f16 bytes decode back within half an ulp", () => {
    const x = Float32Array.from({ length: 100 }, (_, i) => (i - 50) * 0.37);
    const back = decodeToF32("f16", encodeF16(x), x.length);
    for (let i = 0; i < x.length; i++)
      expect(Math.abs(back[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -11);
  });
});

describe("GGUF metadata writer", () => {
  it("writes every KV type, arrays included, as @huggingface/gguf reads them", async () => {
    const dirs = tempDirs("kv");
    try {
      const path = join(dirs.make(), "kv.gguf");
      const metadata = new Map<string, GgufValue>([
        ["t.u8", { type: "u8", value: 200 }],
        ["t.i8", { type: "i8", value: -100 }],
        ["t.u16", { type: "u16", value: 60000 }],
        ["t.i16", { type: "i16", value: -30000 }],
        ["t.u32", { type: "u32", value: 4_000_000_000 }],
        ["t.i32", { type: "i32", value: -2_000_000_000 }],
        ["t.u64", { type: "u64", value: 2 ** 40 }],
        ["t.i64", { type: "i64", value: -(2 ** 40) }],
        ["t.f32", { type: "f32", value: 0.5 }],
        ["t.f64", { type: "f64", value: 0.1 }],
        ["t.bool", { type: "bool", value: true }],
        ["t.string", { type: "string", value: "héllo ▁" }],
        ["t.strings", { type: "array", itemType: "string", value: ["a", "", "▁b"] }],
        ["t.floats", { type: "array", itemType: "f32", value: [1.5, -2] }],
        ["t.ints", { type: "array", itemType: "i32", value: [1, -2, 3] }],
        ["t.bools", { type: "array", itemType: "bool", value: [true, false] }],
      ]);
      const tensor = {
        name: "x",
        shape: [2, 3],
        ggmlType: 0,
        byteLength: 24,
        bytes: () => new Uint8Array(24),
      };
      await writeGgufFile(path, { metadata, tensors: [tensor] });
      const { typedMetadata, tensorInfos } = await gguf(path, { allowLocalFile: true, typedMetadata: true });
      const typed = typedMetadata as Record<string, { value: unknown; type: number; subType?: number }>;
      const want: Record<string, [unknown, number, number?]> = {
        "t.u8": [200, 0],
        "t.i8": [-100, 1],
        "t.u16": [60000, 2],
        "t.i16": [-30000, 3],
        "t.u32": [4_000_000_000, 4],
        "t.i32": [-2_000_000_000, 5],
        "t.u64": [BigInt(2 ** 40), 10],
        "t.i64": [BigInt(-(2 ** 40)), 11],
        "t.f32": [0.5, 6],
        "t.f64": [0.1, 12],
        "t.bool": [true, 7],
        "t.string": ["héllo ▁", 8],
        "t.strings": [["a", "", "▁b"], 9, 8],
        "t.floats": [[1.5, -2], 9, 6],
        "t.ints": [[1, -2, 3], 9, 5],
        "t.bools": [[true, false], 9, 7],
      };
      for (const [key, [value, type, subType]] of Object.entries(want)) {
        expect(typed[key], key).toEqual(subType === undefined ? { value, type } : { value, type, subType });
      }
      // dims fastest-first
      expect(tensorInfos[0]!.shape).toEqual([3n, 2n]);
    } finally {
      dirs.cleanup();
    }
  });
});
