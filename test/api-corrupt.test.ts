/**
 * A damaged variant in the worker's R2 (each describe has its own server: this file mutates R2):
 * one shard overwritten with other bytes of the same length, or deleted. The worker verifies every
 * shard's SHA-256 while streaming it into the engine, so the variant never runs:
 * - a request pinned to it (model: its name) is a 503 variant_unavailable naming the shard;
 * - requests routed by tier fall back to another variant (X-Variant says which);
 * - GET /v1/models keeps listing it (it is live) with `available: false` and the reason.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { R2Keys } from "../src/format/manifest.ts";
import {
  chat,
  clientError,
  expectApiError,
  healthz,
  liveVariants,
  manifests,
  story,
} from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

/** The R2 key of the (first) shard of `variant`, and its bytes as published. */
function shardOf(api: ApiServer, variant: string): { key: string; bytes: Uint8Array } {
  const m = manifests(api).get(variant)!;
  const key = R2Keys.shard(m.shards[0]!.sha256);
  return { key, bytes: new Uint8Array(readFileSync(join(api.dir, key))) };
}

async function ask(api: ApiServer, headers: Record<string, string>, model = "shardlm") {
  const { data, response } = await api.client.chat.completions
    .create({ model, messages: story, max_tokens: 8, temperature: 0 }, { headers })
    .withResponse();
  return { data, variant: response.headers.get("x-variant") };
}

describe("a shard overwritten with other bytes of the same length", () => {
  let api: ApiServer;

  beforeAll(async () => {
    api = await startApiServer();
    const { key, bytes } = shardOf(api, "quality");
    const bad = bytes.slice();
    for (let i = 0; i < bad.length; i += 4096) bad[i] = bad[i]! ^ 0x5a; // same length, other bytes
    await api.bucket.put(key, bad);
    expect((await api.bucket.head(key))?.size).toBe(bytes.length);
  }, 300_000);

  afterAll(async () => {
    await api?.close();
  });

  it("a request pinned to the variant is a 503 variant_unavailable that names the corrupt shard", async () => {
    const before = await healthz(api);
    const r = await chat(api, { model: "quality", messages: story, max_tokens: 8 });
    expectApiError(r, 503, {
      type: "server_error",
      code: "variant_unavailable",
      param: "model",
      message: /^The model 'quality' is unavailable: .*shard [0-9a-f]{64} is corrupt/,
    });
    const e = await clientError(api.client.chat.completions.create({ model: "quality", messages: story }));
    expect(e).toBeInstanceOf(OpenAI.InternalServerError);
    expect([e.status, e.code, e.param]).toEqual([503, "variant_unavailable", "model"]);
    // Streaming too: the error comes as JSON before any event.
    const s = await chat(api, { model: "quality", messages: story, max_tokens: 8, stream: true });
    expectApiError(s, 503, { code: "variant_unavailable" });
    // It never ran: no tokens were generated.
    const after = await healthz(api);
    expect(after.tokens_generated).toBe(before.tokens_generated);
    expect(after.generations).toBe(before.generations);
  });

  it("requests for its tier fall back to the next variant, which answers", async () => {
    const r = await ask(api, { "X-Quality-Tier": "quality" });
    expect(r.variant).toBe("balanced");
    expect(r.data.model).toBe("balanced");
    expect(r.data.choices[0]!.message.content!.length).toBeGreaterThan(0);
    const plain = await ask(api, { "X-Quality-Tier": "balanced" });
    expect(r.data.choices[0]!.message.content).toBe(plain.data.choices[0]!.message.content);
  });

  it("with no tier, the best variant that loads serves; budgets route around it too", async () => {
    expect((await ask(api, {})).variant).toBe("balanced");
    expect((await ask(api, { "X-Latency-Budget-Ms": "600000" })).variant).toBe("balanced");
    const stream = await api.client.chat.completions.create(
      { model: "auto", messages: story, max_tokens: 8, stream: true },
      { headers: { "X-Quality-Tier": "quality" } },
    );
    const models = new Set<string>();
    for await (const chunk of stream) models.add(chunk.model);
    expect([...models]).toEqual(["balanced"]);
  });

  it("GET /v1/models still lists it, marked unavailable with the reason; it is never resident", async () => {
    const variants = await liveVariants(api);
    expect(variants.map((v) => v.id)).toEqual(["quality", "balanced", "speed"]);
    const q = variants.find((v) => v.id === "quality")!;
    expect(q.available).toBe(false);
    expect(q.unavailable_reason).toMatch(/corrupt/);
    expect(q.resident).toBe(false);
    for (const v of variants.filter((x) => x.id !== "quality")) {
      expect(v.available).toBe(true);
      expect(v.unavailable_reason).toBeUndefined();
    }
    const health = await healthz(api);
    expect(health.resident_variants).toBe(1); // balanced only
  });

  it("it is not reloaded on every request: later pinned requests fail fast", async () => {
    const r = await chat(api, { model: "quality", messages: story, max_tokens: 8 });
    expectApiError(r, 503, { code: "variant_unavailable" });
    expect(r.ms).toBeLessThan(500);
  });
});

describe("a deleted shard", () => {
  let api: ApiServer;

  beforeAll(async () => {
    api = await startApiServer();
    const { key } = shardOf(api, "speed");
    await api.bucket.delete(key);
    expect(await api.bucket.head(key)).toBeNull();
  }, 300_000);

  afterAll(async () => {
    await api?.close();
  });

  it("a request pinned to the variant is a 503 that says the shard is missing", async () => {
    const r = await chat(api, { model: "speed", messages: story, max_tokens: 8 });
    expectApiError(r, 503, {
      type: "server_error",
      code: "variant_unavailable",
      param: "model",
      message: /shard [0-9a-f]{64} is missing/,
    });
  });

  it("X-Quality-Tier: speed falls back above the cap (nothing below it), to the nearest: balanced", async () => {
    const r = await ask(api, { "X-Quality-Tier": "speed" });
    expect(r.variant).toBe("balanced");
  });

  it("a budget nothing fits would pick speed (the fastest); it takes the next fastest instead", async () => {
    const r = await ask(api, { "X-Latency-Budget-Ms": "1" });
    expect(r.variant).not.toBe("speed");
    expect(["quality", "balanced"]).toContain(r.variant);
  });

  it("GET /v1/models marks it unavailable: the shard is missing", async () => {
    const s = (await liveVariants(api)).find((v) => v.id === "speed")!;
    expect(s.available).toBe(false);
    expect(s.unavailable_reason).toMatch(/missing/);
  });
});
