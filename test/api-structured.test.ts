/**
 * Structured output and several choices on /v1/chat/completions, in workerd over real HTTP with the
 * official openai client: response_format json_schema (answers parse and validate with ajv, sampled
 * or greedy, cut by max_tokens or streamed; schemas outside the subset refused by name), compact
 * json_object whitespace, and n > 1 (indexed choices, usage summed, seeded reproducible, streamed
 * per index).
 */
import Ajv from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chat, expectApiError, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

let api: ApiServer;
const ajv = new Ajv({ strict: false });

beforeAll(async () => {
  api = await startApiServer();
}, 300_000);

afterAll(async () => {
  await api?.close();
});

const PERSON = {
  type: "object",
  properties: {
    name: { type: "string" },
    age: { type: "integer" },
    mood: { enum: ["happy", "sad"] },
    tags: { type: "array", items: { type: "string" }, maxItems: 3 },
    pet: {
      anyOf: [
        { type: "null" },
        {
          type: "object",
          properties: { kind: { const: "cat" }, lives: { type: "number" } },
          required: ["kind", "lives"],
          additionalProperties: false,
        },
      ],
    },
    ok: { type: "boolean" },
  },
  required: ["name", "age", "mood", "tags", "pet", "ok"],
  additionalProperties: false,
};

const jsonSchema = (schema: object, name = "person") => ({
  type: "json_schema" as const,
  json_schema: { name, schema: schema as Record<string, unknown>, strict: true },
});

/** Outside strings: no run of two whitespace characters, and only spaces and newlines. */
function expectCompact(text: string): void {
  const outside = text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  expect(outside, text).not.toMatch(/\s\s/);
  expect(outside, text).not.toMatch(/[\t\r]/);
}

