/**
 * Constrained decoding for `response_format` json_object and json_schema: a TokenMask
 * (./sampler.ts) that lets through only tokens whose text keeps the output a valid prefix (of a JSON
 * object: ./json-prefix.ts; of a value of a schema: ./json-schema-prefix.ts), allows only the stop
 * tokens once the value is complete, and, when the tokens left are no more than the characters
 * needed to close it, only tokens along that closing text. So an answer that ends by its token
 * limit still parses. Tokens whose bytes are not whole UTF-8 characters on their own (byte-fallback
 * pieces) and special tokens are never allowed. Insignificant whitespace is limited to runs of one
 * space or newline, so answers stay compact.
 *
 * Cost: trying every vocabulary entry from the current state would be ~50k recognizer runs per
 * token on a 49k vocabulary. Instead (1) the vocabulary is walked in sorted order, reusing the
 * recognizer state of the prefix a token shares with the one before it and skipping every token
 * that shares a refused prefix (a trie walk without building the trie); (2) inside a free string,
 * tokens without '"', '\' or control characters ("plain") are allowed at once, and only the rest
 * are walked; (3) the allowed set is cached (as a bitset) by the recognizer's state key, which
 * repeats a lot (every token inside one string has the same state), per tokenizer and language
 * (json_object, or one schema's text), so requests with the same schema share it. `scripts/bench-json-mask.ts` measures it.
 */
import { JsonPrefix } from "./json-prefix.ts";
import type { CompiledSchema } from "./json-schema.ts";
import { JsonSchemaPrefix } from "./json-schema-prefix.ts";
import type { TokenMask } from "./sampler.ts";
import type { Tokenizer } from "./tokenizer/index.ts";

/** What the mask drives: an incremental recognizer of a JSON language. */
export interface JsonRecognizer {
  clone(): JsonRecognizer;
  /** Feeds text; false once it is no longer a valid prefix (then the recognizer is spent). */
  push(text: string): boolean;
  readonly complete: boolean;
  /** Shortest text that completes it. */
  closing(): string;
  /** Equal keys: equal futures. */
  key(): string;
  /** Plain characters continue it and leave it as it is. */
  readonly inFreeString: boolean;
}

/**
 * A planning estimate of the mask's CPU cost per token, ms, for a vocabulary of `vocabSize`: the
 * mean per token of a json_schema answer on a cold cache, measured with scripts/bench-json-mask.ts
 * on SmolLM2's 49,152 tokens (13 ms on a loaded 2-core machine, ~0.27 ms per 1,000 entries), rounded up.
 * Warm caches cost ~5x less; plans charge this so a constrained answer stays within the CPU limit.
 */
export function maskMsPerToken(vocabSize: number): number {
  return (0.3 * vocabSize) / 1000;
}

/** Tokens before the limit from which each candidate's closing length is checked. */
const NEAR_END_MARGIN = 16;
/** Allowed sets kept per tokenizer, all languages together (6 kB each on a 49k vocabulary). */
const CACHE_ENTRIES = 256;

/** A vocabulary prepared for walking: token texts sorted, with their common prefixes. */
interface WalkOrder {
  ids: Int32Array;
  /** lcp[k]: UTF-16 code units token ids[k] shares with ids[k - 1]. */
  lcp: Uint16Array;
}

interface VocabIndex {
  /** Each id's text, or null where it cannot be part of JSON output. */
  texts: (string | null)[];
  /** 1 where the text can continue a free string with no effect (no '"', '\', control characters). */
  plain: Uint8Array;
  all: WalkOrder;
  /** The tokens that are not plain. */
  special: WalkOrder;
}

const indexes = new WeakMap<Tokenizer, VocabIndex>();
/** Per tokenizer: "language\u0000state key" -> allowed bitset, least recently used first. */
const caches = new WeakMap<Tokenizer, Map<string, Uint32Array>>();

function packBits(allowed: Uint8Array): Uint32Array {
  const bits = new Uint32Array((allowed.length + 31) >>> 5);
  for (let id = 0; id < allowed.length; id++) if (allowed[id]) bits[id >>> 5]! |= 1 << (id & 31);
  return bits;
}

function walkOrder(texts: (string | null)[], keep: (id: number) => boolean): WalkOrder {
  const list: number[] = [];
  for (let id = 0; id < texts.length; id++) if (texts[id] !== null && keep(id)) list.push(id);
  list.sort((a, b) => (texts[a]! < texts[b]! ? -1 : texts[a]! > texts[b]! ? 1 : a - b));
  const lcp = new Uint16Array(list.length);
  for (let k = 1; k < list.length; k++) {
    const a = texts[list[k - 1]!]!;
    const b = texts[list[k]!]!;
    let n = 0;
    while (n < a.length && n < b.length && n < 0xffff && a.charCodeAt(n) === b.charCodeAt(n)) n++;
    lcp[k] = n;
  }
  return { ids: Int32Array.from(list), lcp };
}

/** The vocabulary prepared for masks (computed once per tokenizer). */
function vocabIndex(tok: Tokenizer): VocabIndex {
  let index = indexes.get(tok);
  if (!index) {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const texts = Array.from({ length: tok.vocabSize }, (_, id) => {
      if (tok.isSpecial(id)) return null;
      try {
        const s = decoder.decode(tok.tokenToBytes(id));
        return s === "" ? null : s;
      } catch {
        return null;
      }
    });
    const plain = new Uint8Array(texts.length);
    for (let id = 0; id < texts.length; id++) {
      const s = texts[id];
      if (s && ![...s].some((ch) => ch === '"' || ch === "\\" || ch.charCodeAt(0) < 0x20)) plain[id] = 1;
    }
    index = {
      texts,
      plain,
      all: walkOrder(texts, () => true),
      special: walkOrder(texts, (id) => !plain[id]),
    };
    indexes.set(tok, index);
  }
  return index;
}

