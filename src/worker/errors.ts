/**
 * OpenAI-style errors: `{"error": {message, type, param, code}}` with the right HTTP status.
 * Status, `type` and `code` follow what api.openai.com answers: request faults (bad JSON, bad
 * parameters, unknown model, too long a prompt) are 400/404 `invalid_request_error`, a missing or
 * wrong key 401 `invalid_request_error`/`invalid_api_key`, rate limits 429 `rate_limit_error`.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export type ErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "authentication_error";

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, message, "invalid_request_error", code, param);

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Characters of a message or param kept (they may quote the request). */
const MAX_FIELD_CHARS = 2000;

/**
 * Text that came from a request, made safe for an error body: lone UTF-16 surrogates (a JSON
 * "\ud800" escape parses to one) become U+FFFD so every JSON parser accepts the body, and long
 * quotes are cut.
 */
export function safeText(s: string, max = MAX_FIELD_CHARS): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  return cut.replace(LONE_SURROGATE, "\ufffd");
}

export function errorBody(e: ApiError) {
  return {
    error: {
      message: safeText(e.message),
      type: e.type,
      param: e.param === null ? null : safeText(e.param, 200),
      code: e.code,
    },
  };
}

export function errorResponse(c: Context, e: ApiError): Response {
  for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
  return c.json(errorBody(e), e.status);
}
