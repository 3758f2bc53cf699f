/**
 * From a request's `model` and routing headers to a loaded variant holding its queue: which names
 * the deployment answers to, the router's ranking (./router.ts), loading with fallback, queueing.
 */
import type { Manifest } from "../format/manifest.ts";
import type { Clock } from "../runtime/clock.ts";
import { observeLoad } from "./calibrate.ts";
import { type LoadedVariant, VariantLoadError } from "./engines.ts";
import { ApiError } from "./errors.ts";
import type { LiveSet } from "./live.ts";
import { type Plan, planRequest } from "./plan.ts";
import { OverloadedError } from "./queue.ts";
import {
  type Prediction,
  type Ranked,
  rankVariants,
  startsInMs,
  startsInTime,
  TIERS,
  type Tier,
} from "./router.ts";
import type { Services } from "./services.ts";
import type { WorkEntry, WorkEstimate } from "./work-ledger.ts";

export interface ModelChoice {
  /** Tier to route within, or null. */
  tier: Tier | null;
  /** Variant pinned by name, or null. */
  pinned: string | null;
}

export const modelNotFound = (model: string) =>
  new ApiError(
    404,
    `The model '${model}' does not exist. See GET /v1/models.`,
    "invalid_request_error",
    "model_not_found",
    "model",
  );

/** `model` names that route like no tier at all (as does the source model's name). */
export const ROUTING_ALIASES = ["shardlm", "auto"] as const;

/**
 * `model` (see ./router.ts): with X-Quality-Tier it only has to name this deployment (the header
 * routes). Without it, a live variant's name pins that variant, also when the name is a tier's too
 * (deployments name variants after their tiers); a tier name that is no variant's acts like the
 * header; the source model's name, "shardlm" or "auto" let the router choose. Other names: 404.
 */
export function chooseModel(model: string, headerTier: Tier | null, live: LiveSet): ModelChoice {
  const modelIsTier = (TIERS as readonly string[]).includes(model);
  const modelIsVariant = live.variants.some((v) => v.variant === model);
  const pinned = headerTier === null && modelIsVariant ? model : null;
  const sourceNames = new Set(live.variants.map((v) => v.source.name));
  if (
    !modelIsTier &&
    !modelIsVariant &&
    !(ROUTING_ALIASES as readonly string[]).includes(model) &&
    !sourceNames.has(model)
  )
    throw modelNotFound(model);
  return { tier: headerTier ?? (modelIsTier && !pinned ? (model as Tier) : null), pinned };
}

export interface Served {
  variant: LoadedVariant;
  manifest: Manifest;
  prediction: Prediction;
  /** Milliseconds spent loading the variant for this request (0 when resident). */
  loadMs: number;
  /** Aborted when the client goes away (or generation fails): stops the generation. */
  abort: AbortController;
  /** Gives the variant's queue slot back (or the place in its queue); call exactly once. */
  release: () => void;
  /** Whether the request still waits for its turn (only with `waitForTurn: false`). */
  readonly queued: boolean;
  /** Waits for the turn (at once when not queued); rejects when the client left meanwhile. */
  turn(): Promise<void>;
  /**
   * The plan (./plan.ts) from this moment: time spent so far (queueing included) counts against
   * a budget. Call it once the turn is held.
   */
  plan(): Plan;
  /** The request's clock (for the timings it reports). */
  clock: Clock;
  /** Counts a generated token against the request's admitted work (./work-ledger.ts). */
  tokenDone(): void;
}

/**
 * Ranks, loads the first variant that loads, and waits for its queue. Throws 503 when none loads,
 * 429 when its queue is full, 400 when the plan cannot fit the CPU limit; returns null when the
 * client left while queued. With `waitForTurn: false` (streams) it returns at once with `queued`
 * set, and the caller waits for `turn()` where it can watch its client (./sse.ts).
 */
