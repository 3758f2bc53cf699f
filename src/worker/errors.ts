/** OpenAI-style errors: `{"error": {message, type, param, code}}` with the right HTTP status. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export type ErrorType = "invalid_request_error" | "not_found_error" | "rate_limit_error" | "server_error";

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

export function errorBody(e: ApiError) {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

export function errorResponse(c: Context, e: ApiError): Response {
  for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
  return c.json(errorBody(e), e.status);
}
