/**
 * GGUF writer round trips on the real stories260K model: our importer reads every export back
 * (config, vocabulary, tensors within the dtype's rounding), and llama.cpp (node-llama-cpp) loads our
 * files: the f32 re-export must continue a prompt exactly like the original file.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ModelDescription, memoryTensor, permuteQK, type TensorEntry } from "../src/format/model.ts";
import { type GgufDType, writeGguf } from "../src/model/export/gguf.ts";
import { f16ToF32, f32ToF16 } from "../src/model/import/dtypes.ts";
import { loadModel } from "../src/model/import/index.ts";
import { LlamaCpp } from "./helpers/llama-cpp.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const PROMPT = "Once upon a time";
const dirs = tempDirs("gguf");
const exported = new Map<GgufDType, string>();
let src: ModelDescription;
let llama: LlamaCpp;

beforeAll(async () => {
  src = await loadModel(sharedModelPath());
  const out = dirs.make();
  for (const dtype of ["f32", "f16", "bf16", "q8_0", "q4_0"] as const) {
    const path = join(out, `stories-${dtype}.gguf`);
    await writeGguf(src, path, { dtype });
    exported.set(dtype, path);
  }
  llama = await LlamaCpp.start();
});

afterAll(async () => {
  await llama?.dispose();
  dirs.cleanup();
});

/** Bit-for-bit equality (toEqual on big typed arrays is slow). */
function expectSameBits(name: string, got: Float32Array, want: Float32Array): void {
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  expect(Buffer.compare(bytes(got), bytes(want)), name).toBe(0);
}

const fp16Error = (d: number) => Math.abs(d - f16ToF32(f32ToF16(d)));

/** Largest |x - x'| allowed for value `x` of a quant block of fp32 source values. */
function quantTolerance(dtype: "q8_0" | "q4_0", block: Float32Array, x: number): number {
  let amax = 0;
  let max = 0;
  for (const v of block) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
  // Quants are computed with the fp32 scale d; the file keeps d rounded to fp16.
  if (dtype === "q8_0") {
    const d = Math.fround(amax / 127);
    return d / 2 + 127 * fp16Error(d) + d * 1e-6;
  }
  // q4_0: half a step, except that x/d in (7.5, 8] clamps from nibble 16 to 15: a full step.
  const d = Math.fround(max / -8);
  const step = x / d > 7.5 ? Math.abs(d) : Math.abs(d) / 2;
  return step + 8 * fp16Error(d) + Math.abs(d) * 1e-6;
}

/** Checks `got` against `want` value by value, with the error the file's dtype allows. */
function expectWithin(name: string, want: Float32Array, got: Float32Array, dtype: string): void {
  expect(got.length, name).toBe(want.length);
  for (let start = 0; start < want.length; start += 32) {
    const block = want.subarray(start, Math.min(start + 32, want.length));
    for (let i = 0; i < block.length; i++) {
      const x = block[i]!;
      const tol =
        dtype === "f16"
          ? Math.max(Math.abs(x) * 2 ** -11, 2 ** -25)
          : dtype === "bf16"
            ? Math.abs(x) * 2 ** -8
            : dtype === "q8_0" || dtype === "q4_0"
              ? quantTolerance(dtype, block, x)
              : 0;
      const y = got[start + i]!;
      if (!(Math.abs(y - x) <= tol))
        expect.fail(`${name}[${start + i}] as ${dtype}: ${y} vs ${x} (tol ${tol})`);
    }
  }
}

/** Q4_0 blocks of the export, decoded here since our importer does not read Q4_0 (yet). */
async function q4Tensors(path: string): Promise<Map<string, { type: number; values: Float32Array }>> {
  const { tensorInfos, tensorDataOffset } = await gguf(path, { allowLocalFile: true });
  const bytes = readFileSync(path);
  const out = new Map<string, { type: number; values: Float32Array }>();
  for (const info of tensorInfos) {
    const count = info.shape.reduce((a, b) => a * Number(b), 1);
    const at = Number(tensorDataOffset) + Number(info.offset);
    const values = new Float32Array(count);
    if (info.dtype === 2) {
      for (let b = 0; b < count / 32; b++) {
        const base = at + b * 18;
        const d = f16ToF32(bytes.readUInt16LE(base));
        for (let j = 0; j < 16; j++) {
          const q = bytes[base + 2 + j]!;
          values[b * 32 + j] = ((q & 0x0f) - 8) * d;
          values[b * 32 + j + 16] = ((q >> 4) - 8) * d;
        }
      }
    } else if (info.dtype === 0) {
      for (let i = 0; i < count; i++) values[i] = bytes.readFloatLE(at + i * 4);
    } else if (info.dtype === 1) {
      for (let i = 0; i < count; i++) values[i] = f16ToF32(bytes.readUInt16LE(at + i * 2));
    }
    out.set(info.name, { type: info.dtype, values });
  }
  return out;
}

