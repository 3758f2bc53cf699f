/**
 * Hugging Face tokenizer.json (+ tokenizer_config.json) with a BPE model: byte-level BPE (GPT-2, Qwen2,
 * SmolLM, Llama 3) and sentencepiece-converted BPE with byte fallback (Llama 2, Mistral, TinyLlama).
 * Pipeline per HF: split out added tokens -> normalizer -> pre_tokenizer -> BPE -> post_processor.
 */
import { z } from "zod";
import { BpeModel } from "./bpe.ts";
import { createStreamDecoder, decodeIds, type PieceRenderer } from "./detokenizer.ts";
import { buildDecoder, type DecoderPlan } from "./hf-decoder.ts";
import { parsePart, unsupported } from "./hf-json.ts";
import { buildNormalizer, type Normalizer } from "./hf-normalizer.ts";
import { buildPostProcessor } from "./hf-post-processor.ts";
import { buildPreTokenizer, type PreTokenizer } from "./hf-pre-tokenizer.ts";
import { AddedTokenMatcher, END_OF_GENERATION_TEXTS } from "./special-tokens.ts";
import type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from "./types.ts";
import { TokenizerError } from "./types.ts";
import { toWellFormed, utf8Bytes } from "./utf8.ts";

const AddedTokenJson = z.object({
  id: z.number().int().nonnegative(),
  content: z.string(),
  special: z.boolean().default(false),
  lstrip: z.boolean().default(false),
  rstrip: z.boolean().default(false),
  single_word: z.boolean().default(false),
});
type AddedTokenJson = z.infer<typeof AddedTokenJson>;

const TokenizerJson = z.object({
  added_tokens: z.array(AddedTokenJson).nullish(),
  normalizer: z.unknown().optional(),
  pre_tokenizer: z.unknown().optional(),
  post_processor: z.unknown().optional(),
  decoder: z.unknown().optional(),
  model: z.looseObject({ type: z.string().optional() }),
});

// vocab and merges are checked by hand: zod would copy 150k-entry objects just to validate them.
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const BpeModelJson = z.object({
  vocab: z.custom<Record<string, unknown>>(isPlainObject, "expected an object of token -> id"),
  merges: z.array(z.unknown()).default([]),
  unk_token: z.string().nullish(),
  fuse_unk: z.boolean().default(false),
  byte_fallback: z.boolean().default(false),
  ignore_merges: z.boolean().default(false),
  /** shardlm extension for GGUF vocabularies: see BpeOptions.unknownSplitsMerges. */
  llama_cpp_unknown_chars: z.boolean().default(false),
  continuing_subword_prefix: z.string().nullish(),
  end_of_word_suffix: z.string().nullish(),
  // Dropout only randomizes training-time segmentation; inference is deterministic without it.
  dropout: z.number().nullish(),
});

/** tokenizer_config.json token fields: "<s>" or {"content": "<s>", ...} (serialized AddedToken). */
const TokenRef = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const TokenizerConfigJson = z.looseObject({
  add_bos_token: z.boolean().nullish(),
  add_eos_token: z.boolean().nullish(),
  bos_token: TokenRef,
  eos_token: TokenRef,
  unk_token: TokenRef,
});

function parseVocab(vocab: Record<string, unknown>): Map<string, number> {
  const ids = new Map<string, number>();
  for (const [piece, id] of Object.entries(vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new TokenizerError(
        `tokenizer.json model.vocab: id of ${JSON.stringify(piece)} is ${JSON.stringify(id)}, not a token id`,
      );
    }
    ids.set(piece, id);
  }
  return ids;
}

/** "left right" (one space) or ["left", "right"] (tokenizers >= 0.20). */
function parseMerge(merge: unknown, index: number): [string, string] {
  if (typeof merge === "string") {
    const space = merge.indexOf(" ");
    if (space > 0 && space === merge.lastIndexOf(" ") && space < merge.length - 1) {
      return [merge.slice(0, space), merge.slice(space + 1)];
    }
  } else if (Array.isArray(merge) && merge.length === 2) {
    const [left, right] = merge;
    if (typeof left === "string" && typeof right === "string") return [left, right];
  }
  throw new TokenizerError(
    `tokenizer.json model.merges[${index}]: expected "left right" or [left, right], got ${JSON.stringify(merge)}`,
  );
}

