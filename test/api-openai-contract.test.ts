/**
 * The OpenAI contract users reach for first (issue 15), in workerd over real HTTP with the official
 * openai client where it applies: user text never becomes control tokens, empty stop strings,
 * top_p 0, GET /v1/models/{id}, each model id listed once, CORS, and error bodies that stay valid
 * JSON whatever bytes the request held.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, chat, clientError, deployedTokenizer, expectApiError, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

let api: ApiServer;
const MAX_BODY = 256 * 1024;

beforeAll(async () => {
  api = await startApiServer({
    SHARDLM_CORS_ORIGINS: "https://app.example,https://other.example",
    // Small enough that an oversized body is sent whole before the answer (see the 413 test).
    SHARDLM_MAX_BODY_BYTES: String(MAX_BODY),
  });
}, 300_000);

afterAll(async () => {
  await api?.close();
});

/** A body every JSON parser accepts: it parses, and no string in it holds a lone surrogate. */
function expectStrictJson(text: string): void {
  const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  expect(lone.test(text), "raw body has a lone surrogate").toBe(false);
  const parsed = JSON.parse(text) as { error: { message: string; param: string | null } };
  expect(lone.test(parsed.error.message), "message decodes to a lone surrogate").toBe(false);
  expect(lone.test(parsed.error.param ?? ""), "param decodes to a lone surrogate").toBe(false);
}

describe("user text is text", () => {
  it('ten "</s>" in a user message count as their characters, not ten EOS tokens', async () => {
    const content = "</s>".repeat(10);
    const r = await api.client.chat.completions.create({
      model: "quality",
      messages: [{ role: "user", content }],
      max_tokens: 1,
      temperature: 0,
    });
    const tok = deployedTokenizer(api);
    const asText = tok.encode(content, { parseSpecial: false, addBos: false });
    expect(asText.some((id) => tok.eosIds.includes(id))).toBe(false);
    expect(r.usage!.prompt_tokens).toBe(1 + asText.length); // BOS + the text's tokens
    expect(r.usage!.prompt_tokens).toBeGreaterThan(11);
  });
});

describe("parameter edges", () => {
  it('stop: [""], "" and ["", "zzzz"] are ignored (an empty string matches nowhere)', async () => {
    const plain = await api.client.chat.completions.create({
      model: "quality",
      messages: story,
      max_tokens: 8,
      temperature: 0,
    });
    for (const stop of [[""], "", ["", "zzzz"]]) {
      const r = await api.client.chat.completions.create({
        model: "quality",
        messages: story,
        max_tokens: 8,
        temperature: 0,
        stop,
      });
      expect(r.choices[0]!.message.content, JSON.stringify(stop)).toBe(plain.choices[0]!.message.content);
      expect(r.choices[0]!.finish_reason).toBe("length");
      expect(r.usage!.completion_tokens).toBe(8);
    }
  });

  it("top_p: 0 is accepted and picks the most likely token (the greedy answer)", async () => {
    const ask = (extra: object) =>
      api.client.chat.completions.create({ model: "quality", messages: story, max_tokens: 12, ...extra });
    const greedy = await ask({ temperature: 0 });
    const topP0 = await ask({ top_p: 0, temperature: 1, seed: 7 });
    expect(topP0.choices[0]!.message.content).toBe(greedy.choices[0]!.message.content);
  });
});

describe("models", () => {
  it("GET /v1/models lists each id once, created when its deployment went live (Unix seconds)", async () => {
    const list = (await api.client.models.list()).data;
    const ids = list.map((m) => m.id);
    for (const m of list) {
      expect(m.created).toBeGreaterThan(Date.parse("2026-01-01") / 1000);
      expect(m.created).toBeLessThanOrEqual(Date.now() / 1000);
      expect(Number.isInteger(m.created)).toBe(true);
    }
    expect(ids.length).toBeGreaterThan(0);
    expect(new Set(ids).size).toBe(ids.length);
    // Each variant says whether it speculates by default and what the build measured (null: no search).
    for (const m of (await api.client.models.list()).data as unknown as { speculative: unknown }[]) {
      const spec = m.speculative as null | { enabled: boolean; adaptive: boolean; verify_row_cost: number };
      if (spec === null) continue;
      expect(typeof spec.enabled).toBe("boolean");
      expect(typeof spec.adaptive).toBe("boolean");
      expect(spec.verify_row_cost).toBeGreaterThan(0);
    }
  });

  it("client.models.retrieve works for every listed id; an unknown id is a 404 model_not_found", async () => {
    for (const m of (await api.client.models.list()).data) {
      const got = await api.client.models.retrieve(m.id);
      expect(got).toMatchObject({ id: m.id, object: "model", owned_by: "shardlm" });
    }
    // Names chat accepts that are not listed: the router's aliases and the source model's name. Each
    // is an alias of the variant chat serves it with (no header or budget: the best quality, listed first).
    const list = (await api.client.models.list()).data as unknown as { id: string; source_model: string }[];
    const best = list[0]!;
    for (const name of ["shardlm", "auto", best.source_model]) {
      const got = await api.client.models.retrieve(name);
      expect(got).toMatchObject({ id: name, object: "model", owned_by: "shardlm", alias_of: best.id });
      const answer = await api.client.chat.completions.create({
        model: name,
        messages: story,
        max_tokens: 1,
        temperature: 0,
      });
      expect(answer.model).toBe(best.id);
    }
    const e = await clientError(api.client.models.retrieve("gpt-17"));
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect([e.status, e.type, e.code, e.param]).toEqual([
      404,
      "invalid_request_error",
      "model_not_found",
      "model",
    ]);
  });
});

