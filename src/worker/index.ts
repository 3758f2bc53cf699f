/**
 * The Worker: an OpenAI-compatible API over the live shardlm variants in R2.
 *   POST /v1/chat/completions   (JSON or SSE; X-Quality-Tier, X-Latency-Budget-Ms)
 *   GET  /v1/models             live variants and the tier aliases
 *   GET  /healthz               liveness, and this isolate's engine memory
 * Errors are OpenAI's JSON (`{"error": {message, type, param, code}}`): unknown routes 404, a known
 * route with the wrong method 405 (with Allow).
 */
import { Hono } from "hono";
import { ZodError } from "zod";
// The kernels, compiled by wrangler from the build output (npm run build:wasm); workerd has relaxed SIMD.
import kernels from "../../build/wasm/kernels-relaxed.wasm";
import type { Manifest } from "../format/manifest.ts";
import { chatCompletions } from "./chat-route.ts";
import { registerContentRoutes } from "./content-routes.ts";
import type { Env } from "./env.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { registerPlaygroundRoutes } from "./playground-routes.ts";
import { TIERS } from "./router.ts";
import { type Services, servicesFor } from "./services.ts";

const app = new Hono<{ Bindings: Env }>();

/**
 * A variant as this isolate sees it. A live variant stays listed even when it cannot serve: then
 * `available` is false and `unavailable_reason` says why (its shards failed verification here);
 * requests pinned to it get a 503, requests for its tier fall back to another variant. `cost` is
 * what the router predicts with now (see ./router.ts).
 */
function variantState(s: Services, manifestId: string, m: Manifest) {
  const resident = s.engines.isResident(manifestId);
  const bad = s.engines.badReason(manifestId);
  const c = s.cost.costs(m, resident);
  return {
    resident,
    available: bad === null,
    ...(bad === null ? {} : { unavailable_reason: bad }),
    cost: {
      load_ms: c.loadMs,
      prefill_ms_per_token: c.prefillMsPerToken,
      decode_ms_per_token: c.decodeMsPerToken,
    },
  };
}

app.get("/healthz", (c) => {
  const s = servicesFor(c.env, kernels);
  return c.json({
    ok: true,
    // WebAssembly memory held by this isolate's loaded engines (what grows if engines leak).
    engine_bytes: s.engines.residentBytes(),
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

app.get("/v1/models", async (c) => {
  const s = servicesFor(c.env, kernels);
  const live = await s.live.get();
  const created = 0;
  const data = live.variants.map((m) => ({
    id: m.variant,
    object: "model",
    created,
    owned_by: "shardlm",
    tier: m.tier,
    source_model: m.source.name,
    bytes: m.size.totalBytes,
    bits_per_weight: m.size.bitsPerWeight,
    kl_mean: m.quality.klMean,
    ...variantState(s, live.manifestIds.get(m.variant)!, m),
  }));
  for (const tier of TIERS) {
    const target = live.variants.find((m) => m.tier === tier);
    if (target)
      data.push({
        ...data.find((d) => d.id === target.variant)!,
        id: tier,
        alias_of: target.variant,
      } as never);
  }
  return c.json({ object: "list", data });
});

app.post("/v1/chat/completions", (c) => chatCompletions(c, servicesFor(c.env, kernels)));
// The content-addressed objects (./content-routes.ts) and the playground page (./playground-routes.ts).
registerContentRoutes(app);
registerPlaygroundRoutes(app);

// Known routes, other methods: 405 (Hono answers HEAD from the GET routes).
const METHODS: Record<string, string> = {
  "/healthz": "GET, HEAD",
  "/v1/models": "GET, HEAD",
  "/v1/chat/completions": "POST",
};
for (const [path, allow] of Object.entries(METHODS)) {
  app.all(path, (c) =>
    errorResponse(
      c,
      new ApiError(
        405,
        `Method ${c.req.method} is not allowed on ${path}; use ${allow.split(", ")[0]}`,
        "invalid_request_error",
        "method_not_allowed",
        null,
        { Allow: allow },
      ),
    ),
  );
}

app.notFound((c) =>
  errorResponse(
    c,
    new ApiError(
      404,
      `Unknown route ${c.req.method} ${new URL(c.req.url).pathname}`,
      "not_found_error",
      "unknown_route",
    ),
  ),
);

app.onError((err, c) => {
  if (err instanceof ApiError) return errorResponse(c, err);
  if (err instanceof ZodError)
    return errorResponse(c, new ApiError(503, `invalid deployment data: ${err.message}`, "server_error"));
  console.error(err);
  return errorResponse(c, new ApiError(500, "internal error", "server_error"));
});

export default app;
