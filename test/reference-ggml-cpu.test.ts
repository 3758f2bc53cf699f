/**
 * The reference's "ggml-cpu" arithmetic (src/model/reference/ggml-cpu.ts): llama.cpp's q8_1/q8_0
 * activation quantization and Q4_1/Q8_0 dot products, checked against hand-built blocks whose
 * expected values follow from ggml's formulas (quants.c, AVX2 paths) evaluated independently here,
 * and end to end against llama.cpp (node-llama-cpp, CPU, 1 thread, F32 KV cache) on stories260K
 * exported as Q8_0 and as Q4_1.
 */
import { join } from "node:path";
import { getLlama, type Llama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../src/format/int4.ts";
import type { TensorEntry } from "../src/format/model.ts";
import { writeGguf } from "../src/model/export/index.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ggmlLinear, matVecQ4_1, matVecQ8_0, quantizeQ8 } from "../src/model/reference/ggml-cpu.ts";
import { type ReferenceArithmetic, ReferenceModel } from "../src/model/reference/index.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";

const rand = mulberry32(7);
const half = (x: number) => f16ToF32(f32ToF16(x));

describe("quantizeQ8 (quantize_row_q8_1 / q8_0, AVX2)", () => {
  it("rounds x * 127/amax half to even, keeps fp16(amax/127) and fp16(d * sum q)", () => {
    const x = new Float32Array(32);
    // amax 127 -> id = 1 exactly, so the quants are the values rounded: ties go to even.
    x.set([127, -63.5, 0.5, 1.5, 2.5, -2.5, 3.49, -0.5, 126.5]);
    const q = quantizeQ8(x);
    expect(Array.from(q.qs.slice(0, 9))).toEqual([127, -64, 0, 2, 2, -2, 3, 0, 126]);
    const sum = [127, -64, 0, 2, 2, -2, 3, 0, 126].reduce((a, b) => a + b, 0);
    expect(q.d[0]).toBe(1);
    expect(q.s[0]).toBe(half(sum));
  });

  it("uses id = 127/amax in fp32 (not 1/fp16(d)) and rounds d and s to fp16", () => {
    const x = Float32Array.from({ length: 64 }, () => (rand() - 0.5) * 7.3);
    const q = quantizeQ8(x);
    for (let b = 0; b < 2; b++) {
      const block = x.subarray(32 * b, 32 * b + 32);
      const amax = Math.max(...Array.from(block, Math.abs));
      const id = Math.fround(127 / amax);
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        const v = Math.fround(block[j]! * id);
        const r = Math.round(v);
        const expected = r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
        expect(q.qs[32 * b + j]).toBe(expected);
        sum += expected;
      }
      const d = Math.fround(amax / 127);
      expect(q.d[b]).toBe(half(d));
      expect(q.s[b]).toBe(half(Math.fround(d * sum)));
      expect(q.d[b]).not.toBe(d); // the fp16 rounding really happens for these values
    }
  });

  it("maps an all-zero block to zero quants and scales, and rejects a ragged vector", () => {
    const q = quantizeQ8(new Float32Array(32));
    expect(Array.from(q.qs)).toEqual(new Array(32).fill(0));
    expect([q.d[0], q.s[0]]).toEqual([0, 0]);
    expect(() => quantizeQ8(new Float32Array(33))).toThrow(/multiple of 32/);
  });
});

/** Q4_1 / Q8_0 rows built from chosen fp16 scales and integer quants (ggml-common.h layouts). */
function q4_1Rows(rows: number, cols: number) {
  const nb = cols / 32;
  const bytes = new Uint8Array(rows * nb * 20);
  const meaning: { d: number; m: number; q: number[] }[] = [];
  for (let i = 0; i < rows * nb; i++) {
    const dBits = f32ToF16((rand() + 0.1) * 0.01);
    const mBits = f32ToF16(-(rand() + 0.1) * 0.08);
    const q = Array.from({ length: 32 }, () => Math.floor(rand() * 16));
    const o = i * 20;
    bytes.set([dBits & 0xff, dBits >> 8, mBits & 0xff, mBits >> 8], o);
    for (let j = 0; j < 16; j++) bytes[o + 4 + j] = q[j]! | (q[j + 16]! << 4);
    meaning.push({ d: f16ToF32(dBits), m: f16ToF32(mBits), q });
  }
  return { bytes, meaning };
}

