/**
 * POST /v1/completions, OpenAI's legacy text completions: the prompt is plain text that the model
 * continues (no chat template; BOS as the tokenizer adds it; never parsed for control tokens),
 * answered as `text_completion` objects, JSON or SSE. Same chain and sampling as chat
 * (./chat-route.ts). Only a prompt string (or an array of one string) is served; token-id prompts,
 * several prompts, `echo`, `suffix`, `best_of` > 1 and `logprobs` are refused by name.
 */
import { createFactory } from "hono/factory";
import { z } from "zod";
import type { AppEnv } from "./app-env.ts";
import { answer } from "./chat-route.ts";
import { badRequest } from "./errors.ts";
import { bodySizeLimit, parseJson, validJson } from "./request.ts";
import type { AnswerShape } from "./respond.ts";
import { routingHeaders } from "./routing-headers.ts";
import { Stop } from "./schemas.ts";

/** OpenAI's default max_tokens for /v1/completions. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

const Prompt = z.union([z.string(), z.array(z.string()).length(1)], {
  error:
    "prompt must be a string or an array of one string (token-id prompts and several prompts are not supported)",
});

export const CompletionRequest = z
  .object({
    model: z.string().min(1),
    prompt: Prompt,
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    /** Not OpenAI's: top-k sampling (0 = off), as in chat. */
    top_k: z.number().int().min(0).nullish(),
    max_tokens: z.number().int().min(1).nullish(),
    stop: Stop.nullish(),
    seed: z.number().int().nullish(),
    frequency_penalty: z.number().min(-2).max(2).nullish(),
    presence_penalty: z.number().min(-2).max(2).nullish(),
    logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
    n: z.literal(1, { error: "only n = 1 is supported" }).nullish(),
    user: z.string().nullish(),
    // Accepted at their neutral values only (refused by name otherwise, before this schema runs).
    echo: z.literal(false).nullish(),
    suffix: z.null().optional(),
    best_of: z.literal(1).nullish(),
    logprobs: z.null().optional(),
  })
  .strict();
export type CompletionRequest = z.infer<typeof CompletionRequest>;

const REFUSED: [name: string, neutral: (v: unknown) => boolean, why: string][] = [
  [
    "logprobs",
    (v) => v === null,
    "log probabilities of legacy completions are not returned (chat completions have them)",
  ],
  ["echo", (v) => v === false || v === null, "echoing the prompt is not implemented"],
  ["suffix", (v) => v === null, "insertion (suffix) needs a fill-in-the-middle model"],
  ["best_of", (v) => v === 1 || v === null, "best_of > 1 is not implemented"],
];

function refuseLegacyUnsupported(body: unknown): void {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return;
  for (const [name, neutral, why] of REFUSED) {
    if (!(name in body) || neutral((body as Record<string, unknown>)[name])) continue;
    throw badRequest(
      `Unsupported parameter: '${name}' is not supported by shardlm: ${why}.`,
      name,
      "unsupported_parameter",
    );
  }
}

function textShape(id: string, created: number, model: string, fingerprint: string): AnswerShape {
  const head = { id, object: "text_completion", created, model, system_fingerprint: fingerprint };
  const choice = (text: string, finish: string | null) => ({
    text,
    index: 0,
    logprobs: null,
    finish_reason: finish,
  });
  return {
    whole: (text, finish) => ({ ...head, choices: [choice(text, finish)] }),
    opening: () => null,
    piece: (text) => ({ ...head, choices: [choice(text, null)] }),
    closing: (finish) => ({ ...head, choices: [choice("", finish)] }),
    usageOnly: () => ({ ...head, choices: [] }),
  };
}

export const completions = createFactory<AppEnv>().createHandlers(
  bodySizeLimit,
  parseJson,
  async (c, next) => {
    refuseLegacyUnsupported(await c.req.json());
    await next();
  },
  validJson(CompletionRequest),
  routingHeaders,
  (c) => {
    const body = c.req.valid("json");
    const text = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
    return answer(c, {
      body: { ...body, max_tokens: body.max_tokens ?? COMPLETIONS_DEFAULT_MAX_TOKENS },
      render: () => ({ parts: [{ text, template: false }] }),
      promptParam: "prompt",
      topLogprobs: null,
      idPrefix: "cmpl",
      shape: textShape,
    });
  },
);
