/**
 * Latency budgets and tiers, in workerd with the openai client. The router predicts a request's
 * latency from each variant's costs (the manifest's measured speed, corrected by what this isolate
 * observes, published in GET /v1/models); the tests read those costs right before each request and
 * pick budgets between the predictions, so they hold whatever earlier requests taught the isolate.
 * Forcing a variant needs it to be predicted faster than every better one, which holds for the
 * manifests' own measurements; serving a variant corrects only that variant's costs (workerd is
 * slower than the Node measurement), so each describe starts its own server and forces the fastest
 * variant first.
 *
 * Every describe runs twice: with the local clock, and with the production clock
 * (SHARDLM_FROZEN_CLOCK=1: time advances only at I/O, as on deployed Workers). Budgets are planned
 * in tokens, so both pick the same variants and end answers within their plan; under the frozen
 * clock the CPU costs are never corrected from its readings, so predictions stay the manifests'.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { putManifest, readManifest } from "../src/compress/variant-store.ts";
import { TIERS } from "../src/worker/router.ts";
import type { ChatMessage } from "../src/worker/schemas.ts";
import {
  countPromptTokens,
  decodeMsAfter,
  liveVariants,
  manifests,
  predictions,
  story,
} from "./helpers/api-calls.ts";
import { type ApiServer, buildTestVariants, startLocalApi, wranglerSetting } from "./helpers/api-server.ts";

const QUALITY_ORDER = ["quality", "balanced", "speed"];
/** The routing manifests' prefill growth: a prompt token at position p costs (1 + p / 256) times one at 0. */
const PREFILL_POSITION_TOKENS = 256;
/** Decode growth given to every test variant (x2 at position 2048), like prefill's. */
const DECODE_POSITION_TOKENS = 2048;
/** A prompt of ~1000 tokens. */
const LONG: ChatMessage[] = [{ role: "user", content: "Lily ".repeat(998) }];

/**
 * The test variants with speed profiles in tier order: the build measures each variant's decode and
 * prefill cost, but stories260K runs a token in ~0.1 ms, so under a loaded CI machine the measured
 * order is noise (a fresh build once had balanced decoding faster than speed). Routing is tested on
 * given costs: quality's measured ones (with a floor), scaled 1 / 0.75 / 0.5 for quality / balanced / speed,
 * prefill growing x2 by position PREFILL_POSITION_TOKENS and decode by DECODE_POSITION_TOKENS on each (the toy's own measured growth
 * is far steeper: attention is nearly all of its cost). The manifests are re-published
 * content-addressed beside the built ones; shards are unchanged.
 */
async function startRoutingServer(
  bindings: Record<string, string>,
  loadMsPerMB: Record<string, number> = {},
): Promise<ApiServer> {
  const built = await buildTestVariants();
  // At least what a loaded 2-core machine measures, so that the CPU-limit suite's 1000-token prompt
  // is past its 20 ms limit on every variant however fast the (idle) build machine was.
  const measured = readManifest(built.dir, built.index.variants.quality!).speed;
  const base = {
    decodeMsPerToken: Math.max(measured.decodeMsPerToken, 0.1),
    prefillMsPerToken: Math.max(measured.prefillMsPerToken, 0.1),
  };
  const scale: Record<string, number> = { quality: 1, balanced: 0.75, speed: 0.5 };
  const variants: Record<string, string> = {};
  for (const [name, id] of Object.entries(built.index.variants)) {
    const m = readManifest(built.dir, id);
    const f = scale[name]!;
    variants[name] = putManifest(built.dir, {
      ...m,
      speed: {
        ...m.speed,
        loadMsPerMB: loadMsPerMB[name] ?? m.speed.loadMsPerMB,
        decodeMsPerToken: base.decodeMsPerToken * f,
        prefillMsPerToken: base.prefillMsPerToken * f,
        prefillPositionTokens: PREFILL_POSITION_TOKENS,
        decodePositionTokens: DECODE_POSITION_TOKENS,
      },
    });
  }
  return startLocalApi({ dir: built.dir, index: { ...built.index, variants } }, bindings);
}

interface Workload {
  messages: ChatMessage[];
  promptTokens: number;
  maxTokens: number;
}

