import { describe, expect, it } from "vitest";
import { JsonPrefix } from "../src/runtime/json-prefix.ts";
import { mulberry32 } from "./helpers/random.ts";

/**
 * Whether some object in valid JSON text `s` repeats a key (as written): JSON.parse accepts that
 * (keeping the last), the recognizer refuses it. Scans strings and brackets, independent of it.
 */
const repeatsKey = (s: string) => {
  const objects: (Set<string> | null)[] = [];
  const tokens = [...s.matchAll(/"(?:[^"\\]|\\.)*"|[{}[\]:]/g)].map((m) => m[0]);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === "{") objects.push(new Set());
    else if (t === "[") objects.push(null);
    else if (t === "}" || t === "]") objects.pop();
    else if (t.startsWith('"') && tokens[i + 1] === ":") {
      const keys = objects.at(-1);
      if (keys?.has(t)) return true;
      keys?.add(t);
    }
  }
  return false;
};
const isObjectText = (s: string) => {
  try {
    const v: unknown = JSON.parse(s);
    return typeof v === "object" && v !== null && !Array.isArray(v) && !repeatsKey(s);
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

  it("refuses a key repeated within one object (at its closing quote), not across objects", () => {
    for (const bad of [
      '{"a":1,"a":2}',
      '{"name":"Frodo","age":13,"name":"Frodo"}',
      '{"x":{"a":1,"b":2,"a":3}}',
    ]) {
      expect(JSON.parse(bad)).toBeTypeOf("object"); // JSON.parse takes it (the last one wins)
      expect(recognize(bad), bad).toBe(false);
    }
    const r = new JsonPrefix();
    expect(r.push('{"name":"Frodo","age":13,"name')).toBe(true); // could still become "names"
    expect(r.clone().push('"')).toBe(false);
    expect(r.clone().push('s":1}')).toBe(true);
    for (const ok of ['{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":{"b":{"c":1}}}', '{"a":1,"ab":2,"b":3}'])
      expect(recognize(ok), ok).toBe(true);
  });

  it("closes a prefix with a fresh key when the shortest one would repeat", () => {
    for (const prefix of ['{"":1,', '{"":1,"', '{"":1,"0":2,"', '{"a":1,"a', '{"a":{"":1,"']) {
      const r = new JsonPrefix();
      expect(r.push(prefix), prefix).toBe(true);
      const closed = prefix + r.closing();
      expect(isObjectText(closed), closed).toBe(true);
      expect(recognize(closed), closed).toBe(true);
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
