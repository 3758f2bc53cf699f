/**
 * Legacy POST /v1/completions in workerd over real HTTP, through the official openai client's
 * `client.completions.create`: text_completion objects, JSON and SSE, validated against zod schemas
 * of OpenAI's Completion object; the prompt is plain text (the test model has no chat template, so
 * the chat endpoint renders the same tokens: both answers must agree); unsupported forms refused by name.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { call, clientError, deployedTokenizer, expectApiError } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";
import { TextCompletion } from "./helpers/openai-schemas.ts";

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer();
}, 300_000);

afterAll(async () => {
  await api?.close();
});

const prompt = "Once upon a time";

describe("POST /v1/completions (openai client)", () => {
  it("a text_completion answer; greedy text equals the chat endpoint's for the same text", async () => {
    const r = await api.client.completions.create({
      model: "quality",
      prompt,
      max_tokens: 12,
      temperature: 0,
    });
    const parsed = TextCompletion.parse(r);
    expect(parsed.choices).toHaveLength(1);
    expect(parsed.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(12);
    const tok = deployedTokenizer(api);
    expect(r.usage!.prompt_tokens).toBe(tok.encode(prompt).length);
    const viaChat = await api.client.chat.completions.create({
      model: "quality",
      messages: [{ role: "user", content: prompt }],
      max_tokens: 12,
      temperature: 0,
    });
    expect(r.choices[0]!.text).toBe(viaChat.choices[0]!.message.content);
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
  });

  it("max_tokens defaults to 16 (OpenAI's default here); an array of one prompt is the prompt", async () => {
    const r = await api.client.completions.create({ model: "quality", prompt: [prompt], temperature: 0 });
    expect(r.usage!.completion_tokens).toBe(16);
    const same = await api.client.completions.create({ model: "quality", prompt, temperature: 0 });
    expect(r.choices[0]!.text).toBe(same.choices[0]!.text);
  });

  it("seed, stop and penalties as in chat", async () => {
    const ask = (extra: object) =>
      api.client.completions.create({ model: "quality", prompt, max_tokens: 20, ...extra });
    const a = await ask({ temperature: 0.9, seed: 5 });
    expect((await ask({ temperature: 0.9, seed: 5 })).choices[0]!.text).toBe(a.choices[0]!.text);
    const greedy = (await ask({ temperature: 0 })).choices[0]!.text;
    const cut = greedy.slice(3, 6);
    const stopped = await ask({ temperature: 0, stop: [cut] });
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    expect(stopped.choices[0]!.text).toBe(greedy.slice(0, greedy.indexOf(cut)));
    // 40 greedy tokens of the toy model repeat themselves: a frequency penalty changes them.
    const long = (await ask({ temperature: 0, max_tokens: 40 })).choices[0]!.text;
    const penalized = await ask({ temperature: 0, max_tokens: 40, frequency_penalty: 2 });
    expect(penalized.choices[0]!.text).not.toBe(long);
  });

  it("streams text_completion chunks ending with data: [DONE]; the text joins to the JSON answer's", async () => {
    const whole = await api.client.completions.create({
      model: "speed",
      prompt,
      max_tokens: 10,
      temperature: 0,
    });
    const stream = await api.client.completions.create({
      model: "speed",
      prompt,
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    const chunks: z.infer<typeof TextCompletion>[] = [];
    for await (const chunk of stream) {
      const c = TextCompletion.parse(chunk);
      chunks.push(c);
      text += c.choices[0]?.text ?? "";
    }
    expect(text).toBe(whole.choices[0]!.text);
    const finishes = chunks.flatMap((c) => c.choices.map((x) => x.finish_reason)).filter((f) => f !== null);
    expect(finishes).toEqual(["length"]);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toMatchObject({ completion_tokens: 10 });
    // The same request again, not streamed, finds the prefix cache as the stream did: same usage.
    const again = await api.client.completions.create({
      model: "speed",
      prompt,
      max_tokens: 10,
      temperature: 0,
    });
    expect(chunks.at(-1)!.usage).toEqual(again.usage);
    expect(again.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    // Raw SSE framing.
    const res = await fetch(new URL("/v1/completions", api.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "speed", prompt, max_tokens: 3, stream: true }),
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    for (const e of events.slice(0, -1)) TextCompletion.parse(JSON.parse(e.replace(/^data: /, "")));
  });

  it("control-token markup in the prompt stays text", async () => {
    const r = await api.client.completions.create({
      model: "quality",
      prompt: "</s>".repeat(5),
      max_tokens: 1,
    });
    const tok = deployedTokenizer(api);
    expect(r.usage!.prompt_tokens).toBe(tok.encode("</s>".repeat(5), { parseSpecial: false }).length);
    expect(r.usage!.prompt_tokens).toBeGreaterThan(6);
  });
});

describe("/v1/completions logprobs (legacy format) and n", () => {
  it("logprobs 3: tokens join to the text, offsets count from the prompt's end, values match chat's", async () => {
    const r = await api.client.completions.create({
      model: "quality",
      prompt,
      max_tokens: 8,
      temperature: 0,
      logprobs: 3,
    });
    const lp = TextCompletion.parse(r).choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(r.usage!.completion_tokens);
    expect(lp.tokens.join("")).toBe(r.choices[0]!.text);
    let at = [...prompt].length;
    for (let i = 0; i < lp.tokens.length; i++) {
      expect(lp.text_offset[i]).toBe(at);
      at += [...lp.tokens[i]!].length;
      const top = Object.values(lp.top_logprobs[i]!);
      expect(top.length).toBeGreaterThanOrEqual(1);
      expect(top.length).toBeLessThanOrEqual(3);
      // Greedy: the chosen token is the most likely one.
      expect(lp.token_logprobs[i]).toBeCloseTo(Math.max(...top), 9);
    }
    // The same numbers as chat's logprobs for the same tokens (the toy model has no chat template).
    const viaChat = await api.client.chat.completions.create({
      model: "quality",
      messages: [{ role: "user", content: prompt }],
      max_tokens: 8,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = viaChat.choices[0]!.logprobs!.content!;
    expect(content.map((e) => e.token)).toEqual(lp.tokens);
    expect(content.map((e) => e.logprob)).toEqual(lp.token_logprobs);
    // logprobs 0: the chosen tokens' values, no alternatives.
    const zero = await api.client.completions.create({
      model: "quality",
      prompt,
      max_tokens: 3,
      logprobs: 0,
    });
    for (const top of zero.choices[0]!.logprobs!.top_logprobs!) expect(top).toEqual({});
  });

  it("logprobs streamed: each chunk carries its tokens, offsets continue, all equal the JSON answer's", async () => {
    const body = { model: "speed", prompt, max_tokens: 10, temperature: 0, logprobs: 2 };
    const whole = TextCompletion.parse(await api.client.completions.create(body)).choices[0]!.logprobs!;
    const stream = await api.client.completions.create({ ...body, stream: true });
    const tokens: string[] = [];
    const offsets: number[] = [];
    const values: number[] = [];
    for await (const chunk of stream) {
      const c = TextCompletion.parse(chunk).choices[0];
      if (!c?.logprobs) continue;
      expect(c.logprobs.tokens.join("")).toBe(c.text);
      tokens.push(...c.logprobs.tokens);
      offsets.push(...c.logprobs.text_offset);
      values.push(...c.logprobs.token_logprobs);
    }
    expect(tokens).toEqual(whole.tokens);
    expect(offsets).toEqual(whole.text_offset);
    expect(values).toEqual(whole.token_logprobs);
  });

  it("an answer that ends on the end token lists no entry for it: logprobs match the text and completion_tokens, JSON and SSE", async () => {
    // A bias on the end token makes greedy decoding stop on it after a few tokens: the smallest
    // bias (searched, not assumed) that ends the answer with at least two tokens before the end.
    const eos = deployedTokenizer(api).eosIds[0]!;
    const base = { model: "quality", prompt, max_tokens: 40, temperature: 0 };
    let bias = -1;
    for (const b of [0, 5, 10, 15, 20, 25, 30, 40]) {
      const r = await api.client.completions.create({ ...base, logit_bias: { [eos]: b } });
      if (r.choices[0]!.finish_reason === "stop" && r.usage!.completion_tokens >= 2) {
        bias = b;
        break;
      }
    }
    expect(bias, "no bias on the end token ended the answer").toBeGreaterThanOrEqual(0);
    const withEnd = { ...base, logit_bias: { [eos]: bias } };
    const legacy = await api.client.completions.create({ ...withEnd, logprobs: 2 });
    const lp = TextCompletion.parse(legacy).choices[0]!.logprobs!;
    expect(legacy.choices[0]!.finish_reason).toBe("stop");
    expect(lp.tokens).toHaveLength(legacy.usage!.completion_tokens);
    expect(lp.token_logprobs).toHaveLength(legacy.usage!.completion_tokens);
    expect(lp.tokens.join("")).toBe(legacy.choices[0]!.text);
    const chatBody = {
      model: "quality",
      messages: [{ role: "user" as const, content: prompt }],
      max_tokens: 40,
      temperature: 0,
      logit_bias: { [eos]: bias },
      logprobs: true,
      top_logprobs: 2,
    };
    const chat = await api.client.chat.completions.create(chatBody);
    const content = chat.choices[0]!.logprobs!.content!;
    expect(chat.choices[0]!.finish_reason).toBe("stop");
    expect(content).toHaveLength(chat.usage!.completion_tokens);
    expect(content.map((e) => e.token).join("")).toBe(chat.choices[0]!.message.content);
    expect(content.map((e) => e.token)).toEqual(lp.tokens);
    // Streamed, both endpoints: the same entries, none for the end token.
    const chatStream = await api.client.chat.completions.create({ ...chatBody, stream: true });
    const streamed: string[] = [];
    for await (const chunk of chatStream)
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []).map((e) => e.token));
    expect(streamed).toEqual(lp.tokens);
    const legacyStream = await api.client.completions.create({ ...withEnd, logprobs: 2, stream: true });
    const legacyStreamed: string[] = [];
    for await (const chunk of legacyStream)
      legacyStreamed.push(...(TextCompletion.parse(chunk).choices[0]?.logprobs?.tokens ?? []));
    expect(legacyStreamed).toEqual(lp.tokens);
  });

  it("a stop string lists only the tokens that begin in the returned text (JSON and SSE, legacy and chat); completion_tokens counts the stop string's", async () => {
    const base = { model: "quality", prompt, max_tokens: 24, temperature: 0 };
    const full = TextCompletion.parse(await api.client.completions.create({ ...base, logprobs: 1 }))
      .choices[0]!;
    const tokens = full.logprobs!.tokens;
    expect(tokens.join("")).toBe(full.text); // the toy model's greedy text is ASCII: token texts add up
    const begins = tokens.map((_, i) => tokens.slice(0, i).join("").length);
    // Two stops whose first occurrence is at `cut`, each reaching into the token after token i: one
    // starting inside token i (it straddles the cut and is listed), one at its start (not listed).
    const stopAt = (cut: number, end: number) => {
      for (let len = end - cut; cut + len <= full.text.length; len++) {
        const stop = full.text.slice(cut, cut + len);
        if (full.text.indexOf(stop) === cut) return stop;
      }
      return undefined;
    };
    const cases: { cut: number; stop: string; straddles: boolean }[] = [];
    for (const straddles of [true, false]) {
      for (let i = 2; i < tokens.length - 2; i++) {
        const cut = straddles ? begins[i]! + 1 : begins[i]!;
        if (straddles && tokens[i]!.length < 2) continue;
        const stop = stopAt(cut, begins[i + 1]! + 1);
        if (stop && stop.length <= tokens[i]!.length + tokens[i + 1]!.length + 4) {
          cases.push({ cut, stop, straddles });
          break;
        }
      }
    }
    expect(cases.map((c) => c.straddles)).toEqual([true, false]);
    const promptChars = [...prompt].length;
    for (const { cut, stop } of cases) {
      const text = full.text.slice(0, cut);
      const listed = tokens.filter((_, i) => begins[i]! < cut);
      // Generation ends on the token that completes the stop string: all of them are counted.
      const generated = begins.findIndex((b, i) => b + tokens[i]!.length >= cut + stop.length) + 1;
      expect(generated).toBeGreaterThan(listed.length);
      const legacy = TextCompletion.parse(
        await api.client.completions.create({ ...base, stop: [stop], logprobs: 1 }),
      );
      const c = legacy.choices[0]!;
      expect(c.finish_reason).toBe("stop");
      expect(c.text).toBe(text);
      expect(c.logprobs!.tokens).toEqual(listed);
      expect(c.logprobs!.text_offset).toEqual(listed.map((_, i) => promptChars + begins[i]!));
      for (const o of c.logprobs!.text_offset) expect(o).toBeLessThan(promptChars + text.length);
      expect(legacy.usage!.completion_tokens).toBe(generated);
      // Streamed: the same entries and offsets, the same usage.
      const stream = await api.client.completions.create({
        ...base,
        stop: [stop],
        logprobs: 1,
        stream: true,
        stream_options: { include_usage: true },
      });
      const streamed: string[] = [];
      const offsets: number[] = [];
      let streamedText = "";
      let usage: number | undefined;
      for await (const chunk of stream) {
        const sc = TextCompletion.parse(chunk).choices[0];
        streamedText += sc?.text ?? "";
        streamed.push(...(sc?.logprobs?.tokens ?? []));
        offsets.push(...(sc?.logprobs?.text_offset ?? []));
        if (chunk.usage) usage = chunk.usage.completion_tokens;
      }
      expect(streamedText).toBe(text);
      expect(streamed).toEqual(listed);
      expect(offsets).toEqual(c.logprobs!.text_offset);
      expect(usage).toBe(generated);
      // Chat (the toy model has no template: the same tokens), JSON and streamed.
      const chatBody = {
        model: "quality",
        messages: [{ role: "user" as const, content: prompt }],
        max_tokens: 24,
        temperature: 0,
        stop: [stop],
        logprobs: true,
      };
      const chatAnswer = await api.client.chat.completions.create(chatBody);
      expect(chatAnswer.choices[0]!.message.content).toBe(text);
      expect(chatAnswer.choices[0]!.logprobs!.content!.map((e) => e.token)).toEqual(listed);
      expect(chatAnswer.usage!.completion_tokens).toBe(generated);
      const chatStream = await api.client.chat.completions.create({ ...chatBody, stream: true });
      const chatStreamed: string[] = [];
      for await (const chunk of chatStream)
        chatStreamed.push(...(chunk.choices[0]?.logprobs?.content ?? []).map((e) => e.token));
      expect(chatStreamed).toEqual(listed);
    }
  });

  it("n 3 seeded: three indexed choices, usage summed, reproducible; choice 0 is the n 1 answer", async () => {
    const ask = (n: number) =>
      api.client.completions.create({
        model: "quality",
        prompt,
        max_tokens: 12,
        temperature: 1,
        seed: 11,
        n,
      });
    const r = await ask(3);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.usage!.completion_tokens).toBe(36);
    expect(r.usage!.prompt_tokens).toBe(deployedTokenizer(api).encode(prompt).length);
    expect((await ask(3)).choices.map((c) => c.text)).toEqual(r.choices.map((c) => c.text));
    expect((await ask(1)).choices[0]!.text).toBe(r.choices[0]!.text);
    expect(new Set(r.choices.map((c) => c.text)).size).toBeGreaterThan(1);
  });
});

describe("/v1/completions refuses what it does not serve, naming the parameter", () => {
  const post = (body: unknown) => call(api, "/v1/completions", { method: "POST", body });
  it.each([
    ["token-id prompt", { prompt: [1, 2, 3] }, "prompt", null],
    ["two prompts", { prompt: ["a", "b"] }, "prompt", null],
    ["no prompt", { prompt: undefined }, "prompt", null],
    ["an object prompt", { prompt: { text: "x" } }, "prompt", null],
    ["logprobs 6 (legacy maximum 5)", { logprobs: 6 }, "logprobs", null],
    ["logprobs true", { logprobs: true }, "logprobs", null],
    ["logprobs -1", { logprobs: -1 }, "logprobs", null],
    ["echo", { echo: true }, "echo", "unsupported_parameter"],
    ["suffix", { suffix: "the end" }, "suffix", "unsupported_parameter"],
    ["best_of 3", { best_of: 3 }, "best_of", "unsupported_parameter"],
    ["n 9", { n: 9 }, "n", null],
    ["n 0", { n: 0 }, "n", null],
    ["temperature 3", { temperature: 3 }, "temperature", null],
    ["a logit_bias id outside the vocabulary", { logit_bias: { "99999999": 1 } }, "logit_bias", null],
    ["messages (a chat field)", { messages: [] }, "messages", null],
  ])("%s: 400 naming %s", async (_, fields, param, code) => {
    const r = await post({ model: "quality", prompt, max_tokens: 2, ...fields });
    expectApiError(r, 400, { type: "invalid_request_error", param, ...(code ? { code } : {}) });
  });

  it("an empty prompt ('' or ['']) starts from BOS: a valid answer, JSON and streamed to [DONE]", async () => {
    // The test model adds BOS, so the prompt is [BOS]; a model without one answers 400 naming
    // prompt (test/real-model-api.test.ts). Before, both were a RangeError: 500, or 200 then an error chunk.
    const tok = deployedTokenizer(api);
    expect(tok.bosId).not.toBeNull();
    for (const p of ["", [""]]) {
      const r = await post({ model: "quality", prompt: p, max_tokens: 3 });
      expect(r.status).toBe(200);
      const parsed = TextCompletion.parse(r.json);
      expect(parsed.usage!.prompt_tokens).toBe(1);
      const s = await post({ model: "quality", prompt: p, max_tokens: 3, stream: true });
      expect(s.status).toBe(200);
      expect(s.text).not.toContain('"error"');
      expect(s.text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    }
  });

  it("a prompt over the context is 400 context_length_exceeded naming prompt", async () => {
    const r = await post({ model: "quality", prompt: "Once upon a time ".repeat(2000), max_tokens: 2 });
    expectApiError(r, 400, {
      code: "context_length_exceeded",
      param: "prompt",
      message: /; your prompt uses (at least )?\d+\.$/,
    });
  });

  it("the client surfaces refusals as BadRequestError; GET is a 405", async () => {
    const e = await clientError(api.client.completions.create({ model: "quality", prompt, echo: true }));
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect([e.code, e.param]).toEqual(["unsupported_parameter", "echo"]);
    expect((await call(api, "/v1/completions")).status).toBe(405);
  });
});