/**
 * Marks in `out` every token of `order` whose text `state` accepts. Tokens come in sorted order:
 * the state after a token's first d characters is reused from the previous token when they share
 * them, and a token that shares a refused prefix is skipped unseen.
 */
function walk(state: JsonRecognizer, texts: (string | null)[], order: WalkOrder, out: Uint8Array): void {
  const stack: JsonRecognizer[] = [state];
  let failedAt = Number.POSITIVE_INFINITY; // index of the character the previous token was refused at
  for (let k = 0; k < order.ids.length; k++) {
    const id = order.ids[k]!;
    const shared = k === 0 ? 0 : order.lcp[k]!;
    if (shared > failedAt) continue; // it holds the refused character too
    failedAt = Number.POSITIVE_INFINITY;
    const text = texts[id]!;
    let d = shared;
    for (; d < text.length; d++) {
      const s = stack[d]!.clone();
      if (!s.push(text[d]!)) {
        failedAt = d;
        break;
      }
      stack[d + 1] = s;
    }
    if (d === text.length) out[id] = 1;
  }
}

/**
 * out[id] = 1 where token `id`'s whole text keeps `state` a valid prefix (special tokens and
 * byte pieces never). What the mask computes on a cache miss.
 */
export function allowedTokens(tok: Tokenizer, state: JsonRecognizer): Uint8Array {
  const { texts, plain, all, special } = vocabIndex(tok);
  const out = new Uint8Array(texts.length);
  if (state.inFreeString) {
    out.set(plain);
    walk(state, texts, special, out);
  } else walk(state, texts, all, out);
  return out;
}

/**
 * The mask for a recognizer, `maxTokens` tokens long at most, ended by `stopIds`. `language` names
 * what the recognizer accepts (equal names: equal recognizers from equal keys), for the shared cache.
 */
export function recognizerMask(
  tok: Tokenizer,
  stopIds: readonly number[],
  maxTokens: number,
  start: JsonRecognizer,
  language: string,
): TokenMask & { cacheHits: number; cacheMisses: number } {
  const { texts, plain } = vocabIndex(tok);
  const stops = new Set(stopIds);
  let cache = caches.get(tok);
  if (!cache) caches.set(tok, (cache = new Map()));
  const shared = cache;
  let state = start;
  let left = maxTokens;

  const allowedSet = (): Uint32Array => {
    const key = `${language}\u0000${state.key()}`;
    const hit = shared.get(key);
    if (hit) {
      mask.cacheHits++;
      shared.delete(key); // most recently used goes last
      shared.set(key, hit);
      return hit;
    }
    mask.cacheMisses++;
    const out = packBits(allowedTokens(tok, state));
    if (shared.size >= CACHE_ENTRIES) shared.delete(shared.keys().next().value!);
    shared.set(key, out);
    return out;
  };

  const mask = {
    cacheHits: 0,
    cacheMisses: 0,
    allow(logits: Float64Array) {
      let allowed = 0;
      if (state.complete) {
        for (let id = 0; id < logits.length; id++) {
          if (stops.has(id)) allowed++;
          else logits[id] = Number.NEGATIVE_INFINITY;
        }
      } else {
        const closing = state.closing();
        if (closing.length >= left) {
          // Only tokens along the closing text.
          for (let id = 0; id < logits.length; id++) {
            const text = id < texts.length ? texts[id] : null;
            if (text && closing.startsWith(text)) allowed++;
            else logits[id] = Number.NEGATIVE_INFINITY;
          }
        } else {
          const set = allowedSet();
          // Near the end, a token must leave a closing that still fits in the tokens after it.
          const nearEnd = closing.length + NEAR_END_MARGIN >= left;
          const free = state.inFreeString;
          for (let id = 0; id < logits.length; id++) {
            let ok = (((set[id >>> 5] ?? 0) >>> (id & 31)) & 1) === 1;
            if (ok && nearEnd) {
              if (free && plain[id]) ok = closing.length <= left - 1;
              else {
                const next = state.clone();
                ok = next.push(texts[id]!) && (next.complete || next.closing().length <= left - 1);
              }
            }
            if (ok) allowed++;
            else logits[id] = Number.NEGATIVE_INFINITY;
          }
        }
      }
      // A vocabulary without the needed characters: let the stop tokens end it (never an empty draw).
      if (allowed === 0) for (const id of stops) if (id < logits.length) logits[id] = 0;
    },
    accept(token: number) {
      left--;
      const text = texts[token];
      if (text && !state.complete) {
        const next = state.clone();
        if (next.push(text)) state = next;
      }
    },
  };
  return mask;
}

/** response_format json_object: any JSON object, compact whitespace. */
export function jsonObjectMask(tok: Tokenizer, stopIds: readonly number[], maxTokens: number) {
  return recognizerMask(tok, stopIds, maxTokens, new JsonPrefix(1), "json_object");
}

/** response_format json_schema: a value of the compiled schema (./json-schema.ts). */
export function jsonSchemaMask(
  tok: Tokenizer,
  stopIds: readonly number[],
  maxTokens: number,
  schema: CompiledSchema,
) {
  return recognizerMask(
    tok,
    stopIds,
    maxTokens,
    new JsonSchemaPrefix(schema),
    `json_schema ${schema.source}`,
  );
}
