/**
 * llama.cpp's "llama" (sentencepiece BPE) vocabulary, reproduced from llm_tokenizer_spm:
 * spaces become "▁", a "▁" is prepended to each text fragment that starts the input or follows a
 * special token, then adjacent symbols are merged greedily by the score of the merged piece.
 * Symbols that never became a vocabulary piece fall back to "<0xXX>" byte tokens.
 */
import type { TokenizerSpec } from "../../format/model.ts";
import { createStreamDecoder, decodeIds, type PieceRenderer } from "./detokenizer.ts";
import { Heap } from "./heap.ts";
import {
  END_OF_GENERATION_TEXTS,
  type Fragment,
  type LiteralToken,
  partitionLongestFirst,
} from "./special-tokens.ts";
import type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from "./types.ts";
import { TokenizerError } from "./types.ts";
import { bytePiece, codePoints, parseBytePiece, toWellFormed, utf8Bytes } from "./utf8.ts";

export type LlamaSpmSpec = Extract<TokenizerSpec, { kind: "llama-spm" }>;

/** llama.cpp token types (GGUF tokenizer.ggml.token_type). */
export const TokenType = {
  undefined: 0,
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

export const SPACE_MARK = "▁";

const EMPTY = new Uint8Array(0);

interface Bigram {
  left: number;
  right: number;
  score: number;
  /** UTF-16 length of the merged text: a stale entry (one side changed since) no longer matches. */
  length: number;
}

// llama.cpp's priority: highest score first, ties to the leftmost pair.
const bigramBefore = (a: Bigram, b: Bigram) => a.score > b.score || (a.score === b.score && a.left < b.left);

class LlamaSpmTokenizer implements Tokenizer, PieceRenderer {
  readonly kind = "llama-spm";
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: number[];
  readonly unkId: number | null;
  readonly addBosByDefault: boolean;
  readonly addEosByDefault: boolean;
  readonly leadingStrip: PieceRenderer["leadingStrip"];

  private readonly tokens: readonly string[];
  private readonly scores: readonly number[];
  private readonly types: Uint8Array;
  private readonly ids = new Map<string, number>();
  /** Token for each byte value, for symbols that are not vocabulary pieces. */
  private readonly byteToId = new Int32Array(256).fill(-1);
  /** Tokens matched in the raw text before merging, longest first (llama.cpp's special cache). */
  private readonly literalTokens: LiteralToken[];
  private readonly literalTokensAlways: LiteralToken[];
  private readonly renderCache: (Uint8Array | undefined)[] = [];

  constructor(private readonly spec: LlamaSpmSpec) {
    const n = spec.tokens.length;
    if (n === 0) throw new TokenizerError("llama-spm vocabulary has no tokens");
    if (spec.scores.length < n)
      throw new TokenizerError(`llama-spm vocabulary: ${spec.scores.length} scores for ${n} tokens`);
    if (spec.tokenTypes.length !== 0 && spec.tokenTypes.length < n) {
      throw new TokenizerError(`llama-spm vocabulary: ${spec.tokenTypes.length} token types for ${n} tokens`);
    }
    this.vocabSize = n;
    this.tokens = spec.tokens;
    this.scores = spec.scores;
    // Without token types llama.cpp treats every token as normal.
    this.types = Uint8Array.from(
      spec.tokenTypes.length ? spec.tokenTypes : new Array<number>(n).fill(TokenType.normal),
    );

    for (let id = 0; id < n; id++) {
      const text = spec.tokens[id]!;
      if (text !== "" && !this.ids.has(text)) this.ids.set(text, id);
    }
    for (let b = 0; b < 256; b++) {
      // llama.cpp's byte_to_token: "<0xXX>", else the byte itself as a piece (ASCII only in a string vocab).
      const id = this.ids.get(bytePiece(b)) ?? (b < 0x80 ? this.ids.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteToId[b] = id;
    }

    const checkId = (id: number | null, what: string) => {
      if (id !== null && (id < 0 || id >= n))
        throw new TokenizerError(`llama-spm vocabulary: ${what} id ${id} out of range`);
      return id;
    };
    this.bosId = checkId(spec.bosId, "bos");
    this.unkId = checkId(spec.unkId, "unknown");
    const eos = checkId(spec.eosId, "eos");
    this.eosIds = eos === null ? [] : [eos];
    for (const [text, id] of this.ids) {
      if (END_OF_GENERATION_TEXTS.has(text) && !this.eosIds.includes(id)) this.eosIds.push(id);
    }
    this.addBosByDefault = spec.addBos;
    this.addEosByDefault = spec.addEos;
    this.leadingStrip = spec.addSpacePrefix ? { bytes: utf8Bytes(" "), count: 1 } : null;

    const literal: (LiteralToken & { type: number; bytes: number })[] = [];
    for (let id = 0; id < n; id++) {
      const type = this.types[id]!;
      const text = spec.tokens[id]!;
      if (
        text !== "" &&
        (type === TokenType.control || type === TokenType.userDefined || type === TokenType.unknown)
      ) {
        literal.push({ id, text, type, bytes: utf8Bytes(text).length });
      }
    }
    literal.sort((a, b) => b.bytes - a.bytes || a.id - b.id); // llama.cpp sorts by UTF-8 length
    this.literalTokens = literal.map(({ id, text }) => ({ id, text }));
    // Without parseSpecial only user-defined tokens are split out (llama.cpp, and HF non-special added tokens).
    this.literalTokensAlways = literal
      .filter((t) => t.type === TokenType.userDefined)
      .map(({ id, text }) => ({ id, text }));
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    const out: number[] = [];
    if (opts?.addBos ?? this.addBosByDefault) {
      if (this.bosId === null)
        throw new TokenizerError("addBos requested but the vocabulary has no BOS token");
      out.push(this.bosId);
    }
    const input = toWellFormed(text);
    if (input.length > 0) {
      const fragments: Fragment[] = partitionLongestFirst(
        input,
        opts?.parseSpecial ? this.literalTokens : this.literalTokensAlways,
      );
      let afterSpecial = true; // the start of the input counts as "after a special token"
      for (const fragment of fragments) {
        if (typeof fragment === "number") {
          out.push(fragment);
          afterSpecial = true;
        } else {
          const prefixed = this.spec.addSpacePrefix && afterSpecial ? ` ${fragment}` : fragment;
          this.mergeFragment(prefixed.replaceAll(" ", SPACE_MARK), out);
          afterSpecial = false;
        }
      }
    }
    if (opts?.addEos ?? this.addEosByDefault) {
      if (this.eosIds.length === 0)
        throw new TokenizerError("addEos requested but the vocabulary has no EOS token");
      out.push(this.eosIds[0]!);
    }
    return out;
  }

  /** llm_tokenizer_spm_session::tokenize on one escaped text fragment. */
  private mergeFragment(text: string, out: number[]): void {
    const symbols = codePoints(text);
    const n = symbols.length;
    if (n === 0) return;
    // Doubly linked list over symbols; a merged-away symbol gets length 0.
    const start = new Int32Array(n);
    const length = new Int32Array(n);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    let offset = 0;
    for (let i = 0; i < n; i++) {
      start[i] = offset;
      length[i] = symbols[i]!.length;
      offset += length[i]!;
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }

    const queue = new Heap<Bigram>(bigramBefore);
    const tryAddBigram = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const merged = length[left]! + length[right]!;
      const id = this.ids.get(text.slice(start[left]!, start[left]! + merged));
      if (id !== undefined) queue.push({ left, right, score: this.scores[id]!, length: merged });
    };
    for (let i = 1; i < n; i++) tryAddBigram(i - 1, i);

    for (let bigram = queue.pop(); bigram; bigram = queue.pop()) {
      const { left, right } = bigram;
      if (length[left] === 0 || length[right] === 0 || length[left]! + length[right]! !== bigram.length)
        continue;
      length[left] = bigram.length;
      length[right] = 0;
      next[left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = left;
      tryAddBigram(prev[left]!, left);
      tryAddBigram(left, next[left]!);
    }

    for (let i = 0; i !== -1; i = next[i]!) {
      const piece = text.slice(start[i]!, start[i]! + length[i]!);
      const id = this.ids.get(piece);
      if (id !== undefined) out.push(id);
      else for (const b of utf8Bytes(piece)) out.push(this.byteToken(b));
    }
  }

  private byteToken(byte: number): number {
    const id = this.byteToId[byte]!;
    if (id >= 0) return id;
    if (this.unkId !== null) return this.unkId;
    throw new TokenizerError(
      `llama-spm vocabulary has no token for byte 0x${byte.toString(16)} and no unknown token`,
    );
  }

  bytesOf(id: number, skipSpecial: boolean): Uint8Array {
    if (skipSpecial && this.isSpecial(id)) return EMPTY;
    let bytes = this.renderCache[id];
    if (!bytes) {
      bytes = this.render(id);
      this.renderCache[id] = bytes;
    }
    return bytes;
  }

  /** llama.cpp's token_to_piece for SPM vocabularies. */
  private render(id: number): Uint8Array {
    const text = this.tokens[id]!;
    switch (this.types[id]) {
      case TokenType.normal:
        return utf8Bytes(text.replaceAll(SPACE_MARK, " "));
      case TokenType.byte: {
        const byte = parseBytePiece(text);
        if (byte === null)
          throw new TokenizerError(`byte token ${id} has text ${JSON.stringify(text)}, not <0xXX>`);
        return Uint8Array.of(byte);
      }
      case TokenType.control:
      case TokenType.unknown:
      case TokenType.userDefined:
        return utf8Bytes(text);
      default:
        return EMPTY; // unused / undefined tokens render as nothing in llama.cpp
    }
  }

  decode(ids: readonly number[], opts?: DecodeOptions): string {
    return decodeIds(this, ids, opts);
  }

  createStreamDecoder(opts?: DecodeOptions): StreamDecoder {
    return createStreamDecoder(this, opts);
  }

  tokenToBytes(id: number): Uint8Array {
    if (!this.validId(id)) throw new TokenizerError(`token id ${id} is out of range [0, ${this.vocabSize})`);
    return this.bytesOf(id, false);
  }

  tokenToPiece(id: number): string | undefined {
    return this.validId(id) ? this.tokens[id] : undefined;
  }

  pieceToId(piece: string): number | undefined {
    return this.ids.get(piece);
  }

  isSpecial(id: number): boolean {
    const type = this.types[id];
    return type === TokenType.control || type === TokenType.unknown;
  }

  private validId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize;
  }
}

export function createLlamaSpmTokenizer(spec: LlamaSpmSpec): Tokenizer {
  return new LlamaSpmTokenizer(spec);
}
