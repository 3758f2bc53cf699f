/**
 * The token mask's fast path (src/runtime/json-mask.ts: a sorted-vocabulary walk that reuses shared
 * prefixes and skips refused ones, plus the free-string shortcut) against the plain definition: a
 * token is allowed exactly when its whole text keeps the recognizer a valid prefix. On a real
 * tokenizer (the toy model's), from many states of json_object and json_schema answers.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../src/model/import/index.ts";
import { allowedTokens, type JsonRecognizer, jsonSchemaMask } from "../src/runtime/json-mask.ts";
import { JsonPrefix } from "../src/runtime/json-prefix.ts";
import { compileSchema } from "../src/runtime/json-schema.ts";
import { JsonSchemaPrefix } from "../src/runtime/json-schema-prefix.ts";
import { argmax } from "../src/runtime/sampler.ts";
import { createTokenizer, type Tokenizer } from "../src/runtime/tokenizer/index.ts";
import { sharedModelPath } from "./helpers/paths.ts";

let tok: Tokenizer;
let stops: number[];

beforeAll(async () => {
  const description = await loadModel(sharedModelPath());
  tok = createTokenizer(description.tokenizer);
  stops = description.eosTokenIds;
}, 120_000);

/** The definition: every token tried on its own. */
function bruteForce(state: JsonRecognizer): Uint8Array {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const out = new Uint8Array(tok.vocabSize);
  for (let id = 0; id < tok.vocabSize; id++) {
    if (tok.isSpecial(id)) continue;
    let text: string;
    try {
      text = decoder.decode(tok.tokenToBytes(id));
    } catch {
      continue;
    }
    if (text !== "" && state.clone().push(text)) out[id] = 1;
  }
  return out;
}

const SCHEMA = compileSchema({
  type: "object",
  properties: {
    name: { type: "string" },
    n: { type: "number" },
    mood: { enum: ["happy", "sad", 12, 1] },
    tags: { type: "array", items: { anyOf: [{ type: "string" }, { type: "null" }] }, maxItems: 2 },
  },
  required: ["name", "n", "mood", "tags"],
});
const DOC = '{"name": "Tim \\u00e9\\"x", "n": -1.5e3, "mood": 12, "tags": ["a", null]}';

describe("token mask", () => {
  it("allows exactly the tokens whose text keeps the prefix valid, at every prefix of an answer", () => {
    const states: JsonRecognizer[] = [];
    for (const make of [() => new JsonPrefix(1), () => new JsonSchemaPrefix(SCHEMA)]) {
      for (let i = 0; i <= DOC.length; i++) {
        const r = make();
        expect(r.push(DOC.slice(0, i)), DOC.slice(0, i)).toBe(true);
        states.push(r);
      }
    }
    let nonTrivial = 0;
    for (const s of states) {
      const fast = allowedTokens(tok, s);
      const slow = bruteForce(s);
      expect([...fast], s.key()).toEqual([...slow]);
      if (slow.some((x) => x === 1)) nonTrivial++;
    }
    expect(nonTrivial).toBeGreaterThan(states.length / 2);
  });

  it("json_object: no token may close a key its object already has; the fast path agrees with the definition", () => {
    const doc = '{"a":1,"ab":{"a":2,"b":[{"a":3}]},"b":"x"}';
    const repeated = '{"a":1,"ab":{"a":2},"a';
    for (const prefix of [...Array.from({ length: doc.length + 1 }, (_, i) => doc.slice(0, i)), repeated]) {
      const s = new JsonPrefix(1);
      expect(s.push(prefix), prefix).toBe(true);
      expect([...allowedTokens(tok, s)], prefix).toEqual([...bruteForce(s)]);
    }
    const s = new JsonPrefix(1);
    s.push(repeated);
    const allowed = allowedTokens(tok, s);
    const closers = [...Array(tok.vocabSize).keys()].filter(
      (id) => !tok.isSpecial(id) && new TextDecoder().decode(tok.tokenToBytes(id)).startsWith('"'),
    );
    expect(closers.length).toBeGreaterThan(0);
    for (const id of closers) expect(allowed[id], `token ${id}`).toBe(0);
    // After a different key, the same tokens may close it.
    const other = new JsonPrefix(1);
    other.push('{"a":1,"ab":{"a":2},"c');
    expect(closers.some((id) => allowedTokens(tok, other)[id] === 1)).toBe(true);
  });

  it("decoding under the mask with random logits always ends in a value of the schema, within max tokens", () => {
    let seed = 1;
    for (let run = 0; run < 20; run++) {
      const maxTokens = 40 + run * 7; // the shortest answer has 36 characters
      const mask = jsonSchemaMask(tok, stops, maxTokens, SCHEMA);
      let text = "";
      for (let i = 0; i < maxTokens; i++) {
        const logits = new Float64Array(tok.vocabSize).map(() => {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          return (seed / 2 ** 32) * 10;
        });
        mask.allow(logits);
        const id = argmax(logits);
        if (stops.includes(id)) break;
        mask.accept(id);
        text += new TextDecoder().decode(tok.tokenToBytes(id));
      }
      const value = JSON.parse(text) as Record<string, unknown>;
      expect(Object.keys(value), text).toEqual(["name", "n", "mood", "tags"]);
      expect(mask.cacheHits + mask.cacheMisses).toBeGreaterThan(0);
    }
  });
});
