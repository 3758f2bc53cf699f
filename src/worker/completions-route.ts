/**
 * POST /v1/completions, OpenAI's legacy text completions: the prompt is plain text that the model
 * continues (no chat template; BOS as the tokenizer adds it; never parsed for control tokens),
 * answered as `text_completion` objects, JSON or SSE. Same chain and sampling as chat
 * (./chat-route.ts). Only a prompt string (or an array of one string) is served; token-id prompts,
 * several prompts, `echo`, `suffix` and `best_of` > 1 are refused by name. `logprobs` (0 to 5) comes
 * in the legacy format: tokens, token_logprobs, top_logprobs ({token text: logprob}) and
 * text_offset (characters, as code points, from the start of the prompt: OpenAI counts the
 * completion's offsets after the prompt).
 */
import { createFactory } from "hono/factory";
import { z } from "zod";
import type { AppEnv } from "./app-env.ts";
import { answer } from "./chat-route.ts";
import { badRequest } from "./errors.ts";
import { bodySizeLimit, parseJson, validJson } from "./request.ts";
import type { AnswerShape, TokenLogprobEntry } from "./respond.ts";
import { routingHeaders } from "./routing-headers.ts";
import { ModelName, SamplingFields, streamOptionsNeedStream } from "./schemas.ts";

/** OpenAI's default max_tokens for /v1/completions. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

const Prompt = z.union([z.string(), z.array(z.string()).length(1)], {
  error:
    "prompt must be a string or an array of one string (token-id prompts and several prompts are not supported)",
});

export const CompletionRequest = z
  .object({
    model: ModelName,
    prompt: Prompt,
    ...SamplingFields,
    /** Legacy log probabilities: this many alternatives per token (OpenAI's maximum is 5). */
    logprobs: z.number().int().min(0).max(5).nullish(),
    // Accepted at their neutral values only (refused by name otherwise, before this schema runs).
    echo: z.literal(false).nullish(),
    suffix: z.null().optional(),
    best_of: z.literal(1).nullish(),
  })
  .strict()
  .superRefine(streamOptionsNeedStream);
export type CompletionRequest = z.infer<typeof CompletionRequest>;

const REFUSED: [name: string, neutral: (v: unknown) => boolean, why: string][] = [
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

/** OpenAI's legacy Logprobs object. */
export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/**
 * Entries (chat format) in the legacy format; `offset` is where the first token starts, in code
 * points from the prompt's start, and is advanced past them.
 */
function legacyLogprobs(entries: TokenLogprobEntry[], offset: { at: number }): LegacyLogprobs {
  const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const e of entries) {
    out.tokens.push(e.token);
    out.token_logprobs.push(e.logprob);
    out.top_logprobs.push(Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob])));
    out.text_offset.push(offset.at);
    offset.at += [...e.token].length;
  }
  return out;
}

function textShape(promptChars: number) {
  return (id: string, created: number, model: string, fingerprint: string): AnswerShape => {
    const head = { id, object: "text_completion", created, model, system_fingerprint: fingerprint };
    // Per choice: where its next token starts (streamed pieces continue their choice's offsets).
    const offsets = new Map<number, { at: number }>();
    const offsetOf = (index: number) => {
      let o = offsets.get(index);
      if (!o) offsets.set(index, (o = { at: promptChars }));
      return o;
    };
    const choice = (index: number, text: string, finish: string | null, lp: TokenLogprobEntry[] | null) => ({
      text,
      index,
      logprobs: lp === null ? null : legacyLogprobs(lp, offsetOf(index)),
      finish_reason: finish,
    });
    return {
      whole: (choices) => ({
        ...head,
        choices: choices.map((c, i) => choice(i, c.text, c.finish, c.logprobs)),
      }),
      opening: () => null,
      piece: (index, text, lp) => ({ ...head, choices: [choice(index, text, null, lp)] }),
      closing: (index, finish) => ({ ...head, choices: [choice(index, "", finish, null)] }),
      usageOnly: () => ({ ...head, choices: [] }),
    };
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
      topLogprobs: body.logprobs ?? null,
      idPrefix: "cmpl",
      shape: textShape([...text].length),
    });
  },
);
