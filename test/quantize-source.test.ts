/**
 * Quant method "source": a GGUF's own Q4_1 / Q4_0 / Q8_0 blocks repacked into our formats, lossless.
 * The proof is against llama.cpp's own ggml (libggml-base from node-llama-cpp, through
 * test/helpers/ggml_quants.py): dequantizing our packed tensor gives dequantize_row_<type> of the
 * source blocks bit for bit, on stories260K exported to Q4_1 / Q4_0 / Q8_0, for a pruned variant's
 * kept (renumbered) blocks, and on the real SmolLM2 Q4_1 file. The packed Q4_1 model then runs in the
 * WASM engine against the reference over the same weights.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realModelPath } from "../src/bench/real-model.ts";
import { calibrate } from "../src/compress/calibration.ts";
import { compressVariant } from "../src/compress/compress-variant.ts";
import { dequantizedModel } from "../src/compress/model-edit.ts";
import { quantizeModel } from "../src/compress/quantize.ts";
import { parseVariantsFile } from "../src/compress/variants-config.ts";
import { dequantize, dequantizeInt8, hasMins, type PackedInt4, type PackedInt8 } from "../src/format/int4.ts";
import type { ModelDescription } from "../src/format/model.ts";
import { packWeights } from "../src/format/pack.ts";
import { type GgufDType, writeGguf } from "../src/model/export/gguf.ts";
import { repackGgml } from "../src/model/import/ggml/repack.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

const dirs = tempDirs("quantize-source");
afterAll(() => dirs.cleanup());

const LIB = fileURLToPath(
  new URL(
    `../node_modules/@node-llama-cpp/${process.platform}-${process.arch}/bins/${process.platform}-${process.arch}/libggml-base.so`,
    import.meta.url,
  ),
);
const SCRIPT = fileURLToPath(new URL("./helpers/ggml_quants.py", import.meta.url));

/** llama.cpp's dequantize_row_<type> of raw blocks (n values). */
function ggmlDequantize(type: string, blocks: Uint8Array, n: number): Float32Array {
  const dir = dirs.make();
  writeFileSync(join(dir, "blocks.bin"), blocks);
  const r = spawnSync(
    "python3",
    [SCRIPT, LIB, "dequantize", type, String(n), join(dir, "blocks.bin"), join(dir, "y.f32")],
    {
      encoding: "utf8",
    },
  );
  if (r.status !== 0) throw new Error(`ggml_quants.py dequantize ${type} failed: ${r.stderr || r.error}`);
  const y = readFileSync(join(dir, "y.f32"));
  return new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + n * 4));
}

/** Index of the first element whose fp32 bits differ, -1 when identical (toEqual on 28M values is too slow). */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function dequantizeAny(v: PackedInt4 | PackedInt8): Float32Array {
  return v.format === "int4" ? dequantize(v) : dequantizeInt8(v);
}

const models = new Map<GgufDType, ModelDescription>();
async function exported(dtype: GgufDType): Promise<ModelDescription> {
  let m = models.get(dtype);
  if (!m) {
    const path = join(dirs.make(), `stories260K.${dtype}.gguf`);
    await writeGguf(await loadModel(sharedModelPath()), path, { dtype });
    m = await loadModel(path);
    models.set(dtype, m);
  }
  return m;
}

/** Every packed tensor the method took from the source equals ggml's dequantization of those blocks. */
function expectLossless(
  source: ModelDescription,
  name: string,
  value: PackedInt4 | PackedInt8,
  from: string,
): void {
  const s = source.tensors.get(from)!;
  const n = s.shape.reduce((a, b) => a * b, 1);
  const theirs = ggmlDequantize(s.dtype, s.stored!(), n);
  expect(firstBitDifference(dequantizeAny(value), theirs), `${name} from ${from}`).toBe(-1);
}

