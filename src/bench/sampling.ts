/**
 * What the sampler costs per token (src/runtime/sampler.ts, plain JS in every runtime): greedy,
 * temperature, top-p and top-k over one real logits vector of the model, next to a decode step.
 * Bench-only; printed by `npm run bench -- --real`.
 */
import { createSampler, type SamplerOptionsInput } from "../runtime/sampler.ts";
import type { WasmEngine } from "../runtime/wasm/engine.ts";
import { promptIds } from "./common.ts";
import { median } from "./kernel-table.ts";

export interface SamplingCost {
  name: string;
  options: SamplerOptionsInput;
  /** Median over rounds of the mean ms per `sample` call. */
  msPerToken: number;
}

const SETTINGS: { name: string; options: SamplerOptionsInput }[] = [
  { name: "greedy (temperature 0)", options: { temperature: 0 } },
  { name: "temperature 1 (OpenAI's default)", options: { temperature: 1, seed: 1 } },
  { name: "temperature 0.7, top_p 0.9", options: { temperature: 0.7, topP: 0.9, seed: 1 } },
  {
    name: "temperature 0.7, top_k 40 (llama.cpp's default k)",
    options: { temperature: 0.7, topK: 40, seed: 1 },
  },
];

/** Times each SETTINGS sampler on the logits after a short prompt (`calls` per round, 5 rounds). */
export function samplingCosts(engine: WasmEngine, vocab: number, calls = 100): SamplingCost[] {
  const state = engine.newState(16);
  const logits = engine.prefill(state, promptIds(8, vocab));
  return SETTINGS.map(({ name, options }) => {
    const sampler = createSampler(options);
    for (let i = 0; i < 10; i++) sampler.sample(logits); // warm-up
    const rounds: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) sampler.sample(logits);
      rounds.push((performance.now() - t0) / calls);
    }
    return { name, options, msPerToken: median(rounds) };
  });
}
