/**
 * Bad input, in workerd over real HTTP: every request gets OpenAI's error JSON with the right status
 * (never a 500, a crash or a hang), and the server keeps serving afterwards. Checked with raw fetch
 * (bodies the openai client cannot send) and with the openai client (its APIError fields).
 */
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call, chat, clientError, countPromptTokens, expectApiError, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer();
}, 300_000);

afterAll(async () => {
  await api?.close();
});

// After every test the server still answers a valid request.
afterEach(async () => {
  const r = await chat(api, { model: "speed", messages: story, max_tokens: 2, temperature: 0 });
  expect(r.status, r.text).toBe(200);
});

const valid = { model: "quality", messages: story, max_tokens: 4 };
/** `valid` with fields replaced (or, with undefined, removed). */
const withFields = (fields: Record<string, unknown>) => {
  const body: Record<string, unknown> = { ...valid, ...fields };
  for (const [k, v] of Object.entries(fields)) if (v === undefined) delete body[k];
  return body;
};

describe("malformed bodies (raw HTTP)", () => {
  it.each([
    ["truncated JSON", '{"model": "quality", "messages": ['],
    ["not JSON at all", "model=quality"],
    ["an empty body", ""],
    ["a trailing comma", '{"model": "quality", "messages": [],}'],
  ])("%s is a 400 invalid_json", async (_, body) => {
    const r = await chat(api, body);
    expectApiError(r, 400, { type: "invalid_request_error", code: "invalid_json", param: null });
  });

  it.each([
    ["an array", "[]"],
    ["null", "null"],
    ["a string", '"hello"'],
    ["a number", "42"],
  ])("JSON that is %s (not an object) is a 400", async (_, body) => {
    const r = await chat(api, body);
    expectApiError(r, 400, { type: "invalid_request_error", message: /expected object/ });
  });

  it("an error to a request that asked to stream is still JSON, not SSE", async () => {
    const r = await chat(api, { ...valid, stream: true, temperature: "hot" });
    expectApiError(r, 400, { param: "temperature" });
  });
});

