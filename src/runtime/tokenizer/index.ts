/**
 * Tokenizers for every vocabulary a model can bring: llama.cpp sentencepiece ("llama-spm"),
 * GGUF byte-level BPE ("gguf-bpe") and Hugging Face tokenizer.json ("hf").
 */
import type { TokenizerSpec } from "../../format/model.ts";
import { ggufBpeToTokenizerJson } from "./gguf-bpe.ts";
import { createHfTokenizer } from "./hf-tokenizer.ts";
import { createLlamaSpmTokenizer } from "./llama-spm.ts";
import type { Tokenizer } from "./types.ts";

export { maxTokenBytes } from "./bounds.ts";
export { ggufBpeToTokenizerJson } from "./gguf-bpe.ts";
export { type SpmToHfOptions, spmToTokenizerJson } from "./spm-to-hf.ts";
export type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from "./types.ts";
export { TokenizerError } from "./types.ts";

export function createTokenizer(spec: TokenizerSpec): Tokenizer {
  switch (spec.kind) {
    case "llama-spm":
      return createLlamaSpmTokenizer(spec);
    case "gguf-bpe": {
      const { tokenizerJson, tokenizerConfig } = ggufBpeToTokenizerJson(spec);
      return createHfTokenizer(tokenizerJson, tokenizerConfig, "gguf-bpe");
    }
    case "hf":
      return createHfTokenizer(spec.tokenizerJson, spec.tokenizerConfig);
  }
}
