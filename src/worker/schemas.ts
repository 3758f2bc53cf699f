/** The OpenAI chat-completions request, validated with zod; errors name the offending parameter. */
import { z } from "zod";

const TextPart = z.object({ type: z.literal("text"), text: z.string() });
const Content = z.union([z.string(), z.array(TextPart).min(1)]);

/** OpenAI's limit on stop sequences. */
export const MAX_STOP_SEQUENCES = 4;

/**
 * `stop`: one string or up to MAX_STOP_SEQUENCES. Too many gets OpenAI's own words and code
 * ("Invalid 'stop': array too long. ...", array_above_max_length), not a bare union failure.
 */
export const Stop = z.union([z.string(), z.array(z.string())]).superRefine((v, ctx) => {
  if (Array.isArray(v) && v.length > MAX_STOP_SEQUENCES) {
    ctx.addIssue({
      code: "custom",
      message:
        `Invalid 'stop': array too long. Expected an array with maximum length ${MAX_STOP_SEQUENCES}, ` +
        `but got an array with length ${v.length} instead.`,
      params: { verbatim: true, code: "array_above_max_length" },
    });
  }
});

/** OpenAI's words for a request without `model` (or with an empty one), param `model`. */
export const MISSING_MODEL = "you must provide a model parameter";

/** `model`: a non-empty string; missing or empty gets OpenAI's message (see describeIssue). */
export const ModelName = z
  .string({ error: (issue) => (issue.input === undefined ? MISSING_MODEL : "must be a string") })
  .min(1, MISSING_MODEL);

/**
 * OpenAI refuses `stream_options` unless `stream` is true (400 invalid_request_error, param
 * stream_options, these words); null counts as absent. For chat and legacy completions.
 */
export function streamOptionsNeedStream(
  body: { stream?: boolean | null; stream_options?: unknown },
  ctx: z.RefinementCtx,
): void {
  if (body.stream_options != null && body.stream !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["stream_options"],
      message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      params: { verbatim: true },
    });
  }
}

export const ChatMessage = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: Content, name: z.string().optional() }),
  z.object({ role: z.literal("developer"), content: Content, name: z.string().optional() }),
  z.object({ role: z.literal("user"), content: Content, name: z.string().optional() }),
  z.object({ role: z.literal("assistant"), content: Content.nullable(), name: z.string().optional() }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** Most choices (OpenAI's n) one request may ask for: they run one after another. */
export const MAX_CHOICES = 8;

/** OpenAI's response_format; json_schema.name as OpenAI restricts it. */
export const ResponseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }).strict(),
  z.object({ type: z.literal("json_object") }).strict(),
  z
    .object({
      type: z.literal("json_schema"),
      json_schema: z
        .object({
          name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1 to 64 of a-z, A-Z, 0-9, _ and -"),
          description: z.string().nullish(),
          schema: z.record(z.string(), z.unknown(), { error: "must be a JSON Schema object" }),
          strict: z.boolean().nullish(),
        })
        .strict(),
    })
    .strict(),
]);

/**
 * Request fields chat and legacy completions share, with OpenAI's ranges: streaming, sampling,
 * length, stops, seed, choices, penalties, logit bias, and `user` (accepted and ignored).
 */
export const SamplingFields = {
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  /** Not OpenAI's: top-k sampling (0 = off), as llama.cpp's server accepts it. */
  top_k: z.number().int().min(0).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  stop: Stop.nullish(),
  seed: z.number().int().nullish(),
  /** Choices, generated one after another (so bounded: each costs a whole generation). */
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  user: z.string().nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  /** Token id (decimal string) -> bias in [-100, 100]; ids are checked against the vocabulary later. */
  logit_bias: z
    .preprocess(
      (raw, ctx) => {
        // JSON.parse makes "__proto__" an own key, but z.record copies entries by assignment, which
        // drops it (it sets the prototype instead): refuse it here, on the raw object's own keys.
        if (typeof raw === "object" && raw !== null && Object.hasOwn(raw, "__proto__"))
          ctx.addIssue({
            code: "custom",
            message: "logit_bias: '__proto__' is not a token id (keys are token ids, decimal integers).",
            input: raw,
          });
        return raw;
      },
      z.record(z.string(), z.number().min(-100).max(100)),
    )
    .nullish(),
};

export const ChatCompletionRequest = z
  .object({
    model: ModelName,
    messages: z.array(ChatMessage).min(1, "messages must contain at least one message"),
    ...SamplingFields,
    max_completion_tokens: z.number().int().min(1).nullish(),
    // Accepted and ignored (they do not change what this server computes).
    safety_identifier: z.string().nullish(),
    prompt_cache_key: z.string().nullish(),
    service_tier: z.enum(["auto", "default", "flex", "scale", "priority"]).nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
    store: z.boolean().nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    // Accepted only at their neutral values (other values: ./unsupported.ts refuses them by name).
    /**
     * json_object and json_schema: constrained decoding (src/runtime/json-mask.ts); the schema's
     * subset is checked when it is compiled (src/runtime/json-schema.ts).
     */
    response_format: ResponseFormat.nullish(),
    tools: z.array(z.never()).max(0).nullish(),
    functions: z.array(z.never()).max(0).nullish(),
    tool_choice: z.literal("none").nullish(),
    function_call: z.literal("none").nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    modalities: z.array(z.literal("text")).nullish(),
    // Only null (OpenAI's "not set"): any value is refused by name in ./unsupported.ts, and without
    // these entries .strict() answered null with "Unrecognized request argument".
    audio: z.null().optional(),
    prediction: z.null().optional(),
    web_search_options: z.null().optional(),
    reasoning_effort: z.null().optional(),
    verbosity: z.null().optional(),
  })
  .strict()
  .superRefine(streamOptionsNeedStream);
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;

/**
 * Turns a zod issue into "messages[0].role: ..." with the parameter path, OpenAI-style. A custom
 * issue with `params.verbatim` already names its parameter (and may carry OpenAI's `code`).
 */
export function describeIssue(issue: z.core.$ZodIssue): {
  message: string;
  param: string | null;
  code?: string;
} {
  const param = issue.path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join("");
  if (issue.code === "unrecognized_keys") {
    if (!param) {
      return {
        message: `Unrecognized request argument supplied: ${issue.keys.join(", ")}`,
        param: issue.keys[0] ?? null,
      };
    }
    return {
      message: `${param}: unrecognized field ${issue.keys.join(", ")}`,
      param: `${param}.${issue.keys[0] ?? ""}`,
    };
  }
  if (issue.code === "invalid_union" && /^messages\[\d+\]\.role$/.test(param)) {
    return { message: `${param}: must be one of system, developer, user, assistant`, param };
  }
  if (issue.code === "invalid_union" && /^messages\[\d+\]\.content$/.test(param)) {
    return {
      message: `${param}: must be a string or an array of text parts ({"type": "text", "text": "..."})`,
      param,
    };
  }
  if (issue.message === MISSING_MODEL) return { message: MISSING_MODEL, param: "model" };
  if (issue.code === "custom" && issue.params?.verbatim === true) {
    const code = issue.params.code;
    return { message: issue.message, param: param || null, ...(typeof code === "string" ? { code } : {}) };
  }
  if (issue.code === "invalid_union" && param === "stop") {
    return { message: `stop: must be a string or an array of at most ${MAX_STOP_SEQUENCES} strings`, param };
  }
  return { message: param ? `${param}: ${issue.message}` : issue.message, param: param || null };
}
