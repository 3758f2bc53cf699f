/**
 * POST /v1/chat/completions, as a chain: body size limit → JSON parse → zod validation → routing
 * headers → handler (model choice, prompt plan, queue) → JSON or SSE answer (./respond.ts).
 */
import type { Context } from "hono";
import { createFactory } from "hono/factory";
import type { z } from "zod";
import { type RenderedPrompt, type ResponseFormat, renderPrompt } from "../runtime/chat.ts";
import { maskMsPerToken } from "../runtime/json-mask.ts";
import { compileSchema, REFUSED_KEYWORDS, SchemaError } from "../runtime/json-schema.ts";
import { samplingMsPerToken } from "../runtime/sampler.ts";
import type { Tokenizer } from "../runtime/tokenizer/index.ts";
import type { AppEnv } from "./app-env.ts";
import { planPrompt, requestContext } from "./chat-prompt.ts";
import { ApiError, badRequest } from "./errors.ts";
import { bodySizeLimit, parseJson, validJson } from "./request.ts";
import {
  type AnswerShape,
  type Generation,
  respondJson,
  respondStream,
  type TokenLogprobEntry,
} from "./respond.ts";
import { type RoutingHeaders, routingHeaders } from "./routing-headers.ts";
import { ChatCompletionRequest } from "./schemas.ts";
import { tokenizerFor } from "./tokenizers.ts";
import { refuseUnsupported } from "./unsupported.ts";
import { chooseModel, serve } from "./variant-choice.ts";

/**
 * Sampling and stopping options from an OpenAI request body (chat or legacy completions). Throws a
 * 400 naming logit_bias when a key is not a token id of `tok`'s vocabulary.
 */
export function samplingOptions(
  body: {
    temperature?: number | null;
    top_p?: number | null;
    top_k?: number | null;
    seed?: number | null;
    stop?: string | string[] | null;
    presence_penalty?: number | null;
    frequency_penalty?: number | null;
    logit_bias?: Record<string, number> | null;
  },
  tok: Tokenizer,
) {
  const logitBias: Record<string, number> = {};
  for (const [key, v] of Object.entries(body.logit_bias ?? {})) {
    const id = /^\d{1,9}$/.test(key) ? Number(key) : Number.NaN;
    if (!(id < tok.vocabSize)) {
      throw badRequest(
        `logit_bias: '${key.slice(0, 40)}' is not a token id of this model's vocabulary (integers 0 to ${tok.vocabSize - 1}).`,
        "logit_bias",
      );
    }
    logitBias[String(id)] = (logitBias[String(id)] ?? 0) + v;
  }
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
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    logitBias,
    // An empty stop string would end every answer before it starts: it is ignored.
    stop: stops.filter((s) => s !== ""),
  };
}

