/**
 * Hugging Face folder writer + importer round trips on stories260K: the folder is neox (q/k rows
 * un-permuted), everything else bit-identical; sharded folders import identically; and the neox
 * tensors written back to GGUF still drive llama.cpp to the original continuation.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ModelDescription,
  memoryTensor,
  permuteQK,
  type TensorEntry,
  TensorNames,
} from "../src/format/model.ts";
import { writeGguf } from "../src/model/export/gguf.ts";
import { writeHfFolder } from "../src/model/export/hf.ts";
import { loadModel } from "../src/model/import/index.ts";
import { spmToTokenizerJson } from "../src/runtime/tokenizer/index.ts";
import { LlamaCpp } from "./helpers/llama-cpp.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("hf");
let src: ModelDescription;
let folder: string;
let hf: ModelDescription;

beforeAll(async () => {
  src = await loadModel(sharedModelPath());
  folder = join(dirs.make(), "stories-hf");
  await writeHfFolder(src, folder);
  hf = await loadModel(folder);
});

afterAll(() => dirs.cleanup());

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function expectSameBits(name: string, got: Float32Array, want: Float32Array): void {
  expect(Buffer.compare(bits(got), bits(want)), name).toBe(0);
}

/** What the HF folder must hold for `name`: q/k rows in neox order, the rest unchanged. */
function neoxOf(model: ModelDescription, name: string, t: TensorEntry): Float32Array {
  const c = model.config;
  const m = /^blk\.\d+\.attn_(q|k)\.weight$/.exec(name);
  if (!m) return t.f32();
  return permuteQK(t.f32(), m[1] === "q" ? c.numHeads : c.numKvHeads, c.headDim, c.hiddenSize, "neox");
}

/** Same names (order may differ: GGUF keeps file order, HF import uses layer order) and bits. */
function expectSameTensors(a: ModelDescription, b: ModelDescription): void {
  expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
  for (const [name, t] of a.tensors) expectSameBits(name, b.tensors.get(name)!.f32(), t.f32());
}

const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8"));

describe("writeHfFolder -> loadModel", () => {
  it("writes a transformers-style folder and leaves no temp files", () => {
    expect(readdirSync(folder).sort()).toEqual([
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(readdirSync(join(folder, ".."))).toEqual(["stories-hf"]);
    const config = readJson(join(folder, "config.json"));
    expect(config).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: 64,
      num_key_value_heads: 4,
      torch_dtype: "float32",
      tie_word_embeddings: false,
      eos_token_id: 2,
      bos_token_id: 1,
    });
  });

  it("reads back neox: config equal but ropeStyle, q/k un-permuted, everything else bit-identical", () => {
    expect(hf.config).toEqual({ ...src.config, ropeStyle: "neox" });
    expect(src.config.ropeStyle).toBe("interleaved");
    expect([...hf.tensors.keys()].sort()).toEqual([...src.tensors.keys()].sort());
    for (const [name, t] of src.tensors) {
      expect(hf.tensors.get(name)!.dtype, name).toBe("f32");
      expectSameBits(name, hf.tensors.get(name)!.f32(), neoxOf(src, name, t));
    }
    expect(hf.eosTokenIds).toEqual(src.eosTokenIds);
    expect(hf.bosTokenId).toBe(src.bosTokenId);
    expect(hf.source.format).toBe("hf");
  });

  it("keeps the tokenizer as the tokenizer module converts it", () => {
    if (src.tokenizer.kind !== "llama-spm") throw new Error("stories260K has a llama-spm vocabulary");
    const want = spmToTokenizerJson(src.tokenizer, { modelMaxLength: src.config.maxContext });
    expect(hf.tokenizer).toEqual({
      kind: "hf",
      tokenizerJson: want.tokenizerJson,
      tokenizerConfig: want.tokenizerConfig,
    });
  });

  it("a sharded write (small max shard size) imports identically", async () => {
    const sharded = join(dirs.make(), "sharded");
    await writeHfFolder(src, sharded, { maxShardBytes: 100_000 });
    const files = readdirSync(sharded).filter((f) => f.endsWith(".safetensors"));
    expect(files.length).toBeGreaterThan(3);
    expect(files).toContain(`model-00001-of-${String(files.length).padStart(5, "0")}.safetensors`);
    const index = readJson(join(sharded, "model.safetensors.index.json"));
    expect(Object.keys(index.weight_map)).toHaveLength(src.tensors.size);
    const back = await loadModel(sharded);
    expect(back.config).toEqual(hf.config);
    expectSameTensors(hf, back);
  });

  it.each(["f16", "bf16"] as const)("%s folder reads back within the dtype's rounding", async (dtype) => {
    const dir = join(dirs.make(), dtype);
    await writeHfFolder(src, dir, { dtype });
    expect(readJson(join(dir, "config.json")).torch_dtype).toBe(dtype === "f16" ? "float16" : "bfloat16");
    const back = await loadModel(dir);
    const rel = dtype === "f16" ? 2 ** -11 : 2 ** -8;
    for (const [name, t] of hf.tensors) {
      const got = back.tensors.get(name)!;
      expect(got.dtype).toBe(dtype);
      const want = t.f32();
      const values = got.f32();
      for (let i = 0; i < want.length; i++) {
        const tol = Math.max(Math.abs(want[i]!) * rel, 2 ** -25);
        if (!(Math.abs(values[i]! - want[i]!) <= tol))
          expect.fail(`${name}[${i}]: ${values[i]} vs ${want[i]}`);
      }
    }
  });

  it("an imported folder re-exports unchanged (tokenizer.json as is, neox stays neox)", async () => {
    const again = join(dirs.make(), "again");
    await writeHfFolder(hf, again);
    expect(readJson(join(again, "tokenizer.json"))).toEqual(readJson(join(folder, "tokenizer.json")));
    const back = await loadModel(again);
    expect(back.config).toEqual(hf.config);
    expectSameTensors(hf, back);
  });

  it("refuses to overwrite an existing folder unless asked", async () => {
    const dir = join(dirs.make(), "target");
    await writeHfFolder(src, dir);
    await expect(writeHfFolder(src, dir)).rejects.toThrow(/already exists/);
    await writeHfFolder(src, dir, { dtype: "f16", overwrite: true });
    expect(readJson(join(dir, "config.json")).torch_dtype).toBe("float16");
    expect(readdirSync(join(dir, ".."))).toEqual(["target"]);
  });
});

