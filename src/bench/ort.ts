/**
 * onnxruntime-web (wasm, 1 thread): com.microsoft MatMulNBits on the same packed int4 weights, for every
 * linear layer shape of the model, summed per token (layers x count + head). Matmuls only: no attention,
 * norms or graph overhead, so its tok/s is an upper bound for a full ORT model.
 */

import { type PackedInt4, quantizeRtn, toMatMulNBits } from "../format/int4.ts";
import { TensorNames } from "../format/model.ts";
import {
  type BenchOptions,
  type BenchRow,
  bestOf,
  blockLinears,
  CpuMeter,
  log,
  type PackedShape,
} from "./common.ts";
import { randn } from "./data.ts";
import { ortMatMulNBits } from "./ort-matmul.ts";

interface Linear {
  name: string;
  weights: PackedInt4;
  /** How many of these a token runs through. */
  count: number;
}

function linears(p: PackedShape): { list: Linear[]; headNote: string } {
  const c = p.table.config;
  const byName = new Map(p.packed.map((t) => [t.name, t.value]));
  const int4 = (name: string): PackedInt4 => {
    const v = byName.get(name);
    if (!v || v instanceof Float32Array || v.format !== "int4") throw new Error(`${name} is not int4`);
    return v;
  };
  const list: Linear[] = blockLinears(0).map((name) => ({ name, weights: int4(name), count: c.numLayers }));
  const headName = c.tiedEmbeddings ? TensorNames.tokenEmbedding : TensorNames.output;
  const headValue = byName.get(headName)!;
  if (!(headValue instanceof Float32Array) && headValue.format === "int4") {
    list.push({ name: "head", weights: headValue, count: 1 });
    return { list, headNote: "head: the same int4 weights" };
  }
  // Our head is int8 here; MatMulNBits is 4-bit only, so ORT gets the head re-quantized int4 g32.
  const [N, K] = p.model.tensors.get(headName)!.shape as [number, number];
  const head = quantizeRtn(p.model.tensors.get(headName)!.f32(), N, K, { groupSize: 32 });
  list.push({ name: "head", weights: head, count: 1 });
  return { list, headNote: "head re-quantized int4 g32 (MatMulNBits has no int8)" };
}

export async function ortRow(p: PackedShape, o: BenchOptions): Promise<BenchRow> {
  const { list, headNote } = linears(p);
  const M = o.promptTokens;
  let decodeMs = 0;
  let prefillMs = 0;
  let bytes = 0;
  const meter = new CpuMeter();
  for (const l of list) {
    const w = toMatMulNBits(l.weights);
    bytes += l.count * (w.B.byteLength + w.scales.byteLength + (w.zeroPoints?.byteLength ?? 0));
    const mm = await ortMatMulNBits(w);
    try {
      const x1 = randn(w.K, 3);
      const xM = randn(M * w.K, 5);
      await mm.run(x1, 1);
      await mm.run(xM, M);
      const time = async (x: Float32Array, m: number) => {
        const t0 = performance.now();
        await mm.run(x, m);
        return performance.now() - t0;
      };
      const one = await meter.measure(() => bestOf(o.repeats, () => time(x1, 1)));
      const many = await meter.measure(() => bestOf(Math.max(1, o.repeats - 1), () => time(xM, M)));
      decodeMs += l.count * one;
      prefillMs += l.count * many;
      log(
        `    ORT MatMulNBits ${w.N}x${w.K} x${l.count}: ${one.toFixed(2)} ms (M=1), ${many.toFixed(1)} ms (M=${M})`,
      );
    } finally {
      await mm.release();
    }
  }
  return {
    engine: "onnxruntime-web",
    runtime: "node (wasm)",
    model_shape: p.shape,
    quant: "int4-g32",
    decode_tok_s: 1000 / decodeMs,
    prefill_tok_s: (M * 1000) / prefillMs,
    peak_mem_bytes: null,
    bytes_per_token: bytes,
    prompt_tokens: M,
    decode_tokens: 1,
    threads: 1,
    cpu_share: meter.share,
    activations: "f32",
    note: `matmuls only (MatMulNBits per linear shape x count, summed; ${headNote}; fp32 scales): an upper bound on ORT tok/s`,
  };
}
