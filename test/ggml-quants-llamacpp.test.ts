/**
 * Our dequantization against llama.cpp's own ggml, bit for bit: llama.cpp's libggml-base (the build
 * node-llama-cpp ships, the same one the model tests use) quantizes float vectors with
 * quantize_row_<type>_ref and dequantizes them with dequantize_row_<type>, called through Python's
 * ctypes (test/helpers/ggml_quants.py, standard library only). We decode ggml's blocks and must get
 * ggml's floats exactly. Python 3 is required (CI has it: fetch-model needs pip).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gguf } from "@huggingface/gguf";
import { afterAll, describe, expect, it } from "vitest";
import { realModelPath } from "../src/bench/real-model.ts";
import { decodeToF32, storageBytes } from "../src/model/import/dtypes.ts";
import { readRange } from "../src/model/import/file-bytes.ts";
import { GGML_DTYPE_BY_ID } from "../src/model/import/ggml/types.ts";
import { tempDirs } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";

const dirs = tempDirs("ggml-quants");
afterAll(() => dirs.cleanup());

const LIB = fileURLToPath(
  new URL(
    `../node_modules/@node-llama-cpp/${process.platform}-${process.arch}/bins/${process.platform}-${process.arch}/libggml-base.so`,
    import.meta.url,
  ),
);
const SCRIPT = fileURLToPath(new URL("./helpers/ggml_quants.py", import.meta.url));
const N = 4096;

/** Gaussian weights with a few large outliers, an all-positive stretch, a near-zero stretch and a zero block. */
function testVector(seed: number): Float32Array {
  const r = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const x = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    const region = Math.floor(i / 1024);
    if (region === 0) x[i] = 0.02 * gauss() * (r() < 0.01 ? 30 : 1);
    else if (region === 1) x[i] = Math.abs(gauss());
    else if (region === 2) x[i] = 1e-6 * gauss();
    else x[i] = i < 3072 + 256 ? 0 : 3 * gauss();
  }
  return x;
}

function ggml(type: string, x: Float32Array, nbytes: number): { blocks: Uint8Array; floats: Float32Array } {
  const dir = dirs.make();
  const [src, blocks, floats] = ["x.f32", "blocks.bin", "y.f32"].map((f) => join(dir, f)) as [
    string,
    string,
    string,
  ];
  writeFileSync(src, new Uint8Array(x.buffer));
  python(["quantize", type, String(x.length), src, blocks, String(nbytes), floats]);
  const y = readFileSync(floats);
  return {
    blocks: new Uint8Array(readFileSync(blocks)),
    floats: new Float32Array(y.buffer, y.byteOffset, x.length),
  };
}

function python(args: string[]): void {
  const r = spawnSync("python3", [SCRIPT, LIB, ...args], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(
      `ggml_quants.py ${args.slice(0, 3).join(" ")} failed (${r.status}): ${r.stderr || r.error}`,
    );
  }
}

/** ggml's dequantize_row_<type> of raw blocks. */
function ggmlDequantize(type: string, blocks: Uint8Array, n: number): Float32Array {
  const dir = dirs.make();
  writeFileSync(join(dir, "blocks.bin"), blocks);
  python(["dequantize", type, String(n), join(dir, "blocks.bin"), join(dir, "y.f32")]);
  const y = readFileSync(join(dir, "y.f32"));
  return new Float32Array(y.buffer, y.byteOffset, n);
}

/** Index of the first element whose fp32 bits differ (-1: identical). */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.slice().buffer);
  const ub = new Uint32Array(b.slice().buffer);
  if (ua.length !== ub.length) return 0;
  return ua.findIndex((v, i) => v !== ub[i]);
}

const TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"] as const;

describe("ggml dequantization vs llama.cpp's ggml", () => {
  it("finds llama.cpp's ggml library", () => {
    expect(existsSync(LIB), LIB).toBe(true);
  });

  it.each(TYPES)("%s: llama.cpp's blocks decode to llama.cpp's floats, bit for bit", (type) => {
    const x = testVector(TYPES.indexOf(type) + 1);
    const nbytes = storageBytes(type, N);
    const cName = type.replace("_k", "_K"); // ggml spells the K-quants q4_K
    const theirs = ggml(cName, x, nbytes);
    const mine = decodeToF32(type, theirs.blocks, N);
    const firstDiff = firstBitDifference(mine, theirs.floats);
    expect(
      firstDiff,
      `first differing element ${firstDiff}: ours ${mine[firstDiff]}, ggml ${theirs.floats[firstDiff]}`,
    ).toBe(-1);
    // Real quantization happened: close to the input, not identical to it, not all zero.
    let err = 0;
    for (let i = 0; i < 1024; i++) err = Math.max(err, Math.abs(mine[i]! - x[i]!));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.6 * Math.max(...x.subarray(0, 1024).map(Math.abs)));
  });

  it("decodes the real model's tensors (Q4_1, Q8_0) exactly as llama.cpp's ggml", async () => {
    const path = await realModelPath();
    const header = await gguf(path, { allowLocalFile: true });
    const names = [
      "blk.0.attn_q.weight",
      "blk.17.ffn_down.weight",
      "blk.29.ffn_up.weight",
      "token_embd.weight",
    ];
    const seen = new Set<string>();
    for (const name of names) {
      const info = header.tensorInfos.find((t) => t.name === name);
      if (!info) throw new Error(`${name} is not in ${path}`);
      const type = GGML_DTYPE_BY_ID.get(info.dtype);
      if (!type) throw new Error(`${name}: unexpected ggml type ${info.dtype}`);
      seen.add(type);
      // Up to 256K values from the start of the tensor (the embedding is 28M values).
      const count = Math.min(
        info.shape.map(Number).reduce((a, b) => a * b, 1),
        1 << 18,
      );
      const bytes = readRange(
        path,
        Number(header.tensorDataOffset) + Number(info.offset),
        storageBytes(type, count),
      );
      const mine = decodeToF32(type, bytes, count);
      const theirs = ggmlDequantize(type, bytes, count);
      expect(firstBitDifference(mine, theirs), name).toBe(-1);
    }
    expect([...seen].sort()).toEqual(["q4_1", "q8_0"]);
  }, 300_000);
});
