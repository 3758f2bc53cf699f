/**
 * GET /v1/models `context_length` (a shardlm extension, OpenRouter's name) is the context the chat
 * route enforces for a request naming that id: a pinned variant's own, and for a tier alias the
 * context every variant serves. Under an engine budget too small for the quality variant's full
 * context (as the default SmolLM2 build's quality is: 1728 of 2048), quality reports less than speed
 * and the chat route refuses exactly what the entry says does not fit. workerd over real HTTP, the
 * stories260K test variants published without balanced (so "balanced" is an alias).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readManifest } from "../src/compress/variant-store.ts";
import { engineContextFor, estimateEngineBytes } from "../src/runtime/load-engine.ts";
import { call, chat, expectApiError, story } from "./helpers/api-calls.ts";
import { type ApiServer, buildTestVariants, startLocalApi } from "./helpers/api-server.ts";
import { Model, ModelList } from "./helpers/openai-schemas.ts";

let api: ApiServer;
let full = 0;

beforeAll(async () => {
  const built = await buildTestVariants();
  const { balanced: _, ...variants } = built.index.variants;
  const index = { ...built.index, variants };
  // The budget: one byte under quality's engine at the full context (with a single-row head: the
  // Worker gives up batched head rows before context).
  const quality = readManifest(built.dir, variants.quality!);
  const speed = readManifest(built.dir, variants.speed!);
  full = engineContextFor(quality.model.config);
  const budget = estimateEngineBytes(quality.weights, full, "q8", 1) - 1;
  // The setup this test needs: speed still fits its full context where quality does not.
  expect(estimateEngineBytes(speed.weights, full, "q8")).toBeLessThanOrEqual(budget);
  api = await startLocalApi({ dir: built.dir, index }, { ENGINE_MEMORY_BUDGET: String(budget) });
}, 300_000);

afterAll(async () => {
  await api?.close();
});

type Entry = { id: string; context_length: number; alias_of?: string };

describe("GET /v1/models context_length under a budget that shrinks quality's context", () => {
  it("lists each variant's context (quality reduced, speed full) in objects the OpenAI schemas accept", async () => {
    const r = await call(api, "/v1/models");
    expect(r.status).toBe(200);
    ModelList.parse(r.json);
    const data = (r.json as { data: Entry[] }).data;
    const ctx = Object.fromEntries(data.map((m) => [m.id, m.context_length]));
    expect(ctx.speed).toBe(full);
    expect(ctx.quality).toBeLessThan(full);
    expect(ctx.quality).toBeGreaterThan(0);
    for (const id of ["quality", "speed"]) {
      const one = await call(api, `/v1/models/${id}`);
      Model.parse(one.json);
      expect((one.json as Entry).context_length).toBe(ctx[id]);
    }
    // The alias routes within its tier and may fall back: the context every variant serves.
    const alias = await call(api, "/v1/models/balanced");
    Model.parse(alias.json);
    expect(alias.json).toMatchObject({ alias_of: "speed", context_length: ctx.quality });
  });

  it("the chat route accepts max_tokens up to each entry's context_length and refuses one more", async () => {
    const data = (await call(api, "/v1/models")).json as { data: Entry[] };
    const ctx = Object.fromEntries(data.data.map((m) => [m.id, m.context_length]));
    const q = ctx.quality!;
    const ok = await chat(api, { model: "quality", messages: story, max_tokens: q });
    expect(ok.status).toBe(200);
    expectApiError(await chat(api, { model: "quality", messages: story, max_tokens: q + 1 }), 400, {
      param: "max_tokens",
    });
    // Pinned speed holds its full context; routed by tier, the smallest context applies.
    expect((await chat(api, { model: "speed", messages: story, max_tokens: q + 1 })).status).toBe(200);
    expectApiError(await chat(api, { model: "speed", messages: story, max_tokens: ctx.speed! + 1 }), 400, {
      param: "max_tokens",
    });
    expectApiError(
      await chat(
        api,
        { model: "shardlm", messages: story, max_tokens: q + 1 },
        { "X-Quality-Tier": "speed" },
      ),
      400,
      { param: "max_tokens" },
    );
  }, 120_000);
});
