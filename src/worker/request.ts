/**
 * Request parsing, as middleware in front of the handlers: the body must be JSON (any JSON
 * Content-Type, or none), parsed once; then validated with zod through @hono/zod-validator, whose
 * failures become OpenAI's 400 naming the parameter. The routing headers are validated the same way.
 * Handlers read the results with `c.req.valid("json")` / `c.req.valid("header")`.
 */
import { zValidator } from "@hono/zod-validator";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import type { Env } from "./env.ts";
import { ApiError, badRequest, safeText } from "./errors.ts";
import { describeIssue } from "./schemas.ts";

/** Largest request body accepted: prompts beyond the context are refused from their head anyway. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

const limits = new Map<number, MiddlewareHandler>();

function tooLarge(maxSize: number): ApiError {
  return new ApiError(
    413,
    `The request body is larger than ${maxSize} bytes.`,
    "invalid_request_error",
    "request_too_large",
  );
}

/**
 * A body without Content-Length (chunked) is read whole here, and past the limit the rest is still
 * drained before the 413: under `wrangler dev`, a body left half-read made the next request on the
 * server fail with a plain-text 503. The platform bounds what a request body can hold.
 */
async function readCapped(body: ReadableStream<Uint8Array>, maxSize: number): Promise<ArrayBuffer | null> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size <= maxSize) chunks.push(value);
  }
  if (size > maxSize) return null;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out.buffer;
}

/**
 * Over MAX_BODY_BYTES (or the Worker's SHARDLM_MAX_BODY_BYTES): 413 request_too_large. A declared
 * Content-Length is checked before anything reads the body (hono/body-limit); a chunked body is
 * counted as it is read.
 */
export const bodySizeLimit: MiddlewareHandler<{ Bindings: Env }> = async (c, next) => {
  const configured = Number(c.env?.SHARDLM_MAX_BODY_BYTES ?? Number.NaN);
  const maxSize = Number.isInteger(configured) && configured > 0 ? configured : MAX_BODY_BYTES;
  const raw = c.req.raw;
  if (raw.body && !raw.headers.has("content-length")) {
    const bytes = await readCapped(raw.body, maxSize);
    if (bytes === null) throw tooLarge(maxSize);
    c.req.raw = new Request(raw, { body: bytes });
    return next();
  }
  let limit = limits.get(maxSize);
  if (!limit) {
    limit = bodyLimit({
      maxSize,
      onError: () => {
        throw tooLarge(maxSize);
      },
    });
    limits.set(maxSize, limit);
  }
  return limit(c, next);
};

/**
 * The body, parsed as JSON into Hono's body cache (so the validator after this reads it without a
 * second parse). A Content-Type other than JSON's, or a body that is not JSON, is a 400.
 */
export const parseJson: MiddlewareHandler = async (c, next) => {
  const type = (c.req.header("Content-Type") ?? "").split(";")[0]!.trim();
  if (!JSON_TYPE.test(type)) {
    throw badRequest(
      `Content-Type must be application/json; got '${safeText(type, 100) || "none"}'.`,
      null,
      "invalid_content_type",
    );
  }
  try {
    await c.req.json();
  } catch {
    throw badRequest(
      "We could not parse the JSON body of your request: it is not valid JSON.",
      null,
      "invalid_json",
    );
  }
  await next();
};

/** Validates the parsed JSON body against `schema` (400 naming the first bad parameter). */
export const validJson = <S extends z.ZodType>(schema: S) =>
  zValidator("json", schema, (result) => {
    if (!result.success) {
      const { message, param, code } = describeIssue(result.error.issues[0]!);
      throw badRequest(message, param, code ?? null);
    }
  });

/** Validates request headers against `schema` (keys lowercase); a failure names the header as sent. */
export const validHeaders = <S extends z.ZodType>(schema: S, names: Record<string, string>) =>
  zValidator("header", schema, (result) => {
    if (!result.success) {
      const issue = result.error.issues[0]!;
      const key = String(issue.path[0] ?? "");
      throw badRequest(issue.message, names[key] ?? key, "invalid_header");
    }
  });
