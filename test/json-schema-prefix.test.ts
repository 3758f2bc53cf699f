/**
 * The json_schema recognizer (src/runtime/json-schema-prefix.ts) against a real JSON Schema
 * validator (ajv): random texts it lets through, closed where they stop, always parse and validate;
 * texts that break the schema are refused; keywords outside the subset are refused by name.
 */
import Ajv from "ajv";
import { describe, expect, it } from "vitest";
import { compileSchema, SchemaError } from "../src/runtime/json-schema.ts";
import { JsonSchemaPrefix } from "../src/runtime/json-schema-prefix.ts";
import { mulberry32 } from "./helpers/random.ts";

const ajv = new Ajv({ strict: false });

const SCHEMAS: Record<string, object> = {
  person: {
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer" },
      score: { type: "number" },
      ok: { type: "boolean" },
      nothing: { type: "null" },
    },
    required: ["name", "age", "score", "ok", "nothing"],
    additionalProperties: false,
  },
  nested: {
    type: "object",
    properties: {
      mood: { enum: ["happy", "sad", 12, 1, null] },
      kind: { const: "fixed" },
      tags: { type: "array", items: { type: "string", enum: ["a", "ab", "b"] }, minItems: 1, maxItems: 3 },
      address: {
        type: "object",
        properties: { city: { type: "string" }, zip: { type: ["string", "null"] } },
        required: ["city"],
        additionalProperties: false,
      },
      grid: { type: "array", items: { type: "array", items: { type: "integer" }, maxItems: 2 } },
    },
    required: ["mood", "tags", "address"],
    additionalProperties: false,
  },
  anyOfAndRefs: {
    type: "object",
    $defs: {
      point: {
        type: "object",
        properties: { x: { type: "number" }, y: { type: "number" } },
        required: ["x", "y"],
      },
    },
    properties: {
      shape: {
        anyOf: [
          {
            type: "object",
            properties: { circle: { $ref: "#/$defs/point" }, r: { type: "number" } },
            required: ["circle", "r"],
            additionalProperties: false,
          },
          {
            type: "object",
            properties: { poly: { type: "array", items: { $ref: "#/$defs/point" } } },
            required: ["poly"],
            additionalProperties: false,
          },
          { type: "string" },
        ],
      },
      'odd "key"/é': { type: "boolean" },
    },
    required: ["shape", 'odd "key"/é'],
    additionalProperties: false,
  },
  bounded: {
    type: "object",
    properties: {
      code: { type: "string", minLength: 3, maxLength: 3 },
      nick: { type: "string", maxLength: 2 },
      bio: { type: "string", minLength: 4 },
      maybe: { type: ["string", "null"], minLength: 1, maxLength: 5 },
      words: { type: "array", items: { type: "string", minLength: 1, maxLength: 2 }, maxItems: 3 },
      empty: { type: "string", maxLength: 0 },
    },
    required: ["code", "nick", "bio", "maybe", "words", "empty"],
    additionalProperties: false,
  },
  optional: {
    type: "object",
    properties: { a: { type: "integer" }, b: { type: "string" }, c: { type: "boolean" } },
    required: ["b"],
  },
};

const ALPHABET = [
  ...'{}[]:," \n\\-+.eE0123456789',
  ..."abcdefghijklmnopqrstuvwxyz",
  ..."/é\u0001\t",
  "true",
  "false",
  "null",
  "u00e9",
  // Surrogate pairs, raw and escaped (one code point each for minLength/maxLength), and a lone half.
  "\u{1F600}",
  "ud83d",
  "ude00",
  "\ud83d",
];

/** A random text the recognizer accepts, `steps` pieces long at most (or until complete). */
function randomText(r: JsonSchemaPrefix, rand: () => number, steps: number): string {
  let text = "";
  for (let i = 0; i < steps && !r.complete; i++) {
    const ok = ALPHABET.filter((piece) => r.clone().push(piece));
    expect(ok.length, `no way on after ${JSON.stringify(text)}`).toBeGreaterThan(0);
    const piece = ok[Math.floor(rand() * ok.length)]!;
    expect(r.push(piece)).toBe(true);
    text += piece;
  }
  return text;
}

