/**
 * Hugging Face tokenizer.json support: the writer (GGUF sentencepiece -> tokenizer.json) checked against
 * the llama-spm tokenizer on stories260K, a hand-built GPT-2/Qwen2-style byte-level BPE, GGUF "gpt2"
 * vocabularies mapped onto it, and the errors for what is not supported.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { TokenizerSpec } from "../src/format/model.ts";
import { bytesToByteLevel } from "../src/runtime/tokenizer/byte-level.ts";
import { buildPreTokenizer } from "../src/runtime/tokenizer/hf-pre-tokenizer.ts";
import { onigurumaToJs } from "../src/runtime/tokenizer/hf-regex.ts";
import {
  createTokenizer,
  spmToTokenizerJson,
  type Tokenizer,
  TokenizerError,
} from "../src/runtime/tokenizer/index.ts";
import {
  type LlamaSpmSpec,
  loadSpmSpec,
  randomText,
  SAMPLE_TEXTS,
  STORIES_GGUF,
  seededRandom,
  streamPieces,
} from "./tokenizer-fixtures.ts";

const hf = (tokenizerJson: unknown, tokenizerConfig: Record<string, unknown> | null = null) =>
  createTokenizer({ kind: "hf", tokenizerJson, tokenizerConfig });

/** JSON.parse(JSON.stringify(x)): what a file on disk would give back. */
const viaDisk = <T>(value: T): T => JSON.parse(JSON.stringify(value));

