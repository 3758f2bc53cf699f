/**
 * OpenAI chat-completions parameters shardlm does not implement, refused by name: 400
 * invalid_request_error, code "unsupported_parameter", `param` naming it (what api.openai.com
 * answers for a parameter a model does not support). Neutral values (null, false, an empty list,
 * any response_format type shardlm knows) pass, so clients that always send them keep working.
 * The README's parameter table lists the same.
 */
import type { MiddlewareHandler } from "hono";
import { badRequest } from "./errors.ts";

const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  response_format: (v) =>
    typeof v === "object" &&
    v !== null &&
    ["text", "json_object", "json_schema"].includes((v as { type?: unknown }).type as string),
  tools: (v) => Array.isArray(v) && v.length === 0,
  functions: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === "none",
  function_call: (v) => v === "none",
  parallel_tool_calls: (v) => typeof v === "boolean",
  modalities: (v) => Array.isArray(v) && v.every((m) => m === "text"),
};

/** Why each unsupported parameter is refused. */
export const UNSUPPORTED: Record<string, string> = {
  response_format: 'the types are "text", "json_object" and "json_schema"',
  tools: "the served models' chat templates have no tool calling",
  tool_choice: "the served models' chat templates have no tool calling",
  functions: "the served models' chat templates have no tool calling",
  function_call: "the served models' chat templates have no tool calling",
  parallel_tool_calls: "the served models' chat templates have no tool calling",
  audio: "the served models are text-only",
  modalities: "the served models are text-only",
  prediction: "predicted outputs are not implemented",
  web_search_options: "there is no web search",
  reasoning_effort: "the served models are not reasoning models",
  verbosity: "the served models are not reasoning models",
};

/** Refuses a request naming an unsupported parameter with a non-neutral value (runs after parseJson). */
export const refuseUnsupported: MiddlewareHandler = async (c, next) => {
  const body: unknown = await c.req.json();
  if (typeof body === "object" && body !== null && !Array.isArray(body)) {
    for (const [name, why] of Object.entries(UNSUPPORTED)) {
      if (!(name in body)) continue;
      const v = (body as Record<string, unknown>)[name];
      if (v === null || NEUTRAL[name]?.(v)) continue;
      throw badRequest(
        `Unsupported parameter: '${name}' is not supported by shardlm: ${why}.`,
        name,
        "unsupported_parameter",
      );
    }
  }
  await next();
};
