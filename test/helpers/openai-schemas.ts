/**
 * Zod schemas of OpenAI's response objects (chat.completion, chat.completion.chunk, text_completion,
 * model, list, error), as the OpenAI API reference describes them; shared by the conformance and
 * legacy-completions tests. Extra fields are allowed (OpenAI's own objects grow); error bodies are strict.
 */
import { z } from "zod";

export const Usage = z.object({
  prompt_tokens: z.number().int().min(0),
  completion_tokens: z.number().int().min(0),
  total_tokens: z.number().int().min(0),
  /** Prompt tokens served from a cache (OpenAI's prompt caching; ours: the prefix cache). */
  prompt_tokens_details: z.object({ cached_tokens: z.number().int().min(0) }).optional(),
});
export const TopLogprob = z.object({
  token: z.string(),
  logprob: z.number().max(0),
  bytes: z.array(z.number().int().min(0).max(255)).nullable(),
});
export const TokenLogprob = TopLogprob.extend({ top_logprobs: z.array(TopLogprob) });
export const Logprobs = z.object({
  content: z.array(TokenLogprob).nullable(),
  refusal: z.array(TokenLogprob).nullable(),
});
export const Finish = z.enum(["stop", "length", "tool_calls", "content_filter", "function_call"]);
export const ChatCompletion = z.object({
  id: z.string().min(1),
  object: z.literal("chat.completion"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().optional(),
  choices: z
    .array(
      z.object({
        index: z.number().int(),
        message: z.object({ role: z.literal("assistant"), content: z.string().nullable() }),
        logprobs: Logprobs.nullable(),
        finish_reason: Finish,
      }),
    )
    .min(1),
  usage: Usage,
});
export const Chunk = z.object({
  id: z.string().min(1),
  object: z.literal("chat.completion.chunk"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().optional(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({ role: z.literal("assistant").optional(), content: z.string().nullable().optional() }),
      logprobs: Logprobs.nullable().optional(),
      finish_reason: Finish.nullable(),
    }),
  ),
  usage: Usage.nullable().optional(),
});
export const Model = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
});
export const ModelList = z.object({ object: z.literal("list"), data: z.array(Model) });
export const ErrorBody = z.strictObject({
  error: z.strictObject({
    message: z.string().min(1),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});
/** OpenAI's legacy Logprobs object: one entry per token in each list. */
export const LegacyLogprobs = z
  .strictObject({
    tokens: z.array(z.string()),
    token_logprobs: z.array(z.number().max(0)),
    top_logprobs: z.array(z.record(z.string(), z.number().max(0))),
    text_offset: z.array(z.number().int().min(0)),
  })
  .refine((l) =>
    [l.token_logprobs, l.top_logprobs, l.text_offset].every((a) => a.length === l.tokens.length),
  );
/** OpenAI's Completion object (also each streamed chunk, with finish_reason null until the last). */
export const TextCompletion = z.object({
  id: z.string().min(1),
  object: z.literal("text_completion"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string().optional(),
  choices: z.array(
    z.object({
      text: z.string(),
      index: z.number().int(),
      logprobs: LegacyLogprobs.nullable(),
      finish_reason: z.enum(["stop", "length", "content_filter"]).nullable(),
    }),
  ),
  usage: Usage.nullable().optional(),
});
