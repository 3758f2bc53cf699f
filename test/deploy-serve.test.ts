/**
 * The deploy scripts against the real worker: src/worker in workerd reads wrangler's local R2 state
 * in a temp folder while deploy/rollback write it through their own Miniflare (as `npm run deploy`
 * next to `wrangler dev`). Serves what was deployed, switches under streaming load without failing or
 * mixing versions, and rolls back (after the live cache TTL).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LivePointer, R2Keys } from "../src/format/manifest.ts";
import { type Bucket, localBucket } from "../src/publish/buckets.ts";
import { deploy } from "../src/publish/deploy.ts";
import { rollback } from "../src/publish/rollback.ts";
import {
  BUCKET_NAME,
  build,
  MODEL,
  type PersistedWorker,
  quiet,
  startPersistedWorker,
  type VariantSet,
  variantsA,
  variantsB,
} from "./deploy-helpers.ts";
import { tempDirs } from "./helpers/paths.ts";

const temp = tempDirs("deploy-serve");
let persist: string;
let A: VariantSet;
let B: VariantSet;
let worker: PersistedWorker;
let bucket: Bucket;
let liveA: LivePointer;
let liveB: LivePointer;

const story = [{ role: "user" as const, content: "Once upon a time" }];
const fingerprint = (id: string) => `shardlm-${id.slice(0, 12)}`;

beforeAll(async () => {
  persist = temp.make();
  const dir = temp.make();
  [A, B] = [await variantsA(dir), await variantsB(dir)];
  worker = await startPersistedWorker(persist);
  bucket = await localBucket(persist, BUCKET_NAME);
}, 600_000);

afterAll(async () => {
  await bucket?.close();
  await worker?.close();
  temp.cleanup();
});

interface StreamResult {
  status: number;
  xVariant: string | null;
  models: Set<string>;
  text: string;
  done: boolean;
  finishedAt: number;
}

/** A raw SSE chat stream; `firstChunk` resolves when the first event arrives. */
function stream(
  url: URL,
  body: object,
): { headers: Promise<void>; firstChunk: Promise<void>; result: Promise<StreamResult> } {
  let first!: () => void;
  const firstChunk = new Promise<void>((r) => (first = r));
  let answered!: () => void;
  const headers = new Promise<void>((r) => (answered = r));
  const result = (async () => {
    const res = await fetch(new URL("/v1/chat/completions", url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, stream: true }),
    });
    answered(); // its variant is chosen (X-Variant is among the headers)
    const out: StreamResult = {
      status: res.status,
      xVariant: res.headers.get("x-variant"),
      models: new Set(),
      text: "",
      done: false,
      finishedAt: 0,
    };
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        // SSE comment lines (": queued" heartbeats while the request waits its turn) carry no event.
        const event = block
          .split("\n")
          .filter((l) => !l.startsWith(":"))
          .join("\n")
          .replace(/^data: /, "");
        if (event === "") continue;
        first();
        if (event === "[DONE]") {
          out.done = true;
          continue;
        }
        const chunk = JSON.parse(event) as { model: string; choices: { delta: { content?: string } }[] };
        out.models.add(chunk.model);
        out.text += chunk.choices[0]?.delta.content ?? "";
      }
    }
    first();
    out.finishedAt = performance.now();
    return out;
  })();
  result.then(answered, answered); // a failed request must not leave the test waiting on its headers
  return { headers, firstChunk, result };
}

