/** shardlm-ref: the plain-TypeScript fp32 reference forward pass (the oracle; slow, so a few tokens). */
import { ReferenceModel } from "../model/reference/index.ts";
import { type BenchOptions, type BenchRow, CpuMeter, type PackedShape, promptIds } from "./common.ts";
import { runOnce } from "./timing.ts";

export async function referenceRow(p: PackedShape, o: BenchOptions): Promise<BenchRow> {
  const c = p.model.config;
  const model = new ReferenceModel(p.model);
  const promptTokens = o.quick ? 4 : 8;
  const steps = o.quick ? 2 : 4;
  const prompt = promptIds(promptTokens, c.vocabSize);
  await runOnce(model, prompt.slice(0, 2), 1);
  const meter = new CpuMeter();
  const t = await meter.measure(() => runOnce(model, prompt, steps));
  let weightBytes = 0;
  for (const [name, tensor] of p.model.tensors) {
    if (name === "token_embd.weight" && !c.tiedEmbeddings) continue;
    weightBytes += tensor.shape.reduce((a, b) => a * b, 1) * 4;
  }
  return {
    engine: "shardlm-ref",
    runtime: "node (TS)",
    model_shape: p.shape,
    quant: "fp32",
    decode_tok_s: (steps * 1000) / t.decodeMs,
    prefill_tok_s: (promptTokens * 1000) / t.prefillMs,
    peak_mem_bytes: null,
    bytes_per_token: weightBytes,
    prompt_tokens: promptTokens,
    decode_tokens: steps,
    threads: 1,
    cpu_share: meter.share,
    note: `fp32 TypeScript reference, ${promptTokens}-token prompt and ${steps} steps, one run`,
  };
}
