/**
 * The Worker: an OpenAI-compatible API over the live shardlm variants in R2.
 *   POST /v1/chat/completions   (JSON or SSE; X-Quality-Tier, X-Latency-Budget-Ms)
 *   POST /v1/completions        (legacy text completions: a prompt string, JSON or SSE)
 *   GET  /v1/models             live variants and the tier aliases; GET /v1/models/:id one of them
 *   GET  /v1/{shards,blobs,manifests}/:sha256, /v1/live   content-addressed objects (./content-routes.ts)
 *   GET  /healthz               liveness, and this isolate's engine memory
 *   GET  /                      the playground (./playground-routes.ts)
 * Middleware, in order: CORS (preflights 204; SHARDLM_CORS_ORIGINS) → 405 for known paths with the
 * wrong method (hono's methodNotAllowed, with Allow) → services (c.var.services) → API keys on /v1
 * (SHARDLM_API_KEYS, ./api-keys.ts). Errors are OpenAI's JSON (`{"error": {message, type, param, code}}`).
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { methodNotAllowed } from "hono/method-not-allowed";
import { ZodError } from "zod";
// The kernels, compiled by wrangler from the build output (npm run build:wasm); workerd has relaxed SIMD.
import kernels from "../../build/wasm/kernels-relaxed.wasm";
import { requireApiKey } from "./api-keys.ts";
import type { AppEnv } from "./app-env.ts";
import { chatCompletions } from "./chat-route.ts";
import { completions } from "./completions-route.ts";
import { registerContentRoutes } from "./content-routes.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { listModels, retrieveModel } from "./models-route.ts";
import { registerPlaygroundRoutes } from "./playground-routes.ts";
import { servicesFor } from "./services.ts";

const app = new Hono<AppEnv>();

/**
 * Response headers a browser app on another origin may read: every header shardlm sets beyond
 * the CORS-safelisted ones (routing results and plan in ./respond.ts, timings, retry hints, a
 * content object's ETag, the Allow of a 405). test/api-openai-contract.test.ts checks the answers.
 */
const EXPOSED_HEADERS = [
  "X-Variant",
  "X-Predicted-Ms",
  "X-Planned-Tokens",
  "X-Max-Tokens-Capped",
  "X-Budget-Exhausted",
  "Server-Timing",
  "Retry-After",
  "X-Should-Retry",
  "ETag",
  "Allow",
];

app.use(
  cors({
    // SHARDLM_CORS_ORIGINS: "*" (default) or a comma-separated list; other origins get no ACAO header.
    origin: (origin, c) => {
      const raw = ((c.env as AppEnv["Bindings"] | undefined)?.SHARDLM_CORS_ORIGINS ?? "*").trim();
      if (raw === "*" || raw === "") return "*";
      return raw.split(",").some((o) => o.trim() === origin) ? origin : null;
    },
    allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: 86400,
  }),
);
app.use(
  methodNotAllowed({
    app,
    onMethodNotAllowed: (c, methods) => {
      const allow = methods.join(", ");
      return errorResponse(
        c,
        new ApiError(
          405,
          `Method ${c.req.method} is not allowed on ${new URL(c.req.url).pathname}; use ${methods[0]}`,
          "invalid_request_error",
          "method_not_allowed",
          null,
          { Allow: allow },
        ),
      );
    },
  }),
);
app.use(async (c, next) => {
  c.set("services", servicesFor(c.env, kernels));
  await next();
});
app.use("/v1/*", requireApiKey());

app.get("/healthz", (c) => {
  const s = c.var.services;
  return c.json({
    ok: true,
    // WebAssembly memory held by this isolate's loaded engines (what grows if engines leak).
    engine_bytes: s.engines.residentBytes(),
    // Of those, the prefix caches' KV rows now, and the most they may hold (bounded, LRU).
    prefix_cache_bytes: s.engines.prefixCacheBytes(),
    prefix_cache_max_bytes: s.engines.prefixCacheMaxBytes(),
    resident_variants: s.engines.residentCount(),
    generations: s.stats.generations,
    tokens_generated: s.stats.tokens,
    client_gone: s.stats.clientGone,
    generations_running: s.stats.running,
    // The request clocks (src/runtime/clock.ts) and whether they have been found to measure CPU work.
    clock: s.frozenClock ? "frozen-at-io" : "system",
    clock_measures_cpu: s.clockTrust.known,
  });
});
app.get("/v1/models", listModels);
app.get("/v1/models/:id", retrieveModel);
app.post("/v1/chat/completions", ...chatCompletions);
app.post("/v1/completions", ...completions);
registerContentRoutes(app);
registerPlaygroundRoutes(app);

app.notFound((c) =>
  errorResponse(
    c,
    new ApiError(
      404,
      `Unknown route ${c.req.method} ${new URL(c.req.url).pathname}`,
      "invalid_request_error",
      "unknown_route",
    ),
  ),
);

app.onError((err, c) => {
  if (err instanceof ApiError) return errorResponse(c, err);
  if (err instanceof HTTPException && err.status < 500)
    return errorResponse(c, new ApiError(err.status as 400, err.message || "bad request"));
  if (err instanceof ZodError)
    return errorResponse(c, new ApiError(503, `invalid deployment data: ${err.message}`, "server_error"));
  console.error(err);
  return errorResponse(c, new ApiError(500, "internal error", "server_error"));
});

export default app;