/**
 * The short story prompt with 2000 tokens to generate, unless its predictions lie closer than 5 ms
 * (then a 1000-token prompt, whose prefill costs differ more: slower to run, so only when needed).
 */
async function pickWorkload(api: ApiServer): Promise<Workload> {
  let best: { w: Workload; gap: number } | null = null;
  for (const [messages, maxTokens] of [
    [story, 2000],
    [LONG, 1000],
  ] as const) {
    const promptTokens = countPromptTokens(api, messages);
    const p = await predictions(api, promptTokens, maxTokens);
    const ordered = QUALITY_ORDER.map((v) => p.get(v)!);
    const gap = Math.min(ordered[0]! - ordered[1]!, ordered[1]! - ordered[2]!);
    if (!best || gap > best.gap) best = { w: { messages, promptTokens, maxTokens }, gap };
    if (best.gap >= 5) break;
  }
  expect(best!.gap, "the manifests predict quality > balanced > speed").toBeGreaterThan(2);
  return best!.w;
}

/** The smallest whole-ms budget that `target` fits, checked to be below every better variant. */
function budgetFor(target: string, p: Map<string, number>, among = QUALITY_ORDER): number {
  const budget = Math.ceil(p.get(target)!);
  const better = among.slice(0, among.indexOf(target));
  for (const b of better) {
    expect(p.get(b)!, `${b} must not fit a budget of ${budget} (predictions ${[...p]})`).toBeGreaterThan(
      budget,
    );
  }
  return budget;
}

/**
 * Where a budget nothing fits goes: the lowest declared tier of `among` (one variant per tier here),
 * whatever the manifests measured or this isolate has loaded.
 */
function lowestTier(api: ApiServer, among: string[]): string {
  const ms = manifests(api);
  return [...among].sort((a, b) => TIERS.indexOf(ms.get(b)!.tier) - TIERS.indexOf(ms.get(a)!.tier))[0]!;
}

async function ask(api: ApiServer, w: Workload, headers: Record<string, string>, model = "shardlm") {
  const { data, response } = await api.client.chat.completions
    .create({ model, messages: w.messages, max_tokens: w.maxTokens, temperature: 0 }, { headers })
    .withResponse();
  expect(data.usage?.prompt_tokens).toBe(w.promptTokens);
  // The answer ends within its plan (budget and CPU limit counted in tokens).
  const planned = Number(response.headers.get("x-planned-tokens"));
  expect(planned).toBeGreaterThanOrEqual(1);
  expect(data.usage!.completion_tokens).toBeLessThanOrEqual(planned);
  return {
    data,
    planned,
    variant: response.headers.get("x-variant"),
    predicted: Number(response.headers.get("x-predicted-ms")),
    exhausted: response.headers.get("x-budget-exhausted"),
  };
}

const CLOCKS = [
  { clock: "system", frozen: false },
  { clock: "frozen at I/O", frozen: true },
];

