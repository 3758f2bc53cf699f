/**
 * Content routes: the bucket's content-addressed objects over HTTP, for browsers running the engine
 * themselves (the playground's "run in this browser") and for mirrors.
 *   GET /v1/shards/:sha256      a shard (application/octet-stream)
 *   GET /v1/blobs/:sha256       a blob, e.g. a tokenizer (application/octet-stream)
 *   GET /v1/manifests/:sha256   a manifest (application/json)
 *   GET /v1/live                live.json: which manifests serve now (cached briefly)
 * Hashed objects never change: `Cache-Control: immutable` for a year, ETag = the hash (an
 * If-None-Match naming it gets 304). A hash that is not 64 lowercase hex digits is a 400; an object
 * the bucket lacks a 404, both as OpenAI errors. CORS is open: the objects are public (their
 * Access-Control-Allow-Origin: * overrides the API's allowed origins).
 */
import type { Context, Hono } from "hono";
import { R2Keys } from "../format/manifest.ts";
import type { AppEnv } from "./app-env.ts";
import { ApiError, errorResponse } from "./errors.ts";

const HASH = /^[0-9a-f]{64}$/;
export const IMMUTABLE = "public, max-age=31536000, immutable";

const KINDS = {
  shards: { key: R2Keys.shard, type: "application/octet-stream", what: "shard" },
  blobs: { key: R2Keys.blob, type: "application/octet-stream", what: "blob" },
  manifests: { key: R2Keys.manifest, type: "application/json", what: "manifest" },
} as const;

async function serveObject(c: Context<AppEnv>, kind: keyof typeof KINDS): Promise<Response> {
  const { key, type, what } = KINDS[kind];
  const sha = c.req.param("sha256") ?? "";
  if (!HASH.test(sha)) {
    return errorResponse(
      c,
      new ApiError(
        400,
        `'${sha.slice(0, 80)}' is not a ${what} hash (64 lowercase hex digits)`,
        "invalid_request_error",
        "invalid_hash",
        "sha256",
      ),
    );
  }
  const etag = `"${sha}"`;
  const common = { ETag: etag, "Cache-Control": IMMUTABLE, "Access-Control-Allow-Origin": "*" };
  const inm = c.req.header("If-None-Match");
  if (inm?.split(",").some((t) => t.trim().replace(/^W\//, "") === etag)) {
    // Content-addressed: the name is the content, so a client holding it holds the current bytes.
    return new Response(null, { status: 304, headers: common });
  }
  const obj = await c.env.SHARDS.get(key(sha));
  if (!obj) {
    return errorResponse(
      c,
      new ApiError(
        404,
        `No ${what} ${sha} in this deployment`,
        "not_found_error",
        `${what}_not_found`,
        "sha256",
      ),
    );
  }
  return new Response(obj.body, {
    headers: { ...common, "Content-Type": type, "Content-Length": String(obj.size) },
  });
}

export function registerContentRoutes(app: Hono<AppEnv>): void {
  app.get("/v1/shards/:sha256", (c) => serveObject(c, "shards"));
  app.get("/v1/blobs/:sha256", (c) => serveObject(c, "blobs"));
  app.get("/v1/manifests/:sha256", (c) => serveObject(c, "manifests"));
  app.get("/v1/live", async (c) => {
    const obj = await c.env.SHARDS.get(R2Keys.live);
    if (!obj) {
      return errorResponse(
        c,
        new ApiError(
          404,
          "Nothing is deployed (live.json is missing; run npm run deploy)",
          "not_found_error",
          "no_variants",
        ),
      );
    }
    // The one mutable object: cached as briefly as the Worker caches it itself.
    const seconds = Number(c.env.LIVE_CACHE_SECONDS ?? "5");
    return new Response(obj.body, {
      headers: {
        "Content-Type": "application/json",
        "Content-Length": String(obj.size),
        "Cache-Control": `public, max-age=${Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0}`,
        "Access-Control-Allow-Origin": "*",
      },
    });
  });
}