describe("JsonSchemaPrefix", () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`${name}: random accepted texts, closed, parse and validate (ajv), 200 tries`, () => {
      const validate = ajv.compile(schema);
      const compiled = compileSchema(schema);
      const rand = mulberry32(name.length * 7919);
      for (let i = 0; i < 200; i++) {
        const r = new JsonSchemaPrefix(compiled);
        const text = randomText(r, rand, Math.floor(rand() * 120));
        const closing = r.closing();
        const closed = text + closing;
        expect(r.push(closing), closed).toBe(true);
        expect(r.complete, closed).toBe(true);
        const value: unknown = JSON.parse(closed);
        expect(validate(value), `${closed}\n${JSON.stringify(validate.errors)}`).toBe(true);
        // Insignificant whitespace stays compact: never two in a row outside strings.
        expect(JSON.stringify(value).length).toBeGreaterThan(0);
      }
    });
  }

  it.each([
    ["person", '{"name":"x","age":1.5'],
    ["person", '{"age":1'],
    ["person", '{"name":1'],
    ["person", '{"name":"x","age":1,"score":1,"ok":true,"nothing":null,"extra":1'],
    ["person", '{"name":"x"}'],
    ["person", '{  "name"'],
    ["person", "{\t"],
    ["nested", '{"mood":"hap"}'],
    ["nested", '{"mood":2'],
    ["nested", '{"mood":null,"tags":[]'],
    ["nested", '{"mood":null,"tags":["a","a","a","a"'],
    ["nested", '{"mood":1,"kind":"other"'],
    ["optional", '{"a":1}'],
    ["optional", '{"b":"x","a":1'],
    ["anyOfAndRefs", '{"shape":{"circle":{"x":1},"r"'],
    ["anyOfAndRefs", '{"shape":1'],
  ])("%s refuses %j", (name, bad) => {
    const r = new JsonSchemaPrefix(compileSchema(SCHEMAS[name]!));
    expect(r.push(bad)).toBe(false);
  });

  it("anyOf options that agree are merged, not multiplied per array item", () => {
    const schema = {
      type: "object",
      properties: {
        xs: {
          type: "array",
          items: { anyOf: [{ type: "string" }, { type: "string" }, { enum: ["a", "b"] }] },
        },
      },
      required: ["xs"],
    };
    const r = new JsonSchemaPrefix(compileSchema(schema));
    const doc = `{"xs":[${Array.from({ length: 40 }, (_, i) => (i % 2 ? '"a"' : '"zz"')).join(",")}]}`;
    for (const ch of doc) {
      expect(r.push(ch)).toBe(true);
      expect(r.key().split("||").length).toBeLessThanOrEqual(3);
    }
    expect(r.complete).toBe(true);
    expect(ajv.validate(schema, JSON.parse(doc))).toBe(true);
  });

  it("accepts a whole valid document with single spaces and newlines, then nothing more", () => {
    const r = new JsonSchemaPrefix(compileSchema(SCHEMAS.nested!));
    const doc =
      '{\n"mood": 12, "tags": ["ab", "b"], "address": {"city": "Oslo", "zip": null}, "grid": [[1, -2], []]}';
    expect(r.push(doc)).toBe(true);
    expect(r.complete).toBe(true);
    expect(ajv.validate(SCHEMAS.nested!, JSON.parse(doc))).toBe(true);
    expect(r.clone().push(" ")).toBe(false);
  });

  it("string minLength/maxLength count code points: raw or escaped pairs once, escapes once", () => {
    const schema = compileSchema({
      type: "object",
      properties: { s: { type: "string", minLength: 3, maxLength: 3 } },
      required: ["s"],
    });
    const accepts = (text: string) => {
      const r = new JsonSchemaPrefix(schema);
      return r.push(text) && r.complete;
    };
    for (const ok of [
      '{"s":"abc"}',
      '{"s":"\u{1F600}\u{1F600}\u{1F600}"}',
      '{"s":"\\ud83d\\ude00bc"}', // an escaped pair
      '{"s":"\\n\\"\\u00e9"}',
      '{"s":"\ud83d\\ude00x\ud83d"}', // raw high + escaped low; a lone high counts one
    ]) {
      expect(accepts(ok), ok).toBe(true);
      expect(JSON.parse(ok).s, ok).toSatisfy((v: string) => [...v].length === 3);
    }
    for (const bad of ['{"s":"ab"}', '{"s":"abcd"}', '{"s":"\u{1F600}\u{1F600}"}', '{"s":"abc\\n"}']) {
      expect(accepts(bad), bad).toBe(false);
    }
    // Refused at the first character past maxLength, not only at the closing quote.
    expect(new JsonSchemaPrefix(schema).push('{"s":"abcd')).toBe(false);
    expect(new JsonSchemaPrefix(schema).push('{"s":"abc\\')).toBe(false);
    // Closing fills up to minLength.
    const r = new JsonSchemaPrefix(schema);
    r.push('{"s":"\\u00');
    expect(r.closing()).toBe('00aa"}');
    const twoA = compileSchema({
      type: "object",
      properties: { s: { type: "string", minLength: 2 } },
      required: ["s"],
    });
    expect(twoA.minText[twoA.root.id]).toBe('{"s":"aa"}');
  });

  it("a string is free (any plain character continues it alike) only once its bounds cannot matter", () => {
    const at = (schema: object, text: string) => {
      const r = new JsonSchemaPrefix(
        compileSchema({ type: "object", properties: { s: schema }, required: ["s"] }),
      );
      expect(r.push(text)).toBe(true);
      return r;
    };
    expect(at({ type: "string" }, '{"s":"').inFreeString).toBe(true);
    expect(at({ type: "string", minLength: 2 }, '{"s":"a').inFreeString).toBe(false);
    expect(at({ type: "string", minLength: 2 }, '{"s":"ab').inFreeString).toBe(true);
    expect(at({ type: "string", maxLength: 9 }, '{"s":"ab').inFreeString).toBe(false);
    // Settled strings of different lengths share a key (one cached mask); bounded ones do not.
    expect(at({ type: "string", minLength: 2 }, '{"s":"abc').key()).toBe(
      at({ type: "string", minLength: 2 }, '{"s":"abcdef').key(),
    );
    expect(at({ type: "string", maxLength: 9 }, '{"s":"abc').key()).not.toBe(
      at({ type: "string", maxLength: 9 }, '{"s":"abcd').key(),
    );
  });

  it.each([
    [
      { type: "object", properties: { s: { type: "string", minLength: -1 } } },
      /minLength: must be a non-negative integer/,
    ],
    [
      { type: "object", properties: { s: { type: "string", minLength: "3" } } },
      /minLength: must be a non-negative integer/,
    ],
    [
      { type: "object", properties: { s: { type: "string", maxLength: 1.5 } } },
      /maxLength: must be a non-negative integer/,
    ],
    [
      { type: "object", properties: { s: { type: "string", maxLength: null } } },
      /maxLength: must be a non-negative integer/,
    ],
    [
      { type: "object", properties: { s: { type: "string", maxLength: [2] } } },
      /maxLength: must be a non-negative integer/,
    ],
    [
      { type: "object", properties: { s: { type: "string", minLength: 3, maxLength: 2 } } },
      /maxLength is below minLength/,
    ],
    [{ type: "object", properties: { s: { type: "string", minLength: 1e9 } } }, /minLength: at most 4096/],
    [
      { type: "object", properties: { n: { type: "number", maxLength: 3 } } },
      /"maxLength" \(for type number\)/,
    ],
    [{ type: "object", properties: { s: { enum: ["a"], minLength: 3 } } }, /"minLength"/],
  ])("refuses garbage string bounds %j by name", (schema, message) => {
    expect(() => compileSchema(schema)).toThrow(SchemaError);
    expect(() => compileSchema(schema)).toThrow(message);
  });

  it.each([
    [
      { type: "object", properties: { s: { type: "string", pattern: "^a" } } },
      /"pattern".*#\/properties\/s|#\/properties\/s.*"pattern"/,
    ],
    [
      { type: "object", properties: { s: { type: "string", minLength: 1, format: "email" } } },
      /unsupported JSON Schema keyword "format" \(for type string\)/,
    ],
    [{ type: "object", properties: { n: { type: "number", minimum: 0 } } }, /"minimum"/],
    [{ type: "object", oneOf: [] }, /"oneOf"/],
    [{ type: "object", additionalProperties: { type: "string" } }, /additionalProperties/],
    [{ type: "object", properties: { a: { $ref: "#" } } }, /recursive \$ref/],
    [{ type: "object", properties: { a: { $ref: "#/$defs/missing" } } }, /does not name a local definition/],
    [{ type: "array", items: { type: "string" } }, /root schema must be of type object/],
    [{ type: "object", required: ["x"] }, /"x" is not among the properties/],
    [{ type: "object", properties: { a: {} } }, /needs type, enum, const, anyOf or \$ref/],
    [{ type: "object", properties: { a: { type: "date" } } }, /type: must be one of/],
    [{ type: "object", properties: { a: { type: "string", enum: [1] } } }, /is not of type string/],
    [
      {
        type: "object",
        properties: { a: { type: "array", items: { type: "string" }, minItems: 3, maxItems: 2 } },
      },
      /maxItems is below minItems/,
    ],
    [{ type: "object", properties: { a: { type: "array" } } }, /needs items/],
    [{ type: "object", properties: { a: { enum: [] } } }, /non-empty array/],
    [[1, 2], /must be a JSON object/],
    [
      {
        type: "object",
        properties: {
          a: {
            type: "array",
            minItems: 200,
            items: {
              type: "array",
              minItems: 200,
              items: { type: "array", minItems: 200, items: { type: "null" } },
            },
          },
        },
      },
      /shortest answer the schema allows is longer/,
    ],
    [
      { type: "object", properties: { a: { enum: Array.from({ length: 1001 }, (_, i) => i) } } },
      /at most 1000/,
    ],
    [
      {
        type: "object",
        $defs: {
          big: {
            type: "array",
            minItems: 250,
            items: { type: "array", minItems: 20, items: { type: "null" } },
          },
        },
        properties: Object.fromEntries(
          Array.from({ length: 30 }, (_, i) => [`p${i}`, { $ref: "#/$defs/big" }]),
        ),
        required: Array.from({ length: 30 }, (_, i) => `p${i}`),
      },
      /shortest answer the schema allows is longer/,
    ],
  ])("refuses %j by name", (schema, message) => {
    expect(() => compileSchema(schema)).toThrow(SchemaError);
    expect(() => compileSchema(schema)).toThrow(message);
  });
});
