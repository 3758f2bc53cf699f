/**
 * The playground's Tier menu: "auto" plus the tiers this deployment actually has, read from
 * GET /v1/models (each entry's `tier`; an alias entry carries its variant's tier), best first. The
 * real model has quality and speed only; the toy model quality, balanced and speed.
 */
import * as z from "zod/mini";
import { errorFrom, type Tier } from "./chat-api.ts";

/** Best quality first, as the router orders tiers (src/worker/router.ts). */
const TIER_ORDER: readonly Tier[] = ["quality", "balanced", "speed"];

const ModelList = z.object({
  data: z.array(z.object({ tier: z.optional(z.string()), context_length: z.optional(z.number()) })),
});

/**
 * The deployed tiers, best first, from a GET /v1/models body. Unknown tier names are left out;
 * a body that is no model list throws (never a silently empty menu).
 */
export function deployedTiers(body: unknown): Tier[] {
  const list = ModelList.parse(body);
  const seen = new Set(list.data.map((m) => m.tier));
  return TIER_ORDER.filter((t) => seen.has(t));
}

/**
 * The context (tokens of prompt plus completion) of a request the playground sends: it routes by
 * tier (X-Quality-Tier, or none for auto), and a routed request gets the context every variant
 * serves (src/worker/chat-prompt.ts requestContext): the smallest entry's `context_length`. null
 * when the API reports none.
 */
export function routedContext(body: unknown): number | null {
  const contexts = ModelList.parse(body).data.flatMap((m) => m.context_length ?? []);
  return contexts.length > 0 ? Math.min(...contexts) : null;
}

/**
 * GET /v1/models at `base` (default: this page's origin) with the key as a Bearer header when set;
 * the deployed tiers and the context of a routed request (routedContext). Throws ApiError on a
 * non-2xx answer (401 without a valid key).
 */
export async function fetchDeployment(opts: {
  apiKey: string | null;
  base?: string | URL;
}): Promise<{ tiers: Tier[]; context: number | null }> {
  const headers: Record<string, string> = {};
  if (opts.apiKey) headers.Authorization = `Bearer ${opts.apiKey}`;
  const res = await fetch(new URL("/v1/models", opts.base ?? location.origin), { headers });
  if (!res.ok) throw await errorFrom(res);
  const body: unknown = await res.json();
  return { tiers: deployedTiers(body), context: routedContext(body) };
}

/** Fills `select` with auto and `tiers`, keeping the current choice where it is still offered. */
export function fillTierMenu(select: HTMLSelectElement, tiers: readonly Tier[]): void {
  const current = select.value;
  const values = ["auto", ...tiers];
  select.replaceChildren(
    ...values.map((v) => {
      const option = document.createElement("option");
      option.value = v;
      option.textContent = v;
      return option;
    }),
  );
  select.value = values.includes(current) ? current : "auto";
}
