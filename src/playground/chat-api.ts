/**
 * The playground's client for POST /v1/chat/completions (streaming): sends the conversation with
 * the tier / latency-budget headers and the API key, reports the routing headers (X-Variant,
 * X-Predicted-Ms, Server-Timing) as soon as they arrive, each text delta as it is parsed, and the
 * end-of-answer facts (finish reason, the server's timings, token count). Every chunk is checked
 * with zod; anything else in the stream is an error, never a silently wrong answer.
 */
import * as z from "zod/mini";
import { parseServerTiming, type TimingMetric } from "./server-timing.ts";
import { sseData } from "./sse.ts";

export type Tier = "quality" | "balanced" | "speed";

export interface ChatTurn {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  messages: ChatTurn[];
  /** "auto": the best-quality variant that fits the budget. */
  tier: Tier | "auto";
  /** X-Latency-Budget-Ms, or null for none. */
  budgetMs: number | null;
  maxTokens: number;
  temperature: number;
  /** Sent as `Authorization: Bearer <key>` when set. */
  apiKey: string | null;
  signal: AbortSignal;
  /** Where the API is (default: this page's origin). */
  base?: string;
}

/** What the response headers say, known before the first token. */
export interface AnswerHead {
  variant: string | null;
  predictedMs: number | null;
  serverTiming: TimingMetric[];
}

/** What the end of the stream says. */
export interface AnswerEnd {
  finishReason: string | null;
  /** The server's own timings of this answer (shardlm's extension chunk), in ms. */
  timingMs: { load: number; prefill: number; decode: number } | null;
  budgetExhausted: boolean;
  completionTokens: number | null;
}

/** A non-2xx answer, with OpenAI's error message and code where the body had them. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const ErrorBody = z.object({
  error: z.object({ message: z.string(), code: z.optional(z.nullable(z.string())) }),
});

const Chunk = z.object({
  choices: z.optional(
    z.array(
      z.object({
        delta: z.optional(z.object({ content: z.optional(z.nullable(z.string())) })),
        finish_reason: z.optional(z.nullable(z.string())),
      }),
    ),
  ),
  usage: z.optional(z.nullable(z.object({ completion_tokens: z.number() }))),
  shardlm: z.optional(
    z.object({
      budget_exhausted: z.optional(z.boolean()),
      timing_ms: z.object({ load: z.number(), prefill: z.number(), decode: z.number() }),
    }),
  ),
  error: z.optional(z.object({ message: z.string(), code: z.optional(z.nullable(z.string())) })),
});

/** A non-2xx response as an ApiError (OpenAI's message and code where the body has them). */
export async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {}
  const parsed = ErrorBody.safeParse(body);
  if (parsed.success)
    return new ApiError(res.status, parsed.data.error.message, parsed.data.error.code ?? null);
  return new ApiError(res.status, `${res.status} ${res.statusText}`.trim(), null);
}

export async function streamChat(
  req: ChatRequest,
  on: { head(h: AnswerHead): void; text(delta: string): void },
): Promise<AnswerEnd> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (req.tier !== "auto") headers["X-Quality-Tier"] = req.tier;
  if (req.budgetMs !== null) headers["X-Latency-Budget-Ms"] = String(req.budgetMs);
  if (req.apiKey) headers.Authorization = `Bearer ${req.apiKey}`;
  const res = await fetch(new URL("/v1/chat/completions", req.base ?? location.origin), {
    method: "POST",
    headers,
    signal: req.signal,
    body: JSON.stringify({
      model: "shardlm",
      messages: req.messages,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok) throw await errorFrom(res);
  if (!res.body) throw new Error("the answer has no body");
  const predicted = Number(res.headers.get("X-Predicted-Ms"));
  on.head({
    variant: res.headers.get("X-Variant"),
    predictedMs: res.headers.has("X-Predicted-Ms") && Number.isFinite(predicted) ? predicted : null,
    serverTiming: parseServerTiming(res.headers.get("Server-Timing")),
  });

  const end: AnswerEnd = {
    finishReason: null,
    timingMs: null,
    budgetExhausted: false,
    completionTokens: null,
  };
  for await (const data of sseData(res.body)) {
    if (data === "[DONE]") return end;
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new Error(`the stream sent something that is not JSON: ${data.slice(0, 80)}`);
    }
    const chunk = Chunk.safeParse(json);
    if (!chunk.success) throw new Error(`the stream sent an unexpected chunk: ${data.slice(0, 80)}`);
    const c = chunk.data;
    if (c.error) throw new ApiError(500, c.error.message, c.error.code ?? null);
    const choice = c.choices?.[0];
    if (choice?.delta?.content) on.text(choice.delta.content);
    if (choice?.finish_reason) end.finishReason = choice.finish_reason;
    if (c.shardlm) {
      end.timingMs = c.shardlm.timing_ms;
      end.budgetExhausted = c.shardlm.budget_exhausted ?? false;
    }
    if (c.usage) end.completionTokens = c.usage.completion_tokens;
  }
  throw new Error("the stream ended before [DONE]");
}
