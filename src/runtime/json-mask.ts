/**
 * Constrained decoding for `response_format: {"type": "json_object"}`: a TokenMask (./sampler.ts)
 * that lets through only tokens whose text keeps the output a valid prefix of a JSON object
 * (./json-prefix.ts), allows only the stop tokens once the object is complete, and, when the tokens
 * left are no more than the characters needed to close it, only tokens along that closing text.
 * So an answer that ends by its token limit still parses. Tokens whose bytes are not whole UTF-8
 * characters on their own (byte-fallback pieces) and special tokens are never allowed.
 */
import { JsonPrefix } from "./json-prefix.ts";
import type { TokenMask } from "./sampler.ts";
import type { Tokenizer } from "./tokenizer/index.ts";

/** Tokens before the limit from which each candidate's closing length is checked. */
const NEAR_END_MARGIN = 16;

const texts = new WeakMap<Tokenizer, (string | null)[]>();

/** Each id's text, or null where it cannot be part of JSON output (computed once per tokenizer). */
function tokenTexts(tok: Tokenizer): (string | null)[] {
  let t = texts.get(tok);
  if (!t) {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    t = Array.from({ length: tok.vocabSize }, (_, id) => {
      if (tok.isSpecial(id)) return null;
      try {
        const s = decoder.decode(tok.tokenToBytes(id));
        return s === "" ? null : s;
      } catch {
        return null;
      }
    });
    texts.set(tok, t);
  }
  return t;
}

export function jsonObjectMask(tok: Tokenizer, stopIds: readonly number[], maxTokens: number): TokenMask {
  const table = tokenTexts(tok);
  const stops = new Set(stopIds);
  const state = new JsonPrefix();
  let left = maxTokens;
  return {
    allow(logits) {
      const closing = state.complete ? "" : state.closing();
      const forceClose = !state.complete && closing.length >= left;
      // Near the end, a token must leave a closing that still fits in the tokens after it.
      const nearEnd = closing.length + NEAR_END_MARGIN >= left;
      let allowed = 0;
      for (let id = 0; id < logits.length; id++) {
        const text = id < table.length ? table[id] : null;
        let ok: boolean;
        if (state.complete) ok = stops.has(id);
        else if (text === null || text === undefined) ok = false;
        else if (forceClose) ok = closing.startsWith(text);
        else {
          const next = state.clone();
          ok = next.push(text) && (!nearEnd || next.complete || next.closing().length <= left - 1);
        }
        if (ok) allowed++;
        else logits[id] = Number.NEGATIVE_INFINITY;
      }
      // A vocabulary without the needed characters: let the stop tokens end it (never an empty draw).
      if (allowed === 0) for (const id of stops) if (id < logits.length) logits[id] = 0;
    },
    accept(token) {
      left--;
      const text = table[token];
      if (text) state.push(text);
    },
  };
}
