/** Per-isolate state shared by requests: live set, loaded engines, cost model. */
import type { Context } from "hono";
import { type Clock, ClockTrust, requestClock } from "../runtime/clock.ts";
import { DEFAULT_ENGINE_BUDGET_BYTES } from "../runtime/load-engine.ts";
import { ENGINE_CONTEXT, EngineCache } from "./engines.ts";
import type { Env, R2BucketLike } from "./env.ts";
import { LiveVariants } from "./live.ts";
import { CostModel } from "./router.ts";
import { WorkLedger } from "./work-ledger.ts";

/** Counters since the isolate started (GET /healthz). */
export interface Stats {
  /** Generations run to their end (any finish reason). */
  generations: number;
  /** Tokens generated, all requests. */
  tokens: number;
  /** Generations stopped because the client went away. */
  clientGone: number;
  /** Generations running now. */
  running: number;
}

export interface Services {
  bucket: R2BucketLike;
  live: LiveVariants;
  engines: EngineCache;
  cost: CostModel;
  /** Admitted work per variant in predicted ms (what a budget request would wait behind). */
  work: WorkLedger;
  engineContext: number;
  /** See Env.STREAM_STALL_MS. */
  streamStallMs: number;
  /** See Env.CPU_LIMIT_MS; null when unset. */
  cpuLimitMs: number | null;
  /** Whether request clocks freeze during CPU work (Env.SHARDLM_FROZEN_CLOCK, as deployed). */
  frozenClock: boolean;
  /** A new request's clock (../runtime/clock.ts). */
  clock(): Clock;
  /** Whether CPU intervals read on request clocks can calibrate the cost model. */
  clockTrust: ClockTrust;
  stats: Stats;
  waitUntil(c: Context, p: Promise<unknown>): void;
}

const DEFAULT_STREAM_STALL_MS = 500;
/** Workers' default CPU limit per request on paid plans, ms (used when CPU_LIMIT_MS is garbage). */
const DEFAULT_CPU_LIMIT_MS = 30_000;

function numberOr(raw: string | undefined, fallback: number): number {
  const n = Number(raw ?? Number.NaN);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

let services: Services | null = null;

export function servicesFor(env: Env, kernels: WebAssembly.Module): Services {
  if (services && services.bucket === env.SHARDS) return services;
  const ttl = Number(env.LIVE_CACHE_SECONDS ?? "5") * 1000;
  const frozenClock = env.SHARDLM_FROZEN_CLOCK === "1";
  const budget = Number(env.ENGINE_MEMORY_BUDGET ?? String(DEFAULT_ENGINE_BUDGET_BYTES));
  const engines = new EngineCache(
    env.SHARDS,
    kernels,
    Number.isFinite(budget) ? budget : DEFAULT_ENGINE_BUDGET_BYTES,
  );
  // A new live.json version (a deploy, which verifies its shards) retries variants marked bad at once.
  const onNewVersion = () => engines.forgetBad();
  services = {
    bucket: env.SHARDS,
    live: new LiveVariants(
      env.SHARDS,
      Number.isFinite(ttl) ? ttl : 5000,
      env.SHARDLM_SPECULATION !== "off",
      onNewVersion,
    ),
    engines,
    cost: new CostModel(),
    work: new WorkLedger(),
    engineContext: ENGINE_CONTEXT,
    streamStallMs: numberOr(env.STREAM_STALL_MS, DEFAULT_STREAM_STALL_MS),
    cpuLimitMs: env.CPU_LIMIT_MS === undefined ? null : numberOr(env.CPU_LIMIT_MS, DEFAULT_CPU_LIMIT_MS),
    frozenClock,
    clock: () => requestClock(frozenClock),
    clockTrust: new ClockTrust(),
    stats: { generations: 0, tokens: 0, clientGone: 0, running: 0 },
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