describe('quant method "source" on stories260K exported by us', () => {
  let q41: ModelDescription;
  beforeAll(async () => {
    q41 = await exported("q4_1");
  });

  it("Q4_1: every Q4_1 tensor becomes int4 with fp16 mins, bit-identical to ggml; the rest falls back", () => {
    const stats = calibrate(q41, { maxTokens: 64 });
    const r = quantizeModel(q41, stats, { method: "source", embeddings: "int4", head: "int4", errorRows: 4 });
    const packed = new Map(r.tensors.map((t) => [t.name, t.value]));
    let repacked = 0;
    for (const rep of r.report) {
      const src = q41.tensors.get(rep.name)!;
      const v = packed.get(rep.name) as PackedInt4 | PackedInt8;
      if (src.dtype === "q4_1") {
        expect(rep.method).toBe("source");
        expect(rep.sourceTensor).toBe(rep.name);
        expect(v.format === "int4" && hasMins(v)).toBe(true);
        expect(rep.relativeError).toBe(0);
        expectLossless(q41, rep.name, v, rep.name);
        repacked++;
      } else {
        // ffn_down's rows (172) are not whole blocks: the exporter wrote F16, and "source" searched
        expect(src.dtype).toBe("f16");
        expect(rep.sourceTensor ?? null).toBeNull();
        expect(v.format === "int4" && !hasMins(v)).toBe(true);
      }
    }
    expect(repacked).toBeGreaterThanOrEqual(6 * q41.config.numLayers);
  });

  it("Q4_0 -> symmetric int4 and Q8_0 -> int8 g32 (embedding), bit-identical to ggml", async () => {
    const q40 = await exported("q4_0");
    const r40 = quantizeModel(q40, calibrate(q40, { maxTokens: 32 }), {
      method: "source",
      embeddings: "int4",
      errorRows: 4,
    });
    const attnQ = r40.tensors.find((t) => t.name === "blk.1.attn_q.weight")!.value as PackedInt4;
    expect(attnQ.zeros).toBeNull();
    expect(hasMins(attnQ)).toBe(false);
    expectLossless(q40, "blk.1.attn_q.weight", attnQ, "blk.1.attn_q.weight");

    const q80 = await exported("q8_0");
    const r80 = quantizeModel(q80, calibrate(q80, { maxTokens: 32 }), {
      method: "source",
      embeddings: "int8",
      errorRows: 4,
    });
    const emb = r80.tensors.find((t) => t.name === "token_embd.weight")!.value as PackedInt8;
    expect(emb.format).toBe("int8");
    expect(emb.groupSize).toBe(32);
    expectLossless(q80, "token_embd.weight", emb, "token_embd.weight");
    // Q8_0 linears have no int4 form: the blocks need int4, so they were searched
    const r = r80.report.find((x) => x.name === "blk.0.attn_q.weight")!;
    expect(r.format).toBe("int4");
    expect(r.sourceTensor ?? null).toBeNull();
  });

  it("a pruned variant (layers dropped, no healing) repacks its kept blocks from their source layers", () => {
    const file = parseVariantsFile({
      calibration: { maxTokens: 64 },
      variants: [
        {
          name: "speed",
          tier: "speed",
          quant: { method: "source", embeddings: "int4", head: "int4", errorRows: 4 },
          prune: { layers: 0.4, heal: false, importance: "wanda" },
        },
      ],
    });
    const stats = calibrate(q41, { maxTokens: 64 });
    const v = compressVariant(q41, stats, file.variants[0]!, file, () => {});
    expect(v.model.config.numLayers).toBe(q41.config.numLayers - 2);
    const renumbered = v.quantReport.filter((r) => r.sourceTensor && r.sourceTensor !== r.name);
    expect(renumbered.length).toBeGreaterThan(0);
    for (const r of v.quantReport.filter((x) => x.sourceTensor)) {
      const value = v.tensors.find((t) => t.name === r.name)!.value as PackedInt4;
      expectLossless(q41, r.name, value, r.sourceTensor!);
    }
  });

  it("an FFN-pruned variant (unhealed) repacks the kept rows of gate/up from the source blocks", () => {
    const file = parseVariantsFile({
      calibration: { maxTokens: 64 },
      variants: [
        {
          name: "speed",
          tier: "speed",
          quant: { method: "source", embeddings: "int4", head: "int4", errorRows: 4 },
          prune: { ffn: 0.25, heal: false, importance: "wanda" },
        },
      ],
    });
    const v = compressVariant(q41, calibrate(q41, { maxTokens: 64 }), file.variants[0]!, file, () => {});
    const width = v.model.config.intermediateSize;
    expect(width).toBeLessThan(q41.config.intermediateSize);
    const rowKey = (x: Uint32Array, r: number, K: number) => x.subarray(r * K, (r + 1) * K).join(",");
    let rowSubsets = 0;
    for (const r of v.quantReport) {
      if (!/ffn_(gate|up)/.test(r.name)) continue;
      expect(r.sourceTensor, r.name).toBe(r.name);
      const value = v.tensors.find((t) => t.name === r.name)!.value as PackedInt4;
      expect(value.N).toBe(width);
      const mine = dequantize(value);
      // The pruned fp32 weight itself, bit for bit, and each of its rows one of ggml's rows of the source.
      expect(firstBitDifference(mine, v.model.tensors.get(r.name)!.f32())).toBe(-1);
      const s = q41.tensors.get(r.name)!;
      const K = s.shape[1]!;
      const theirs = new Uint32Array(ggmlDequantize(s.dtype, s.stored!(), s.shape[0]! * K).buffer);
      const rows = new Set(Array.from({ length: s.shape[0]! }, (_, i) => rowKey(theirs, i, K)));
      const bits = new Uint32Array(mine.buffer, mine.byteOffset, mine.length);
      for (let i = 0; i < width; i++) expect(rows.has(rowKey(bits, i, K))).toBe(true);
      rowSubsets++;
    }
    expect(rowSubsets).toBe(2 * q41.config.numLayers);
    // ffn_down lost columns, not rows: no exact blocks, searched
    const down = v.quantReport.find((r) => r.name === "blk.0.ffn_down.weight")!;
    expect(down.sourceTensor ?? null).toBeNull();
  });

  it("rejects blocks with no exact form and shapes that do not match the bytes", () => {
    expect(repackGgml("q4_k", new Uint8Array(144), 1, 256)).toMatchObject({ ok: false });
    const q8 = new Uint8Array(34);
    q8[2] = 0x80; // code -128
    expect(repackGgml("q8_0", q8, 1, 32)).toMatchObject({ ok: false, reason: /-128/ });
    const q41nan = new Uint8Array(20);
    q41nan[1] = 0x7c; // d = +inf
    expect(repackGgml("q4_1", q41nan, 1, 32)).toMatchObject({ ok: false, reason: /non-finite/ });
    expect(() => repackGgml("q4_1", new Uint8Array(19), 1, 32)).toThrow(/19 bytes/);
    expect(() => repackGgml("q4_1", new Uint8Array(20), 0, 32)).toThrow(/bad shape/);
  });

  it("the packed Q4_1 model runs in the WASM engine like the reference over the same weights", async () => {
    const stats = calibrate(q41, { maxTokens: 32 });
    const r = quantizeModel(q41, stats, { method: "source", embeddings: "int4", head: "int4", errorRows: 4 });
    const { table, data } = packWeights(q41, r.tensors);
    expect(table.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.encoding).toMatchObject({
      mins: true,
    });
    const engine = await WasmEngine.load(await loadTestKernels(), table, bytesToStream(data, 4096), {
      activations: "f32",
    });
    const ref = new ReferenceModel(dequantizedModel(q41, r.tensors));
    const tokens = [1, 403, 407, 261, 378, 500, 42, 7];
    const es = engine.newState(tokens.length);
    const rs = ref.newState(tokens.length);
    for (const t of tokens) {
      const a = engine.forward(es, t);
      const b = ref.forward(rs, t);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        scale = Math.max(scale, Math.abs(b[i]!));
      }
      expect(worst).toBeLessThan(0.02 * scale);
    }
  });
});