describe("spmToTokenizerJson (GGUF sentencepiece -> tokenizer.json)", () => {
  let spec: LlamaSpmSpec;
  let spm: Tokenizer;
  // biome-ignore lint/suspicious/noExplicitAny: inspecting the written JSON
  let written: { tokenizerJson: any; tokenizerConfig: any };
  let converted: Tokenizer;

  beforeAll(async () => {
    spec = await loadSpmSpec(STORIES_GGUF);
    spm = createTokenizer(spec);
    written = viaDisk(spmToTokenizerJson(spec));
    converted = hf(written.tokenizerJson, written.tokenizerConfig);
  });

  it("writes what transformers' LlamaConverter writes", () => {
    const { tokenizerJson: json, tokenizerConfig: config } = written;
    expect(json.model).toMatchObject({
      type: "BPE",
      unk_token: "<unk>",
      byte_fallback: true,
      fuse_unk: true,
    });
    expect(Object.keys(json.model.vocab)).toHaveLength(512);
    expect(json.model.vocab["▁Once"]).toBe(403);
    // The best-scoring piece ("▁t", score -1) gives the first merge.
    expect(json.model.merges[0]).toBe("▁ t");
    for (const merge of json.model.merges as string[]) {
      const [left, right] = merge.split(" ") as [string, string];
      expect(json.model.vocab[left + right], merge).toBeTypeOf("number");
    }
    expect(json.normalizer).toEqual({
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    });
    expect(json.pre_tokenizer).toBeNull();
    expect(json.decoder.decoders.map((d: { type: string }) => d.type)).toEqual([
      "Replace",
      "ByteFallback",
      "Fuse",
      "Strip",
    ]);
    expect(json.post_processor.single).toEqual([
      { SpecialToken: { id: "<s>", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
    ]);
    expect(json.post_processor.special_tokens["<s>"]).toEqual({ id: "<s>", ids: [1], tokens: ["<s>"] });
    expect(json.added_tokens.map((t: { id: number; special: boolean }) => [t.id, t.special])).toEqual([
      [0, true],
      [1, true],
      [2, true],
    ]);
    expect(config).toMatchObject({
      add_bos_token: true,
      add_eos_token: false,
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
      tokenizer_class: "LlamaTokenizer",
    });
    expect(config).not.toHaveProperty("chat_template");
    expect(config).not.toHaveProperty("add_prefix_space"); // would make transformers look for a sentencepiece file
  });

  it("stores a chat template and context length only when given", () => {
    const { tokenizerConfig } = spmToTokenizerJson(spec, {
      chatTemplate: "{{ messages }}",
      modelMaxLength: 2048,
    });
    expect(tokenizerConfig).toMatchObject({ chat_template: "{{ messages }}", model_max_length: 2048 });
  });

  it("encodes exactly like the sentencepiece tokenizer", () => {
    expect(converted.bosId).toBe(1);
    expect(converted.eosIds).toEqual([2]);
    expect(converted.addBosByDefault).toBe(true);
    for (const text of SAMPLE_TEXTS) {
      for (const parseSpecial of [false, true]) {
        expect(converted.encode(text, { parseSpecial }), JSON.stringify(text)).toEqual(
          spm.encode(text, { parseSpecial }),
        );
      }
    }
    const random = seededRandom(99);
    for (let i = 0; i < 2000; i++) {
      const text = randomText(random, 50);
      expect(converted.encode(text), JSON.stringify(text)).toEqual(spm.encode(text));
    }
  });

  it("decodes losslessly, in one go and streamed", () => {
    const random = seededRandom(5);
    const texts = [
      ...SAMPLE_TEXTS.filter((t) => !t.includes("▁")),
      ...Array.from({ length: 1000 }, () => randomText(random, 50)),
    ];
    for (const text of texts) {
      const ids = converted.encode(text);
      expect(converted.decode(ids), JSON.stringify(text)).toBe(text);
      expect(streamPieces(converted, ids).join("")).toBe(text);
      for (const opts of [{ skipSpecial: false }, { continuation: true }]) {
        expect(converted.decode(ids, opts)).toBe(spm.decode(ids, opts));
      }
    }
  });

  it("handles control and user-defined pieces, and vocabularies without a space prefix", () => {
    const tokens = [...spec.tokens];
    const tokenTypes = [...spec.tokenTypes];
    tokens[510] = "<|im_end|>";
    tokenTypes[510] = 3;
    tokens[511] = "<tool>";
    tokenTypes[511] = 4;
    for (const addSpacePrefix of [true, false]) {
      const variant: LlamaSpmSpec = { ...spec, tokens, tokenTypes, addSpacePrefix };
      const reference = createTokenizer(variant);
      const { tokenizerJson, tokenizerConfig } = viaDisk(spmToTokenizerJson(variant));
      const json = tokenizerJson as { added_tokens: { id: number; special: boolean }[] };
      expect(json.added_tokens.filter((t) => t.id >= 510)).toMatchObject([
        { id: 510, special: true },
        { id: 511, special: false },
      ]);
      const written = hf(tokenizerJson, tokenizerConfig as Record<string, unknown>);
      const random = seededRandom(23);
      const texts = [
        ...SAMPLE_TEXTS,
        "a <tool> b<tool>",
        "hi<|im_end|> there",
        ...Array.from({ length: 300 }, () => randomText(random, 30)),
      ];
      for (const text of texts) {
        for (const parseSpecial of [false, true]) {
          const ids = written.encode(text, { parseSpecial });
          expect(ids, JSON.stringify(text)).toEqual(reference.encode(text, { parseSpecial }));
          expect(written.decode(ids), JSON.stringify(text)).toBe(reference.decode(ids));
        }
      }
    }
  });

  it("also matches with the non-legacy Metaspace pre-tokenizer on text without special tokens or a leading space", () => {
    const metaspace = hf(
      {
        ...written.tokenizerJson,
        normalizer: null,
        pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
      },
      written.tokenizerConfig,
    );
    const random = seededRandom(11);
    // Metaspace does not prepend "▁" to text that already starts with one (i.e. with a space): legacy=false.
    const texts = [...SAMPLE_TEXTS, ...Array.from({ length: 300 }, () => randomText(random, 40))].filter(
      (t) => !t.includes("<") && !t.startsWith(" ") && !t.startsWith("▁"),
    );
    for (const text of texts) expect(metaspace.encode(text), JSON.stringify(text)).toEqual(spm.encode(text));
    expect(metaspace.encode(" Once", { addBos: false })).toEqual([403]);
    expect(spm.encode(" Once", { addBos: false })).toEqual([410, 403]);
  });
});

// --- A hand-built byte-level BPE (GPT-2 alphabet): ids 0..255 are the bytes themselves. ---

const byteChar = (b: number) => bytesToByteLevel(Uint8Array.of(b));
const MERGES: [string, string][] = [
  ["h", "e"], // 256 he
  ["Ġ", "t"], // 257 Ġt
  ["Ġt", "he"], // 258 Ġthe
  ["t", "he"], // 259 the
  ["Ġ", "c"], // 260 Ġc
  ["a", "t"], // 261 at
  ["Ġc", "at"], // 262 Ġcat
  ["i", "n"], // 263 in
  ["Ċ", "Ċ"], // 264 ĊĊ
  ["Ġ", "Ġ"], // 265 ĠĠ
];
const ADDED = [
  { id: 266, content: "<|endoftext|>", special: true },
  { id: 267, content: "<|im_start|>", special: true },
  { id: 268, content: "<|im_end|>", special: true },
  { id: 269, content: "<tool>", special: false },
];
/** In the vocabulary but produced by no merge: only ignore_merges can emit it. */
const XYZ = { piece: "Ġxyz", id: 270 };
const TOKENS: string[] = [
  ...Array.from({ length: 256 }, (_, b) => byteChar(b)),
  ...MERGES.map(([l, r]) => l + r),
  ...ADDED.map((t) => t.content),
  XYZ.piece,
];
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function byteLevelJson(
  overrides: Record<string, unknown> = {},
  modelOverrides: Record<string, unknown> = {},
) {
  return {
    version: "1.0",
    added_tokens: ADDED.map((t) => ({
      ...t,
      lstrip: false,
      rstrip: false,
      single_word: false,
      normalized: false,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(TOKENS.map((t, id) => [t, id])),
      merges: MERGES.map(([l, r]) => `${l} ${r}`),
      ...modelOverrides,
    },
    ...overrides,
  };
}

const qwen2Style = {
  pre_tokenizer: {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    ],
  },
};

const bytes = (text: string) => Array.from(new TextEncoder().encode(text));

describe("byte-level BPE (GPT-2 style tokenizer.json)", () => {
  const gpt2 = hf(byteLevelJson(), { eos_token: "<|im_end|>" });

  it("splits words with the merges by rank", () => {
    expect(gpt2.encode("the cat")).toEqual([259, 262]);
    expect(gpt2.encode(" the")).toEqual([258]);
    expect(gpt2.encode("The")).toEqual([84, 256]);
    expect(gpt2.encode("  the")).toEqual([32, 258]); // GPT-2's \s+(?!\S) leaves the last space to the word
    expect(gpt2.encode("in\n\nthe")).toEqual([263, 10, 10, 259]);
    expect(gpt2.encode("😀")).toEqual(bytes("😀"));
    expect(gpt2.encode("")).toEqual([]);
  });

  it("reads the special tokens", () => {
    expect(gpt2.vocabSize).toBe(271);
    expect(gpt2.bosId).toBeNull();
    expect(gpt2.addBosByDefault).toBe(false);
    expect(gpt2.eosIds).toEqual([268, 266]); // configured EOS, then other end-of-generation tokens
    expect(gpt2.isSpecial(267)).toBe(true);
    expect(gpt2.isSpecial(269)).toBe(false);
    expect(gpt2.pieceToId("<|im_start|>")).toBe(267);
    expect(gpt2.tokenToPiece(258)).toBe("Ġthe");
    expect(gpt2.tokenToBytes(258)).toEqual(new TextEncoder().encode(" the"));
  });

  it("matches added tokens: special ones only with parseSpecial, the others always", () => {
    const chat = "<|im_start|>user\nhi<|im_end|>";
    expect(gpt2.encode(chat, { parseSpecial: true })).toEqual([
      267,
      ...bytes("user"),
      10,
      ...bytes("hi"),
      268,
    ]);
    const plain = gpt2.encode(chat);
    expect(plain).not.toContain(267);
    expect(gpt2.decode(plain)).toBe(chat);
    expect(gpt2.encode("a<tool>b")).toEqual([97, 269, 98]);
    const ids = gpt2.encode(chat, { parseSpecial: true });
    expect(gpt2.decode(ids)).toBe("user\nhi");
    expect(gpt2.decode(ids, { skipSpecial: false })).toBe(chat);
  });

  it("round-trips arbitrary UTF-8 and streams whole characters", () => {
    const random = seededRandom(3);
    for (let i = 0; i < 1500; i++) {
      const text = randomText(random, 60);
      const ids = gpt2.encode(text);
      expect(gpt2.decode(ids), JSON.stringify(text)).toBe(text);
      const pieces = streamPieces(gpt2, ids);
      expect(pieces.join("")).toBe(text);
      for (const piece of pieces) expect(piece).not.toContain("\uFFFD");
    }
    const stream = gpt2.createStreamDecoder();
    expect(bytes("😀").map((id) => stream.push(id))).toEqual(["", "", "", "😀"]);
  });

  it("adds BOS from tokenizer_config.json or a TemplateProcessing post-processor", () => {
    const withConfig = hf(byteLevelJson(), { bos_token: "<|endoftext|>", add_bos_token: true });
    expect(withConfig.bosId).toBe(266);
    expect(withConfig.encode("the")).toEqual([266, 259]);
    expect(withConfig.encode("the", { addBos: false })).toEqual([259]);
    const template = {
      post_processor: {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: "<|endoftext|>", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
        ],
        pair: [],
        special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [266], tokens: ["<|endoftext|>"] } },
      },
    };
    expect(hf(byteLevelJson(template)).encode("the")).toEqual([266, 259]);
    // tokenizer_config.json wins over the template, as in transformers.
    expect(hf(byteLevelJson(template), { add_bos_token: false }).encode("the")).toEqual([259]);
    expect(() => gpt2.encode("x", { addBos: true })).toThrow(TokenizerError);
  });

  it("honours ignore_merges (Llama 3): a word in the vocabulary is emitted whole", () => {
    expect(gpt2.encode(" xyz")).toEqual(bytes(" xyz"));
    expect(hf(byteLevelJson({}, { ignore_merges: true })).encode(" xyz")).toEqual([XYZ.id]);
  });

  it("accepts merges as [left, right] pairs (tokenizers >= 0.20)", () => {
    const pairs = hf(byteLevelJson({}, { merges: MERGES }));
    expect(pairs.encode("the cat")).toEqual([259, 262]);
  });
});