const newId = (prefix: string) => `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;

function chatShape(id: string, created: number, model: string, fingerprint: string): AnswerShape {
  const head = { id, object: "chat.completion.chunk", created, model, system_fingerprint: fingerprint };
  const chunk = (index: number, delta: object, finish: string | null, logprobs: object | null = null) => ({
    ...head,
    choices: [{ index, delta, logprobs, finish_reason: finish }],
  });
  const lp = (content: TokenLogprobEntry[] | null) => (content === null ? null : { content, refusal: null });
  return {
    whole: (choices) => ({
      id,
      object: "chat.completion",
      created,
      model,
      system_fingerprint: fingerprint,
      choices: choices.map((c, index) => ({
        index,
        message: { role: "assistant", content: c.text, refusal: null },
        logprobs: lp(c.logprobs),
        finish_reason: c.finish,
      })),
    }),
    opening: (index) => chunk(index, { role: "assistant", content: "" }, null),
    piece: (index, text, logprobs) => chunk(index, { content: text }, null, lp(logprobs)),
    closing: (index, finish) => chunk(index, {}, finish),
    usageOnly: () => ({ ...head, choices: [] }),
  };
}

/** What an endpoint hands to `answer`: its validated body, prompt and answer shape. */
export interface AnswerRequest {
  body: Parameters<typeof samplingOptions>[0] & {
    model: string;
    stream?: boolean | null;
    stream_options?: { include_usage?: boolean } | null;
    max_tokens?: number | null;
    max_completion_tokens?: number | null;
    n?: number | null;
  };
  /** The prompt, rendered for the deployment's tokenizer and chat template. */
  render: (tok: Tokenizer, chatTemplate: string | null) => RenderedPrompt;
  /** The request field holding the prompt (named by context-length errors). */
  promptParam: string;
  /** null = no log probabilities; else how many alternatives per token. */
  topLogprobs: number | null;
  responseFormat?: ResponseFormat;
  idPrefix: string;
  shape: (id: string, created: number, model: string, fingerprint: string) => AnswerShape;
}

/**
 * The shared body of /v1/chat/completions and /v1/completions: model choice, prompt plan, sampling
 * options (all checked before a variant is taken: a 400 after serve() would hold its queue), then
 * the queue and a JSON or SSE answer.
 */
export async function answer(c: Context<AppEnv>, req: AnswerRequest): Promise<Response> {
  const { body } = req;
  // Validated by the routingHeaders middleware both endpoints run.
  const headers = c.req.valid("header" as never) as z.output<typeof RoutingHeaders>;
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
  const sampling = samplingOptions(body, tokenizer);
  const useCompletion = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null;
  const { prompt, maxTokens } = planPrompt(
    req.render(tokenizer, first.model.chatTemplate),
    tokenizer,
    requestContext(live.variants, choice.pinned, (m) => services.engines.contextFor(m)),
    {
      value: body.max_completion_tokens ?? body.max_tokens ?? null,
      param: useCompletion ? "max_completion_tokens" : "max_tokens",
    },
    req.promptParam,
  );
  const budgetMs = headers["x-latency-budget-ms"];
  const served = await serve(services, live, choice, {
    budgetMs,
    prompt,
    maxTokens,
    choices: body.n ?? 1,
    extraMsPerToken:
      samplingMsPerToken(tokenizer.vocabSize, sampling) +
      ((req.responseFormat ?? "text") === "text" ? 0 : maskMsPerToken(tokenizer.vocabSize)),
    signal: c.req.raw.signal,
    clock,
    arrival,
    waitForTurn: !body.stream, // a stream waits in its body, watching its client (./respond.ts)
  });
  // Gone while queued: nobody reads the answer (nginx's 499, "client closed request").
  if (served === null) return new Response(null, { status: 499 });

  const model = served.manifest.variant;
  const fingerprint = `shardlm-${live.manifestIds.get(model)!.slice(0, 12)}`;
  const shape = req.shape(newId(req.idPrefix), Math.floor(arrival / 1000), model, fingerprint);
  const g: Generation = {
    served,
    prompt,
    options: {
      ...sampling,
      topLogprobs: req.topLogprobs,
      responseFormat: req.responseFormat ?? "text",
    },
    includeUsage: body.stream_options?.include_usage === true,
    choices: body.n ?? 1,
  };
  return body.stream ? respondStream(c, services, g, shape) : respondJson(c, services, g, shape);
}

/** The request's response_format, its schema compiled; a schema outside the subset is a 400 naming response_format. */
function responseFormatOf(f: z.output<typeof ChatCompletionRequest>["response_format"]): ResponseFormat {
  if (!f || f.type === "text") return "text";
  if (f.type === "json_object") return "json_object";
  try {
    return { jsonSchema: compileSchema(f.json_schema.schema) };
  } catch (e) {
    if (!(e instanceof SchemaError)) throw e;
    throw badRequest(
      `Invalid schema for response_format '${f.json_schema.name}': ${e.message}. Supported: the subset the README lists (type, properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, local $ref); not supported: ${REFUSED_KEYWORDS.join(", ")}.`,
      "response_format",
      "invalid_json_schema",
    );
  }
}

export const chatCompletions = createFactory<AppEnv>().createHandlers(
  bodySizeLimit,
  parseJson,
  refuseUnsupported,
  validJson(ChatCompletionRequest),
  routingHeaders,
  (c) => {
    const body = c.req.valid("json");
    if (body.logprobs !== true && (body.top_logprobs ?? 0) > 0) {
      throw badRequest("top_logprobs requires logprobs to be true.", "top_logprobs");
    }
    const responseFormat = responseFormatOf(body.response_format);
    // The shortest answer, one token per character at worst (what the mask's closing counts).
    const shortest =
      responseFormat === "text"
        ? ""
        : responseFormat === "json_object"
          ? "{}"
          : responseFormat.jsonSchema.minText[responseFormat.jsonSchema.root.id]!;
    const limit = body.max_completion_tokens ?? body.max_tokens;
    if (limit !== null && limit !== undefined && limit < shortest.length) {
      // Not "at least N tokens": the answer may take fewer (SmolLM2 writes "{}" as one token); the
      // mask reserves one token per character because that is what it can always close in.
      const param = body.max_completion_tokens ? "max_completion_tokens" : "max_tokens";
      throw badRequest(
        `response_format ${JSON.stringify(body.response_format?.type)} needs ${param} of at least ${shortest.length}: one token per character of its shortest answer (${shortest.slice(0, 200)}), so that the answer can always be closed.`,
        param,
      );
    }
    return answer(c, {
      body,
      render: (tok, template) => renderPrompt(template, body.messages, tok),
      promptParam: "messages",
      topLogprobs: body.logprobs === true ? (body.top_logprobs ?? 0) : null,
      responseFormat,
      idPrefix: "chatcmpl",
      shape: chatShape,
    });
  },
);
