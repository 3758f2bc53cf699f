/**
 * Writes a llama.cpp sentencepiece vocabulary as a Hugging Face tokenizer.json + tokenizer_config.json,
 * the way transformers' LlamaConverter (legacy mode) does: a BPE model with byte fallback whose merges are
 * derived from the piece scores, so that "lowest merge rank first" reproduces "highest piece score first".
 */
import { type LlamaSpmSpec, SPACE_MARK, TokenType } from "./llama-spm.ts";
import { TokenizerError } from "./types.ts";

export interface SpmToHfOptions {
  /** Jinja chat template to store in tokenizer_config.json. */
  chatTemplate?: string | null;
  /** tokenizer_config.json model_max_length (e.g. the model's context length). */
  modelMaxLength?: number;
}

interface ScoredMerge {
  left: string;
  right: string;
  score: number;
}

/**
 * Every split of every piece into two pieces, best merged-piece score first; equal scores keep vocabulary
 * order, and splits of one piece are ordered by the ids of their halves (transformers' SentencePieceExtractor).
 */
export function mergesFromScores(
  tokens: readonly string[],
  scores: readonly number[],
  ids: ReadonlyMap<string, number>,
) {
  const merges: ScoredMerge[] = [];
  tokens.forEach((piece, id) => {
    const local: (ScoredMerge & { leftId: number; rightId: number })[] = [];
    for (let i = 1; i < piece.length; i++) {
      const code = piece.charCodeAt(i);
      if (code >= 0xdc00 && code <= 0xdfff) continue; // never split a surrogate pair
      const left = piece.slice(0, i);
      const right = piece.slice(i);
      const leftId = ids.get(left);
      const rightId = ids.get(right);
      if (leftId !== undefined && rightId !== undefined)
        local.push({ left, right, score: scores[id]!, leftId, rightId });
    }
    local.sort((a, b) => a.leftId - b.leftId || a.rightId - b.rightId);
    merges.push(...local);
  });
  // Array.prototype.sort is stable, so ties keep the order built above.
  return merges.sort((a, b) => b.score - a.score);
}

export function spmToTokenizerJson(
  spec: LlamaSpmSpec,
  opts: SpmToHfOptions = {},
): { tokenizerJson: object; tokenizerConfig: object } {
  const ids = new Map<string, number>();
  spec.tokens.forEach((piece, id) => {
    const previous = ids.get(piece);
    if (previous !== undefined) {
      throw new TokenizerError(
        `vocabulary has the piece ${JSON.stringify(piece)} twice (ids ${previous} and ${id}); tokenizer.json cannot represent that`,
      );
    }
    ids.set(piece, id);
  });
  const name = (id: number | null, what: string): string | null => {
    if (id === null) return null;
    const piece = spec.tokens[id];
    if (piece === undefined) throw new TokenizerError(`${what} id ${id} is out of range`);
    return piece;
  };
  const bos = name(spec.bosId, "bos");
  const eos = name(spec.eosId, "eos");
  const unk = name(spec.unkId, "unknown");
  const pad = name(spec.padId, "pad");
  if (spec.addBos && bos === null)
    throw new TokenizerError("addBos is set but the vocabulary has no BOS token");
  if (spec.addEos && eos === null)
    throw new TokenizerError("addEos is set but the vocabulary has no EOS token");

  const merges = mergesFromScores(spec.tokens, spec.scores, ids);
  // The compact "left right" form is readable by every tokenizers version, but only works without spaces.
  const compact = merges.every((m) => !m.left.includes(" ") && !m.right.includes(" "));

  const addedTokens = spec.tokens.flatMap((content, id) => {
    const type = spec.tokenTypes[id];
    const special = type === TokenType.control || type === TokenType.unknown;
    if (!special && type !== TokenType.userDefined) return [];
    return [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }];
  });

  const specialToken = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const sequence = (id: "A" | "B", typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const wrap = (seq: "A" | "B", typeId: number) => [
    ...(spec.addBos && bos ? [specialToken(bos, typeId)] : []),
    sequence(seq, typeId),
    ...(spec.addEos && eos ? [specialToken(eos, typeId)] : []),
  ];
  const templateTokens = [...(spec.addBos ? [spec.bosId!] : []), ...(spec.addEos ? [spec.eosId!] : [])];

  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: {
      type: "Sequence",
      normalizers: [
        ...(spec.addSpacePrefix ? [{ type: "Prepend", prepend: SPACE_MARK }] : []),
        { type: "Replace", pattern: { String: " " }, content: SPACE_MARK },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: wrap("A", 0),
      pair: [...wrap("A", 0), ...wrap("B", 1)],
      special_tokens: Object.fromEntries(
        templateTokens.map((id) => {
          const piece = spec.tokens[id]!;
          return [piece, { id: piece, ids: [id], tokens: [piece] }];
        }),
      ),
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        ...(spec.addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(ids),
      merges: merges.map((m) => (compact ? `${m.left} ${m.right}` : [m.left, m.right])),
    },
  };

  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: spec.addBos,
    add_eos_token: spec.addEos,
    added_tokens_decoder: Object.fromEntries(
      addedTokens.map(({ id, content, lstrip, normalized, rstrip, single_word, special }) => [
        String(id),
        { content, lstrip, normalized, rstrip, single_word, special },
      ]),
    ),
    bos_token: bos,
    eos_token: eos,
    unk_token: unk,
    pad_token: pad,
    clean_up_tokenization_spaces: false,
    // Legacy mode is what the normalizer above implements (a prefix space after every special token).
    legacy: true,
    sp_model_kwargs: {},
    spaces_between_special_tokens: false,
    tokenizer_class: "LlamaTokenizer",
    use_default_system_prompt: false,
  };
  if (opts.modelMaxLength !== undefined) tokenizerConfig.model_max_length = opts.modelMaxLength;
  if (opts.chatTemplate) tokenizerConfig.chat_template = opts.chatTemplate;
  return { tokenizerJson, tokenizerConfig };
}
