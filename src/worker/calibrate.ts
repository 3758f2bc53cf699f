/**
 * Feeding a finished generation's timings back to the cost model, only where the request's clock
 * could measure them (../runtime/clock.ts): prefill and decode are CPU work, so they count only on
 * a clock that advances during CPU work (probed once per isolate, and given up for good the first
 * time an interval of substantial predicted work reads 0 ms). Loading spans R2 reads (I/O), which
 * any clock measures; see observeLoad.
 */
import type { Manifest } from "../format/manifest.ts";
import type { CompletionResult } from "../runtime/chat.ts";
import type { Clock } from "../runtime/clock.ts";
import { decodeWorkTokens, type Prediction, prefillWorkTokens } from "../runtime/cost-model.ts";
import type { Services } from "./services.ts";

/** Which phases fed the model (for tests and logs). */
export interface Fed {
  prefill: boolean;
  decode: boolean;
}

export function observeGeneration(
  s: Pick<Services, "cost" | "clockTrust">,
  clock: Clock,
  m: Manifest,
  prediction: Prediction,
  promptTokens: number,
  r: CompletionResult,
): Fed {
  const fed = { prefill: false, decode: false };
  if (!s.clockTrust.cpuMeasurable(clock)) return fed;
  if (r.completionTokens >= 1 && s.clockTrust.check(r.prefillMs, prediction.prefillMs))
    fed.prefill = s.cost.observe(
      m,
      "prefill",
      r.prefillMs,
      prefillWorkTokens(m.speed, promptTokens, r.cachedTokens ?? 0),
    );
  // The decode steps ran at positions P.. (position-aware work, as predicted: decodeWorkTokens).
  const steps = r.completionTokens - 1;
  const work = decodeWorkTokens(m.speed, promptTokens, steps);
  if (steps > 0 && s.clockTrust.check(r.decodeMs, work * prediction.decodeMsPerToken))
    fed.decode = s.cost.observe(m, "decode", r.decodeMs, work);
  return fed;
}

/** A load's interval (awaited R2 reads throughout) feeds the load cost when it read more than 0. */
export function observeLoad(s: Pick<Services, "cost">, m: Manifest, loadMs: number): boolean {
  return s.cost.observe(m, "load", loadMs, m.weights.totalBytes / 1e6);
}