/**
 * BOS (or EOS) ids to add: when tokenizer_config.json sets add_bos_token, transformers rebuilds the
 * template from its bos_token, so that token wins; otherwise the post-processor's template.
 */
function tokensToAdd(
  configured: number | null,
  configFlag: boolean | null | undefined,
  template: number[],
): number[] {
  if (configFlag != null && configured !== null) return [configured];
  if (template.length > 0) return template;
  return configured !== null ? [configured] : [];
}

const EMPTY = new Uint8Array(0);

class HfTokenizer implements Tokenizer, PieceRenderer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: number[];
  readonly unkId: number | null;
  readonly addBosByDefault: boolean;
  readonly addEosByDefault: boolean;
  readonly leadingStrip: DecoderPlan["leadingStrip"];

  private readonly pieces: (string | undefined)[] = [];
  private readonly ids: Map<string, number>;
  private readonly added = new Map<number, AddedTokenJson>();
  private readonly matchAll: AddedTokenMatcher;
  private readonly matchNonSpecial: AddedTokenMatcher;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly model: BpeModel;
  private readonly decoder: DecoderPlan;
  private readonly bosToAdd: number[];
  private readonly eosToAdd: number[];
  private readonly renderCache: (Uint8Array | undefined)[] = [];

  constructor(
    readonly kind: "hf" | "gguf-bpe",
    tokenizerJson: unknown,
    tokenizerConfig: Record<string, unknown> | null,
  ) {
    const json = parsePart(TokenizerJson, tokenizerJson, "(top level)");
    const modelType = json.model.type ?? "BPE";
    if (modelType !== "BPE") throw unsupported("model", modelType, ["BPE"]);
    const bpe = parsePart(BpeModelJson, json.model, "model");
    if (bpe.continuing_subword_prefix || bpe.end_of_word_suffix) {
      throw new TokenizerError(
        "tokenizer.json model: continuing_subword_prefix / end_of_word_suffix are not supported",
      );
    }

    const vocab = parseVocab(bpe.vocab);
    this.ids = new Map(vocab);
    for (const [piece, id] of vocab) this.pieces[id] = piece;
    for (const token of json.added_tokens ?? []) {
      this.added.set(token.id, token);
      this.pieces[token.id] = token.content;
      this.ids.set(token.content, token.id);
    }
    this.vocabSize = this.pieces.length;

    const unkId = bpe.unk_token == null ? null : vocab.get(bpe.unk_token);
    if (unkId === undefined)
      throw new TokenizerError(`tokenizer.json model.unk_token "${bpe.unk_token}" is not in the vocabulary`);
    this.unkId = unkId;
    this.model = new BpeModel({
      vocab,
      merges: bpe.merges.map(parseMerge),
      unkId,
      fuseUnk: bpe.fuse_unk,
      byteFallback: bpe.byte_fallback,
      ignoreMerges: bpe.ignore_merges,
      unknownSplitsMerges: bpe.llama_cpp_unknown_chars,
    });
    this.normalizer = buildNormalizer(json.normalizer);
    this.preTokenizer = buildPreTokenizer(json.pre_tokenizer);
    this.decoder = buildDecoder(json.decoder);
    this.leadingStrip = this.decoder.leadingStrip;

    const entries = [...this.added.values()].map((t) => ({
      id: t.id,
      text: t.content,
      lstrip: t.lstrip,
      rstrip: t.rstrip,
      singleWord: t.single_word,
    }));
    this.matchAll = new AddedTokenMatcher(entries);
    this.matchNonSpecial = new AddedTokenMatcher(entries.filter((t) => !this.added.get(t.id)!.special));

    const wrapping = buildPostProcessor(json.post_processor);
    const config = parsePart(TokenizerConfigJson, tokenizerConfig ?? {}, "(tokenizer_config.json)");
    const configBos = this.configTokenId(config.bos_token, "bos_token");
    const configEos = this.configTokenId(config.eos_token, "eos_token");
    this.bosId = configBos ?? wrapping.prefix[0] ?? null;
    this.bosToAdd = tokensToAdd(configBos, config.add_bos_token, wrapping.prefix);
    this.addBosByDefault = config.add_bos_token ?? wrapping.prefix.length > 0;
    const eos = configEos ?? wrapping.suffix[wrapping.suffix.length - 1] ?? null;
    this.eosToAdd = tokensToAdd(configEos, config.add_eos_token, wrapping.suffix);
    this.addEosByDefault = config.add_eos_token ?? wrapping.suffix.length > 0;
    this.eosIds = eos === null ? [] : [eos];
    for (const token of this.added.values()) {
      if (token.special && END_OF_GENERATION_TEXTS.has(token.content) && !this.eosIds.includes(token.id)) {
        this.eosIds.push(token.id);
      }
    }
  }

  private configTokenId(ref: z.infer<typeof TokenRef>, field: string): number | null {
    if (ref == null) return null;
    const content = typeof ref === "string" ? ref : ref.content;
    const id = this.ids.get(content);
    if (id === undefined)
      throw new TokenizerError(`tokenizer_config.json ${field} "${content}" is not in the vocabulary`);
    return id;
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    const out: number[] = [];
    if (opts?.addBos ?? this.addBosByDefault) {
      if (this.bosToAdd.length === 0)
        throw new TokenizerError("addBos requested but the tokenizer has no BOS token");
      out.push(...this.bosToAdd);
    }
    const matcher = opts?.parseSpecial ? this.matchAll : this.matchNonSpecial;
    matcher.split(toWellFormed(text)).forEach((fragment, index) => {
      if (typeof fragment === "number") {
        out.push(fragment);
        return;
      }
      const normalized = this.normalizer ? this.normalizer(fragment) : fragment;
      if (normalized.length === 0) return;
      const words = this.preTokenizer ? this.preTokenizer([normalized], index === 0) : [normalized];
      for (const word of words) this.model.tokenize(word, out);
    });
    if (opts?.addEos ?? this.addEosByDefault) {
      if (this.eosToAdd.length === 0)
        throw new TokenizerError("addEos requested but the tokenizer has no EOS token");
      out.push(...this.eosToAdd);
    }
    return out;
  }

  bytesOf(id: number, skipSpecial: boolean): Uint8Array {
    const added = this.added.get(id);
    if (added?.special && skipSpecial) return EMPTY;
    let bytes = this.renderCache[id];
    if (!bytes) {
      const piece = this.pieces[id];
      // Added tokens are literal text; vocabulary pieces go through the decoder chain.
      bytes = piece === undefined ? EMPTY : added ? utf8Bytes(piece) : this.decoder.render(piece);
      this.renderCache[id] = bytes;
    }
    return bytes;
  }

  decode(ids: readonly number[], opts?: DecodeOptions): string {
    return decodeIds(this, ids, opts);
  }

  createStreamDecoder(opts?: DecodeOptions): StreamDecoder {
    return createStreamDecoder(this, opts);
  }

  tokenToBytes(id: number): Uint8Array {
    if (this.tokenToPiece(id) === undefined)
      throw new TokenizerError(`token id ${id} is not in the vocabulary`);
    return this.bytesOf(id, false);
  }

  tokenToPiece(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.pieces[id] : undefined;
  }

  pieceToId(piece: string): number | undefined {
    return this.ids.get(piece);
  }

  isSpecial(id: number): boolean {
    return this.added.get(id)?.special ?? false;
  }
}

export function createHfTokenizer(
  tokenizerJson: unknown,
  tokenizerConfig: Record<string, unknown> | null,
  kind: "hf" | "gguf-bpe" = "hf",
): Tokenizer {
  return new HfTokenizer(kind, tokenizerJson, tokenizerConfig);
}
