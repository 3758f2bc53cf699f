/**
 * llama-spm tokenizer on the real stories260K vocabulary, checked against llama.cpp itself
 * (node-llama-cpp, CPU prebuilt binaries): token ids, detokenized text, and our own invariants
 * (lossless round trip, stream decoding).
 */
import { join } from "node:path";
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGguf } from "../src/model/export/gguf.ts";
import { loadModel } from "../src/model/import/index.ts";
import { createTokenizer, type Tokenizer } from "../src/runtime/tokenizer/index.ts";
import { tempDirs } from "./helpers/paths.ts";
import {
  hasLoneSurrogate,
  loadSpmSpec,
  randomText,
  SAMPLE_TEXTS,
  STORIES_GGUF,
  seededRandom,
  streamPieces,
} from "./tokenizer-fixtures.ts";

let tokenizer: Tokenizer;
let llama: Llama;
let model: LlamaModel;

beforeAll(async () => {
  tokenizer = createTokenizer(await loadSpmSpec(STORIES_GGUF));
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  model = await llama.loadModel({ modelPath: STORIES_GGUF });
});

const dirs = tempDirs("tokenizer-spm");

afterAll(async () => {
  await model?.dispose();
  await llama?.dispose();
  dirs.cleanup();
});

/** llama.cpp's ids: model.tokenize adds no BOS but does add the sentencepiece space prefix. */
const llamaCppIds = (text: string, parseSpecial = false) => Array.from(model.tokenize(text, parseSpecial));

describe("llama-spm vocabulary (stories260K)", () => {
  it("reads the vocabulary settings", () => {
    expect(tokenizer.kind).toBe("llama-spm");
    expect(tokenizer.vocabSize).toBe(512);
    expect(tokenizer.bosId).toBe(1);
    expect(tokenizer.eosIds).toEqual([2]);
    expect(tokenizer.unkId).toBe(0);
    expect(tokenizer.addBosByDefault).toBe(true);
    expect(tokenizer.addEosByDefault).toBe(false);
    expect([0, 1, 2].map((id) => tokenizer.isSpecial(id))).toEqual([true, true, true]);
    expect(tokenizer.isSpecial(403)).toBe(false);
    expect(tokenizer.tokenToPiece(403)).toBe("▁Once");
    expect(tokenizer.pieceToId("▁Once")).toBe(403);
    expect(tokenizer.tokenToBytes(13)).toEqual(Uint8Array.of(0x0a));
    expect(new TextDecoder().decode(tokenizer.tokenToBytes(403))).toBe(" Once");
  });

  it("encodes the reference prompt like llama.cpp", () => {
    expect(tokenizer.encode("Once upon a time", { addBos: false })).toEqual([403, 407, 261, 378]);
    expect(tokenizer.encode("Once upon a time")).toEqual([1, 403, 407, 261, 378]);
    expect(llamaCppIds("Once upon a time")).toEqual([403, 407, 261, 378]);
  });

  it.each(SAMPLE_TEXTS.map((text) => [JSON.stringify(text), text]))(
    "ids equal llama.cpp's for %s",
    (_, text) => {
      expect(tokenizer.encode(text, { addBos: false })).toEqual(llamaCppIds(text));
      expect(tokenizer.encode(text, { addBos: false, parseSpecial: true })).toEqual(llamaCppIds(text, true));
    },
  );

  it("recognizes control tokens in text only with parseSpecial, with llama.cpp's space prefix after them", () => {
    expect(tokenizer.encode("<s>hi</s>", { addBos: false, parseSpecial: true })).toEqual([1, 270, 417, 2]);
    const plain = tokenizer.encode("<s>hi</s>", { addBos: false });
    expect(plain.some((id) => tokenizer.isSpecial(id))).toBe(false);
    expect(tokenizer.decode(plain)).toBe("<s>hi</s>");
  });

  it("equals llama.cpp on random text (ids and detokenized text)", () => {
    const random = seededRandom(20240601);
    for (let i = 0; i < 1500; i++) {
      const text = randomText(random, 40);
      const ids = tokenizer.encode(text, { addBos: false });
      expect(ids, JSON.stringify(text)).toEqual(llamaCppIds(text));
      expect(tokenizer.decode(ids), JSON.stringify(text)).toBe(model.detokenize(ids as Token[]));
    }
  });

  it("decodes like llama.cpp: byte tokens, ▁ -> space, one prefix space removed", () => {
    expect(tokenizer.decode([403, 407])).toBe("Once upon");
    // BOS is skipped before the prefix space is removed (llama.cpp with remove_special).
    expect(tokenizer.decode([1, 403, 407])).toBe("Once upon");
    // Rendered specials come first, so there is no prefix space to remove (llama.cpp, HF alike).
    expect(tokenizer.decode([1, 403, 407], { skipSpecial: false })).toBe(
      model.detokenize([1, 403, 407] as Token[], true),
    );
    expect(tokenizer.decode([1, 403, 407], { skipSpecial: false })).toBe("<s> Once upon");
    expect(tokenizer.decode([407], { continuation: true })).toBe(" upon");
    expect(tokenizer.decode([410, 243, 162, 155, 131])).toBe("😀");
  });

  it("round-trips arbitrary text losslessly", () => {
    // "▁" in the input means a space to sentencepiece (llama.cpp and HF alike): not representable.
    for (const text of SAMPLE_TEXTS.filter((t) => !t.includes("▁"))) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
    const random = seededRandom(42);
    for (let i = 0; i < 3000; i++) {
      const text = randomText(random, 60);
      expect(tokenizer.decode(tokenizer.encode(text)), JSON.stringify(text)).toBe(text);
    }
  });

  it("stream-decodes token by token without splitting characters", () => {
    const random = seededRandom(7);
    const texts = [...SAMPLE_TEXTS, ...Array.from({ length: 500 }, () => randomText(random, 40))];
    for (const text of texts) {
      const ids = tokenizer.encode(text, { parseSpecial: true });
      for (const opts of [undefined, { skipSpecial: false }, { continuation: true }]) {
        const full = tokenizer.decode(ids, opts);
        const pieces = streamPieces(tokenizer, ids, opts);
        expect(pieces.join(""), JSON.stringify(text)).toBe(full);
        for (const piece of pieces) {
          expect(hasLoneSurrogate(piece)).toBe(false);
          if (!full.includes("\uFFFD")) expect(piece).not.toContain("\uFFFD");
        }
      }
    }
  });

  it("holds back incomplete UTF-8 and flushes it as U+FFFD, like decode", () => {
    const ids = tokenizer.encode("😀", { addBos: false }); // ▁ + 4 byte tokens
    const stream = tokenizer.createStreamDecoder();
    expect(ids.map((id) => stream.push(id))).toEqual(["", "", "", "", "😀"]);
    expect(stream.flush()).toBe("");

    const truncated = ids.slice(0, -1);
    const partial = tokenizer.createStreamDecoder();
    const pushed = truncated.map((id) => partial.push(id)).join("");
    expect(pushed).toBe("");
    expect(partial.flush()).toBe("\uFFFD");
    expect(tokenizer.decode(truncated)).toBe("\uFFFD");
  });

  it("rejects ids outside the vocabulary", () => {
    expect(() => tokenizer.decode([512])).toThrow(/out of range/);
    expect(() => tokenizer.tokenToBytes(-1)).toThrow(/out of range/);
  });

  it("is fast enough for long prompts", () => {
    const text = SAMPLE_TEXTS.filter((t) => !t.includes("▁"))
      .join(" ")
      .repeat(200); // ~40k characters
    const start = performance.now();
    const ids = tokenizer.encode(text);
    expect(tokenizer.decode(ids)).toBe(text);
    expect(performance.now() - start).toBeLessThan(2000);
  });
});

