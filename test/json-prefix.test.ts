import { describe, expect, it } from "vitest";
import { JsonPrefix } from "../src/runtime/json-prefix.ts";
import { mulberry32 } from "./helpers/random.ts";

const isObjectText = (s: string) => {
  try {
    const v: unknown = JSON.parse(s);
    return typeof v === "object" && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
};
const recognize = (s: string) => {
  const r = new JsonPrefix();
  return r.push(s) && r.complete;
};

const VALID = [
  "{}",
  ' { "a" : 1 } ',
  '{"a":[1,-2.5e+3,0.0,true,false,null,"x\\u00e9\\n\\"q\\""],"b":{"c":{}},"d":[]}',
  '{"k":"é ✓ 😀","n":-0,"e":1E-2,"arr":[[],[{}]]}',
];

describe("JsonPrefix (json_object recognizer)", () => {
  it("accepts valid object texts, every prefix of them, and closes every prefix into a valid object", () => {
    for (const doc of VALID) {
      expect(recognize(doc), doc).toBe(true);
      const chars = [...doc];
      for (let i = 0; i <= chars.length; i++) {
        const r = new JsonPrefix();
        const prefix = chars.slice(0, i).join("");
        expect(r.push(prefix), prefix).toBe(true);
        const closed = prefix + r.closing();
        expect(isObjectText(closed), closed).toBe(true);
        expect(recognize(closed), closed).toBe(true);
      }
    }
  });

  it.each([
    ["[1]"],
    ['"s"'],
    ["1"],
    ["{'a':1}"],
    ['{"a":01}'],
    ['{"a":1,}'],
    ['{"a" 1}'],
    ['{"a":tru}'],
    ['{"a":"\\x"}'],
    ['{"a":"\u0001"}'],
    ["{}}"],
    ["{} x"],
    ['{"a":[1}'],
    ['{"a":1.}'],
    ['{"a":-}'],
    ["{,}"],
  ])("refuses %j, and stays refused", (bad) => {
    const r = new JsonPrefix();
    const ok = r.push(bad) && r.complete;
    expect(ok).toBe(false);
    expect(isObjectText(bad)).toBe(false);
    if (!r.push("")) {
      // Refused: no continuation brings it back.
      expect(r.push('"}]} ')).toBe(false);
      expect(r.complete).toBe(false);
    }
  });

  it("agrees with JSON.parse on 20,000 random mutations of valid texts (garbage in)", () => {
    const rand = mulberry32(15);
    const alphabet = [
      "{",
      "}",
      "[",
      "]",
      '"',
      ":",
      ",",
      " ",
      "\\",
      "u",
      "0",
      "1",
      "-",
      ".",
      "e",
      "t",
      "n",
      "a",
      "\n",
      "\u0000",
    ];
    for (let n = 0; n < 20_000; n++) {
      const chars = [...VALID[n % VALID.length]!];
      const edits = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < edits; k++) {
        const at = Math.floor(rand() * (chars.length + 1));
        const op = rand();
        const ch = alphabet[Math.floor(rand() * alphabet.length)]!;
        if (op < 0.4) chars.splice(at, 1);
        else if (op < 0.7) chars.splice(at, 0, ch);
        else chars[at] = ch;
      }
      const s = chars.join("");
      expect(recognize(s), JSON.stringify(s)).toBe(isObjectText(s));
    }
  });
});

describe("jsonObjectMask on the stories260K tokenizer, random logits", () => {
  it("every draw until the stop token or the token limit is a JSON object text", async () => {
    const { loadModel } = await import("../src/model/import/index.ts");
    const { createTokenizer } = await import("../src/runtime/tokenizer/index.ts");
    const { jsonObjectMask } = await import("../src/runtime/json-mask.ts");
    const { createSampler } = await import("../src/runtime/sampler.ts");
    const { sharedModelPath } = await import("./helpers/paths.ts");
    const model = await loadModel(sharedModelPath());
    const tok = createTokenizer(model.tokenizer);
    const stops = tok.eosIds;
    const rand = mulberry32(7);
    let completeBeforeLimit = 0;
    for (let run = 0; run < 30; run++) {
      const maxTokens = 2 + (run % 10) * 7; // "{" and "}": the fewest tokens an object takes
      const mask = jsonObjectMask(tok, stops, maxTokens);
      const sampler = createSampler({ temperature: 1, seed: run }, { mask });
      const ids: number[] = [];
      for (let i = 0; i < maxTokens; i++) {
        // Random logits, biased towards ending so both endings happen.
        const logits = Float32Array.from({ length: tok.vocabSize }, () => rand() * 4);
        for (const s of stops) logits[s] = 6;
        const id = sampler.sample(logits);
        if (stops.includes(id)) {
          completeBeforeLimit++;
          break;
        }
        ids.push(id);
      }
      const text = tok.decode(ids, { continuation: true });
      expect(isObjectText(text), `${maxTokens}: ${JSON.stringify(text)}`).toBe(true);
    }
    expect(completeBeforeLimit).toBeGreaterThan(0);
  });
});