describe("wrong types and values", () => {
  it.each([
    ["messages is not an array", { messages: "Once upon a time" }, "messages"],
    ["messages is missing", { messages: undefined }, "messages"],
    ["model is missing", { model: undefined }, "model"],
    ["model is a number", { model: 3 }, "model"],
    ['temperature is "hot"', { temperature: "hot" }, "temperature"],
    ["temperature is above 2", { temperature: 2.5 }, "temperature"],
    ["max_tokens is -1", { max_tokens: -1 }, "max_tokens"],
    ["max_tokens is 1.5", { max_tokens: 1.5 }, "max_tokens"],
    ["max_tokens is 0", { max_tokens: 0 }, "max_tokens"],
    ['max_tokens is "10"', { max_tokens: "10" }, "max_tokens"],
    ["top_p is -0.1", { top_p: -0.1 }, "top_p"],
    ["top_p is 1.5", { top_p: 1.5 }, "top_p"],
    ["stream is a string", { stream: "yes" }, "stream"],
    ["stop has five strings", { stop: ["a", "b", "c", "d", "e"] }, "stop"],
    ["seed is 1.5", { seed: 1.5 }, "seed"],
    ["messages is empty", { messages: [] }, "messages"],
    ['a message\'s role is "wizard"', { messages: [{ role: "wizard", content: "hi" }] }, "messages[0].role"],
    ["a message has no role", { messages: [{ content: "hi" }] }, "messages[0].role"],
    ["a message is a string", { messages: ["hi"] }, "messages[0]"],
    ["content is a number", { messages: [{ role: "user", content: 42 }] }, "messages[0].content"],
    [
      "content is an object",
      { messages: [{ role: "user", content: { text: "hi" } }] },
      "messages[0].content",
    ],
    [
      "content is an image part",
      { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
      "messages[0].content",
    ],
    ["content is an empty array", { messages: [{ role: "user", content: [] }] }, "messages[0].content"],
    [
      "a user message's content is null",
      { messages: [{ role: "user", content: null }] },
      "messages[0].content",
    ],
    ["frequency_penalty is over 2", { frequency_penalty: 2.5 }, "frequency_penalty"],
    ["presence_penalty is a string", { presence_penalty: "high" }, "presence_penalty"],
    ["logprobs is a string", { logprobs: "yes" }, "logprobs"],
    ["top_logprobs is 21", { logprobs: true, top_logprobs: 21 }, "top_logprobs"],
    ["top_logprobs without logprobs", { top_logprobs: 2 }, "top_logprobs"],
    ["a logit_bias over 100", { logit_bias: { "5": 200 } }, "logit_bias.5"],
    ["a logit_bias key that is no number", { logit_bias: { abc: 1 } }, "logit_bias"],
    ["a logit_bias id outside the vocabulary", { logit_bias: { "99999999": 1 } }, "logit_bias"],
    ["a negative logit_bias id", { logit_bias: { "-1": 1 } }, "logit_bias"],
  ])("%s: 400 naming %s", async (_, fields, param) => {
    const r = await chat(api, withFields(fields));
    expectApiError(r, 400, { type: "invalid_request_error", param });
  });

  it("more than 4 stop strings: OpenAI's message naming stop, the limit and the count (chat and legacy completions)", async () => {
    const stop = ["a", "b", "c", "d", "e"];
    for (const r of [
      await chat(api, withFields({ stop })),
      await call(api, "/v1/completions", { body: { model: "quality", prompt: "Once", max_tokens: 4, stop } }),
    ]) {
      expectApiError(r, 400, {
        type: "invalid_request_error",
        param: "stop",
        code: "array_above_max_length",
        message:
          /^Invalid 'stop': array too long\. Expected an array with maximum length 4, but got an array with length 5 instead\.$/,
      });
    }
    const wrongType = await chat(api, withFields({ stop: 7 }));
    expectApiError(wrongType, 400, {
      param: "stop",
      message: /^stop: must be a string or an array of at most 4 strings$/,
    });
  });

  it("a missing or empty model gets OpenAI's words, naming model (chat and legacy completions)", async () => {
    for (const r of [
      await chat(api, withFields({ model: undefined })),
      await chat(api, withFields({ model: "" })),
      await call(api, "/v1/completions", { body: { prompt: "Once", max_tokens: 4 } }),
    ]) {
      expectApiError(r, 400, {
        type: "invalid_request_error",
        param: "model",
        message: /^you must provide a model parameter$/,
      });
    }
    expectApiError(await chat(api, withFields({ model: 3 })), 400, {
      param: "model",
      message: /must be a string/,
    });
  });

  it("stream_options without stream: true is a 400 naming stream_options (chat and legacy completions)", async () => {
    const streamOptions = { include_usage: true };
    for (const stream of [false, undefined, null]) {
      for (const r of [
        await chat(api, withFields({ stream, stream_options: streamOptions })),
        await call(api, "/v1/completions", {
          body: { model: "quality", prompt: "Once", max_tokens: 4, stream, stream_options: streamOptions },
        }),
      ]) {
        expectApiError(r, 400, {
          type: "invalid_request_error",
          param: "stream_options",
          message: /^The 'stream_options' parameter is only allowed when 'stream' is enabled\.$/,
        });
      }
    }
    // Null counts as absent; with stream: true it is served.
    expect((await chat(api, withFields({ stream: false, stream_options: null }))).status).toBe(200);
    expect((await chat(api, withFields({ stream: true, stream_options: streamOptions }))).status).toBe(200);
  });

  it("messages with the wrong role or content say what is allowed", async () => {
    const role = await chat(api, withFields({ messages: [{ role: "wizard", content: "hi" }] }));
    expect((role.json as { error: { message: string } }).error.message).toMatch(
      /system, developer, user, assistant/,
    );
    const content = await chat(api, withFields({ messages: [{ role: "user", content: 42 }] }));
    expect((content.json as { error: { message: string } }).error.message).toMatch(
      /string or an array of text/,
    );
  });

  it('an unknown request field is a 400 "Unrecognized request argument"', async () => {
    const r = await chat(api, withFields({ temprature: 0.5 }));
    expectApiError(r, 400, {
      type: "invalid_request_error",
      param: "temprature",
      message: /^Unrecognized request argument supplied: temprature$/,
    });
  });

  it('n outside 1..8 (0, 9, 1.5, "2") is a 400 naming n; n: 1 is served', async () => {
    for (const n of [0, 9, 1.5, "2", -1])
      expectApiError(await chat(api, withFields({ n })), 400, { param: "n" });
    expect((await chat(api, withFields({ n: 1 }))).status).toBe(200);
  });

  it("a huge max_tokens (1e9) is a 400 naming max_tokens; max_completion_tokens likewise", async () => {
    const r = await chat(api, withFields({ max_tokens: 1e9 }));
    expectApiError(r, 400, { param: "max_tokens", message: /max_tokens is 1000000000/ });
    const r2 = await chat(api, withFields({ max_tokens: undefined, max_completion_tokens: 1e9 }));
    expectApiError(r2, 400, { param: "max_completion_tokens" });
  });

  it("the same errors through the openai client: APIError with status, type, param and code", async () => {
    const bad = async (body: Record<string, unknown>) =>
      clientError(api.client.chat.completions.create(body as never));
    let e = await bad(withFields({ messages: "hi" }));
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect([e.status, e.type, e.param]).toEqual([400, "invalid_request_error", "messages"]);
    e = await bad(withFields({ temperature: "hot" }));
    expect([e.status, e.param]).toEqual([400, "temperature"]);
    e = await bad(withFields({ max_tokens: -1 }));
    expect([e.status, e.param]).toEqual([400, "max_tokens"]);
    e = await bad(withFields({ messages: [{ role: "wizard", content: "hi" }] }));
    expect([e.status, e.param]).toEqual([400, "messages[0].role"]);
    e = await bad(withFields({ foo: 1 }));
    expect([e.status, e.param]).toEqual([400, "foo"]);
    expect(e.message).toMatch(/Unrecognized request argument supplied: foo/);
    e = await bad(withFields({ n: 9 }));
    expect([e.status, e.param]).toEqual([400, "n"]);
    e = await bad(withFields({ max_tokens: 1e9 }));
    expect([e.status, e.param]).toEqual([400, "max_tokens"]);
    e = await bad(withFields({ stream: true, messages: [] }));
    expect([e.status, e.param]).toEqual([400, "messages"]);
  });
});

describe("context, models, headers", () => {
  it("a prompt longer than the context is a 400 context_length_exceeded (as OpenAI answers it)", async () => {
    const long = "Once upon a time there was a little girl named Lily. ".repeat(300); // ~3800 tokens
    const r = await chat(api, withFields({ messages: [{ role: "user", content: long }] }));
    expectApiError(r, 400, {
      type: "invalid_request_error",
      code: "context_length_exceeded",
      param: "messages",
      message: /maximum context length is 2048 tokens; your messages use \d+/,
    });
    const e = await clientError(
      api.client.chat.completions.create({ model: "quality", messages: [{ role: "user", content: long }] }),
    );
    expect([e.status, e.code, e.param]).toEqual([400, "context_length_exceeded", "messages"]);
  });

  it("a prompt many times the context is refused quickly (from its head)", async () => {
    const huge = "Once upon a time there was a little girl named Lily. ".repeat(60_000); // 3 MB
    const r = await chat(api, withFields({ messages: [{ role: "user", content: huge }] }));
    expectApiError(r, 400, { code: "context_length_exceeded", message: /your messages use at least \d+\.$/ });
    expect(r.ms).toBeLessThan(2000); // tokenizing all of it takes seconds
  });

  it("seven million spaces are a 400 context_length_exceeded on chat and completions, not a stall or a 500; the server answers after", async () => {
    // On SmolLM2 this was tokenized whole (~5 s per MB), then overflowed the stack (a 500).
    const spaces = " ".repeat(7_000_000);
    for (const path of ["chat", "completions"] as const) {
      const r =
        path === "chat"
          ? await chat(api, withFields({ messages: [{ role: "user", content: spaces }] }))
          : await call(api, "/v1/completions", { body: { model: "quality", prompt: spaces, max_tokens: 2 } });
      expectApiError(r, 400, {
        code: "context_length_exceeded",
        param: path === "chat" ? "messages" : "prompt",
        // each space is a token of this vocabulary: the head has more than the context (SmolLM2's
        // whitespace tokens, 81 bytes at most, are refused by length: test/real-model-chat.test.ts)
        message: /uses? at least 32769\.$/,
      });
    }
    const after = await chat(api, withFields({ max_tokens: 2 }));
    expect(after.status, after.text).toBe(200);
  });

  it("a prompt of context - 1 tokens is served (one token); one of context tokens is a 400", async () => {
    // Prompt tokens + the generated token must fit the 2048-token context.
    const ofTokens = (n: number) => {
      for (let words = n - 8; words <= n + 8; words++) {
        const messages = [{ role: "user" as const, content: "Lily ".repeat(words) }];
        if (countPromptTokens(api, messages) === n) return messages;
      }
      throw new Error(`no prompt of ${n} tokens found`);
    };
    const fits = await chat(api, withFields({ messages: ofTokens(2047), max_tokens: 16 }));
    expect(fits.status, fits.text).toBe(200);
    const answer = fits.json as { usage: { prompt_tokens: number; completion_tokens: number } };
    expect(answer.usage).toMatchObject({ prompt_tokens: 2047, completion_tokens: 1 });
    const full = await chat(api, withFields({ messages: ofTokens(2048), max_tokens: 1 }));
    expectApiError(full, 400, { code: "context_length_exceeded", message: /your messages use 2048\./ });
  });

  it("an unknown model is a 404 model_not_found", async () => {
    const r = await chat(api, withFields({ model: "gpt-17" }));
    expectApiError(r, 404, { type: "invalid_request_error", code: "model_not_found", param: "model" });
    const e = await clientError(api.client.chat.completions.create({ model: "gpt-17", messages: story }));
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect([e.status, e.code, e.param]).toEqual([404, "model_not_found", "model"]);
  });

  it('X-Quality-Tier: "ultra" is a 400 naming the header', async () => {
    const r = await chat(api, valid, { "X-Quality-Tier": "ultra" });
    expectApiError(r, 400, { code: "invalid_header", param: "X-Quality-Tier", message: /ultra/ });
    const e = await clientError(
      api.client.chat.completions.create(valid, { headers: { "X-Quality-Tier": "ultra" } }),
    );
    expect([e.status, e.code, e.param]).toEqual([400, "invalid_header", "X-Quality-Tier"]);
  });

  it.each(["-5", "abc", "1e3", "0", "1.5", " ", "600001", "99999999999999999999"])(
    'X-Latency-Budget-Ms: "%s" is a 400 naming the header',
    async (value) => {
      const r = await chat(api, valid, { "X-Latency-Budget-Ms": value });
      expectApiError(r, 400, { code: "invalid_header", param: "X-Latency-Budget-Ms" });
    },
  );

  it("valid header values are accepted (tier in any case, budget with spaces)", async () => {
    const r = await chat(api, valid, { "X-Quality-Tier": " Speed ", "X-Latency-Budget-Ms": " 60000 " });
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get("x-variant")).toBe("speed");
  });
});

