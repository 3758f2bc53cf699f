/**
 * The Worker: an OpenAI-compatible API over the live shardlm variants in R2.
 *   POST /v1/chat/completions   (JSON or SSE; X-Quality-Tier, X-Latency-Budget-Ms)
 *   GET  /v1/models             live variants and the tier aliases
 *   GET  /healthz
 */
import { Hono } from "hono";
import { ZodError } from "zod";
// The kernels, compiled by wrangler from the build output (npm run build:wasm); workerd has relaxed SIMD.
import kernels from "../../build/wasm/kernels-relaxed.wasm";
import { chatCompletions } from "./chat-route.ts";
import type { Env } from "./env.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { TIERS } from "./router.ts";
import { servicesFor } from "./services.ts";

const app = new Hono<{ Bindings: Env }>();

app.get("/healthz", (c) => c.json({ ok: true }));

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
    resident: s.engines.isResident(live.manifestIds.get(m.variant)!),
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
