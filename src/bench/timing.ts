/** Times prefill and greedy decode on any LogitsModel (our wasm engine, the fp32 reference). */
import type { InferenceState, LogitsModel } from "../runtime/generate.ts";
import { argmax, CpuMeter } from "./common.ts";

export interface EngineTiming {
  /** Best prefill time for the whole prompt (ms). */
  prefillMs: number;
  /** Best time for `steps` greedy decode steps (ms). */
  decodeMs: number;
  /** Logits after the prompt (last timed run). */
  promptLogits: Float32Array;
  /** CPU time / wall time over the timed runs. */
  cpuShare: number | null;
}

/** One prefill + `steps` greedy forwards on a fresh state; times both parts. */
export async function runOnce<S extends InferenceState>(
  model: LogitsModel<S>,
  prompt: number[],
  steps: number,
): Promise<Omit<EngineTiming, "cpuShare">> {
  const state = model.newState(prompt.length + steps);
  const t0 = performance.now();
  const promptLogits = await model.prefill(state, prompt);
  const t1 = performance.now();
  let logits = promptLogits;
  for (let i = 0; i < steps; i++) logits = await model.forward(state, argmax(logits));
  const t2 = performance.now();
  return { prefillMs: t1 - t0, decodeMs: t2 - t1, promptLogits };
}

/** Warm-up run, then the best prefill and the best decode over `repeats` runs. */
export async function timeModel<S extends InferenceState>(
  model: LogitsModel<S>,
  prompt: number[],
  steps: number,
  repeats: number,
  warmupSteps = Math.min(steps, 8),
): Promise<EngineTiming> {
  await runOnce(model, prompt, warmupSteps);
  const meter = new CpuMeter();
  const best = await meter.measure(() => runOnce(model, prompt, steps));
  for (let r = 1; r < repeats; r++) {
    const t = await meter.measure(() => runOnce(model, prompt, steps));
    best.prefillMs = Math.min(best.prefillMs, t.prefillMs);
    best.decodeMs = Math.min(best.decodeMs, t.decodeMs);
  }
  return { ...best, cpuShare: meter.share };
}