describe("Qwen2-style pre-tokenization (Split regex + ByteLevel, NFC)", () => {
  const qwen2 = hf(byteLevelJson({ ...qwen2Style, normalizer: { type: "NFC" } }));

  it("converts Oniguruma-only syntax to JS", () => {
    expect(onigurumaToJs("(?i:'s|'ll)")).toBe("(?:'[sS]|'[lL][lL])");
    expect(onigurumaToJs("[^\\s\\p{L}]")).toBe("[^\\t-\\r\\x85\\p{Z}\\p{L}]");
    const split = buildPreTokenizer(qwen2Style.pre_tokenizer.pretokenizers[0])!;
    expect(split(["I'M 123"], true)).toEqual(["I", "'M", " ", "1", "2", "3"]);
    expect(split(["it's"], true)).toEqual(["it", "'s"]);
    // Oniguruma's \s: U+0085 is whitespace, U+FEFF is not (JS's \s says the opposite).
    expect(split(["a\u0085\u0085b"], true)).toEqual(["a", "\u0085", "\u0085b"]);
    expect(split(["\uFEFFx"], true)).toEqual(["\uFEFFx"]);
  });

  it("tokenizes with the regex, NFC first", () => {
    expect(qwen2.encode("in\n\nthe")).toEqual([263, 264, 259]);
    expect(qwen2.encode("e\u0301")).toEqual(bytes("é"));
    expect(qwen2.decode(qwen2.encode("e\u0301"))).toBe("é");
  });
});

