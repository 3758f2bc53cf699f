/**
 * Bad model files and failed writes: every problem is a ModelImportError (or ModelExportError) whose
 * message names the file and says what is wrong, and a failed write leaves nothing behind.
 */
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ModelDescription, ModelImportError } from "../src/format/model.ts";
import { ModelExportError } from "../src/model/export/errors.ts";
import { ggufParts, writeGguf } from "../src/model/export/gguf.ts";
import { GgmlType, type GgufTensor, writeGgufFile } from "../src/model/export/gguf-file.ts";
import { writeHfFolder } from "../src/model/export/hf.ts";
import { loadModel } from "../src/model/import/index.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";
import {
  editSafetensorsHeader,
  readRawSafetensors,
  writeRawSafetensors,
} from "./helpers/safetensors-bytes.ts";

const dirs = tempDirs("errors");
let src: ModelDescription;
let hfBase: string;

beforeAll(async () => {
  src = await loadModel(sharedModelPath());
  hfBase = join(dirs.make(), "base");
  await writeHfFolder(src, hfBase);
});

afterAll(() => dirs.cleanup());

/** The ModelImportError loading `path` throws (fails the test if it loads or throws something else). */
async function importError(path: string): Promise<ModelImportError> {
  try {
    await loadModel(path);
  } catch (e) {
    if (e instanceof ModelImportError) return e;
    throw e;
  }
  throw new Error(`${path} loaded without error`);
}

async function expectImportError(path: string, file: string, problem: RegExp): Promise<void> {
  const e = await importError(path);
  expect(e.file).toBe(file);
  expect(e.message.startsWith(`${file}: `)).toBe(true);
  expect(e.problem).toMatch(problem);
}

/** A fresh copy of the good HF folder. */
function hfCopy(): string {
  const dir = join(dirs.make(), "model");
  cpSync(hfBase, dir, { recursive: true });
  return dir;
}

describe("bad GGUF files", () => {
  const original = () => readFileSync(sharedModelPath());

  function ggufFile(bytes: Uint8Array): string {
    const path = join(dirs.make(), "bad.gguf");
    writeFileSync(path, bytes);
    return path;
  }

  it("truncated inside the header: KV pairs, tensor infos (and a stub too short for the magic)", async () => {
    // The original's tensor data starts at 14176 (header + infos + padding).
    for (const cut of [30, 5000, 14000]) {
      const path = ggufFile(original().subarray(0, cut));
      await expectImportError(path, path, /truncated: header needs \d+ bytes, file has \d+/);
    }
    const stub = ggufFile(original().subarray(0, 2));
    await expectImportError(stub, stub, /not a GGUF file/);
  });

  it("truncated inside the tensor data", async () => {
    const size = original().length;
    for (const cut of [14176 + 100, Math.floor(size / 2), size - 1]) {
      const path = ggufFile(original().subarray(0, cut));
      await expectImportError(path, path, /truncated: tensor \S+ needs bytes \d+\.\.\d+, file has \d+/);
    }
  });

  it("wrong magic", async () => {
    const bytes = new Uint8Array(original());
    bytes.set(new TextEncoder().encode("GGML"), 0);
    const path = ggufFile(bytes);
    await expectImportError(path, path, /not a GGUF file \(wrong magic bytes\)/);
  });

  it("unsupported architecture (our writer, general.architecture patched to falcon)", async () => {
    const path = join(dirs.make(), "falcon.gguf");
    const parts = ggufParts(src, path);
    const metadata = new Map(parts.metadata).set("general.architecture", { type: "string", value: "falcon" });
    await writeGgufFile(path, { ...parts, metadata });
    await expectImportError(path, path, /unsupported architecture "falcon"/);
  });

  it("a tensor of an unsupported ggml type (IQ4_XS, id 23)", async () => {
    const path = join(dirs.make(), "iq4xs.gguf");
    const parts = ggufParts(src, path);
    const iq4xs: GgufTensor = {
      name: "blk.0.ffn_gate.weight",
      shape: [2, 256],
      ggmlType: 23,
      byteLength: 2 * 136,
      bytes: () => new Uint8Array(2 * 136),
    };
    const tensors = parts.tensors.map((t) => (t.name === iq4xs.name ? iq4xs : t));
    await writeGgufFile(path, { ...parts, tensors });
    await expectImportError(
      path,
      path,
      /tensor blk\.0\.ffn_gate\.weight: unsupported dtype IQ4_XS \(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K\)/,
    );
  });

  it("a K-quant tensor whose rows are not whole 256-element super-blocks", async () => {
    const path = join(dirs.make(), "q4k-short-rows.gguf");
    const parts = ggufParts(src, path);
    const q4k: GgufTensor = {
      name: "blk.0.ffn_gate.weight",
      shape: [8, 64],
      ggmlType: GgmlType.Q4_K,
      byteLength: 2 * 144,
      bytes: () => new Uint8Array(2 * 144),
    };
    const tensors = parts.tensors.map((t) => (t.name === q4k.name ? q4k : t));
    await writeGgufFile(path, { ...parts, tensors });
    await expectImportError(
      path,
      path,
      /tensor blk\.0\.ffn_gate\.weight: Q4_K row length 64 is not a multiple of 256/,
    );
  });

  it("missing tensor and wrong tensor shape", async () => {
    const missing = join(dirs.make(), "missing.gguf");
    const parts = ggufParts(src, missing);
    await writeGgufFile(missing, {
      ...parts,
      tensors: parts.tensors.filter((t) => t.name !== "blk.2.ffn_up.weight"),
    });
    await expectImportError(missing, missing, /missing tensor blk\.2\.ffn_up\.weight/);

    const reshaped = join(dirs.make(), "reshaped.gguf");
    // Our writer refuses such a model, so reshape the tensor info of a good one (same bytes).
    const good = ggufParts(src, reshaped);
    const tensors = good.tensors.map((t) =>
      t.name === "blk.1.attn_v.weight" ? { ...t, shape: [16, 128] } : t,
    );
    await writeGgufFile(reshaped, { ...good, tensors });
    await expectImportError(
      reshaped,
      reshaped,
      /tensor blk\.1\.attn_v\.weight has shape \[16,128\], expected \[32,64\]/,
    );
  });
});