describe.each(CLOCKS)("clock: $clock", ({ frozen }) => {
  // Routing over the manifests' measured plain speeds: speculation off (on the toy model the build's
  // speculation estimates are timer noise, and where they turn it on they reorder effective costs).
  const clockBindings = { SHARDLM_FROZEN_CLOCK: frozen ? "1" : "0", SHARDLM_SPECULATION: "off" };

  describe("a budget forces each variant", () => {
    let api: ApiServer;
    let w: Workload;

    beforeAll(async () => {
      api = await startRoutingServer(clockBindings);
      w = await pickWorkload(api);
    }, 300_000);

    afterAll(async () => {
      await api?.close();
    });

    it("before any request, the published costs are the manifests' measured speed", async () => {
      const ms = manifests(api);
      for (const v of await liveVariants(api)) {
        const m = ms.get(v.id)!;
        expect(v.resident).toBe(false);
        expect(v.cost.prefill_ms_per_token).toBeCloseTo(m.speed.prefillMsPerToken, 12);
        expect(v.cost.prefill_position_tokens).toBe(m.speed.prefillPositionTokens);
        expect(v.cost.decode_ms_per_token).toBeCloseTo(m.speed.decodeMsPerToken, 12);
        // Decode growth, published beside prefill's (the build's: test/decode-position.test.ts).
        expect(v.cost.decode_position_tokens).toBe(DECODE_POSITION_TOKENS);
        expect(v.cost.decode_position_tokens).toBe(m.speed.decodePositionTokens);
        expect(v.cost.load_ms).toBeCloseTo((m.speed.loadMsPerMB * m.weights.totalBytes) / 1e6, 9);
      }
    });

    // Fastest first: serving a variant changes only its own costs.
    it.each(["speed", "balanced", "quality"])("a budget between the predictions picks %s", async (target) => {
      const p = await predictions(api, w.promptTokens, w.maxTokens);
      const perToken =
        p.get(target)! - (await predictions(api, w.promptTokens, w.maxTokens - 1)).get(target)!;
      const budget = budgetFor(target, p);
      const loadMs = (await liveVariants(api)).find((v) => v.id === target)!.cost.load_ms;
      const r = await ask(api, w, { "X-Latency-Budget-Ms": String(budget) });
      expect(r.variant).toBe(target);
      expect(r.data.model).toBe(target);
      expect(r.predicted).toBeLessThanOrEqual(budget);
      // X-Predicted-Ms is the plan's: time already spent queued can cut the last tokens.
      // It is the time already spent (the real load, not the predicted one) + the planned work.
      const work = p.get(target)! - loadMs - (w.maxTokens - r.planned) * perToken;
      expect(r.predicted).toBeGreaterThanOrEqual(Math.floor(work));
    });

    it("a variant that was served is resident and its costs follow what this isolate measured", async () => {
      for (const v of await liveVariants(api)) {
        expect(v.resident).toBe(true);
        expect(v.cost.load_ms).toBe(0);
        expect(v.cost.decode_ms_per_token).toBeGreaterThan(0);
      }
    });
  });

  describe("tiers and budgets together", () => {
    let api: ApiServer;
    let w: Workload;
    /** For requests whose routing does not depend on the predictions' size. */
    let short: Workload;

    beforeAll(async () => {
      api = await startRoutingServer(clockBindings);
      w = await pickWorkload(api);
      short = { messages: story, promptTokens: countPromptTokens(api, story), maxTokens: 16 };
    }, 300_000);

    afterAll(async () => {
      await api?.close();
    });

    it("X-Quality-Tier: balanced with a budget only speed fits picks speed", async () => {
      const p = await predictions(api, w.promptTokens, w.maxTokens);
      const budget = budgetFor("speed", p);
      const r = await ask(api, w, { "X-Quality-Tier": "balanced", "X-Latency-Budget-Ms": String(budget) });
      expect(r.variant).toBe("speed");
      expect(r.predicted).toBeLessThanOrEqual(budget);
    });

    it("X-Quality-Tier: quality with a budget balanced fits but quality does not picks balanced", async () => {
      const p = await predictions(api, w.promptTokens, w.maxTokens);
      const budget = budgetFor("balanced", p);
      const r = await ask(api, w, { "X-Quality-Tier": "quality", "X-Latency-Budget-Ms": String(budget) });
      expect(r.variant).toBe("balanced");
      expect(r.predicted).toBeLessThanOrEqual(budget);
    });

    it.each([
      [{ "X-Quality-Tier": "balanced" }, "shardlm", "balanced"],
      [{ "X-Quality-Tier": "speed" }, "shardlm", "speed"],
      [{}, "balanced", "balanced"], // a variant name as the model pins it
      [{ "X-Quality-Tier": "speed" }, "quality", "speed"], // the header wins over the model's tier
      [{}, "shardlm", "quality"], // no tier: the best that fits
    ])(
      "the tier caps quality: %o, model %s, a budget everything fits -> %s",
      async (headers, model, want) => {
        const r = await ask(api, short, { ...headers, "X-Latency-Budget-Ms": "600000" }, model);
        expect(r.variant).toBe(want);
        expect(r.exhausted).toBeNull();
        expect(r.data.choices[0]!.finish_reason).toBe("length");
        expect(r.data.usage?.completion_tokens).toBe(short.maxTokens);
      },
    );

    it("a budget nothing fits picks the fastest variant and cuts the answer (X-Budget-Exhausted)", async () => {
      const fastest = lowestTier(api, QUALITY_ORDER);
      // The costs as the router sees them before this request (it corrects them after).
      const before = await predictions(api, w.promptTokens, 0);
      const perToken = (await predictions(api, w.promptTokens, 1)).get(fastest)! - before.get(fastest)!;
      // X-Predicted-Ms predicts the cut plan (X-Planned-Tokens decode steps), not max_tokens: the
      // time spent (the real load) + prefill + planned steps.
      const loadMs = (await liveVariants(api)).find((v) => v.id === fastest)!.cost.load_ms;
      const r = await ask(api, w, { "X-Latency-Budget-Ms": "1" });
      expect(r.variant).toBe(fastest);
      expect(r.planned).toBeLessThan(w.maxTokens);
      expect(r.predicted).toBeGreaterThanOrEqual(
        Math.floor(before.get(fastest)! - loadMs + r.planned * perToken),
      );
      expect(r.exhausted).toBe("true");
      expect(r.data.choices[0]!.finish_reason).toBe("length");
      expect(r.data.usage!.completion_tokens).toBeGreaterThanOrEqual(1);
      expect(r.data.usage!.completion_tokens).toBeLessThan(w.maxTokens);
    });

    it("a pinned variant (model: its name) is never swapped by a budget, only cut short", async () => {
      const r = await ask(api, w, { "X-Latency-Budget-Ms": "1" }, "quality");
      expect(r.variant).toBe("quality");
      expect(r.exhausted).toBe("true");
      expect(r.data.usage!.completion_tokens).toBeLessThan(w.maxTokens);
    });

    it("with a tier, a budget nothing fits picks the fastest at or below the tier", async () => {
      const fastest = lowestTier(api, ["balanced", "speed"]);
      const r = await ask(api, w, { "X-Quality-Tier": "balanced", "X-Latency-Budget-Ms": "1" });
      expect(r.variant).toBe(fastest);
      expect(r.exhausted).toBe("true");
    });

    it("streaming: the final chunk carries shardlm.budget_exhausted", async () => {
      const stream = async (x: Workload, budget: string) => {
        const s = await api.client.chat.completions.create(
          { model: "shardlm", messages: x.messages, max_tokens: x.maxTokens, temperature: 0, stream: true },
          { headers: { "X-Latency-Budget-Ms": budget } },
        );
        let last: Record<string, unknown> | null = null;
        let finish: string | null = null;
        for await (const chunk of s) {
          const c = chunk.choices[0];
          if (c?.finish_reason) {
            finish = c.finish_reason;
            last = chunk as unknown as Record<string, unknown>;
          }
        }
        return { finish, shardlm: last?.shardlm as { budget_exhausted: boolean } | undefined };
      };
      const cut = await stream(w, "1");
      expect(cut.finish).toBe("length");
      expect(cut.shardlm?.budget_exhausted).toBe(true);
      const whole = await stream(short, "600000");
      expect(whole.finish).toBe("length");
      expect(whole.shardlm?.budget_exhausted).toBe(false);
    });

    it("a non-streaming answer under a generous budget has no X-Budget-Exhausted header", async () => {
      const { response } = await api.client.chat.completions
        .create(
          { model: "speed", messages: story, max_tokens: 8 },
          { headers: { "X-Latency-Budget-Ms": "60000" } },
        )
        .withResponse();
      expect(response.headers.get("x-budget-exhausted")).toBeNull();
    });
  });

  describe("predictions after answers", () => {
    let api: ApiServer;

    beforeAll(async () => {
      api = await startRoutingServer(clockBindings);
    }, 300_000);

    afterAll(async () => {
      await api?.close();
    });

    it(
      frozen
        ? "do not collapse: CPU costs stay the manifests' (the frozen clock reads ~0 ms), load is measured"
        : "follow what the clock measured: CPU costs are corrected from the manifests'",
      async () => {
        const ms = manifests(api);
        for (const model of QUALITY_ORDER) {
          for (let i = 0; i < 3; i++) {
            const r = await api.client.chat.completions.create({
              model,
              messages: story,
              max_tokens: 200,
              temperature: 0,
            });
            expect(r.usage!.completion_tokens).toBeGreaterThan(1);
          }
        }
        const health = (await (await fetch(new URL("/healthz", api.url))).json()) as Record<string, unknown>;
        expect(health.clock).toBe(frozen ? "frozen-at-io" : "system");
        expect(health.clock_measures_cpu).toBe(!frozen);
        for (const v of await liveVariants(api)) {
          const m = ms.get(v.id)!;
          // SHARDLM_SPECULATION=off: served with speculation off, whatever the build chose.
          expect(
            (v as unknown as { speculative: { enabled: boolean } | null }).speculative?.enabled ?? false,
          ).toBe(false);
          if (frozen) {
            expect(v.cost.decode_ms_per_token).toBe(m.speed.decodeMsPerToken);
            expect(v.cost.prefill_ms_per_token).toBe(m.speed.prefillMsPerToken);
          } else {
            // observe() fed: the corrected cost is no longer exactly the manifest's
            expect(v.cost.decode_ms_per_token).not.toBe(m.speed.decodeMsPerToken);
            expect(v.cost.decode_ms_per_token).toBeGreaterThan(0);
          }
        }
      },
    );
  });

  describe("the CPU limit", () => {
    let api: ApiServer;
    const LIMIT_MS = 20;

    beforeAll(async () => {
      api = await startRoutingServer({ ...clockBindings, CPU_LIMIT_MS: String(LIMIT_MS) });
    }, 300_000);

    afterAll(async () => {
      await api?.close();
    });

    it("caps max tokens so the predicted CPU time fits (X-Max-Tokens-Capped: cpu)", async () => {
      const promptTokens = countPromptTokens(api, story);
      const p = await predictions(api, promptTokens, 2000);
      expect(p.get("speed")!, "2000 tokens are predicted past the limit").toBeGreaterThan(LIMIT_MS);
      const { data, response } = await api.client.chat.completions
        .create({ model: "speed", messages: story, max_tokens: 2000, temperature: 0 })
        .withResponse();
      expect(response.headers.get("x-max-tokens-capped")).toBe("cpu");
      const planned = Number(response.headers.get("x-planned-tokens"));
      expect(planned).toBeGreaterThanOrEqual(1);
      expect(planned).toBeLessThan(2000);
      expect(data.usage!.completion_tokens).toBeLessThanOrEqual(planned);
      expect(data.choices[0]!.finish_reason).toBe("length");
    });

    it("refuses up front a prompt whose prefill alone is predicted past the limit (400 cpu_limit_exceeded)", async () => {
      const long = LONG;
      const p = await predictions(api, countPromptTokens(api, long), 1);
      expect(Math.min(...p.values()), "the prompt's prefill is predicted past the limit").toBeGreaterThan(
        LIMIT_MS,
      );
      const r = await fetch(new URL("/v1/chat/completions", api.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "speed", messages: long, max_tokens: 4 }),
      });
      expect(r.status).toBe(400);
      const body = (await r.json()) as { error: Record<string, unknown> };
      expect(body.error).toMatchObject({
        type: "invalid_request_error",
        code: "cpu_limit_exceeded",
        param: "messages",
      });
      expect(String(body.error.message)).toMatch(/limit per request is 20 ms/);
    });
  });
});

