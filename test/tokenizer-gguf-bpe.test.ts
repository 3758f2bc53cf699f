/**
 * GGUF "gpt2" (byte-level BPE) vocabularies checked against llama.cpp: a byte-level vocabulary derived
 * from stories260K's pieces is written into a GGUF file with each pre-tokenizer name, loaded by
 * node-llama-cpp (vocabulary only), and tokenized by both.
 */

import { join } from "node:path";
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDescription, TokenizerSpec } from "../src/format/model.ts";
import { writeGguf } from "../src/model/export/gguf.ts";
import { loadModel } from "../src/model/import/index.ts";
import { bytesToByteLevel } from "../src/runtime/tokenizer/byte-level.ts";
import { createTokenizer } from "../src/runtime/tokenizer/index.ts";
import { mergesFromScores } from "../src/runtime/tokenizer/spm-to-hf.ts";
import { tempDirs } from "./helpers/paths.ts";
import { randomText, SAMPLE_TEXTS, STORIES_GGUF, seededRandom } from "./tokenizer-fixtures.ts";

type GgufBpeSpec = Extract<TokenizerSpec, { kind: "gguf-bpe" }>;

const SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const USER_DEFINED = "<tool>";

/** stories260K's multi-character pieces re-spelled in the byte-level alphabet, merges ranked by score. */
function byteLevelVocabulary(model: ModelDescription, pre: string | null): GgufBpeSpec {
  const spm = model.tokenizer;
  if (spm.kind !== "llama-spm") throw new Error("expected stories260K's sentencepiece vocabulary");
  const tokens = Array.from({ length: 256 }, (_, b) => bytesToByteLevel(Uint8Array.of(b)));
  const scores: number[] = tokens.map(() => 0);
  const types: number[] = tokens.map(() => 1);
  const add = (piece: string, score: number, type: number) => {
    if (tokens.includes(piece)) return;
    tokens.push(piece);
    scores.push(score);
    types.push(type);
  };
  spm.tokens.forEach((piece, id) => {
    const spelled = bytesToByteLevel(new TextEncoder().encode(piece.replaceAll("▁", " ")));
    if (spm.tokenTypes[id] === 1 && [...spelled].length >= 2) add(spelled, spm.scores[id]!, 1);
  });
  for (const s of SPECIALS) add(s, -1e9, 3);
  add(USER_DEFINED, -1e9, 4);
  for (let i = 0; tokens.length < model.config.vocabSize; i++) add(`<unused${i}>`, -1e9, 5);
  const ids = new Map(tokens.map((t, id) => [t, id]));
  const merges = mergesFromScores(tokens, scores, ids).map((m) => `${m.left} ${m.right}`);
  return {
    kind: "gguf-bpe",
    tokens,
    merges,
    tokenTypes: types,
    pre,
    bosId: ids.get("<|endoftext|>")!,
    eosId: ids.get("<|im_end|>")!,
    padId: null,
    addBos: false,
  };
}

const PRE_NAMES = ["qwen2", "llama-bpe", "smollm", "gpt-2", "default"] as const;

const EXTRA_TEXTS = [
  "I'M here, it's fine, we'LL see, don't",
  "12345 678 9",
  "a\u0085b \uFEFFx",
  "\r\n\r\n  \t x  \n",
  "Once upon a time there was a little girl named Lily",
  "<|im_start|>user\nhi<|im_end|>",
  "x<tool>y",
];

let llama: Llama;
let stories: ModelDescription;
const dirs = tempDirs("tokenizer-gguf-bpe");
const models: LlamaModel[] = [];

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  stories = await loadModel(STORIES_GGUF);
});

afterAll(async () => {
  for (const m of models) await m.dispose();
  await llama?.dispose();
  dirs.cleanup();
});

describe.each(PRE_NAMES)("gguf-bpe with tokenizer.ggml.pre %s", (pre) => {
  let spec: GgufBpeSpec;
  let reference: LlamaModel;

  beforeAll(async () => {
    spec = byteLevelVocabulary(stories, pre);
    const path = join(dirs.make(), `${pre}.gguf`);
    await writeGguf(
      { ...stories, tokenizer: spec, bosTokenId: spec.bosId, eosTokenIds: [spec.eosId!] },
      path,
    );
    reference = await llama.loadModel({ modelPath: path, vocabOnly: true });
    models.push(reference);
  });

  it("tokenizes like llama.cpp", () => {
    const tokenizer = createTokenizer(spec);
    const random = seededRandom(pre.length);
    const texts = [
      ...SAMPLE_TEXTS,
      ...EXTRA_TEXTS,
      ...Array.from({ length: 400 }, () => randomText(random, 40)),
    ];
    for (const text of texts) {
      for (const parseSpecial of [false, true]) {
        const ids = tokenizer.encode(text, { parseSpecial });
        expect(ids, `${JSON.stringify(text)} parseSpecial=${parseSpecial}`).toEqual(
          Array.from(reference.tokenize(text, parseSpecial)),
        );
      }
      const ids = tokenizer.encode(text);
      expect(tokenizer.decode(ids)).toBe(text);
      if (pre === "qwen2" || pre === "smollm") {
        // llama.cpp "cleans" spaces before punctuation for the other pre-tokenizers; we never alter text.
        expect(tokenizer.decode(ids)).toBe(reference.detokenize(ids as Token[]));
      }
    }
  });
});