describe("GGUF gpt2 vocabulary (gguf-bpe)", () => {
  const ggufSpec = (pre: string | null): TokenizerSpec => ({
    kind: "gguf-bpe",
    tokens: TOKENS,
    merges: MERGES.map(([l, r]) => `${l} ${r}`),
    tokenTypes: TOKENS.map((_, id) => (id === 269 ? 4 : id >= 266 && id <= 268 ? 3 : 1)),
    pre,
    bosId: 266,
    eosId: 268,
    padId: null,
    addBos: false,
  });

  it("runs on the byte-level BPE and equals the equivalent tokenizer.json", () => {
    const gguf = createTokenizer(ggufSpec("qwen2"));
    const reference = hf(byteLevelJson(qwen2Style));
    expect(gguf.kind).toBe("gguf-bpe");
    expect(gguf.eosIds).toEqual([268, 266]);
    expect(gguf.isSpecial(267)).toBe(true);
    expect(gguf.encode("<tool>x")).toEqual([269, 120]);
    const random = seededRandom(17);
    const texts = [...SAMPLE_TEXTS, ...Array.from({ length: 500 }, () => randomText(random, 40))];
    for (const text of texts) {
      for (const parseSpecial of [false, true]) {
        const ids = gguf.encode(text, { parseSpecial });
        expect(ids, JSON.stringify(text)).toEqual(reference.encode(text, { parseSpecial }));
        if (!parseSpecial) expect(gguf.decode(ids)).toBe(text);
      }
    }
  });

  it("uses llama.cpp's per-pre-tokenizer settings", () => {
    expect(createTokenizer(ggufSpec("llama-bpe")).encode(" xyz")).toEqual([XYZ.id]); // ignore_merges
    expect(createTokenizer(ggufSpec("smollm")).encode("12 the")).toEqual([49, 50, 258]);
    expect(createTokenizer(ggufSpec(null)).encode("the cat")).toEqual([259, 262]);
    expect(() => createTokenizer(ggufSpec("mystery"))).toThrow(
      /tokenizer\.ggml\.pre "mystery" is not supported/,
    );
  });
});

