/**
 * POST /v1/chat/completions, as a chain: body size limit → JSON parse → zod validation → routing
 * headers → handler (model choice, prompt plan, queue) → JSON or SSE answer (./respond.ts).
 */
import { createFactory } from "hono/factory";
import { renderPrompt } from "../runtime/chat.ts";
import type { AppEnv } from "./app-env.ts";
import { contextOf, planPrompt } from "./chat-prompt.ts";
import { ApiError } from "./errors.ts";
import { bodySizeLimit, parseJson, validJson } from "./request.ts";
import { type AnswerShape, type Generation, respondJson, respondStream } from "./respond.ts";
import { routingHeaders } from "./routing-headers.ts";
import { ChatCompletionRequest } from "./schemas.ts";
import { tokenizerFor } from "./tokenizers.ts";
import { refuseUnsupported } from "./unsupported.ts";
import { chooseModel, serve } from "./variant-choice.ts";

/** Sampling and stopping options from an OpenAI request body (chat or legacy completions). */
export function samplingOptions(body: {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
}) {
  const stops =
    body.stop === undefined || body.stop === null
      ? []
      : typeof body.stop === "string"
        ? [body.stop]
        : body.stop;
  return {
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    seed: body.seed === null || body.seed === undefined ? undefined : body.seed >>> 0,
    // An empty stop string would end every answer before it starts: it is ignored.
    stop: stops.filter((s) => s !== ""),
  };
}

const newId = (prefix: string) => `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;

function chatShape(id: string, created: number, model: string, fingerprint: string): AnswerShape {
  const head = { id, object: "chat.completion.chunk", created, model, system_fingerprint: fingerprint };
  const chunk = (delta: object, finish: string | null) => ({
    ...head,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  return {
    whole: (text, finish) => ({
      id,
      object: "chat.completion",
      created,
      model,
      system_fingerprint: fingerprint,
      choices: [
        { index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: finish },
      ],
    }),
    opening: () => chunk({ role: "assistant", content: "" }, null),
    piece: (text) => chunk({ content: text }, null),
    closing: (finish) => chunk({}, finish),
    usageOnly: () => ({ ...head, choices: [] }),
  };
}

export const chatCompletions = createFactory<AppEnv>().createHandlers(
  bodySizeLimit,
  parseJson,
  refuseUnsupported,
  validJson(ChatCompletionRequest),
  routingHeaders,
  async (c) => {
    const started = Date.now();
    const body = c.req.valid("json");
    const headers = c.req.valid("header");
    const services = c.var.services;
    const clock = services.clock();
    const arrival = clock.now();
    const live = await services.live.get();
    if (live.variants.length === 0)
      throw new ApiError(503, "no variants are live", "server_error", "no_variants");
    const choice = chooseModel(body.model, headers["x-quality-tier"], live);

    // Every live variant of one deployment shares the tokenizer and template of its source model.
    const first = live.variants[0]!;
    const tokenizer = await tokenizerFor(services.bucket, first.model.tokenizer.sha256);
    const useCompletion = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null;
    const { prompt, maxTokens } = planPrompt(
      renderPrompt(first.model.chatTemplate, body.messages, tokenizer),
      tokenizer,
      contextOf(live.variants, services.engineContext),
      {
        value: body.max_completion_tokens ?? body.max_tokens ?? null,
        param: useCompletion ? "max_completion_tokens" : "max_tokens",
      },
    );
    const budgetMs = headers["x-latency-budget-ms"];
    const served = await serve(services, live, choice, {
      budgetMs,
      promptTokens: prompt.length,
      maxTokens,
      signal: c.req.raw.signal,
      clock,
      arrival,
      waitForTurn: !body.stream, // a stream waits in its body, watching its client (./respond.ts)
    });
    // Gone while queued: nobody reads the answer (nginx's 499, "client closed request").
    if (served === null) return new Response(null, { status: 499 });

    const model = served.manifest.variant;
    const fingerprint = `shardlm-${live.manifestIds.get(model)!.slice(0, 12)}`;
    const shape = chatShape(newId("chatcmpl"), Math.floor(started / 1000), model, fingerprint);
    const g: Generation = {
      served,
      prompt,
      options: samplingOptions(body),
      includeUsage: body.stream_options?.include_usage === true,
    };
    return body.stream ? respondStream(c, services, g, shape) : respondJson(c, services, g, shape);
  },
);
