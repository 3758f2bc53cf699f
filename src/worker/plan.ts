/**
 * A request's plan: how much work the chosen variant does, decided up front from calibrated
 * per-token costs (../runtime/cost-model.ts) and enforced by counting tokens, never by reading a
 * clock (deployed Workers freeze it during CPU work: ../runtime/clock.ts).
 *
 * - Latency budget (X-Latency-Budget-Ms): decode tokens = what fits in the budget after the time
 *   already spent (queued, measured across I/O, so at worst under-counted), the predicted load and
 *   the predicted prefill; at least 1. Fewer than asked: the answer ends there with finish_reason
 *   "length" and X-Budget-Exhausted: true.
 * - CPU limit (wrangler.toml [limits] cpu_ms, told to the Worker as CPU_LIMIT_MS): the platform
 *   kills a request past it and the whole answer is lost. Decode tokens are capped so the
 *   predicted CPU time (load + prefill + decode, all counted as CPU: an upper bound) stays within
 *   CPU_SAFETY of the limit (header X-Max-Tokens-Capped: cpu); a request whose load and prefill
 *   alone would pass it is refused before any generation (400, code "cpu_limit_exceeded").
 * - n choices (OpenAI's `n`) run one after another: each prefills and decodes, so the fixed cost
 *   counts n prefills and the tokens that fit are shared out evenly (maxDecodeTokens is per choice).
 * - Constrained decoding (response_format json_object/json_schema) adds the mask's estimated cost
 *   to every decode step (`extraMsPerToken`).
 */
import type { Manifest } from "../format/manifest.ts";
import { decodeStepsWithin, decodeWorkTokens, type Prediction } from "../runtime/cost-model.ts";
import { ApiError } from "./errors.ts";

/** Share of the CPU limit a plan may use: the rest absorbs prediction error. */
export const CPU_SAFETY = 0.8;

export interface Plan {
  manifest: Manifest;
  prediction: Prediction;
  prefillTokens: number;
  /** Most tokens the answer may have; the generation loop stops there. */
  maxDecodeTokens: number;
  /** What set maxDecodeTokens: the request's max_tokens (or the context), the budget or the CPU limit. */
  limitedBy: "request" | "budget" | "cpu";
  /** Speculative decoding for this request (not implemented yet: always false). */
  speculation: boolean;
  /** Predicted ms of the planned work (load + prefill + maxDecodeTokens decode steps). */
  predictedMs: number;
  /** Time already spent on the request when the plan was made (PlanInput.spentMs), ms. */
  spentMs: number;
}

export interface PlanInput {
  manifest: Manifest;
  /** The router's prediction for the request as asked (maxTokens decode steps). */
  prediction: Prediction;
  promptTokens: number;
  /** max_tokens as asked, already capped by the context. */
  maxTokens: number;
  budgetMs: number | null;
  /** Time spent on this request before generation (queueing), as measured; 0 when unknown. */
  spentMs: number;
  /** The Worker's CPU limit per request, ms, or null for none. */
  cpuLimitMs: number | null;
  /** Choices generated one after another (OpenAI's n); default 1. */
  choices?: number;
  /** CPU each decode step adds beyond the model's (a constrained-decoding mask), ms; default 0. */
  extraMsPerToken?: number;
}

export function planRequest(p: PlanInput): Plan {
  const n = p.choices ?? 1;
  const fixedMs = p.prediction.loadMs + n * p.prediction.prefillMs;
  const speed = p.manifest.speed;
  const extra = p.extraMsPerToken ?? 0;
  // k tokens in each of n choices: n x k decode steps at positions P..P+k-1.
  const decodeMs = (k: number) =>
    n * (p.prediction.decodeMsPerToken * decodeWorkTokens(speed, p.promptTokens, k) + extra * k);
  const stepsWithin = (ms: number) =>
    decodeStepsWithin(speed, p.promptTokens, ms / n, p.prediction.decodeMsPerToken, extra);
  let maxDecodeTokens = p.maxTokens;
  let limitedBy: Plan["limitedBy"] = "request";
  if (p.cpuLimitMs !== null) {
    const cpuBudget = p.cpuLimitMs * CPU_SAFETY;
    if (fixedMs + decodeMs(1) > cpuBudget) {
      throw new ApiError(
        400,
        `This request is predicted to need ${Math.round(fixedMs + decodeMs(1))} ms of CPU before its first token${n > 1 ? ` in each of its ${n} choices` : ""} on ${p.manifest.variant}; ` +
          `the limit per request is ${p.cpuLimitMs} ms. Send a shorter prompt${n > 1 ? ", fewer choices (n)" : ""} or pick a faster variant.`,
        "invalid_request_error",
        "cpu_limit_exceeded",
        "messages",
      );
    }
    const fit = stepsWithin(cpuBudget - fixedMs);
    if (fit < maxDecodeTokens) {
      maxDecodeTokens = fit;
      limitedBy = "cpu";
    }
  }
  if (p.budgetMs !== null) {
    const fit = Math.max(1, stepsWithin(p.budgetMs - p.spentMs - fixedMs));
    // Over the budget even at the 1 token every answer gets: the budget is exhausted too.
    if (fit < maxDecodeTokens || p.spentMs + fixedMs + decodeMs(maxDecodeTokens) > p.budgetMs) {
      maxDecodeTokens = Math.min(fit, maxDecodeTokens);
      limitedBy = "budget";
    }
  }
  return {
    manifest: p.manifest,
    prediction: p.prediction,
    prefillTokens: p.promptTokens,
    maxDecodeTokens,
    limitedBy,
    speculation: false,
    predictedMs: fixedMs + decodeMs(maxDecodeTokens),
    spentMs: p.spentMs,
  };
}