describe("unsupported or malformed tokenizer.json", () => {
  const expectError = (json: unknown, message: RegExp) => {
    expect(() => hf(json)).toThrow(TokenizerError);
    expect(() => hf(json)).toThrow(message);
  };

  it("names the unsupported model type", () => {
    expectError(
      { model: { type: "WordPiece", vocab: { "[UNK]": 0 }, unk_token: "[UNK]" } },
      /model: unsupported type "WordPiece" \(supported: BPE\)/,
    );
    expectError({ model: { type: "Unigram", vocab: [["<unk>", 0]] } }, /unsupported type "Unigram"/);
  });

  it("names the unsupported component and where it is", () => {
    expectError(
      byteLevelJson({ pre_tokenizer: { type: "Whitespace" } }),
      /pre_tokenizer: unsupported type "Whitespace"/,
    );
    expectError(
      byteLevelJson({
        pre_tokenizer: {
          type: "Sequence",
          pretokenizers: [{ type: "ByteLevel" }, { type: "BertPreTokenizer" }],
        },
      }),
      /pre_tokenizer\.pretokenizers\[1\]: unsupported type "BertPreTokenizer"/,
    );
    expectError(
      byteLevelJson({ normalizer: { type: "Precompiled", precompiled_charsmap: "" } }),
      /normalizer: unsupported type "Precompiled"/,
    );
    expectError(
      byteLevelJson({ decoder: { type: "WordPiece", prefix: "##" } }),
      /decoder: unsupported type "WordPiece"/,
    );
    expectError(
      byteLevelJson({ post_processor: { type: "BertProcessing", sep: ["[SEP]", 1], cls: ["[CLS]", 0] } }),
      /post_processor: unsupported type "BertProcessing"/,
    );
    expectError(byteLevelJson({}, { continuing_subword_prefix: "##" }), /continuing_subword_prefix/);
  });

  it("reports malformed parts and bad references", () => {
    expectError(byteLevelJson({}, { vocab: ["not", "a", "map"] }), /tokenizer\.json model/);
    expectError(
      byteLevelJson({}, { merges: ["h zz"] }),
      /merge \["h","zz"\] uses a token that is not in the vocabulary/,
    );
    expectError(
      byteLevelJson({}, { unk_token: "<missing>" }),
      /unk_token "<missing>" is not in the vocabulary/,
    );
    expectError(
      byteLevelJson({
        pre_tokenizer: { type: "Split", pattern: { Regex: "\\p{L}++" }, behavior: "Isolated" },
      }),
      /possessive quantifiers are not supported/,
    );
    expect(() => hf(byteLevelJson(), { eos_token: "<nope>" })).toThrow(
      /eos_token "<nope>" is not in the vocabulary/,
    );
    expectError("not json object", /tokenizer\.json/);
  });
});