export async function serve(
  services: Services,
  live: LiveSet,
  choice: ModelChoice,
  request: {
    budgetMs: number | null;
    /** The prompt's tokens (their count is planned; a resident variant's cached prefix is not prefilled). */
    prompt: readonly number[];
    maxTokens: number;
    /** OpenAI's n: choices generated one after another (the plan shares the CPU limit out). */
    choices?: number;
    /** CPU a decode step adds beyond the model's (a token mask), ms. */
    extraMsPerToken?: number;
    signal: AbortSignal | undefined;
    clock: Clock;
    /** The clock's reading when the request arrived. */
    arrival: number;
    waitForTurn: boolean;
  },
): Promise<Served | null> {
  const { clock } = request;
  const idOf = (m: Manifest) => live.manifestIds.get(m.variant)!;
  const ranked = rankVariants(
    live.variants,
    {
      tier: choice.tier,
      pinned: choice.pinned,
      budgetMs: request.budgetMs,
      promptTokens: request.prompt.length,
      maxTokens: request.maxTokens,
    },
    services.cost,
    (m) => services.engines.isResident(idOf(m)),
    (m) => services.engines.cachedTokens(idOf(m), request.prompt),
    // Work admitted on the variant, and on the busy variants its load would have to evict.
    (m) => services.work.pendingMs([idOf(m), ...services.engines.blockedBy(idOf(m), m)]),
  );
  const first = ranked[0];
  if (request.budgetMs !== null && first && !startsInTime(first, request.budgetMs)) {
    // Waiting would spend the whole budget before this request's first token: say so now, with the
    // predicted wait, rather than answer one token after it (a predicted wait in work, not a clock).
    // The first candidate is the router's preference, not the soonest to start: the wait to report is
    // the shortest among the variants the request may use (within its tier cap when the cap has
    // any; one marked unavailable never starts, unless all are).
    const capped = ranked.filter((r) => !r.aboveCap);
    const mayUse = capped.length > 0 ? capped : ranked;
    const usable = mayUse.filter((r) => !services.engines.badReason(idOf(r.manifest)));
    const soonest = (usable.length > 0 ? usable : mayUse).reduce((a, b) =>
      startsInMs(b) < startsInMs(a) ? b : a,
    );
    const waitMs = Math.ceil(startsInMs(soonest));
    throw new ApiError(
      429,
      `Variant '${soonest.manifest.variant}' could start this request in ~${waitMs} ms (other requests' work${soonest.prediction.loadMs > 0 ? " and its load" : ""}), the soonest of the variants it may use, past its latency budget of ${request.budgetMs} ms; retry after that, or send a larger X-Latency-Budget-Ms.`,
      "rate_limit_error",
      "latency_budget_unmeetable",
      null,
      // X-Should-Retry: the openai SDKs retry a 429 after Retry-After unless the server says not to,
      // and a silent retry would spend the budget this answer exists to protect.
      { "Retry-After": String(Math.max(1, Math.ceil(waitMs / 1000))), "X-Should-Retry": "false" },
    );
  }
  const n = request.choices ?? 1;
  const extraMsPerToken = request.extraMsPerToken ?? 0;
  /** The ledger's entry for work of `totalMs` on `manifest` as `p` predicts it. */
  const estimate = (manifest: Manifest, p: Prediction, totalMs: number): WorkEstimate => ({
    prefillMs: n * p.prefillMs,
    totalMs,
    decodeMsPerToken: p.decodeMsPerToken,
    extraMsPerToken,
    speed: manifest.speed,
    promptTokens: request.prompt.length,
  });
  const loaded = await loadFirst(
    services,
    live.manifestIds,
    ranked,
    clock,
    (id, { manifest, prediction: p }) => {
      // Before planning: max_tokens' work, or at most what the budget leaves after the load (./plan.ts
      // plans no more than fits it).
      const work = n * p.prefillMs + n * (p.decodeMs + extraMsPerToken * request.maxTokens);
      const budgeted =
        request.budgetMs === null ? work : Math.min(work, Math.max(0, request.budgetMs - p.loadMs));
      return services.work.add(id, estimate(manifest, p, budgeted));
    },
  );
  const work = loaded.work;
  const planInput = {
    manifest: loaded.manifest,
    prediction: loaded.prediction,
    promptTokens: request.prompt.length,
    maxTokens: request.maxTokens,
    budgetMs: request.budgetMs,
    cpuLimitMs: services.cpuLimitMs,
    choices: n,
    extraMsPerToken,
  };
  try {
    planRequest({ ...planInput, spentMs: 0 }); // refused here if the CPU limit cannot hold a token
  } catch (e) {
    services.work.remove(work);
    throw e;
  }
  // The load is done (and counted in the time spent), so later plans charge only what is left.
  const plan = () => {
    const p = planRequest({
      ...planInput,
      prediction: { ...loaded.prediction, loadMs: 0 },
      spentMs: Math.max(0, clock.now() - request.arrival),
    });
    // What the request will do now: its plan's work (load excluded: it is done).
    work.update(estimate(loaded.manifest, loaded.prediction, p.predictedMs));
    return p;
  };

  // The request's signal (compatibility flag enable_request_signal) fires for some client
  // disconnects, not all (see ./sse.ts): it stops a queued request and ends a running generation.
  const abort = new AbortController();
  const clientSignal = request.signal;
  if (clientSignal?.aborted) abort.abort();
  else clientSignal?.addEventListener("abort", () => abort.abort(), { once: true });
  // Waiting starts now (the place in the queue is taken); only a full queue refuses at once.
  const turn = loaded.variant.queue.acquire(abort.signal);
  try {
    let held = await Promise.race([turn, Promise.resolve(null)]);
    if (!held && request.waitForTurn) held = await turn;
    const queued = held === null;
    let released = false;
    return {
      ...loaded,
      abort,
      queued,
      clock,
      plan,
      turn: async () => {
        if (!held) held = await turn;
      },
      tokenDone: () => work.tokenDone(),
      release: () => {
        if (released) return;
        released = true;
        services.work.remove(work);
        if (held) held();
        else {
          // Still queued: leave the queue (the abort makes the waiter give up its place).
          abort.abort();
          turn.then(
            (r) => r(),
            () => {},
          );
        }
      },
    };
  } catch (e) {
    services.work.remove(work);
    if (e instanceof OverloadedError) {
      throw new ApiError(
        429,
        "This variant is busy; retry shortly.",
        "rate_limit_error",
        "overloaded",
        null,
        {
          "Retry-After": "1",
        },
      );
    }
    if (abort.signal.aborted) return null;
    throw e;
  }
}