describe("Q4_1 x q8_1 and Q8_0 x q8_0 rows (ggml_vec_dot_*)", () => {
  it("Q4_1: sum over blocks of d_w*d_x*sum(q_w*q_x) + m_w*s_x, to fp32 rounding", () => {
    const rows = 5;
    const cols = 96;
    const { bytes, meaning } = q4_1Rows(rows, cols);
    const x = quantizeQ8(Float32Array.from({ length: cols }, () => (rand() - 0.5) * 4));
    const out = new Float32Array(rows);
    matVecQ4_1(out, bytes, x, cols);
    for (let r = 0; r < rows; r++) {
      let expected = 0;
      for (let b = 0; b < cols / 32; b++) {
        const { d, m, q } = meaning[r * (cols / 32) + b]!;
        let dot = 0;
        for (let j = 0; j < 32; j++) dot += q[j]! * x.qs[32 * b + j]!;
        expected += d * x.d[b]! * dot + m * x.s[b]!;
      }
      expect(Math.abs(out[r]! - expected)).toBeLessThan(1e-6 * (1 + Math.abs(expected)));
    }
  });

  it("Q8_0: sum over blocks of d_w*d_x*sum(q_w*q_x), signed quants", () => {
    const rows = 3;
    const cols = 64;
    const bytes = new Uint8Array(rows * 2 * 34);
    const meaning: { d: number; q: number[] }[] = [];
    for (let i = 0; i < rows * 2; i++) {
      const dBits = f32ToF16((rand() + 0.1) * 0.02);
      const q = Array.from({ length: 32 }, () => Math.floor(rand() * 255) - 127);
      bytes.set([dBits & 0xff, dBits >> 8], i * 34);
      q.forEach((v, j) => {
        bytes[i * 34 + 2 + j] = v & 0xff;
      });
      meaning.push({ d: f16ToF32(dBits), q });
    }
    const x = quantizeQ8(Float32Array.from({ length: cols }, () => (rand() - 0.5) * 4));
    const out = new Float32Array(rows);
    matVecQ8_0(out, bytes, x, cols);
    for (let r = 0; r < rows; r++) {
      let expected = 0;
      for (let b = 0; b < 2; b++) {
        const { d, q } = meaning[r * 2 + b]!;
        let dot = 0;
        for (let j = 0; j < 32; j++) dot += q[j]! * x.qs[32 * b + j]!;
        expected += d * x.d[b]! * dot;
      }
      expect(Math.abs(out[r]! - expected)).toBeLessThan(1e-6 * (1 + Math.abs(expected)));
    }
  });

  it("refuses types it does not emulate, and tensors without stored blocks, by name", () => {
    const t = (dtype: TensorEntry["dtype"], stored: boolean): TensorEntry => ({
      name: "blk.0.ffn_up.weight",
      shape: [32, 32],
      dtype,
      byteLength: 0,
      f32: () => new Float32Array(1024),
      ...(stored ? { stored: () => new Uint8Array(0) } : {}),
    });
    expect(() => ggmlLinear(t("q4_k", true))).toThrow(/blk\.0\.ffn_up\.weight is q4_k/);
    expect(() => ggmlLinear(t("q4_1", false))).toThrow(/no stored ggml blocks/);
  });
});

const dirs = tempDirs("ggml-cpu");
let llama: Llama;
beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
  dirs.cleanup();
});

/** Per position, max |our logit - llama.cpp's| for both arithmetics, on stories260K exported as `dtype`. */
async function againstLlama(dtype: "q8_0" | "q4_1"): Promise<{ fp32: number[]; ggml: number[] }> {
  const file = join(dirs.make(), `stories260K-${dtype}.gguf`);
  await writeGguf(await loadModel(sharedModelPath()), file, { dtype, name: `stories260K ${dtype}` });
  const model = await loadModel(file);
  const theirModel = await llama.loadModel({ modelPath: file });
  const ctx = await theirModel.createContext({
    contextSize: 256,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const tokens = [1, 403, 407, 261, 378, 300, 29, 50, 100, 200, 310, 311, 312, 400, 401, 402];
  try {
    const theirs = await ctx
      .getSequence()
      .controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { logits: true } }]));
    const diffs = (arithmetic: ReferenceArithmetic) => {
      const ours = new ReferenceModel(model, { arithmetic });
      const state = ours.newState(tokens.length);
      return tokens.map((t, i) => {
        const logits = ours.forward(state, t);
        let worst = 0;
        for (const [id, v] of theirs[i]!.next!.logits!) worst = Math.max(worst, Math.abs(v - logits[id]!));
        return worst;
      });
    };
    return { fp32: diffs("fp32"), ggml: diffs("ggml-cpu") };
  } finally {
    await ctx.dispose();
    await theirModel.dispose();
  }
}

describe("ReferenceModel arithmetic ggml-cpu against llama.cpp on stories260K exports", () => {
  it("Q8_0 (and its F16 ffn_down): llama.cpp's logits to fp32 rounding at every position", async () => {
    const { fp32, ggml } = await againstLlama("q8_0");
    console.info(
      `stories260K Q8_0, max |logit diff| per position: fp32 ${fp32.map((d) => d.toExponential(1))}`,
    );
    console.info(`  ggml-cpu ${ggml.map((d) => d.toExponential(1))}`);
    for (const d of ggml) expect(d).toBeLessThan(1e-4);
    for (const d of fp32) expect(d).toBeGreaterThan(0.01); // what the emulation removes
  }, 300_000);

  it("Q4_1: equal at some positions; a data-dependent deviation at others (the cause is not pinned)", async () => {
    const { fp32, ggml } = await againstLlama("q4_1");
    console.info(
      `stories260K Q4_1, max |logit diff| per position: fp32 ${fp32.map((d) => d.toExponential(1))}`,
    );
    console.info(`  ggml-cpu ${ggml.map((d) => d.toExponential(1))}`);
    // A 1-ulp difference in an activation (another fp32 summation order: llama.cpp's AMX/AVX kernels)
    // can move x*127/amax across a .5 and change one quant by 1; that step then propagates. Measured:
    // positions 1-7 equal to 4e-6; position 0 off by 0.019 in its own logits only; from position 8 on
    // off by 0.08..0.21, carried through the KV cache (fp32 reference: 0.13..0.22 everywhere).
    expect(ggml.filter((d) => d < 1e-4).length).toBeGreaterThanOrEqual(5);
    expect(fp32.filter((d) => d < 1e-4)).toEqual([]);
  }, 300_000);
});
