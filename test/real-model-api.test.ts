/**
 * The real default model through the API, as a user meets it (issue 11, item 7): the `quality`
 * variant of SmolLM2-135M-Instruct, built with the default model's config
 * (config/variants-smollm2.json, that variant only, no speculative search, a short evaluation),
 * served by the Worker in workerd from local R2, asked through the official `openai` client at
 * temperature 0. The build is kept under the OS temp folder and reused while its inputs are
 * unchanged (about 2 minutes of CPU when it is not).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startLocalApi } from "../src/bench/local-api.ts";
import { realModelPath } from "../src/bench/real-model.ts";
import { buildVariants } from "../src/compress/build-variants.ts";
import { call, expectApiError } from "./helpers/api-calls.ts";
import { tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("real-api");
let api: ApiServer;

beforeAll(async () => {
  const t0 = performance.now();
  const config = JSON.parse(
    readFileSync(new URL("../config/variants-smollm2.json", import.meta.url), "utf8"),
  ) as { variants: { name: string }[] } & Record<string, unknown>;
  const file = join(dirs.make(), "variants-quality.json");
  writeFileSync(
    file,
    JSON.stringify({
      ...config,
      speculative: null,
      evaluation: { maxTokens: 32 },
      variants: config.variants.filter((v) => v.name === "quality"),
    }),
  );
  const built = await buildVariants({
    model: await realModelPath(),
    config: file,
    out: join(tmpdir(), "shardlm-real-model-api-variants"),
    log: () => {},
  });
  const t1 = performance.now();
  api = await startLocalApi({ dir: built.out, index: built.index });
  console.info(
    `real-model API: build ${((t1 - t0) / 1000).toFixed(1)} s (${built.rows.every((r) => r.reused) ? "reused" : "built"}), ` +
      `workerd + publish ${((performance.now() - t1) / 1000).toFixed(1)} s`,
  );
}, 900_000);

afterAll(async () => {
  await api?.close();
  dirs.cleanup();
});

async function ask(messages: { role: "system" | "user" | "assistant"; content: string }[]): Promise<string> {
  const r = await api.client.chat.completions.create({
    model: "quality",
    messages,
    temperature: 0,
    max_tokens: 32,
  });
  expect(r.choices[0]!.finish_reason).toMatch(/^(stop|length)$/);
  return r.choices[0]!.message.content ?? "";
}

describe("SmolLM2-135M-Instruct (quality) in workerd, through the openai client", () => {
  it("a cold variant load leaves the isolate answering other requests meanwhile", async () => {
    // Runs first: the load is cold. A load used to hold the event loop for its whole ~2 s (the
    // shard reads resolved without a macrotask turn), so nothing else was served meanwhile; under
    // `wrangler dev` that lost requests sent on the proxy's idle keep-alive connections as 503
    // "Your worker restarted mid-request". Now it yields between chunks (src/worker/shard-stream.ts).
    expect((await call(api, "/healthz")).json).toMatchObject({ resident_variants: 0 });
    let loading = true;
    let answered = 0;
    const polls = (async () => {
      while (loading) {
        if ((await call(api, "/healthz")).status === 200 && loading) answered++;
      }
    })();
    const r = await call(api, "/v1/chat/completions", {
      method: "POST",
      body: { model: "quality", messages: [{ role: "user", content: "Hi" }], max_tokens: 1 },
    });
    loading = false;
    await polls;
    expect(r.status).toBe(200);
    // Held for the whole load, at most the poll in flight at its start and one at its end answer.
    expect(answered).toBeGreaterThanOrEqual(5);
  }, 120_000);

  it("answers a factual question correctly at temperature 0", async () => {
    const text = await ask([{ role: "user", content: "What is the capital of France?" }]);
    console.info(`capital of France: ${JSON.stringify(text)}`);
    expect(text).toMatch(/\bParis\b/);
  }, 120_000);

  it("remembers a name across a multi-turn conversation (and only from it)", async () => {
    // The assistant turn is the client's history: it does not repeat the name, so the name can only
    // come from the first user turn; the same request without that turn is the control. (Asked
    // "What is my name?" this 135M model answers with a name of its own, also in fp32, see
    // test/real-model-chat.test.ts; asked to greet the user by name it recalls it.)
    const question = { role: "user" as const, content: "Greet me by my name." };
    const text = await ask([
      { role: "user", content: "Hi! My name is Alice." },
      { role: "assistant", content: "Nice to meet you! How can I help you today?" },
      question,
    ]);
    const control = await ask([question]);
    console.info(`name: ${JSON.stringify(text)}; without the introduction: ${JSON.stringify(control)}`);
    expect(text).toMatch(/\bAlice\b/);
    expect(control).not.toMatch(/\bAlice\b/);
  }, 120_000);

  it("an empty completions prompt is 400 naming prompt (the model has no BOS to start from), JSON and streamed", async () => {
    for (const prompt of ["", [""]]) {
      for (const stream of [false, true]) {
        const r = await call(api, "/v1/completions", {
          method: "POST",
          body: { model: "quality", prompt, max_tokens: 3, stream },
        });
        expectApiError(r, 400, { type: "invalid_request_error", param: "prompt" });
      }
    }
  }, 60_000);
});
