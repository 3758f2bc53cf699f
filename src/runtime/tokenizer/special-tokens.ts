/** Splitting input text around special / added tokens before the subword model sees it. */
import { escapeRegExp } from "./hf-regex.ts";

/** Token texts that end generation whatever their id (a subset of llama.cpp's list in llama-vocab.cpp). */
export const END_OF_GENERATION_TEXTS: ReadonlySet<string> = new Set([
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<|eom_id|>",
  "<EOT>",
  "<|end_of_text|>",
]);

/** A run of plain text, or the id of a special token found in the input. */
export type Fragment = string | number;

export interface LiteralToken {
  id: number;
  text: string;
}

/**
 * llama.cpp's tokenizer_st_partition: tokens are tried longest first; each one splits every remaining
 * text fragment at all of its occurrences.
 */
export function partitionLongestFirst(text: string, tokens: readonly LiteralToken[]): Fragment[] {
  let fragments: Fragment[] = [text];
  for (const token of tokens) {
    if (!text.includes(token.text)) continue;
    const next: Fragment[] = [];
    for (const fragment of fragments) {
      if (typeof fragment === "number") {
        next.push(fragment);
        continue;
      }
      let start = 0;
      for (let at = fragment.indexOf(token.text); at !== -1; at = fragment.indexOf(token.text, start)) {
        if (at > start) next.push(fragment.slice(start, at));
        next.push(token.id);
        start = at + token.text.length;
      }
      if (start < fragment.length) next.push(fragment.slice(start));
    }
    fragments = next;
  }
  return fragments;
}

export interface AddedTokenMatcherEntry extends LiteralToken {
  /** Swallow whitespace on the left / right of the token (HF AddedToken lstrip / rstrip). */
  lstrip?: boolean;
  rstrip?: boolean;
  /** Only match when not inside a word (HF AddedToken single_word). */
  singleWord?: boolean;
}

/**
 * Hugging Face's added-token split: scan left to right, at each position take the longest token.
 * A regex alternation of the tokens sorted longest-first gives exactly that leftmost-longest match.
 */
export class AddedTokenMatcher {
  private readonly pattern: RegExp | null;
  private readonly idByText = new Map<string, number>();

  constructor(tokens: readonly AddedTokenMatcherEntry[]) {
    const sorted = tokens.filter((t) => t.text.length > 0).sort((a, b) => b.text.length - a.text.length);
    // Only tokens that swallow whitespace need a capture group to recover the token text.
    const alternatives = sorted.map((t) => {
      this.idByText.set(t.text, t.id);
      let core = escapeRegExp(t.text);
      if (t.singleWord) core = `(?<![\\p{L}\\p{N}_])${core}(?![\\p{L}\\p{N}_])`;
      if (!t.lstrip && !t.rstrip) return core;
      return `${t.lstrip ? "\\s*" : ""}(${core})${t.rstrip ? "\\s*" : ""}`;
    });
    this.pattern = alternatives.length > 0 ? new RegExp(alternatives.join("|"), "gu") : null;
  }

  split(text: string): Fragment[] {
    if (!this.pattern) return [text];
    const fragments: Fragment[] = [];
    let start = 0;
    for (const m of text.matchAll(this.pattern)) {
      const id = this.idByText.get(m.slice(1).find((g) => g !== undefined) ?? m[0]);
      if (id === undefined) continue;
      if (m.index > start) fragments.push(text.slice(start, m.index));
      fragments.push(id);
      start = m.index + m[0].length;
    }
    if (start < text.length) fragments.push(text.slice(start));
    return fragments;
  }
}
