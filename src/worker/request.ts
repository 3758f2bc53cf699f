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

/**
 * Over MAX_BODY_BYTES (or the Worker's SHARDLM_MAX_BODY_BYTES): 413 request_too_large, before
 * anything reads the body.
 */
export const bodySizeLimit: MiddlewareHandler<{ Bindings: Env }> = (c, next) => {
  const configured = Number(c.env?.SHARDLM_MAX_BODY_BYTES ?? Number.NaN);
  const maxSize = Number.isInteger(configured) && configured > 0 ? configured : MAX_BODY_BYTES;
  let limit = limits.get(maxSize);
  if (!limit) {
    limit = bodyLimit({
      maxSize,
      onError: () => {
        throw new ApiError(
          413,
          `The request body is larger than ${maxSize} bytes.`,
          "invalid_request_error",
          "request_too_large",
        );
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
      const { message, param } = describeIssue(result.error.issues[0]!);
      throw badRequest(message, param);
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
