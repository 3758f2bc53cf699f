/** Per-isolate state shared by requests: live set, loaded engines, cost model. */
import type { Context } from "hono";
import { ENGINE_CONTEXT, EngineCache } from "./engines.ts";
import type { Env, R2BucketLike } from "./env.ts";
import { LiveVariants } from "./live.ts";
import { CostModel } from "./router.ts";

export interface Services {
  bucket: R2BucketLike;
  live: LiveVariants;
  engines: EngineCache;
  cost: CostModel;
  engineContext: number;
  waitUntil(c: Context, p: Promise<unknown>): void;
}

let services: Services | null = null;

export function servicesFor(env: Env, kernels: WebAssembly.Module): Services {
  if (services && services.bucket === env.SHARDS) return services;
  const ttl = Number(env.LIVE_CACHE_SECONDS ?? "5") * 1000;
  const budget = Number(env.ENGINE_MEMORY_BUDGET ?? String(100 * 1024 * 1024));
  services = {
    bucket: env.SHARDS,
    live: new LiveVariants(env.SHARDS, Number.isFinite(ttl) ? ttl : 5000),
    engines: new EngineCache(env.SHARDS, kernels, Number.isFinite(budget) ? budget : 100 * 1024 * 1024),
    cost: new CostModel(),
    engineContext: ENGINE_CONTEXT,
    waitUntil(c, p) {
      try {
        c.executionCtx.waitUntil(p);
      } catch {
        // No execution context (plain fetch handler in tests): the stream keeps the work alive.
      }
    },
  };
  return services;
}