describe("routes and methods", () => {
  it.each([
    ["GET", "/v1"],
    ["POST", "/v1/embeddings"],
    ["POST", "/v2/chat/completions"],
    ["GET", "/v1/models/quality/extra"],
  ])("%s %s is a 404 in OpenAI's error format", async (method, path) => {
    const r = await call(api, path, { method, ...(method === "POST" ? { body: valid } : {}) });
    expectApiError(r, 404, { type: "invalid_request_error", code: "unknown_route" });
  });

  it("GET /v1/chat/completions and GET /v1/completions are 405s with Allow: POST", async () => {
    for (const path of ["/v1/chat/completions", "/v1/completions"]) {
      const r = await call(api, path);
      expectApiError(r, 405, { code: "method_not_allowed" });
      expect(r.headers.get("allow")).toBe("POST");
    }
    const e = await clientError(api.client.get("/chat/completions"));
    expect([e.status, e.code]).toEqual([405, "method_not_allowed"]);
  });

  it("POST /v1/models and DELETE /healthz are 405s with Allow: GET, HEAD", async () => {
    for (const [method, path] of [
      ["POST", "/v1/models"],
      ["DELETE", "/healthz"],
    ] as const) {
      const r = await call(api, path, { method, ...(method === "POST" ? { body: {} } : {}) });
      expectApiError(r, 405, { code: "method_not_allowed" });
      expect(r.headers.get("allow")).toBe("GET, HEAD");
    }
  });
});

