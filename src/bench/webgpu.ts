/**
 * shardlm-webgpu: the WGSL engine on the same packed weights, through Dawn for Node (`webgpu`
 * package). Without a GPU that is lavapipe (Mesa's CPU Vulkan driver): honest, and slow; the adapter
 * is named in the row so nobody mistakes it for a GPU number.
 */

import type { BenchOptions, BenchRow, PackedShape } from "./common.ts";
import { benchWebgpuDecode } from "./webgpu-engine.ts";

export async function webgpuRow(p: PackedShape, o: BenchOptions): Promise<BenchRow | null> {
  let r: Awaited<ReturnType<typeof benchWebgpuDecode>>;
  try {
    r = await benchWebgpuDecode(p.table, p.data, {
      promptTokens: o.promptTokens,
      decodeTokens: o.quick ? 8 : 16,
      repeats: 1,
    });
  } catch (e) {
    process.stderr.write(`    shardlm-webgpu skipped: ${(e as Error).message}\n`);
    return null;
  }
  return {
    engine: "shardlm-webgpu",
    runtime: `node + Dawn (${r.backend})`,
    model_shape: p.shape,
    quant: "int4-g32",
    decode_tok_s: r.decode_tok_s,
    prefill_tok_s: r.prefill_tok_s,
    peak_mem_bytes: r.gpu_bytes,
    bytes_per_token: p.bytesPerToken,
    prompt_tokens: r.prompt_tokens,
    decode_tokens: r.decode_tokens,
    threads: 1,
    cpu_share: null,
    note: `WebGPU adapter: ${r.adapter}; ${r.dispatches_per_token} dispatches per token`,
  };
}
