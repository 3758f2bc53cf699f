/**
 * GET /v1/models: each live variant once, then each tier whose name is not already a variant's
 * (as an alias). GET /v1/models/:id: one of those entries or, for a tier no variant has (SmolLM2
 * has no balanced), an alias of the variant chat serves it with (router.ts's tierTarget); for
 * "shardlm", "auto" and the source model's name (not listed), an alias of the best-quality variant,
 * which chat serves them with. So retrieve accepts every `model` chat accepts (chooseModel); 404
 * model_not_found otherwise.
 */
import type { Context } from "hono";
import type { Manifest } from "../format/manifest.ts";
import { speculationInfo } from "../format/speculative.ts";
import type { AppEnv } from "./app-env.ts";
import { requestContext } from "./chat-prompt.ts";
import { TIERS, type Tier, tierTarget } from "./router.ts";
import type { Services } from "./services.ts";
import { modelNotFound, ROUTING_ALIASES } from "./variant-choice.ts";

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
      // The position where a prompt token costs twice prefill_ms_per_token (./router.ts); null: flat.
      prefill_position_tokens: c.prefillPositionTokens,
      decode_ms_per_token: c.decodeMsPerToken,
      // The position where a decode step costs twice decode_ms_per_token (./router.ts); null: flat.
      decode_position_tokens: c.decodePositionTokens,
    },
  };
}

async function modelList(s: Services) {
  const live = await s.live.get();
  const contextFor = (m: Manifest) => s.engines.contextFor(m);
  const data: Record<string, unknown>[] = live.variants.map((m) => ({
    id: m.variant,
    object: "model",
    // OpenAI's `created` (Unix seconds): when this deployment made the variant live.
    created: live.deployedAt,
    owned_by: "shardlm",
    tier: m.tier,
    source_model: m.source.name,
    bytes: m.size.totalBytes,
    bits_per_weight: m.size.bitsPerWeight,
    kl_mean: m.quality.klMean,
    // shardlm extension (OpenRouter's name): tokens of prompt plus completion a request for this id may use
    context_length: requestContext(live.variants, m.variant, contextFor),
    speculative: speculationInfo(m.speculative),
    ...variantState(s, live.manifestIds.get(m.variant)!, m),
  }));
  for (const tier of TIERS) {
    const target = live.variants.find((m) => m.tier === tier);
    // A tier named like a variant is that variant (model: "quality" pins it): no second entry.
    if (!target || data.some((d) => d.id === tier)) continue;
    // `model: <tier>` routes within the tier (fallback may leave it): the context every variant serves.
    data.push({
      ...data.find((d) => d.id === target.variant)!,
      id: tier,
      alias_of: target.variant,
      context_length: requestContext(live.variants, null, contextFor),
    });
  }
  return data;
}

export const listModels = async (c: Context<AppEnv>) =>
  c.json({ object: "list", data: await modelList(c.var.services) });

export const retrieveModel = async (c: Context<AppEnv>) => {
  const id = c.req.param("id") ?? "";
  const list = await modelList(c.var.services);
  const entry = list.find((d) => d.id === id);
  if (entry) return c.json(entry);
  const { variants } = await c.var.services.live.get();
  // A tier no variant has: the variant serving it. "shardlm", "auto" or the source model's name
  // (chooseModel accepts them; they route like no tier): the best-quality variant, as chat picks it.
  const target = (TIERS as readonly string[]).includes(id)
    ? tierTarget(variants, id as Tier)
    : (ROUTING_ALIASES as readonly string[]).includes(id) || variants.some((v) => v.source.name === id)
      ? variants[0]
      : undefined;
  const of = target && list.find((d) => d.id === target.variant);
  if (!of) throw modelNotFound(id);
  // Routed, not pinned (fallback may leave the variant): the context every variant serves.
  const context_length = requestContext(variants, null, (m) => c.var.services.engines.contextFor(m));
  return c.json({ ...of, id, alias_of: target.variant, context_length });
};