describe("bad safetensors files", () => {
  const K = "model.layers.0.self_attn.k_proj.weight";
  const V = "model.layers.0.self_attn.v_proj.weight";

  async function expectHeaderError(edit: Parameters<typeof editSafetensorsHeader>[1], problem: RegExp) {
    const dir = hfCopy();
    const file = join(dir, "model.safetensors");
    editSafetensorsHeader(file, edit);
    await expectImportError(dir, file, problem);
  }

  it("offsets that overlap another tensor", async () => {
    await expectHeaderError((h) => {
      h[V]!.data_offsets = [...h[K]!.data_offsets];
    }, /tensors model\.layers\.0\.self_attn\.(k|v)_proj\.weight \[\d+, \d+\] and model\.layers\.0\.self_attn\.(k|v)_proj\.weight \[\d+, \d+\] overlap/);
  });

  it("offsets beyond the end of the file", async () => {
    await expectHeaderError((h) => {
      const [b, e] = h[V]!.data_offsets;
      h[V]!.data_offsets = [b + 10_000_000, e + 10_000_000];
    }, /tensor model\.layers\.0\.self_attn\.v_proj\.weight: data_offsets \[\d+, \d+\] reach past the data section/);
  });

  it("offsets whose size disagrees with shape x dtype", async () => {
    await expectHeaderError((h) => {
      h[K]!.shape = [32, 63];
    }, /tensor model\.layers\.0\.self_attn\.k_proj\.weight: data_offsets \[\d+, \d+\] hold 8192 bytes, but F32 \[32,63\] needs 8064/);
  });

  it("offsets that run backwards", async () => {
    await expectHeaderError((h) => {
      h[K]!.data_offsets = [h[K]!.data_offsets[1], h[K]!.data_offsets[0]];
    }, /k_proj\.weight: data_offsets \[\d+, \d+\] run backwards/);
  });

  it("unsupported dtype (I64)", async () => {
    await expectHeaderError((h) => {
      h[K]!.dtype = "I64";
    }, /tensor model\.layers\.0\.self_attn\.k_proj\.weight: unsupported dtype I64 \(supported: F32, F16, BF16\)/);
  });

  it("a header length bigger than the file, and a header that is not JSON", async () => {
    const dir = hfCopy();
    const file = join(dir, "model.safetensors");
    const { header, data } = readRawSafetensors(file);
    writeRawSafetensors(file, header, data, statSync(file).size + 10);
    await expectImportError(dir, file, /header length \d+ exceeds the file \(\d+ bytes\)/);
    writeFileSync(file, Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{oops")]));
    await expectImportError(dir, file, /safetensors header is not valid JSON/);
  });
});

describe("bad Hugging Face folders", () => {
  function editJson(path: string, edit: (json: Record<string, unknown>) => void): void {
    const json = JSON.parse(readFileSync(path, "utf8"));
    edit(json);
    writeFileSync(path, JSON.stringify(json));
  }

  it("config.json with an unsupported model_type, rope scaling, or a missing field", async () => {
    const dir = hfCopy();
    const config = join(dir, "config.json");
    editJson(config, (c) => {
      c.model_type = "gpt_neox";
    });
    await expectImportError(
      dir,
      config,
      /unsupported model_type "gpt_neox" \(supported: llama, mistral, qwen2\)/,
    );
    editJson(config, (c) => {
      c.model_type = "llama";
      c.rope_scaling = { rope_type: "linear", factor: 2 };
    });
    await expectImportError(dir, config, /unsupported rope_scaling \{"rope_type":"linear","factor":2\}/);
    editJson(config, (c) => {
      c.rope_scaling = null;
      delete c.hidden_size;
    });
    await expectImportError(dir, config, /bad config\.json: .*hidden_size/s);
  });

  it("missing tensor", async () => {
    const dir = hfCopy();
    const file = join(dir, "model.safetensors");
    editSafetensorsHeader(file, (h) => {
      delete h["model.layers.1.mlp.down_proj.weight"];
    });
    await expectImportError(dir, file, /missing tensor model\.layers\.1\.mlp\.down_proj\.weight/);
  });

  it("wrong tensor shape (consistent file, wrong for the config)", async () => {
    const dir = hfCopy();
    const file = join(dir, "model.safetensors");
    editSafetensorsHeader(file, (h) => {
      h["model.layers.0.self_attn.q_proj.weight"]!.shape = [32, 128];
    });
    await expectImportError(
      dir,
      file,
      /tensor model\.layers\.0\.self_attn\.q_proj\.weight has shape \[32,128\], expected \[64,64\]/,
    );
  });

  it("unknown layer tensors are refused; rotary inv_freq buffers are ignored", async () => {
    const dir = hfCopy();
    const file = join(dir, "model.safetensors");
    const { header, data } = readRawSafetensors(file);
    const end = data.length;
    const withInvFreq = {
      ...header,
      "model.layers.0.self_attn.rotary_emb.inv_freq": {
        dtype: "F32",
        shape: [4],
        data_offsets: [end, end + 16],
      },
    };
    writeRawSafetensors(file, withInvFreq, Buffer.concat([data, new Uint8Array(16)]));
    expect((await loadModel(dir)).tensors.size).toBe(src.tensors.size);

    editSafetensorsHeader(file, (h) => {
      h["model.layers.0.self_attn.q_norm.weight"] = h["model.layers.0.input_layernorm.weight"]!;
      delete h["model.layers.0.input_layernorm.weight"];
    });
    await expectImportError(dir, file, /unknown tensor model\.layers\.0\.self_attn\.q_norm\.weight/);
    editSafetensorsHeader(file, (h) => {
      h["model.layers.7.input_layernorm.weight"] = h["model.layers.0.self_attn.q_norm.weight"]!;
      delete h["model.layers.0.self_attn.q_norm.weight"];
    });
    await expectImportError(dir, file, /unknown tensor model\.layers\.7\.input_layernorm\.weight/);
  });

  it("missing tokenizer.json, missing weights, missing config.json", async () => {
    const dir = hfCopy();
    const tok = join(dir, "tokenizer.json");
    rmSync(tok);
    await expectImportError(dir, tok, /missing tokenizer\.json/);
    const noWeights = hfCopy();
    rmSync(join(noWeights, "model.safetensors"));
    await expectImportError(noWeights, noWeights, /no model\.safetensors or model\.safetensors\.index\.json/);
    const noConfig = hfCopy();
    rmSync(join(noConfig, "config.json"));
    await expectImportError(noConfig, join(noConfig, "config.json"), /missing config\.json/);
  });

  it("a sharded folder whose index lies", async () => {
    const dir = join(dirs.make(), "sharded");
    await writeHfFolder(src, dir, { maxShardBytes: 400_000 });
    const index = join(dir, "model.safetensors.index.json");
    const shards = readdirSync(dir)
      .filter((f) => f.startsWith("model-"))
      .sort();
    expect(shards.length).toBeGreaterThan(1);
    const actual = JSON.parse(readFileSync(index, "utf8")).weight_map["model.norm.weight"];
    editJson(index, (j) => {
      (j.weight_map as Record<string, string>)["model.norm.weight"] = shards.find((s) => s !== actual)!;
    });
    const err = await importError(dir);
    expect(err.message).toMatch(
      /model-0000\d-of-0000\d\.safetensors: tensor model\.norm\.weight is (listed in|in this shard but)/,
    );
    editJson(index, (j) => {
      (j.weight_map as Record<string, string>)["model.norm.weight"] = "model-00009-of-00009.safetensors";
    });
    await expectImportError(dir, index, /shard model-00009-of-00009\.safetensors is listed but missing/);
    editJson(index, (j) => {
      (j.weight_map as Record<string, string>)["model.norm.weight"] = "../outside.safetensors";
    });
    await expectImportError(dir, index, /bad safetensors index/);
  });
});

describe("failed writes leave nothing behind", () => {
  /** A model whose one tensor fails to materialize halfway through a write. */
  function failing(): ModelDescription {
    const tensors = new Map(src.tensors);
    const t = src.tensors.get("blk.3.ffn_up.weight")!;
    tensors.set(t.name, {
      ...t,
      f32: () => {
        throw new Error("disk on fire");
      },
    });
    return { ...src, tensors };
  }

  it("target parent is a file", async () => {
    const dir = dirs.make();
    const parent = join(dir, "not-a-folder");
    writeFileSync(parent, "x");
    await expect(writeHfFolder(src, join(parent, "model"))).rejects.toThrow(ModelExportError);
    await expect(writeGguf(src, join(parent, "model.gguf"))).rejects.toThrow(ModelExportError);
    expect(readdirSync(dir)).toEqual(["not-a-folder"]);
  });

  it("a tensor that fails mid-write: no folder, no file, no temp leftovers", async () => {
    const dir = dirs.make();
    const hfErr = await writeHfFolder(failing(), join(dir, "model")).catch((e: Error) => e);
    expect(hfErr).toBeInstanceOf(ModelExportError);
    expect(String(hfErr)).toMatch(/model: write failed \(disk on fire\)/);
    await expect(writeGguf(failing(), join(dir, "model.gguf"), { dtype: "q8_0" })).rejects.toThrow(
      /disk on fire/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it("an existing folder survives a failed overwrite", async () => {
    const dir = join(dirs.make(), "model");
    await writeHfFolder(src, dir);
    await expect(writeHfFolder(failing(), dir, { overwrite: true })).rejects.toThrow(/disk on fire/);
    expect(readdirSync(join(dir, ".."))).toEqual(["model"]);
    expect((await loadModel(dir)).config.hiddenSize).toBe(64);
  });

  it("a model whose tensors disagree with its config is refused before anything is written", async () => {
    const dir = dirs.make();
    const wide = { ...src, config: { ...src.config, intermediateSize: 256 } };
    await expect(writeGguf(wide, join(dir, "x.gguf"))).rejects.toThrow(
      /x\.gguf: tensor blk\.0\.ffn_gate\.weight has shape \[172,64\], config says \[256,64\]/,
    );
    await expect(writeHfFolder(wide, join(dir, "x"))).rejects.toThrow(/x: tensor blk\.0\.ffn_gate\.weight/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("GGUF cannot hold a tokenizer.json vocabulary: refused before anything is written", async () => {
    const dir = dirs.make();
    const hf = await loadModel(hfBase);
    await expect(writeGguf(hf, join(dir, "x.gguf"))).rejects.toThrow(
      /cannot write a Hugging Face tokenizer\.json vocabulary/,
    );
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