describe("llama-spm vocabulary variants written to GGUF and read by llama.cpp", () => {
  // stories260K with its last two pieces turned into a control and a user-defined token.
  const variants = [
    { name: "with space prefix", addSpacePrefix: true },
    { name: "without space prefix", addSpacePrefix: false },
  ];

  it.each(variants)("ids and text equal llama.cpp's $name", async ({ addSpacePrefix }) => {
    const stories = await loadModel(STORIES_GGUF);
    if (stories.tokenizer.kind !== "llama-spm") throw new Error("expected a llama-spm vocabulary");
    const tokens = [...stories.tokenizer.tokens];
    const tokenTypes = [...stories.tokenizer.tokenTypes];
    tokens[510] = "<|im_end|>";
    tokenTypes[510] = 3;
    tokens[511] = "<tool>";
    tokenTypes[511] = 4;
    const spec = { ...stories.tokenizer, tokens, tokenTypes, addSpacePrefix };
    const path = join(dirs.make(), "variant.gguf");
    await writeGguf({ ...stories, tokenizer: spec }, path);
    const reference = await llama.loadModel({ modelPath: path, vocabOnly: true });
    try {
      const variant = createTokenizer(spec);
      const random = seededRandom(addSpacePrefix ? 1 : 2);
      const extra = ["<tool>", "a <tool> b<tool>", "hi<|im_end|> there", " <|im_end|><tool>x"];
      const texts = [...SAMPLE_TEXTS, ...extra, ...Array.from({ length: 300 }, () => randomText(random, 30))];
      for (const text of texts) {
        for (const parseSpecial of [false, true]) {
          const ids = variant.encode(text, { addBos: false, parseSpecial });
          expect(ids, `${JSON.stringify(text)} parseSpecial=${parseSpecial}`).toEqual(
            Array.from(reference.tokenize(text, parseSpecial)),
          );
          expect(variant.decode(ids), JSON.stringify(text)).toBe(reference.detokenize(ids as Token[]));
        }
      }
      expect(variant.encode("a<tool>b", { addBos: false })).toContain(511);
    } finally {
      await reference.dispose();
    }
  });
});