describe('"source" on the real SmolLM2-135M-Instruct Q4_1 file', () => {
  it("repacks Q4_1 linears and the Q8_0 embedding bit-identically to ggml", async () => {
    const model = await loadModel(await realModelPath());
    for (const name of ["blk.0.attn_q.weight", "blk.17.ffn_down.weight", "blk.29.ffn_up.weight"]) {
      const t = model.tensors.get(name)!;
      expect(t.dtype).toBe("q4_1");
      const [N, K] = t.shape as [number, number];
      const r = repackGgml(t.dtype, t.stored!(), N, K);
      if (!r.ok) throw new Error(`${name}: ${r.reason}`);
      expect(hasMins(r.value as PackedInt4)).toBe(true);
      expectLossless(model, name, r.value, name);
    }
    const emb = model.tensors.get("token_embd.weight")!;
    expect(emb.dtype).toBe("q8_0");
    const [N, K] = emb.shape as [number, number];
    const r = repackGgml("q8_0", emb.stored!(), N, K);
    if (!r.ok) throw new Error(`token_embd: ${r.reason}`);
    const ours = dequantizeAny(r.value);
    expect(firstBitDifference(ours, emb.f32())).toBe(-1);
    // ggml itself on the first 256K values (the whole table is 28M)
    const n = 1 << 18;
    const theirs = ggmlDequantize("q8_0", emb.stored!().subarray(0, (n / 32) * 34), n);
    expect(firstBitDifference(ours.subarray(0, n), theirs)).toBe(-1);
  }, 120_000);
});
