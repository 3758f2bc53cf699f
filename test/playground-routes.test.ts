/**
 * The content routes (src/worker/content-routes.ts) and the playground page, over real HTTP against
 * the worker in workerd with the published stories260K variants.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LivePointer, Manifest } from "../src/format/manifest.ts";
import { deployedTiers, fetchDeployment, routedContext } from "../src/playground/tier-menu.ts";
import { engineContextFor } from "../src/runtime/load-engine.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

let api: ApiServer;
let live: LivePointer;
let manifest: Manifest;
let manifestId: string;

const sha = (b: ArrayBuffer) => createHash("sha256").update(new Uint8Array(b)).digest("hex");
const get = (path: string, init?: RequestInit) => fetch(new URL(path, api.url), init);

beforeAll(async () => {
  api = await startApiServer();
  const res = await get("/v1/live");
  expect(res.status).toBe(200);
  live = LivePointer.parse(await res.json());
  manifestId = live.variants.quality!;
  manifest = Manifest.parse(await (await get(`/v1/manifests/${manifestId}`)).json());
}, 300_000);

afterAll(async () => {
  await api?.close();
});

describe("content routes", () => {
  it("GET /v1/live returns live.json with a short cache", async () => {
    const res = await get("/v1/live");
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(res.headers.get("cache-control")).toBe("public, max-age=0"); // LIVE_CACHE_SECONDS=0 in tests
    expect(Object.keys(live.variants).sort()).toEqual(Object.keys(api.index.variants).sort());
    expect(live.variants).toEqual(api.index.variants);
  });

  it("GET /v1/manifests/:sha256 returns the manifest, immutable, ETag = hash", async () => {
    const res = await get(`/v1/manifests/${manifestId}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("etag")).toBe(`"${manifestId}"`);
    expect(sha(await res.arrayBuffer())).toBe(manifestId);
    expect(manifest.variant).toBe("quality");
  });

  it("GET /v1/shards/:sha256 streams every shard byte for byte", async () => {
    for (const s of manifest.shards) {
      const res = await get(`/v1/shards/${s.sha256}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/octet-stream");
      expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(res.headers.get("etag")).toBe(`"${s.sha256}"`);
      expect(res.headers.get("access-control-allow-origin")).toBe("*");
      const body = await res.arrayBuffer();
      expect(body.byteLength).toBe(s.bytes);
      expect(sha(body)).toBe(s.sha256);
    }
  });

  it("GET /v1/blobs/:sha256 returns the tokenizer", async () => {
    const t = manifest.model.tokenizer;
    const res = await get(`/v1/blobs/${t.sha256}`);
    expect(res.status).toBe(200);
    const body = await res.arrayBuffer();
    expect(body.byteLength).toBe(t.bytes);
    expect(sha(body)).toBe(t.sha256);
    expect(JSON.parse(new TextDecoder().decode(body)).kind).toBeTypeOf("string");
  });

  it("answers If-None-Match with 304 and HEAD without a body", async () => {
    const s = manifest.shards[0]!;
    const res = await get(`/v1/shards/${s.sha256}`, { headers: { "If-None-Match": `"${s.sha256}"` } });
    expect(res.status).toBe(304);
    expect(res.headers.get("etag")).toBe(`"${s.sha256}"`);
    const head = await get(`/v1/shards/${s.sha256}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(s.bytes));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it("404s a missing object and 400s a malformed hash, as OpenAI errors", async () => {
    const missing = "0".repeat(64);
    for (const kind of ["shards", "blobs", "manifests"]) {
      const res = await get(`/v1/${kind}/${missing}`);
      expect(res.status).toBe(404);
      const body = (await res.json()) as { error: { type: string; code: string; param: string } };
      expect(body.error.type).toBe("not_found_error");
      expect(body.error.param).toBe("sha256");
      for (const bad of ["abc", "A".repeat(64), `${"0".repeat(63)}g`, "0".repeat(65)]) {
        const r = await get(`/v1/${kind}/${bad}`);
        expect(r.status, `${kind}/${bad}`).toBe(400);
        const b = (await r.json()) as { error: { type: string; code: string } };
        expect(b.error).toMatchObject({ type: "invalid_request_error", code: "invalid_hash" });
      }
    }
  });

  it("405s other methods on the content routes", async () => {
    const res = await get(`/v1/shards/${manifest.shards[0]!.sha256}`, { method: "DELETE" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD");
  });
});

describe("the playground page", () => {
  it("GET / serves the chat page, which loads its script and style sheet from the Worker", async () => {
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    const html = await res.text();
    for (const id of ["tier", "budget", "message", "send", "stop", "log", "key-dialog"]) {
      expect(html).toContain(`id="${id}"`);
    }
    // The script is a bundle of its own, not inline JavaScript.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).toContain('<script type="module" src="/playground/app.js">');
    expect(html).toContain('href="/playground/app.css"');
  });

  it("serves the page's script, style sheet and the engine bundle", async () => {
    const files = [
      ["/playground/app.js", /^text\/javascript/, "/playground/engine.js"],
      ["/playground/app.css", /^text\/css/, ".turn"],
      ["/playground/engine.js", /^text\/javascript/, "runInBrowser"],
    ] as const;
    for (const [path, type, marker] of files) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(type);
      expect(res.headers.get("cache-control"), path).toBe("no-cache");
      expect(await res.text(), path).toContain(marker);
      const post = await get(path, { method: "POST" });
      expect(post.status, path).toBe(405);
      expect(post.headers.get("allow"), path).toBe("GET, HEAD");
    }
  });
});

describe("the playground's Tier menu (src/playground/tier-menu.ts)", () => {
  it("offers the tiers GET /v1/models lists, best first (the toy deployment has all three)", async () => {
    const { tiers, context } = await fetchDeployment({ apiKey: null, base: api.url });
    const manifests = await Promise.all(
      Object.values(live.variants).map(async (id) =>
        Manifest.parse(await (await get(`/v1/manifests/${id}`)).json()),
      ),
    );
    const built = new Set(manifests.map((m) => m.tier));
    expect(tiers).toEqual(["quality", "balanced", "speed"].filter((t) => built.has(t as never)));
    expect(tiers.length).toBeGreaterThan(0);
    // No budget shrinks an engine here: every variant serves the model's full context.
    expect(context).toBe(engineContextFor(manifests[0]!.model.config));
  });

  it("leaves out tiers no variant has, and refuses a body that is no model list", () => {
    const entry = (id: string, tier: string) => ({ id, object: "model", tier });
    expect(deployedTiers({ data: [entry("quality", "quality"), entry("speed", "speed")] })).toEqual([
      "quality",
      "speed",
    ]);
    expect(
      deployedTiers({ data: [entry("speed", "speed"), entry("q", "quality"), entry("x", "ultra")] }),
    ).toEqual(["quality", "speed"]);
    for (const garbage of [null, "models", { data: "x" }, { data: [{ tier: 3 }] }, []])
      expect(() => deployedTiers(garbage)).toThrow();
  });

  it("takes a routed request's context as the smallest context_length (null when none is given)", () => {
    const entry = (id: string, context_length?: number) => ({ id, tier: id, context_length });
    expect(routedContext({ data: [entry("quality", 1728), entry("speed", 2048)] })).toBe(1728);
    expect(routedContext({ data: [entry("quality"), entry("speed")] })).toBeNull();
    for (const garbage of [null, { data: [{ context_length: "2048" }] }, { data: 7 }])
      expect(() => routedContext(garbage)).toThrow();
  });
});
