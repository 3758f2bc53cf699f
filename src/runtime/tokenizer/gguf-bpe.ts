/**
 * GGUF "gpt2" vocabularies (byte-level BPE: SmolLM, Qwen2, Llama 3 GGUF files) expressed as a
 * tokenizer.json, so they run on the same BPE implementation as Hugging Face folders.
 * tokenizer.ggml.pre names llama.cpp's pre-tokenizer; its split regexes are reproduced here
 * (llama-vocab.cpp, llm_tokenizer_bpe). Each regex splits the pieces of the previous one.
 */
import type { TokenizerSpec } from "../../format/model.ts";
import { TokenType } from "./llama-spm.ts";
import { TokenizerError } from "./types.ts";

export type GgufBpeSpec = Extract<TokenizerSpec, { kind: "gguf-bpe" }>;

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;

interface PreTokenizerRecipe {
  patterns: string[];
  /** llama.cpp sets ignore_merges for the Llama 3 family. */
  ignoreMerges?: boolean;
}

const DEFAULT: PreTokenizerRecipe = {
  patterns: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"],
};
const RECIPES: Record<string, PreTokenizerRecipe> = {
  default: DEFAULT,
  "gpt-2": { patterns: [GPT2] },
  "phi-2": { patterns: [GPT2] },
  mpt: { patterns: [GPT2] },
  olmo: { patterns: [GPT2] },
  "roberta-bpe": { patterns: [GPT2] },
  llama3: { patterns: [LLAMA3], ignoreMerges: true },
  "llama-v3": { patterns: [LLAMA3], ignoreMerges: true },
  "llama-bpe": { patterns: [LLAMA3], ignoreMerges: true },
  falcon3: { patterns: [LLAMA3], ignoreMerges: true },
  pixtral: { patterns: [LLAMA3], ignoreMerges: true },
  dbrx: { patterns: [LLAMA3] },
  "smaug-bpe": { patterns: [LLAMA3] },
  qwen2: { patterns: [QWEN2] },
  stablelm2: { patterns: [QWEN2] },
  megrez: { patterns: [QWEN2] },
  smollm: { patterns: ["\\p{N}", GPT2] },
  starcoder: { patterns: ["\\p{N}", GPT2] },
  refact: { patterns: ["\\p{N}", GPT2] },
  "command-r": { patterns: ["\\p{N}", GPT2] },
  codeshell: { patterns: ["\\p{N}", GPT2] },
};

export function ggufBpeToTokenizerJson(spec: GgufBpeSpec): {
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
} {
  const pre = spec.pre ?? "default";
  const recipe = RECIPES[pre];
  if (!recipe) {
    throw new TokenizerError(
      `GGUF tokenizer.ggml.pre "${pre}" is not supported (supported: ${Object.keys(RECIPES).join(", ")})`,
    );
  }
  const firstIds = new Map<string, number>();
  spec.tokens.forEach((token, id) => {
    if (!firstIds.has(token)) firstIds.set(token, id);
  });
  // fromEntries defines own properties, so even a "__proto__" token survives.
  const vocab = Object.fromEntries(firstIds);
  const merges = spec.merges.map((merge, i) => {
    // llama.cpp splits at the first space after the first character.
    const at = merge.indexOf(" ", 1);
    if (at < 0)
      throw new TokenizerError(`GGUF tokenizer.ggml.merges[${i}] has no space: ${JSON.stringify(merge)}`);
    return [merge.slice(0, at), merge.slice(at + 1)];
  });
  const addedTokens = spec.tokens.flatMap((content, id) => {
    const type = spec.tokenTypes[id];
    const special = type === TokenType.control || type === TokenType.unknown;
    if (!special && type !== TokenType.userDefined) return [];
    return [{ id, content, special, lstrip: false, rstrip: false, single_word: false, normalized: false }];
  });
  const tokenizerJson = {
    version: "1.0",
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        ...recipe.patterns.map((Regex) => ({
          type: "Split",
          pattern: { Regex },
          behavior: "Isolated",
          invert: false,
        })),
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: recipe.ignoreMerges ?? false,
      llama_cpp_unknown_chars: true,
      vocab,
      merges,
    },
  };
  const tokenName = (id: number | null) => (id === null ? null : (spec.tokens[id] ?? null));
  const tokenizerConfig = {
    add_bos_token: spec.addBos,
    add_eos_token: false,
    bos_token: tokenName(spec.bosId),
    eos_token: tokenName(spec.eosId),
  };
  return { tokenizerJson, tokenizerConfig };
}
