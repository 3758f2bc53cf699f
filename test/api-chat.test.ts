/**
 * The API in workerd, called with the official openai client over real HTTP: plain and streamed
 * answers, each tier, budgets that force each variant, usage, stop sequences and seeds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer();
}, 300_000);

afterAll(async () => {
  await api?.close();
});

const story = [{ role: "user" as const, content: "Once upon a time" }];

describe("POST /v1/chat/completions", () => {
  it("answers with a completion (greedy, quality tier) that continues the story", async () => {
    const { data, response } = await api.client.chat.completions
      .create({ model: "quality", messages: story, temperature: 0, max_tokens: 24 })
      .withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.choices[0]!.message.role).toBe("assistant");
    expect(data.choices[0]!.message.content).toMatch(/there was a little/);
    expect(data.choices[0]!.finish_reason).toBe("length");
    // prompt_tokens_details.cached_tokens: prompt tokens a prefix cache served (0..prompt_tokens - 1).
    expect(data.usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: 24,
      total_tokens: 29,
      prompt_tokens_details: { cached_tokens: expect.any(Number) },
    });
    expect(data.usage!.prompt_tokens_details!.cached_tokens).toBeLessThan(5);
    expect(response.headers.get("x-variant")).toBe("quality");
    expect(Number(response.headers.get("x-predicted-ms"))).toBeGreaterThan(0);
    expect(response.headers.get("server-timing")).toMatch(
      /load;dur=[\d.]+, prefill;dur=[\d.]+, decode;dur=[\d.]+/,
    );
  });

  it("streams SSE chunks ending with [DONE]; include_usage adds a usage chunk equal to the JSON answer's", async () => {
    const request = { model: "quality", messages: story, temperature: 0, max_tokens: 24 };
    // Primes the prefix cache: the streamed and the plain request below both find the same prefix.
    await api.client.chat.completions.create(request);
    const stream = await api.client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: unknown = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (c?.delta.content) text += c.delta.content;
      if (c?.finish_reason) finish = c.finish_reason;
    }
    expect(chunks).toBeGreaterThan(5);
    expect(finish).toBe("length");
    const plain = await api.client.chat.completions.create(request);
    expect(text).toBe(plain.choices[0]!.message.content);
    // Same fields, same numbers: the primed cache serves all of the prompt but its last token.
    expect(usage).toEqual(plain.usage);
    expect(usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: 24,
      total_tokens: 29,
      prompt_tokens_details: { cached_tokens: 4 },
    });
  });

  it("the raw stream is OpenAI's SSE framing", async () => {
    const res = await fetch(new URL("/v1/chat/completions", api.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "speed", messages: story, max_tokens: 4, stream: true, seed: 1 }),
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const body = await res.text();
    const events = body.split("\n\n").filter(Boolean);
    expect(events.every((e) => e.startsWith("data: "))).toBe(true);
    expect(events.at(-1)).toBe("data: [DONE]");
    // Headers went out first: speculation's accepted/drafted counts ride in the closing chunk.
    const closing = JSON.parse(events.at(-2)!.slice("data: ".length));
    expect(closing.choices[0].finish_reason).toBe("length");
    const spec = closing.shardlm.speculation;
    expect(Number.isInteger(spec.drafted) && spec.drafted >= 0).toBe(true);
    expect(Number.isInteger(spec.accepted) && spec.accepted >= 0 && spec.accepted <= spec.drafted).toBe(true);
  });

  it.each(["quality", "balanced", "speed"])("X-Quality-Tier: %s picks that tier's variant", async (tier) => {
    const { response } = await api.client.chat.completions
      .create({ model: "shardlm", messages: story, max_tokens: 4 }, { headers: { "X-Quality-Tier": tier } })
      .withResponse();
    expect(response.headers.get("x-variant")).toBe(tier);
  });

  it("a seed makes sampling reproducible; stop sequences end the answer without the stop text", async () => {
    const ask = () =>
      api.client.chat.completions.create({
        model: "quality",
        messages: story,
        temperature: 1,
        seed: 42,
        max_tokens: 32,
      });
    const [a, b] = [await ask(), await ask()];
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    const stopped = await api.client.chat.completions.create({
      model: "quality",
      messages: story,
      temperature: 0,
      max_tokens: 48,
      stop: ["Lily"],
    });
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    expect(stopped.choices[0]!.message.content).toBe(", there was a little girl named ");
  });
});

describe("GET /v1/models", () => {
  it("lists every live variant once (tiers named like a variant are no second entry)", async () => {
    const models = await api.client.models.list();
    const ids = models.data.map((m) => m.id).sort();
    expect(ids).toEqual(["balanced", "quality", "speed"]);
  });
});
