/**
 * Bounds on what encode() can return, known without encoding: encoding costs CPU in proportion to the
 * text's length (~5 µs per character of a whitespace run on SmolLM2's vocabulary), so a caller can
 * refuse a text far over a context before paying for it.
 */
import type { Tokenizer } from "./types.ts";

const maxBytes = new WeakMap<Tokenizer, number>();

/**
 * The most UTF-8 bytes one token stands for (tokenToBytes over the whole vocabulary; SmolLM2: 81, a
 * newline and 80 spaces). A text of n UTF-16 code units is at least n UTF-8 bytes, so it encodes to at
 * least ceil(n / maxTokenBytes) tokens, unless the tokenizer's normalizer shrinks text (NFC composing
 * jamo, a Strip): callers use the product as a size limit, not as a count. Computed once per tokenizer.
 */
export function maxTokenBytes(tok: Tokenizer): number {
  let most = maxBytes.get(tok);
  if (most === undefined) {
    most = 1;
    for (let id = 0; id < tok.vocabSize; id++) most = Math.max(most, tok.tokenToBytes(id).length);
    maxBytes.set(tok, most);
  }
  return most;
}