/**
 * Under the production clock (frozen at I/O): CPU costs stay the manifests' whatever the warm-up
 * requests ran like, so the predictions the test computes are the router's (under the local clock
 * each answer corrects them by what this loaded machine measured, and the premise below drifts).
 */
describe("a long prompt: prefill cost grows with position (clock frozen at I/O)", () => {
  let api: ApiServer;
  let w: Workload;

  beforeAll(async () => {
    api = await startRoutingServer({ SHARDLM_FROZEN_CLOCK: "1", SHARDLM_SPECULATION: "off" });
    // Every variant resident first: a real load counts against the budget as time spent, and
    // here it would pass what a ~1000-token prefill leaves of it.
    for (const model of QUALITY_ORDER)
      await api.client.chat.completions.create({ model, messages: story, max_tokens: 1 });
    w = { messages: LONG, promptTokens: countPromptTokens(api, LONG), maxTokens: 1000 };
  }, 300_000);

  afterAll(async () => {
    await api?.close();
  });

  it("a budget quality fits at a flat prefill cost, but not at the position-aware one, picks balanced", async () => {
    const p = await predictions(api, w.promptTokens, w.maxTokens);
    const costs = new Map((await liveVariants(api)).map((v) => [v.id, v.cost]));
    const q = costs.get("quality")!;
    const flatQuality =
      q.load_ms + w.promptTokens * q.prefill_ms_per_token + decodeMsAfter(q, w.promptTokens, w.maxTokens);
    const budget = budgetFor("balanced", p);
    expect(flatQuality, "a flat cost per prompt token would pick quality").toBeLessThan(budget);
    const r = await ask(api, w, { "X-Latency-Budget-Ms": String(budget) });
    expect(r.variant).toBe("balanced");
    expect(r.predicted).toBeLessThanOrEqual(budget);
    // X-Predicted-Ms is the plan's: the time spent (the real load) + the position-aware prefill +
    // the planned decode steps (time spent queued can cut the last ones).
    const b = costs.get("balanced")!;
    const work =
      p.get("balanced")! -
      b.load_ms -
      decodeMsAfter(b, w.promptTokens, w.maxTokens) +
      decodeMsAfter(b, w.promptTokens, r.planned);
    expect(r.predicted).toBeGreaterThanOrEqual(Math.floor(work));
  });

  it("the same prompt again on balanced: its cached prefix is not predicted, only the last token at its position", async () => {
    const again = { ...w, maxTokens: 8 };
    const b = (await liveVariants(api)).find((v) => v.id === "balanced")!.cost;
    const uncached = (await predictions(api, again.promptTokens, again.maxTokens)).get("balanced")!;
    const last = again.promptTokens - 1;
    // One prompt token prefilled, at position promptTokens - 1; then the decode steps.
    const expected =
      b.prefill_ms_per_token * (1 + last / b.prefill_position_tokens!) +
      decodeMsAfter(b, again.promptTokens, again.maxTokens);
    const r = await ask(api, again, {}, "balanced");
    expect(r.data.usage?.prompt_tokens_details?.cached_tokens).toBe(last);
    expect(r.predicted).toBeGreaterThanOrEqual(Math.floor(expected));
    expect(r.predicted, "far below the uncached prediction").toBeLessThan(uncached / 2);
  });
});