/**
 * Loads the first candidate that loads. `admit` enters the request's work in the ledger before the
 * load (a request waiting for memory is work others wait behind too); it leaves again on failure.
 */
async function loadFirst(
  services: Services,
  ids: Map<string, string>,
  ranked: Ranked[],
  clock: Clock,
  admit: (manifestId: string, r: Ranked) => WorkEntry,
): Promise<{
  variant: LoadedVariant;
  manifest: Manifest;
  prediction: Prediction;
  loadMs: number;
  work: WorkEntry;
}> {
  const failures: string[] = [];
  for (const r of ranked) {
    const { manifest, prediction } = r;
    const id = ids.get(manifest.variant)!;
    const bad = services.engines.badReason(id);
    if (bad) {
      failures.push(bad);
      continue;
    }
    const wasResident = services.engines.isResident(id);
    const t0 = clock.now();
    const work = admit(id, r);
    try {
      const variant = await services.engines.get(id, manifest);
      const loadMs = wasResident ? 0 : clock.now() - t0;
      if (!wasResident) observeLoad(services, manifest, loadMs);
      return { variant, manifest, prediction, loadMs, work };
    } catch (e) {
      services.work.remove(work);
      if (e instanceof OverloadedError)
        throw new ApiError(
          429,
          `No memory for variant '${manifest.variant}' while other variants are generating; retry shortly.`,
          "rate_limit_error",
          "overloaded",
          null,
          { "Retry-After": "1" },
        );
      if (!(e instanceof VariantLoadError)) throw e;
      failures.push(e.message);
    }
  }
  throw new ApiError(
    503,
    ranked.length === 1
      ? `The model '${ranked[0]!.manifest.variant}' is unavailable: ${failures.join("; ")}`
      : `No variant could be loaded: ${failures.join("; ") || "none matches"}`,
    "server_error",
    "variant_unavailable",
    ranked.length === 1 ? "model" : null,
  );
}