describe("CORS (SHARDLM_CORS_ORIGINS = two origins)", () => {
  const preflight = (origin: string, path = "/v1/chat/completions") =>
    fetch(new URL(path, api.url), {
      method: "OPTIONS",
      headers: {
        Origin: origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
      },
    });

  it("a preflight from an allowed origin is a 204 allowing the method and headers", async () => {
    const r = await preflight("https://app.example");
    expect(r.status).toBe(204);
    expect(r.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(r.headers.get("access-control-allow-methods")).toMatch(/POST/);
    expect(r.headers.get("access-control-allow-headers")?.toLowerCase()).toMatch(/authorization/);
    expect((await preflight("https://other.example", "/v1/models")).status).toBe(204);
  });

  it("answers (and errors) to an allowed origin carry Access-Control-Allow-Origin; others get none", async () => {
    const ok = await call(api, "/v1/chat/completions", {
      body: { model: "speed", messages: story, max_tokens: 2 },
      headers: { Origin: "https://app.example" },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(ok.headers.get("access-control-expose-headers")).toMatch(/X-Variant/);
    const bad = await call(api, "/v1/chat/completions", {
      body: "{",
      headers: { Origin: "https://app.example" },
    });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const foreign = await call(api, "/v1/models", { headers: { Origin: "https://evil.example" } });
    expect(foreign.status).toBe(200);
    expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
    const pre = await preflight("https://evil.example");
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("every shardlm header a cross-origin answer carries is exposed to the page (Access-Control-Expose-Headers)", async () => {
    const origin = { Origin: "https://app.example" };
    const answers = [
      // Routing, plan, budget and timing headers (a 1 ms budget cuts the answer: X-Budget-Exhausted).
      await call(api, "/v1/chat/completions", {
        body: { model: "shardlm", messages: story, max_tokens: 64 },
        headers: { ...origin, "X-Latency-Budget-Ms": "1" },
      }),
      await call(api, "/v1/chat/completions", {
        body: { model: "speed", messages: story, max_tokens: 2, stream: true },
        headers: origin,
      }),
      await call(api, "/v1/completions", {
        body: { model: "speed", prompt: "Once upon a time", max_tokens: 2 },
        headers: origin,
      }),
      await call(api, "/v1/models", { method: "DELETE", headers: origin }), // 405 with Allow
    ];
    const seen = new Set<string>();
    for (const r of answers) {
      const exposed = (r.headers.get("access-control-expose-headers") ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase());
      const own: string[] = [];
      r.headers.forEach((_, h) => {
        if (/^(x-|server-timing$|retry-after$|etag$|allow$)/.test(h)) own.push(h);
      });
      for (const h of own) {
        seen.add(h);
        expect(exposed, `${h} on a ${r.status}`).toContain(h);
      }
      // Set only under a CPU limit that caps the answer, so named here rather than seen.
      expect(exposed).toContain("x-max-tokens-capped");
    }
    expect([...seen]).toEqual(
      expect.arrayContaining([
        "x-variant",
        "x-planned-tokens",
        "x-budget-exhausted",
        "server-timing",
        "allow",
      ]),
    );
  });
});

describe("error bodies are valid JSON whatever the request held", () => {
  const rawPost = (body: BodyInit, contentType = "application/json") =>
    fetch(new URL("/v1/chat/completions", api.url), {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    });

  it("invalid UTF-8 bytes in the body", async () => {
    const bytes = new Uint8Array([
      ...new TextEncoder().encode('{"model": "'),
      0xff,
      0xfe,
      0xc3,
      ...new TextEncoder().encode('", "messages": []}'),
    ]);
    const r = await rawPost(bytes);
    expect(r.status).toBe(400);
    expectStrictJson(await r.text());
    const r2 = await rawPost(new Uint8Array([0x80, 0x81, 0xff]));
    expect(r2.status).toBe(400);
    expectStrictJson(await r2.text());
  });

  it("lone surrogates (JSON escapes) in the model, a message's role and an unknown key", async () => {
    for (const body of [
      '{"model": "\\ud800x", "messages": [{"role": "user", "content": "hi"}]}',
      '{"model": "quality", "messages": [{"role": "\\udfff", "content": "hi"}]}',
      '{"model": "quality", "messages": [{"role": "user", "content": "hi"}], "\\ud83d": 1}',
    ]) {
      const r = await rawPost(body);
      expect(r.status, body).toBeGreaterThanOrEqual(400);
      expect(r.status, body).toBeLessThan(500);
      expectStrictJson(await r.text());
    }
  });

  it("a body over the limit (SHARDLM_MAX_BODY_BYTES here) is a 413 request_too_large", async () => {
    const r = await call(api, "/v1/chat/completions", {
      body: { model: "quality", messages: [{ role: "user", content: "a".repeat(MAX_BODY + 1) }] },
    });
    expectApiError(r, 413, { type: "invalid_request_error", code: "request_too_large" });
  });

  it("a non-JSON Content-Type is a 400 invalid_content_type", async () => {
    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      const r = await call(api, "/v1/chat/completions", {
        body: { model: "quality", messages: story },
        headers: { "content-type": type },
      });
      expectApiError(r, 400, { code: "invalid_content_type" });
    }
  });

  it("a model name of 100 kB is quoted only in part", async () => {
    const r = await chat(api, { model: "m".repeat(100_000), messages: story });
    expectApiError(r, 404, { code: "model_not_found" });
    expect(r.text.length).toBeLessThan(5000);
  });
});

describe("sampling controls and log probabilities (openai client)", () => {
  const ask = (extra: object) =>
    api.client.chat.completions.create({ model: "quality", messages: story, max_tokens: 16, ...extra });

  it("logprobs: one entry per generated token, matching the answer; greedy picks the top alternative", async () => {
    const r = await ask({ temperature: 0, logprobs: true, top_logprobs: 5 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(r.usage!.completion_tokens);
    const bytes = content.flatMap((e) => e.bytes!);
    expect(new TextDecoder().decode(Uint8Array.from(bytes))).toBe(r.choices[0]!.message.content);
    for (const e of content) {
      expect(e.top_logprobs).toHaveLength(5);
      expect(e.top_logprobs[0]!.token).toBe(e.token);
      expect(e.top_logprobs[0]!.logprob).toBe(e.logprob);
      expect(e.logprob).toBeLessThanOrEqual(0);
      const lps = e.top_logprobs.map((t) => t.logprob);
      expect(lps).toEqual([...lps].sort((a, b) => b - a));
      // The alternatives are a distribution's: their probabilities sum to at most 1.
      expect(lps.reduce((a, b) => a + Math.exp(b), 0)).toBeLessThanOrEqual(1 + 1e-9);
    }
    // Asking for logprobs does not change the answer.
    expect((await ask({ temperature: 0 })).choices[0]!.message.content).toBe(r.choices[0]!.message.content);
  });

  it("seeded sampling with logprobs: the sampled token is reported, with its own log probability", async () => {
    const r = await ask({ temperature: 1.2, seed: 11, logprobs: true, top_logprobs: 20 });
    const again = await ask({ temperature: 1.2, seed: 11 });
    expect(r.choices[0]!.message.content).toBe(again.choices[0]!.message.content);
    for (const e of r.choices[0]!.logprobs!.content!) {
      const listed = e.top_logprobs.find((t) => t.token === e.token);
      if (listed) expect(listed.logprob).toBe(e.logprob);
      else expect(e.logprob).toBeLessThanOrEqual(e.top_logprobs.at(-1)!.logprob);
    }
  });

  it("logit_bias +100 forces a token on every step; -100 bans the greedy first token", async () => {
    const tok = deployedTokenizer(api);
    const forced = tok.encode(" the", { addBos: false })[0]!;
    const r = await ask({ temperature: 1, seed: 1, logit_bias: { [forced]: 100 }, logprobs: true });
    const want = [...tok.tokenToBytes(forced)];
    for (const e of r.choices[0]!.logprobs!.content!) expect(e.bytes).toEqual(want);
    expect(r.usage!.completion_tokens).toBe(16);

    const greedy = await ask({ temperature: 0, max_tokens: 1, logprobs: true, top_logprobs: 2 });
    const [first] = greedy.choices[0]!.logprobs!.content!;
    const sameBytes = (id: number) => tok.tokenToBytes(id).join() === first!.bytes!.join();
    const firstIds = Array.from({ length: tok.vocabSize }, (_, id) => id).filter(sameBytes);
    expect(firstIds.length).toBeGreaterThan(0);
    const banned = await ask({
      temperature: 0,
      max_tokens: 1,
      logprobs: true,
      logit_bias: Object.fromEntries(firstIds.map((id) => [id, -100])),
    });
    expect(banned.choices[0]!.logprobs!.content![0]!.token).not.toBe(first!.token);
  });

  it("frequency and presence penalties change a greedy answer that repeats itself", async () => {
    const plain = await ask({ temperature: 0, max_tokens: 40 });
    const text = plain.choices[0]!.message.content!;
    for (const extra of [{ frequency_penalty: 2 }, { presence_penalty: 2 }]) {
      const r = await ask({ temperature: 0, max_tokens: 40, ...extra });
      expect(r.choices[0]!.message.content, JSON.stringify(extra)).not.toBe(text);
      // Reproducible: greedy with a penalty is still deterministic.
      expect((await ask({ temperature: 0, max_tokens: 40, ...extra })).choices[0]!.message.content).toBe(
        r.choices[0]!.message.content,
      );
    }
  });
});

describe('response_format {"type": "json_object"}: constrained decoding', () => {
  it("every answer parses as a JSON object, sampled or greedy, long or cut by max_tokens", async () => {
    const cases = [
      { temperature: 0, max_tokens: 40 },
      { temperature: 1.3, seed: 1, max_tokens: 60 },
      { temperature: 1, seed: 2, max_tokens: 5 },
      { temperature: 0.8, seed: 3, max_tokens: 120 },
      { temperature: 1, seed: 4, max_tokens: 2 },
    ];
    for (const extra of cases) {
      const r = await api.client.chat.completions.create({
        model: "quality",
        messages: story,
        response_format: { type: "json_object" },
        ...extra,
      });
      const text = r.choices[0]!.message.content!;
      const value: unknown = JSON.parse(text);
      expect(typeof value === "object" && value !== null && !Array.isArray(value), text).toBe(true);
      expect(r.usage!.completion_tokens).toBeLessThanOrEqual(extra.max_tokens);
    }
  });

  it("max_tokens 1 cannot hold an object: 400 naming max_tokens", async () => {
    const r = await chat(api, {
      model: "quality",
      messages: story,
      max_tokens: 1,
      response_format: { type: "json_object" },
    });
    expectApiError(r, 400, { type: "invalid_request_error", param: "max_tokens" });
  });

  it("streamed too: the joined deltas parse", async () => {
    const stream = await api.client.chat.completions.create({
      model: "speed",
      messages: story,
      response_format: { type: "json_object" },
      temperature: 1,
      seed: 9,
      max_tokens: 30,
      stream: true,
    });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    expect(typeof JSON.parse(text)).toBe("object");
  });
});

describe("parameters shardlm does not implement are refused by name", () => {
  const nonNeutral: Record<string, unknown> = {
    response_format: { type: "grammar", grammar: "root ::= x" },
    tools: [{ type: "function", function: { name: "f", parameters: {} } }],
    tool_choice: "auto",
    functions: [{ name: "f" }],
    function_call: "auto",
    parallel_tool_calls: "yes",
    audio: { voice: "alloy", format: "mp3" },
    modalities: ["text", "audio"],
    prediction: { type: "content", content: "x" },
    web_search_options: {},
    reasoning_effort: "low",
    verbosity: "low",
  };
  it.each(Object.entries(nonNeutral))("%s: 400 unsupported_parameter naming it", async (name, value) => {
    const r = await chat(api, { model: "quality", messages: story, max_tokens: 2, [name]: value });
    expectApiError(r, 400, { type: "invalid_request_error", code: "unsupported_parameter", param: name });
  });

  it("tools through the openai client: BadRequestError naming tools", async () => {
    const e = await clientError(
      api.client.chat.completions.create({
        model: "quality",
        messages: story,
        tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
      }),
    );
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect([e.code, e.param]).toEqual(["unsupported_parameter", "tools"]);
  });

  it("their neutral values are accepted (clients that always send them keep working)", async () => {
    const r = await chat(api, {
      model: "quality",
      messages: story,
      max_tokens: 2,
      frequency_penalty: 0,
      presence_penalty: 0,
      logprobs: false,
      logit_bias: {},
      response_format: { type: "text" },
      tools: [],
      tool_choice: "none",
      parallel_tool_calls: true,
      modalities: ["text"],
      service_tier: "auto",
      user: "u",
      store: false,
    });
    expect(r.status, r.text).toBe(200);
  });

  it("null, OpenAI's 'not set', is neutral for every one of them (not an unrecognized argument)", async () => {
    const nulls = Object.fromEntries(Object.keys(nonNeutral).map((name) => [name, null]));
    const r = await chat(api, { model: "quality", messages: story, max_tokens: 2, ...nulls });
    expect(r.status, r.text).toBe(200);
  });
});