describe("X-Predicted-Ms is the plan's own prediction", () => {
  let api: ApiServer;

  beforeAll(async () => {
    // speed's load predicted far slower than it runs (a calibrated load that the real one beats):
    // ~30 s for its ~0.16 MB, over the budget below yet within the 60 s CPU limit's 80%.
    api = await startRoutingServer({ SHARDLM_SPECULATION: "off" }, { speed: 2e5 });
  }, 300_000);

  afterAll(async () => {
    await api?.close();
  });

  it("never exceeds the budget when the plan is not cut (the real load, not the predicted one)", async () => {
    const budget = 20_000;
    const load = (await liveVariants(api)).find((v) => v.id === "speed")!.cost.load_ms;
    expect(load, "speed's predicted load alone is over the budget").toBeGreaterThan(budget);
    const short = { messages: story, promptTokens: countPromptTokens(api, story), maxTokens: 8 };
    const r = await ask(api, short, { "X-Quality-Tier": "speed", "X-Latency-Budget-Ms": String(budget) });
    expect(r.variant).toBe("speed");
    expect(r.planned).toBe(8);
    expect(r.exhausted).toBeNull();
    expect(r.predicted).toBeGreaterThan(0);
    expect(r.predicted).toBeLessThanOrEqual(budget);
  });
});

it("wrangler.toml tells the Worker its CPU limit ([vars] CPU_LIMIT_MS = [limits] cpu_ms)", () => {
  const limit = wranglerSetting("limits", "cpu_ms");
  expect(limit).toMatch(/^\d+$/);
  expect(Number(limit)).toBeLessThanOrEqual(300_000);
  expect(wranglerSetting("vars", "CPU_LIMIT_MS")).toBe(limit);
});
