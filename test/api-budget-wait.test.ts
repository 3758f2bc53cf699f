/**
 * A latency budget counts the wait before its work could start: other requests' admitted work on
 * the variant, or on the busy variant a swap must evict (one variant fits the isolate, as SmolLM2's
 * do in 100 MiB), plus the swap's load. A review saw a 1000 ms budget answered after 14 s with one
 * token; now it is refused at once (429 with Retry-After) and a budget that holds the wait waits.
 *
 * workerd over real HTTP with the production clock (SHARDLM_FROZEN_CLOCK=1: it moves only at I/O),
 * so every prediction is work counted in tokens times the manifests' costs, never a clock reading.
 * The variants get given costs (quality 10 ms per decode step), so a held quality stream of 8 x 1500
 * tokens is seconds of predicted work whatever this machine's speed. A stream whose client does not
 * read holds its variant once the sockets' buffers are full (it runs at most a buffer ahead of them:
 * src/worker/sse.ts), so "at once" needs no timing: a request that waited for the held stream would
 * time out instead.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { putManifest, readManifest } from "../src/compress/variant-store.ts";
import { estimateEngineBytes, servedEngineLayout } from "../src/runtime/load-engine.ts";
import { chat, expectApiError, healthz, readToFirstToken, story } from "./helpers/api-calls.ts";
import { type ApiServer, buildTestVariants, startLocalApi } from "./helpers/api-server.ts";

const LONG = 1500;
const COSTS: Record<string, number> = { quality: 10, balanced: 7.5, speed: 5 }; // decode ms per token

let api: ApiServer;

beforeAll(async () => {
  const built = await buildTestVariants();
  const variants: Record<string, string> = {};
  const bytes: number[] = [];
  for (const [name, id] of Object.entries(built.index.variants)) {
    const m = readManifest(built.dir, id);
    const layout = servedEngineLayout(m.weights);
    bytes.push(estimateEngineBytes(m.weights, layout.contextSize, layout.kvCache, layout.headRows));
    variants[name] = putManifest(built.dir, {
      ...m,
      speed: {
        ...m.speed,
        decodeMsPerToken: COSTS[name]!,
        prefillMsPerToken: 0.1,
        prefillPositionTokens: 256,
        decodePositionTokens: 2048,
      },
    });
  }
  // Room for the largest engine, never for two.
  bytes.sort((a, b) => a - b);
  const budget = Math.floor(bytes.at(-1)! * 1.5);
  expect(bytes[0]! + bytes[1]!).toBeGreaterThan(budget);
  api = await startLocalApi(
    { dir: built.dir, index: { ...built.index, variants } },
    {
      SHARDLM_FROZEN_CLOCK: "1",
      ENGINE_MEMORY_BUDGET: String(budget),
      STREAM_STALL_MS: "120000",
      // The held stream's 8 x LONG tokens are planned in full (not capped to the default 60 s).
      CPU_LIMIT_MS: "300000",
    },
  );
}, 300_000);

afterAll(async () => {
  await api?.close();
});

/** A chat call that may wait for the held stream's whole generation (helpers' calls give up at 30 s). */
async function waitingChat(body: object, headers: Record<string, string>) {
  const res = await fetch(new URL("/v1/chat/completions", api.url), {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(240_000),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Starts a quality stream of LONG tokens and reads until its first token: quality is busy. */
async function holdQuality(): Promise<{ text: string; finish(): Promise<string> }> {
  const res = await fetch(new URL("/v1/chat/completions", api.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    // 8 choices with 20 alternatives per token: ~1 KB a token, megabytes in all, more than the
    // sockets between here and workerd buffer, so the generation stalls until this client reads.
    body: JSON.stringify({
      model: "quality",
      messages: story,
      max_tokens: LONG,
      n: 8,
      logprobs: true,
      top_logprobs: 20,
      temperature: 0,
      stream: true,
    }),
    signal: AbortSignal.timeout(240_000),
  });
  expect(res.status).toBe(200);
  return readToFirstToken(res);
}

describe("a latency budget behind a busy variant (production clock)", () => {
  it("is refused at once with 429 and Retry-After when the wait passes it; a budget that holds the wait, and no budget, wait and are served", async () => {
    const hold = await holdQuality();
    expect((await healthz(api)).resident_variants).toBe(1);
    const ask = { messages: story, max_tokens: 5, temperature: 0 };
    // speed must evict the busy quality: its wait is quality's remaining work plus speed's load;
    // quality itself is busy with the same work, and starts first (no load). None starts within
    // 1000 ms, and the router prefers speed (the lowest tier) among the late ones; the wait reported
    // is the soonest start among the variants the request may use: quality's, unless the tier cap
    // (or the model) leaves only speed.
    const tierOnly = { "X-Latency-Budget-Ms": "1000" };
    const refused = await Promise.all(
      (
        [
          [{ model: "shardlm" }, { "X-Quality-Tier": "speed", ...tierOnly }, "speed"],
          [{ model: "shardlm" }, tierOnly, "quality"],
          [{ model: "shardlm" }, { "X-Quality-Tier": "quality", ...tierOnly }, "quality"],
          [{ model: "speed" }, tierOnly, "speed"],
        ] as const
      ).map(async ([model, headers, soonest]) => ({
        r: await chat(api, { ...model, ...ask }, headers),
        soonest,
      })),
    );
    for (const { r, soonest } of refused) {
      expectApiError(r, 429, {
        type: "rate_limit_error",
        code: "latency_budget_unmeetable",
        param: null,
        message: new RegExp(
          `^Variant '${soonest}' could start this request in ~\\d+ ms .*past its latency budget of 1000 ms`,
        ),
      });
      // Retry-After: the predicted wait, whole seconds (quality has up to 8 x LONG x 10 ms of work left).
      const wait = Number(/~(\d+) ms/.exec((r.json as { error: { message: string } }).error.message)![1]);
      expect(wait).toBeGreaterThan(1000);
      expect(Number(r.headers.get("retry-after"))).toBe(Math.ceil(wait / 1000));
      // The openai SDK retries 429s by itself (after Retry-After) unless told not to: a retry would
      // spend the budget the refusal exists to protect.
      expect(r.headers.get("x-should-retry")).toBe("false");
    }
    // The SDK with its default retries sends the request once and raises the 429.
    let sent = 0;
    const sdk = new OpenAI({
      baseURL: new URL("/v1", api.url).toString(),
      apiKey: "unused",
      fetch: (url, init) => {
        sent++;
        return fetch(url, init);
      },
    });
    const err = await sdk.chat.completions
      .create({ model: "shardlm", ...ask }, { headers: { "X-Latency-Budget-Ms": "1000" } })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe("latency_budget_unmeetable");
    expect(sent).toBe(1);
    // A budget above the predicted wait waits for the swap, as does a request without one.
    const roomy = waitingChat(
      { model: "shardlm", ...ask },
      { "X-Quality-Tier": "speed", "X-Latency-Budget-Ms": "600000" },
    );
    const plain = waitingChat({ model: "shardlm", ...ask }, { "X-Quality-Tier": "speed" });
    const held = await hold.finish();
    expect(held).toMatch(/data: \[DONE\]\n\n$/);
    for (const r of await Promise.all([roomy, plain])) {
      expect(r.status, r.text).toBe(200);
      expect(r.headers.get("x-variant")).toBe("speed");
      expect(r.headers.get("x-budget-exhausted")).toBeNull();
    }
    const after = await healthz(api);
    expect(after.resident_variants).toBe(1);
    // Nothing admitted is left: an idle isolate serves a small budget at once again.
    const quick = await chat(
      api,
      { model: "shardlm", ...ask },
      { "X-Quality-Tier": "speed", "X-Latency-Budget-Ms": "1000" },
    );
    expect(quick.status, quick.text).toBe(200);
  }, 300_000);
});