describe("deploy and serve from local R2", () => {
  it("deploys to wrangler's local state; the worker lists the variants and answers", async () => {
    const r = await deploy(bucket, { model: MODEL, config: A.config, out: A.out, build, log: quiet });
    liveA = r.live!;
    const models = await worker.client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(["quality", "balanced", "speed"]));
    const { data, response } = await worker.client.chat.completions
      .create({ model: "quality", messages: story, temperature: 0, max_tokens: 24 })
      .withResponse();
    expect(data.choices[0]!.message.content).toMatch(/there was a little/);
    expect(response.headers.get("x-variant")).toBe("quality");
    expect(data.system_fingerprint).toBe(fingerprint(liveA.variants.quality!));
  });

  it("switches to a changed set under streaming load: no failures, no answer mixes versions", async () => {
    const params = { model: "quality", messages: story, temperature: 0, max_tokens: 400 };
    const reference = await worker.client.chat.completions.create(params);
    const refText = reference.choices[0]!.message.content;

    // Plain requests all along the deploy: each must succeed from one manifest of A or B.
    let stop = false;
    const plain: { status: number; variant: string | null; model: string; fp: string }[] = [];
    const loop = (async () => {
      while (!stop) {
        const res = await fetch(new URL("/v1/chat/completions", worker.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ...params, max_tokens: 8 }),
        });
        const body = (await res.json()) as { model: string; system_fingerprint: string };
        plain.push({
          status: res.status,
          variant: res.headers.get("x-variant"),
          model: body.model,
          fp: body.system_fingerprint,
        });
      }
    })();

    // The deploy runs up to the switch and waits there, so streams are in flight at the switch.
    let atSwitch!: () => void;
    const reachedSwitch = new Promise<void>((r) => (atSwitch = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gated: Bucket = {
      ...bucket,
      async put(key, bytes) {
        if (key === "live.json") {
          atSwitch();
          await gate;
        }
        await bucket.put(key, bytes);
      },
    };
    const deploying = deploy(gated, { model: MODEL, config: B.config, out: B.out, build, log: quiet });
    await reachedSwitch;

    const streams = Array.from({ length: 12 }, () => stream(worker.url, params));
    // Every stream has chosen its variant (headers sent) before the switch: a fixed sleep here was
    // too short on a loaded CI machine, and one stream read the new live.json.
    await Promise.all(streams.map((s) => s.headers));
    await streams[0]!.firstChunk;
    const switchAt = performance.now();
    release();
    const r = await deploying;
    liveB = r.live!;
    expect(r.outcome).toBe("deployed");

    // A request after the switch gets B, while A's engine still works through the older answers.
    const after = await worker.client.chat.completions.create({ ...params, max_tokens: 16 }).withResponse();
    expect(after.response.headers.get("x-variant")).toBe("quality-g64");
    expect(after.data.system_fingerprint).toBe(fingerprint(liveB.variants["quality-g64"]!));

    const results = await Promise.all(streams.map((s) => s.result));
    // Let the plain loop reach B a few times too.
    for (let t = 0; t < 100 && plain.filter((p) => p.variant === "quality-g64").length < 3; t++)
      await new Promise((res) => setTimeout(res, 50));
    stop = true;
    await loop;
    for (const s of results) {
      expect(s.status).toBe(200);
      expect(s.done).toBe(true);
      expect(s.xVariant).toBe("quality");
      expect([...s.models]).toEqual(["quality"]);
      expect(s.text).toBe(refText); // every token from A's engine
    }
    expect(results.filter((s) => s.finishedAt > switchAt).length).toBeGreaterThan(0);

    const byFingerprint = new Map([
      [fingerprint(liveA.variants.quality!), "quality"],
      [fingerprint(liveB.variants["quality-g64"]!), "quality-g64"],
    ]);
    expect(new Set(plain.map((p) => p.variant))).toEqual(new Set(["quality", "quality-g64"]));
    for (const p of plain) {
      expect(p.status).toBe(200);
      expect(p.variant).toBe(p.model);
      expect(byFingerprint.get(p.fp)).toBe(p.variant);
    }
    const models = await worker.client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["quality-g64", "quality"]); // the variant, its tier alias
    expect(models.data[1]).toMatchObject({ alias_of: "quality-g64" });
  });

  it("rollback restores the previous set; a worker with a live cache serves it after the TTL", async () => {
    const cached = await startPersistedWorker(persist, { LIVE_CACHE_SECONDS: "1" });
    try {
      const ask = (w: PersistedWorker) =>
        w.client.chat.completions.create({
          model: "quality",
          messages: story,
          temperature: 0,
          max_tokens: 8,
        });
      const cachedAt = performance.now();
      expect((await ask(cached)).system_fingerprint).toBe(fingerprint(liveB.variants["quality-g64"]!));

      const r = await rollback(bucket, { log: quiet });
      expect(r.target.version).toBe(liveA.version);
      expect(r.live.variants).toEqual(liveA.variants);

      // LIVE_CACHE_SECONDS=0: at once.
      expect((await ask(worker)).system_fingerprint).toBe(fingerprint(liveA.variants.quality!));
      const ids = (await worker.client.models.list()).data.map((m) => m.id);
      expect(ids).toEqual(expect.arrayContaining(["quality", "balanced", "speed"]));
      // LIVE_CACHE_SECONDS=1: the old set until its cached live.json is a second old, then the new one.
      const early = await ask(cached);
      if (performance.now() - cachedAt < 900)
        expect(early.system_fingerprint).toBe(fingerprint(liveB.variants["quality-g64"]!));
      await new Promise((res) => setTimeout(res, 1100));
      expect((await ask(cached)).system_fingerprint).toBe(fingerprint(liveA.variants.quality!));
    } finally {
      await cached.close();
    }
  });

  it("a corrupt shard is refused (503); the deploy that repairs it makes the worker retry at once", async () => {
    // speed has not been loaded by this worker: its shards are read (and verified) on first use.
    const speedId = liveA.variants.speed!;
    const manifest = JSON.parse(new TextDecoder().decode((await bucket.get(R2Keys.manifest(speedId)))!));
    const key = R2Keys.shard(manifest.shards[0].sha256 as string);
    const good = (await bucket.get(key))!;
    const bad = good.slice();
    for (let i = 0; i < bad.length; i += 4096) bad[i] = bad[i]! ^ 0x5a;
    await bucket.put(key, bad);
    const ask = () =>
      fetch(new URL("/v1/chat/completions", worker.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "speed", messages: story, temperature: 0, max_tokens: 8 }),
      });
    const refused = await ask();
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("variant_unavailable");

    const r = await deploy(bucket, { model: MODEL, config: A.config, out: A.out, build, log: quiet });
    expect(r.outcome).toBe("deployed"); // a repair switches to a new version of the same set
    expect(r.live!.variants).toEqual(liveA.variants);
    expect(r.live!.version).toBeGreaterThan(liveA.version);
    // Long before BAD_RETRY_MS: the new live.json version cleared the mark.
    const served = await ask();
    expect(served.status).toBe(200);
    expect(served.headers.get("x-variant")).toBe("speed");
  });
});
