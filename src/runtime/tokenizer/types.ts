/** The tokenizer contract shared by every vocabulary kind (sentencepiece, byte-level BPE, ...). */

export interface EncodeOptions {
  /** Prepend the BOS token(s). Default: the vocabulary's own setting (GGUF add_bos_token, tokenizer_config.json). */
  addBos?: boolean;
  /** Append the EOS token(s). Default: the vocabulary's own setting (almost always false). */
  addEos?: boolean;
  /**
   * Recognize special/control tokens such as "<s>" or "<|im_start|>" written in the text.
   * Default false: user text must never be able to inject control tokens. User-defined (non-special)
   * added tokens are always recognized, as llama.cpp and Hugging Face do.
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, control, unknown). Default true. */
  skipSpecial?: boolean;
  /**
   * The ids continue earlier text (e.g. tokens generated after a prompt): keep the leading space that
   * sentencepiece-style vocabularies otherwise strip at the start of a text. Default false.
   */
  continuation?: boolean;
}

/** Turns ids into text one at a time, never splitting a UTF-8 character across outputs. */
export interface StreamDecoder {
  /** Text completed by this token (may be "" while a multi-byte character is incomplete). */
  push(id: number): string;
  /** Ends the stream: returns what is still buffered (invalid trailing bytes become U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: "llama-spm" | "gguf-bpe" | "hf";
  /** Number of ids (the model's embedding rows may be more). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** Ids that end generation (EOS and end-of-turn tokens). */
  readonly eosIds: number[];
  readonly unkId: number | null;
  /** What encode() does when `addBos`/`addEos` are not given. */
  readonly addBosByDefault: boolean;
  readonly addEosByDefault: boolean;
  encode(text: string, opts?: EncodeOptions): number[];
  /** decode(ids) equals the concatenation of a stream decoder's push() and flush() outputs. */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  createStreamDecoder(opts?: DecodeOptions): StreamDecoder;
  /** The bytes a token stands for in the output (special tokens: their text). */
  tokenToBytes(id: number): Uint8Array;
  /** The vocabulary entry as stored (e.g. "▁the", "Ġthe", "<0x0A>"), or undefined for an unknown id. */
  tokenToPiece(id: number): string | undefined;
  /** Id of a vocabulary entry given as stored, e.g. pieceToId("<|im_end|>"). */
  pieceToId(piece: string): number | undefined;
  /** Special tokens (control/unknown; HF added tokens marked special) are dropped by skipSpecial. */
  isSpecial(id: number): boolean;
}

/** A tokenizer file problem: unsupported feature, malformed field, missing token. */
export class TokenizerError extends Error {
  override readonly name = "TokenizerError";
}