describe("writeGguf -> loadModel", () => {
  it("f32 re-export is identical: config, vocabulary, metadata and every tensor bit for bit", async () => {
    const back = await loadModel(exported.get("f32")!);
    expect(back.config).toEqual(src.config);
    expect(back.tokenizer).toEqual(src.tokenizer);
    expect(back.eosTokenIds).toEqual(src.eosTokenIds);
    expect(back.bosTokenId).toBe(src.bosTokenId);
    expect(back.chatTemplate).toBe(src.chatTemplate);
    expect([...back.tensors.keys()]).toEqual([...src.tensors.keys()]);
    for (const [name, t] of src.tensors) expectSameBits(name, back.tensors.get(name)!.f32(), t.f32());
  });

  it.each(["f16", "bf16", "q8_0"] as const)(
    "%s export reads back within the dtype's rounding",
    async (dtype) => {
      const back = await loadModel(exported.get(dtype)!);
      expect(back.config).toEqual(src.config);
      expect(back.tokenizer).toEqual(src.tokenizer);
      for (const [name, t] of src.tensors) {
        const got = back.tensors.get(name)!;
        expect(got.shape, name).toEqual(t.shape);
        // 1-D tensors stay F32; Q8_0 falls back to F16 for rows that are not whole 32-value blocks.
        const inner = t.shape[t.shape.length - 1]!;
        const want = t.shape.length === 1 ? "f32" : dtype === "q8_0" && inner % 32 !== 0 ? "f16" : dtype;
        expect(got.dtype, name).toBe(want);
        if (want === "f32") expectSameBits(name, got.f32(), t.f32());
        else expectWithin(name, t.f32(), got.f32(), want);
      }
    },
  );

  it("q4_0 export holds ggml Q4_0 blocks within one quant step (F32 norms, F16 for 172-wide rows)", async () => {
    const tensors = await q4Tensors(exported.get("q4_0")!);
    for (const [name, t] of src.tensors) {
      const got = tensors.get(name)!;
      const inner = t.shape[t.shape.length - 1]!;
      const want = t.shape.length === 1 ? 0 : inner % 32 !== 0 ? 1 : 2;
      expect(got.type, name).toBe(want);
      expectWithin(name, t.f32(), got.values, want === 2 ? "q4_0" : want === 1 ? "f16" : "f32");
    }
    const meta = (await gguf(exported.get("q4_0")!, { allowLocalFile: true })).metadata as Record<
      string,
      unknown
    >;
    expect(meta["general.file_type"]).toBe(2);
    expect(meta["general.quantization_version"]).toBe(2);
  });

  it("a neox-layout model is written with q/k permuted back to llama.cpp's interleaved layout", async () => {
    const c = src.config;
    const neox = new Map<string, TensorEntry>();
    for (const [name, t] of src.tensors) {
      const m = /^blk\.\d+\.attn_(q|k)\.weight$/.exec(name);
      const heads = m?.[1] === "q" ? c.numHeads : c.numKvHeads;
      const data = m ? permuteQK(t.f32(), heads, c.headDim, c.hiddenSize, "neox") : t.f32();
      neox.set(name, memoryTensor(name, t.shape, data));
    }
    const path = join(dirs.make(), "from-neox.gguf");
    await writeGguf({ ...src, config: { ...c, ropeStyle: "neox" }, tensors: neox }, path);
    const back = await loadModel(path);
    expect(back.config.ropeStyle).toBe("interleaved");
    for (const [name, t] of src.tensors) expectSameBits(name, back.tensors.get(name)!.f32(), t.f32());
  });
});

describe("llama.cpp loads our GGUF files", () => {
  it("f32 re-export continues the prompt exactly like the original file", async () => {
    const original = await llama.greedy(sharedModelPath(), PROMPT, 24);
    const ours = await llama.greedy(exported.get("f32")!, PROMPT, 24);
    expect(ours.input).toEqual(original.input);
    expect(ours.output).toEqual(original.output);
    expect(ours.output).toHaveLength(24);
  });

  it.each(["q8_0", "q4_0"] as const)("%s export loads and decodes greedily", async (dtype) => {
    const original = await llama.greedy(sharedModelPath(), PROMPT, 24);
    const ours = await llama.greedy(exported.get(dtype)!, PROMPT, 24);
    expect(ours.input).toEqual(original.input);
    expect(ours.output).toHaveLength(24);
    // Quantization may change a late token, but a wrong layout or scale would derail it at once.
    expect(ours.output.slice(0, 8)).toEqual(original.output.slice(0, 8));
  });
});
