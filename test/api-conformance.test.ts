/**
 * Conformance: every JSON and SSE answer of the API, validated against zod schemas of OpenAI's
 * response objects (chat.completion, chat.completion.chunk, model, list, error), as the OpenAI API
 * reference describes them. Extra fields (shardlm's routing data) are allowed, as OpenAI's own
 * objects grow; the listed fields must be there with the right types. When usage is requested,
 * every chunk but the last carries "usage": null, as OpenAI's streams do.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";
import { ChatCompletion, Chunk, ErrorBody, Model, ModelList, Usage } from "./helpers/openai-schemas.ts";

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer();
}, 300_000);

afterAll(async () => {
  await api?.close();
});

/** The SSE stream's data events, checked for framing; the [DONE] sentinel last. */
async function sse(body: object): Promise<unknown[]> {
  const res = await fetch(new URL("/v1/chat/completions", api.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const events = (await res.text()).split("\n\n").filter(Boolean);
  for (const e of events) expect(e).toMatch(/^data: /);
  expect(events.at(-1)).toBe("data: [DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
}

describe("OpenAI response objects", () => {
  it("chat.completion (plain, with stop, seeded)", async () => {
    for (const extra of [
      {},
      { stop: ["Lily"] },
      { seed: 3, temperature: 0.8 },
      { logprobs: true, top_logprobs: 3, presence_penalty: 1, logit_bias: { "5": -100 } },
      { n: 3, seed: 2, temperature: 1, logprobs: true, top_logprobs: 1 },
      {
        max_tokens: 16,
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "flag",
            schema: { type: "object", properties: { a: { type: "boolean" } }, required: ["a"] },
          },
        },
      },
    ]) {
      const r = await call(api, "/v1/chat/completions", {
        body: { model: "quality", messages: story, max_tokens: 8, ...extra },
      });
      expect(r.status).toBe(200);
      ChatCompletion.parse(r.json);
    }
  });

  it("chat.completion.chunk stream without usage: no usage field, one finish_reason at the end", async () => {
    const chunks = (await sse({ model: "speed", messages: story, max_tokens: 6 })).map((c) => Chunk.parse(c));
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.usage).toBeUndefined();
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    const finishes = chunks.map((c) => c.choices[0]?.finish_reason ?? null).filter((f) => f !== null);
    expect(finishes).toEqual(["length"]);
  });

  it("chat.completion.chunk stream with logprobs: every content chunk carries its tokens' entries", async () => {
    const chunks = (
      await sse({ model: "speed", messages: story, max_tokens: 6, logprobs: true, top_logprobs: 2 })
    ).map((c) => Chunk.parse(c));
    const entries = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    expect(entries).toHaveLength(6);
    for (const e of entries) expect(e.top_logprobs).toHaveLength(2);
  });

  it("n 2 stream: chunks of choice 0, then of choice 1, each index opened by its role and closed once", async () => {
    const chunks = (
      await sse({
        model: "speed",
        messages: story,
        max_tokens: 4,
        n: 2,
        seed: 1,
        stream_options: { include_usage: true },
      })
    ).map((c) => Chunk.parse(c));
    const indexes = chunks.flatMap((c) => c.choices.map((ch) => ch.index));
    expect(indexes).toEqual([...indexes].sort());
    expect(new Set(indexes)).toEqual(new Set([0, 1]));
    const finishes = chunks.flatMap((c) => c.choices.filter((ch) => ch.finish_reason).map((ch) => ch.index));
    expect(finishes).toEqual([0, 1]);
    expect(Usage.parse(chunks.at(-1)!.usage)).toMatchObject({ completion_tokens: 8 });
  });

  it('include_usage: every chunk carries "usage": null, then a usage chunk with choices: []', async () => {
    const chunks = (
      await sse({ model: "speed", messages: story, max_tokens: 6, stream_options: { include_usage: true } })
    ).map((c) => Chunk.parse(c));
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(Usage.parse(last.usage)).toMatchObject({ completion_tokens: 6 });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  });

  it("model list and model", async () => {
    const list = ModelList.parse((await call(api, "/v1/models")).json);
    for (const m of list.data) Model.parse((await call(api, `/v1/models/${m.id}`)).json);
  });

  it("error objects, for each status the API answers", async () => {
    const cases: [string, Parameters<typeof call>[2], number][] = [
      ["/v1/chat/completions", { body: "{" }, 400],
      ["/v1/chat/completions", { body: { model: "quality", messages: story, tools: [{}] } }, 400],
      ["/v1/chat/completions", { body: { model: "quality", messages: story, logit_bias: { x: 1 } } }, 400],
      ["/v1/chat/completions", { body: { model: "quality", messages: story, n: 9 } }, 400],
      [
        "/v1/chat/completions",
        {
          body: {
            model: "quality",
            messages: story,
            response_format: {
              type: "json_schema",
              json_schema: { name: "x", schema: { type: "object", oneOf: [] } },
            },
          },
        },
        400,
      ],
      ["/v1/completions", { body: { model: "quality", prompt: "x", logprobs: 6 } }, 400],
      ["/v1/chat/completions", { body: { model: "nope", messages: story } }, 404],
      ["/v1/models/nope", {}, 404],
      ["/v1/nope", {}, 404],
      ["/v1/chat/completions", { method: "GET" }, 405],
    ];
    for (const [path, init, status] of cases) {
      const r = await call(api, path, init);
      expect(r.status, `${path} ${r.text}`).toBe(status);
      ErrorBody.parse(r.json);
    }
  });
});