describe("config.json variants", () => {
  /** A copy of the stories folder with config.json / generation_config.json edited. */
  async function variant(
    edit: (config: Record<string, unknown>) => void,
    model: ModelDescription = src,
  ): Promise<ModelDescription> {
    const dir = join(dirs.make(), "variant");
    await writeHfFolder(model, dir);
    const config = readJson(join(dir, "config.json"));
    edit(config);
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    return loadModel(dir);
  }

  it("defaults rope_theta to 10000 and takes rope_scaling {rope_type: default} as plain rope", async () => {
    const m = await variant((c) => {
      delete c.rope_theta;
      c.rope_scaling = { rope_type: "default" };
    });
    expect(m.config).toEqual(hf.config);
  });

  it("defaults num_key_value_heads to num_attention_heads (here: 8 heads of k_proj rows, found 4)", async () => {
    const m = variant((c) => {
      delete c.num_key_value_heads;
    });
    await expect(m).rejects.toThrow(
      /model\.layers\.0\.self_attn\.k_proj\.weight has shape \[32,64\], expected \[64,64\]/,
    );
  });

  it("ties embeddings when lm_head is absent; collects eos ids from config and generation_config", async () => {
    const tiedTensors = new Map(src.tensors);
    tiedTensors.delete(TensorNames.output);
    const tied = { ...src, config: { ...src.config, tiedEmbeddings: true }, tensors: tiedTensors };
    const dir = join(dirs.make(), "tied");
    await writeHfFolder(tied, dir);
    expect(readJson(join(dir, "config.json")).tie_word_embeddings).toBe(true);
    const config = readJson(join(dir, "config.json"));
    config.tie_word_embeddings = false;
    config.eos_token_id = [2, 7];
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [7, 9] }));
    const m = await loadModel(dir);
    expect(m.config.tiedEmbeddings).toBe(true);
    expect(m.tensors.has(TensorNames.output)).toBe(false);
    expect(m.eosTokenIds).toEqual([2, 7, 9]);
  });

  it("qwen2: zero biases stand for none; sliding window only with use_sliding_window on all layers", async () => {
    const qwen = { ...src, config: { ...src.config, architecture: "qwen2" as const, slidingWindow: 512 } };
    const m = await variant(() => {}, qwen);
    expect(m.config).toMatchObject({ architecture: "qwen2", attentionBias: true, slidingWindow: 512 });
    expect(
      m.tensors
        .get(TensorNames.attnKBias(3))!
        .f32()
        .every((v) => v === 0),
    ).toBe(true);
    const off = await variant((c) => {
      c.use_sliding_window = false;
    }, qwen);
    expect(off.config.slidingWindow).toBeNull();
    const upper = variant((c) => {
      c.max_window_layers = 2;
    }, qwen);
    await expect(upper).rejects.toThrow(/config\.json: sliding window on layers 2\.\. only/);
  });

  it("mistral keeps its sliding window through the folder, and through GGUF (llama arch) and back", async () => {
    const mistral = {
      ...src,
      config: { ...src.config, architecture: "mistral" as const, slidingWindow: 1024 },
    };
    const m = await variant(() => {}, mistral);
    expect(m.config).toEqual({ ...mistral.config, ropeStyle: "neox" });
    // llama.cpp has no "mistral" architecture: the GGUF says llama (+ sliding_window), HF says mistral again.
    const gguf = join(dirs.make(), "mistral.gguf");
    await writeGguf(mistral, gguf);
    const viaGguf = await loadModel(gguf);
    expect(viaGguf.config).toEqual({ ...mistral.config, architecture: "llama" });
    const again = await variant(() => {}, viaGguf);
    expect(again.config).toEqual(m.config);
  });
});

describe("llama.cpp on a GGUF written from the neox folder", () => {
  const llama = LlamaCpp.start();
  afterAll(async () => (await llama).dispose());

  it("continues the prompt exactly like the original file (q/k re-permuted to interleaved)", async () => {
    // The folder's tokenizer is tokenizer.json, which GGUF cannot hold; reuse the original vocabulary.
    const path = join(dirs.make(), "from-hf.gguf");
    const tensors = new Map([...hf.tensors].map(([n, t]) => [n, memoryTensor(n, t.shape, t.f32())]));
    await writeGguf({ ...hf, tensors, tokenizer: src.tokenizer }, path);
    const back = await loadModel(path);
    expectSameTensors(src, back);
    const l = await llama;
    const original = await l.greedy(sharedModelPath(), "Once upon a time", 24);
    const ours = await l.greedy(path, "Once upon a time", 24);
    expect(ours.output).toEqual(original.output);
  });
});
