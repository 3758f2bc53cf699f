/**
 * The routing headers (see ./router.ts), validated as middleware:
 *   X-Quality-Tier: quality|balanced|speed (any case, spaces trimmed)
 *   X-Latency-Budget-Ms: integer milliseconds in 1..MAX_BUDGET_MS
 * A bad value is a 400 invalid_header naming the header.
 */
import { z } from "zod";
import { validHeaders } from "./request.ts";
import { TIERS, type Tier } from "./router.ts";

export const MAX_BUDGET_MS = 600_000;

const tier = z
  .string()
  .optional()
  .transform((raw, ctx): Tier | null => {
    if (raw === undefined) return null;
    const t = raw.trim().toLowerCase();
    if ((TIERS as readonly string[]).includes(t)) return t as Tier;
    ctx.addIssue({
      code: "custom",
      message: `X-Quality-Tier must be one of ${TIERS.join(", ")}; got "${raw}"`,
    });
    return z.NEVER;
  });

const budget = z
  .string()
  .optional()
  .transform((raw, ctx): number | null => {
    if (raw === undefined) return null;
    const n = Number(raw.trim());
    if (/^\d+$/.test(raw.trim()) && n >= 1 && n <= MAX_BUDGET_MS) return n;
    ctx.addIssue({
      code: "custom",
      message: `X-Latency-Budget-Ms must be an integer number of milliseconds in 1..${MAX_BUDGET_MS}; got "${raw}"`,
    });
    return z.NEVER;
  });

export const RoutingHeaders = z.object({ "x-quality-tier": tier, "x-latency-budget-ms": budget });

export const routingHeaders = validHeaders(RoutingHeaders, {
  "x-quality-tier": "X-Quality-Tier",
  "x-latency-budget-ms": "X-Latency-Budget-Ms",
});