describe("robustness", () => {
  it("a burst of bad requests, all at once, gets only 4xx answers and leaves the server serving", async () => {
    const bodies: unknown[] = [
      "{",
      withFields({ messages: [] }),
      withFields({ model: "nope" }),
      withFields({ n: 30 }),
      withFields({ max_tokens: 1e9 }),
      withFields({ temperature: "hot" }),
      withFields({ messages: [{ role: "user", content: "Lily ".repeat(5000) }] }),
    ];
    const rs = await Promise.all(
      Array.from({ length: 28 }, (_, i) =>
        chat(api, bodies[i % bodies.length], i % 5 === 0 ? { "X-Latency-Budget-Ms": "abc" } : {}),
      ),
    );
    for (const r of rs) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(Object.keys(r.json as object)).toEqual(["error"]);
    }
  });

  it("odd but valid requests are served: empty content, assistant-only, a system prompt, text parts", async () => {
    for (const messages of [
      [{ role: "user", content: "" }],
      [{ role: "assistant", content: null }],
      [
        { role: "system", content: "Tell a story." },
        { role: "user", content: [{ type: "text", text: "Once upon a time" }] },
      ],
    ]) {
      const r = await chat(api, withFields({ messages }));
      expect(r.status, r.text).toBe(200);
    }
  });
});
