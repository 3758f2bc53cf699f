/**
 * WebGPU engine decode / prefill speed on this machine's adapter (lavapipe on GPU-less boxes: CPU
 * Vulkan, slow but honest), through benchWebgpuDecode (src/bench/webgpu-engine.ts), which the main
 * bench (scripts/bench.ts) can call for `shardlm-webgpu` rows.
 *
 *   npx tsx scripts/bench-webgpu.ts [stories260K|stories15M|stories110M|SmolLM2-135M ...]
 *     [--prompt N] [--decode N] [--repeats N] [--plain] [--json]
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { benchWebgpuDecode } from "../src/bench/webgpu-engine.ts";
import { packWeights, quantizeModelRtn } from "../src/format/pack.ts";
import { requestNodeDevice } from "../src/kernels/webgpu/node.ts";
import { loadModel } from "../src/model/import/index.ts";
import { MODEL_SHAPES, type ModelShape, syntheticModel } from "../src/model/synthetic.ts";

const root = resolve(fileURLToPath(import.meta.url), "../..");
const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const valueArgs = new Set(["--prompt", "--decode", "--repeats"]);
const shapes = args.filter((a, i) => !a.startsWith("--") && !valueArgs.has(args[i - 1] ?? ""));
const promptTokens = opt("--prompt", 32);
const decodeTokens = opt("--decode", 32);
const repeats = opt("--repeats", 1);
const json = args.includes("--json");

const device = await requestNodeDevice(args.includes("--plain") ? { f16: false, subgroups: false } : {});
if (!device) {
  console.error("no WebGPU adapter (run scripts/ci-gpu-setup.sh)");
  process.exit(1);
}
try {
  for (const shape of shapes.length > 0 ? shapes : ["stories260K", "stories15M"]) {
    const t0 = performance.now();
    const model =
      shape === "stories260K"
        ? await loadModel(resolve(root, "../shared/models/stories260K.gguf"))
        : MODEL_SHAPES.includes(shape as ModelShape)
          ? syntheticModel(shape as ModelShape)
          : null;
    if (!model) throw new Error(`unknown shape ${shape} (stories260K, ${MODEL_SHAPES.join(", ")})`);
    const { table, data } = packWeights(model, quantizeModelRtn(model, { groupSize: 32 }));
    const packMs = performance.now() - t0;
    const r = await benchWebgpuDecode(table, data, { promptTokens, decodeTokens, repeats, device });
    if (json)
      console.log(JSON.stringify({ engine: "shardlm-webgpu", model_shape: shape, quant: "int4-g32", ...r }));
    else {
      console.log(
        `${shape}: decode ${r.decode_tok_s.toFixed(1)} tok/s, prefill ${r.prefill_tok_s.toFixed(1)} tok/s ` +
          `(${r.prompt_tokens}+${r.decode_tokens} tokens, ${r.dispatches_per_token} dispatches/token, ` +
          `load ${r.load_ms.toFixed(0)} ms, pack ${packMs.toFixed(0)} ms, GPU ${(r.gpu_bytes / 1e6).toFixed(1)} MB) ` +
          `on ${r.adapter} [${r.backend}; ${r.features}]`,
      );
    }
  }
} finally {
  device.destroy();
}
