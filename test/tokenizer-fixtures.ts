/** Shared fixtures for the tokenizer tests: the stories260K vocabulary, sample texts, seeded random text. */

import type { TokenizerSpec } from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import type { Tokenizer } from "../src/runtime/tokenizer/index.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";

export const STORIES_GGUF = sharedModelPath("stories260K.gguf");

export type LlamaSpmSpec = Extract<TokenizerSpec, { kind: "llama-spm" }>;

/** The sentencepiece vocabulary of a GGUF llama model, as the importer reads it. */
export async function loadSpmSpec(path: string): Promise<LlamaSpmSpec> {
  const { tokenizer } = await loadModel(path);
  if (tokenizer.kind !== "llama-spm")
    throw new Error(`${path}: expected a llama-spm vocabulary, got ${tokenizer.kind}`);
  return tokenizer;
}

/** Strings covering the tricky parts of sentencepiece tokenization. */
export const SAMPLE_TEXTS: readonly string[] = [
  "Once upon a time",
  "Once upon a time, there was a little girl named Lily. She loved to play outside.",
  "",
  " ",
  "  ",
  " leading space",
  "trailing space ",
  "multiple   spaces   inside",
  "\n",
  "line one\nline two\n\nline four",
  "tabs\tand\r\nwindows newlines",
  "Punctuation! Does it work? Yes: (it does); \"quotes\" and 'apostrophes' -- dashes...",
  "Digits 0123456789 and 3.14159, 1,000,000",
  "emoji 😀 and family 👩‍👩‍👧!",
  "Hello 世界",
  "e\u0301 (e + combining acute) vs é",
  "مرحبا بالعالم",
  "<s>",
  "text with <s> inside and </s> at the end</s>",
  "<unk>",
  "▁ already escaped ▁▁",
  "\u200a hair space and\u00a0nbsp",
  "\uFEFFstarts with a BOM",
];

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
export const seededRandom = mulberry32;

/** Random well-formed text mixing ASCII, spaces, Latin-1, CJK, emoji, combining marks and control chars. */
export function randomText(random: () => number, maxLength: number): string {
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x20, 0x20],
    [0x0a, 0x0a],
    [0x00, 0x1f],
    [0xa0, 0xff],
    [0x300, 0x36f],
    [0x600, 0x6ff],
    [0x4e00, 0x9fff],
    [0x1f600, 0x1f64f],
    [0x10000, 0x10ffff],
    [0xe000, 0xfffd],
  ];
  const length = Math.floor(random() * maxLength);
  let text = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(random() * ranges.length)]!;
    let cp = lo + Math.floor(random() * (hi - lo + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41; // surrogates are not code points
    text += String.fromCodePoint(cp);
  }
  return text;
}

/** Decodes `ids` through a stream decoder, returning every push() output and the flush() output. */
export function streamPieces(
  tokenizer: Tokenizer,
  ids: readonly number[],
  opts?: Parameters<Tokenizer["createStreamDecoder"]>[0],
): string[] {
  const stream = tokenizer.createStreamDecoder(opts);
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  return pieces;
}

export function hasLoneSurrogate(text: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}
