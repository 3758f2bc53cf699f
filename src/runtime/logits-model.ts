/** What `generate` (and the speculative drafter) drive: an engine seen as a next-token logits source. */
export interface InferenceState {
  /** Tokens in the context so far. */
  readonly length: number;
  /** Most tokens the state can hold. */
  readonly capacity: number;
}

/**
 * What an engine implements so `generate` can drive it: the reference model today, WASM/WebGPU
 * engines later (hence results may be promises).
 */
export interface LogitsModel<S extends InferenceState = InferenceState> {
  readonly vocabSize: number;
  /** Longest context the model supports; `newState` accepts up to this many tokens. */
  readonly maxContext: number;
  newState(maxTokens: number): S;
  /** Appends `tokens` to the sequence; returns the logits after the last one. */
  prefill(state: S, tokens: readonly number[]): Float32Array | Promise<Float32Array>;
  /** Appends one token; returns the next-token logits. */
  forward(state: S, tokenId: number): Float32Array | Promise<Float32Array>;
}