describe('response_format {"type": "json_schema"}', () => {
  it("answers parse and validate against the schema (ajv): greedy, sampled, and cut short by max_tokens", async () => {
    const validate = ajv.compile(PERSON);
    const cases = [
      { temperature: 0, max_tokens: 120 },
      { temperature: 1.2, seed: 1, max_tokens: 90 },
      { temperature: 1, seed: 2, max_tokens: 66 },
      { temperature: 0.7, seed: 3, max_tokens: 200 },
    ];
    for (const extra of cases) {
      const r = await api.client.chat.completions.create({
        model: "quality",
        messages: story,
        response_format: jsonSchema(PERSON),
        ...extra,
      });
      const text = r.choices[0]!.message.content!;
      const value: unknown = JSON.parse(text);
      expect(validate(value), `${text}\n${JSON.stringify(validate.errors)}`).toBe(true);
      expectCompact(text);
      expect(r.usage!.completion_tokens).toBeLessThanOrEqual(extra.max_tokens);
    }
  });

  it("streamed: the joined deltas validate; n 3 seeded gives three valid choices", async () => {
    const validate = ajv.compile(PERSON);
    const stream = await api.client.chat.completions.create({
      model: "speed",
      messages: story,
      response_format: jsonSchema(PERSON),
      temperature: 1,
      seed: 9,
      max_tokens: 80,
      stream: true,
    });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    expect(validate(JSON.parse(text)), text).toBe(true);
    const r = await api.client.chat.completions.create({
      model: "speed",
      messages: story,
      response_format: jsonSchema(PERSON),
      temperature: 1,
      seed: 4,
      max_tokens: 70,
      n: 3,
    });
    expect(r.choices).toHaveLength(3);
    for (const c of r.choices)
      expect(validate(JSON.parse(c.message.content!)), c.message.content!).toBe(true);
  });

  it("$defs/$ref and nested arrays of objects validate too", async () => {
    const schema = {
      type: "object",
      $defs: {
        point: {
          type: "object",
          properties: { x: { type: "number" }, y: { type: "number" } },
          required: ["x", "y"],
        },
      },
      properties: { points: { type: "array", items: { $ref: "#/$defs/point" }, minItems: 2 } },
      required: ["points"],
      additionalProperties: false,
    };
    const r = await api.client.chat.completions.create({
      model: "quality",
      messages: story,
      response_format: jsonSchema(schema, "points"),
      temperature: 1,
      seed: 5,
      max_tokens: 100,
    });
    const text = r.choices[0]!.message.content!;
    expect(ajv.validate(schema, JSON.parse(text)), text).toBe(true);
  });

  it("string minLength/maxLength: answers validate (ajv), greedy, sampled, cut short and streamed", async () => {
    const BOUNDED = {
      type: "object",
      properties: {
        code: { type: "string", minLength: 4, maxLength: 4 },
        name: { type: "string", minLength: 2, maxLength: 6 },
        tags: { type: "array", items: { type: "string", minLength: 1, maxLength: 3 }, maxItems: 3 },
        note: { type: "string", minLength: 12 },
      },
      required: ["code", "name", "tags", "note"],
      additionalProperties: false,
    };
    const validate = ajv.compile(BOUNDED);
    const check = (text: string) => {
      const value = JSON.parse(text) as { code: string; note: string };
      expect(validate(value), `${text}\n${JSON.stringify(validate.errors)}`).toBe(true);
      expect([...value.code]).toHaveLength(4);
    };
    for (const extra of [
      { temperature: 0, max_tokens: 120 },
      { temperature: 1.2, seed: 4, max_tokens: 120 },
      { temperature: 1, seed: 5, max_tokens: 60 }, // the shortest answer is 59 characters: closed at once
    ]) {
      const r = await api.client.chat.completions.create({
        model: "quality",
        messages: story,
        response_format: jsonSchema(BOUNDED, "bounded"),
        ...extra,
      });
      check(r.choices[0]!.message.content!);
    }
    const stream = await api.client.chat.completions.create({
      model: "speed",
      messages: story,
      response_format: jsonSchema(BOUNDED, "bounded"),
      temperature: 1,
      seed: 6,
      max_tokens: 120,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    check(text);
  });

  it("max_tokens below the shortest answer is a 400 naming max_tokens", async () => {
    const r = await chat(api, {
      model: "quality",
      messages: story,
      max_tokens: 5,
      response_format: jsonSchema(PERSON),
    });
    expectApiError(r, 400, {
      type: "invalid_request_error",
      param: "max_tokens",
      message: /needs max_tokens of at least \d+: one token per character of its shortest answer/,
    });
  });

  it.each([
    ["a pattern", { type: "object", properties: { s: { type: "string", pattern: "^a" } } }, /"pattern"/],
    [
      "number bounds (the message lists what is refused)",
      { type: "object", properties: { n: { type: "integer", minimum: 0, exclusiveMaximum: 9 } } },
      /"minimum", "exclusiveMaximum" \(for type integer\).*not supported: minimum, maximum, exclusiveMinimum, exclusiveMaximum/,
    ],
    [
      "a negative minLength",
      { type: "object", properties: { s: { type: "string", minLength: -2 } } },
      /#\/properties\/s\/minLength: must be a non-negative integer/,
    ],
    [
      "a string maxLength",
      { type: "object", properties: { s: { type: "string", maxLength: "12" } } },
      /maxLength: must be a non-negative integer/,
    ],
    [
      "maxLength below minLength",
      { type: "object", properties: { s: { type: "string", minLength: 5, maxLength: 4 } } },
      /maxLength is below minLength/,
    ],
    [
      "a huge minLength",
      { type: "object", properties: { s: { type: "string", minLength: 1e12 } } },
      /minLength: at most 4096/,
    ],
    [
      "maxLength on a number",
      { type: "object", properties: { n: { type: "number", maxLength: 3 } } },
      /"maxLength" \(for type number\)/,
    ],
    [
      "minimum and format",
      { type: "object", properties: { n: { type: "number", minimum: 0, format: "x" } } },
      /"minimum", "format"/,
    ],
    ["oneOf", { type: "object", properties: { a: { oneOf: [{ type: "string" }] } } }, /"oneOf"/],
    ["a recursive $ref", { type: "object", properties: { a: { $ref: "#" } } }, /recursive/],
    ["an array root", { type: "array", items: { type: "string" } }, /root/],
    ["no type", { properties: {} }, /needs type/],
    ["an unknown required name", { type: "object", required: ["x"] }, /"x"/],
    [
      "a lone-surrogate property name",
      { type: "object", properties: { "\ud800": { type: "string", pattern: "x" } } },
      /#\/properties\/\ufffd: unsupported JSON Schema keyword "pattern"/,
    ],
  ])(
    "a schema with %s: 400 invalid_json_schema naming response_format and the keyword",
    async (_, schema, message) => {
      const r = await chat(api, {
        model: "quality",
        messages: story,
        max_tokens: 4,
        response_format: jsonSchema(schema),
      });
      expectApiError(r, 400, {
        type: "invalid_request_error",
        code: "invalid_json_schema",
        param: "response_format",
        message,
      });
    },
  );

  it.each([
    ["no json_schema", { type: "json_schema" }],
    ["no schema", { type: "json_schema", json_schema: { name: "x" } }],
    ["a string schema", { type: "json_schema", json_schema: { name: "x", schema: "{}" } }],
    ["an array schema", { type: "json_schema", json_schema: { name: "x", schema: [1] } }],
    ["a bad name", { type: "json_schema", json_schema: { name: "a b/c", schema: { type: "object" } } }],
    [
      "an unknown field",
      { type: "json_schema", json_schema: { name: "x", schema: { type: "object" }, extra: 1 } },
    ],
    [
      "strict as a string",
      { type: "json_schema", json_schema: { name: "x", schema: { type: "object" }, strict: "yes" } },
    ],
    ["json_object with a schema", { type: "json_object", schema: {} }],
  ])("garbage response_format (%s): 400 naming response_format", async (_, response_format) => {
    const r = await chat(api, { model: "quality", messages: story, max_tokens: 4, response_format });
    expectApiError(r, 400, { type: "invalid_request_error" });
    expect((r.json as { error: { param: string } }).error.param).toMatch(/^response_format/);
  });

  it("a deeply nested schema is refused or served, never a crash", async () => {
    let schema: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 2000; i++) schema = { type: "array", items: schema };
    const r = await chat(api, {
      model: "quality",
      messages: story,
      max_tokens: 4,
      response_format: jsonSchema({ type: "object", properties: { a: schema } }),
    });
    expect(r.status, r.text).toBeLessThan(500);
    expect(r.json).toBeDefined();
  });
});

describe('response_format {"type": "json_object"} is compact', () => {
  it("insignificant whitespace comes in runs of at most one space or newline", async () => {
    for (const seed of [1, 2, 3]) {
      const r = await api.client.chat.completions.create({
        model: "quality",
        messages: story,
        response_format: { type: "json_object" },
        temperature: 1.2,
        seed,
        max_tokens: 80,
      });
      const text = r.choices[0]!.message.content!;
      expect(typeof JSON.parse(text)).toBe("object");
      expectCompact(text);
    }
  });
});

describe("n > 1 on chat completions", () => {
  it("n 3 seeded: indexed choices, usage summed, reproducible; choice 0 is the n 1 answer", async () => {
    const ask = (n: number) =>
      api.client.chat.completions.create({
        model: "quality",
        messages: story,
        max_tokens: 10,
        temperature: 1,
        seed: 21,
        n,
      });
    const r = await ask(3);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const one = await ask(1);
    expect(r.usage!.prompt_tokens).toBe(one.usage!.prompt_tokens);
    expect(r.usage!.completion_tokens).toBe(30);
    expect((await ask(3)).choices.map((c) => c.message.content)).toEqual(
      r.choices.map((c) => c.message.content),
    );
    expect(one.choices[0]!.message.content).toBe(r.choices[0]!.message.content);
    expect(new Set(r.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
  });

  it("streamed: each choice's chunks carry its index, open with the role, end with its finish_reason; texts equal the JSON answer's", async () => {
    const body = { model: "speed", messages: story, max_tokens: 8, temperature: 1, seed: 8, n: 2 };
    const whole = await api.client.chat.completions.create(body);
    const stream = await api.client.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    const texts = ["", ""];
    const finishes: (string | null)[] = [null, null];
    const roles: number[] = [];
    let usage = 0;
    for await (const c of stream) {
      if (c.usage) usage = c.usage.completion_tokens;
      const ch = c.choices[0];
      if (!ch) continue;
      expect(finishes[ch.index], "no chunk after its choice finished").toBeNull();
      if (ch.delta.role) roles.push(ch.index);
      texts[ch.index] += ch.delta.content ?? "";
      if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
    }
    expect(roles).toEqual([0, 1]);
    expect(finishes).toEqual(["length", "length"]);
    expect(texts).toEqual(whole.choices.map((c) => c.message.content));
    expect(usage).toBe(16);
  });
});
