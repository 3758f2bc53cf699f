/**
 * Token generation over any engine that turns tokens into next-token logits.
 * Framework-free: the HTTP layer consumes the async iterator (streaming) and passes an AbortSignal
 * (client disconnect).
 */
import { z } from "zod";
import { createSampler, SamplerOptions } from "./sampler.ts";

/** One sequence's context inside an engine (KV cache and whatever else it needs). */
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

export const GenerateOptions = SamplerOptions.extend({
  /** Most tokens to generate (stop tokens are not counted: they are never yielded). */
  maxTokens: z.number().int().min(0),
  /** Generation ends when one of these is sampled; it is not yielded. */
  stopTokenIds: z.array(z.number().int().min(0)).default([]),
});
export type GenerateOptionsInput = z.input<typeof GenerateOptions> & { signal?: AbortSignal };

/**
 * Why generation ended: a stop token, `maxTokens`, the context (state or model) filled up, or the
 * signal aborted.
 */
export type FinishReason = "stop" | "length" | "context" | "abort";

export interface GenerateResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/**
 * Yields generated token ids one at a time; the generator's return value says why it ended.
 * Options are validated here, eagerly (ZodError); a prompt that does not fit the model's context
 * throws a RangeError. An aborted signal ends generation (finishReason "abort") instead of throwing,
 * checked before every forward pass; the signal can only fire between tokens if the consumer awaits
 * real I/O (as a streaming response does).
 */
export function generate<S extends InferenceState>(
  model: LogitsModel<S>,
  promptTokens: readonly number[],
  options: GenerateOptionsInput,
): AsyncGenerator<number, GenerateResult, undefined> {
  const { signal, ...rest } = options;
  const opts = GenerateOptions.parse(rest);
  const { maxTokens, stopTokenIds, ...samplerOptions } = opts;
  if (promptTokens.length === 0) throw new RangeError("the prompt needs at least one token (e.g. BOS)");
  if (promptTokens.length > model.maxContext) {
    throw new RangeError(
      `the prompt has ${promptTokens.length} tokens; the model's context holds ${model.maxContext}`,
    );
  }
  const prompt = [...promptTokens]; // the caller may reuse its array while we iterate
  const sampler = createSampler(samplerOptions);
  const stops = new Set(stopTokenIds);
  return run();

  async function* run(): AsyncGenerator<number, GenerateResult, undefined> {
    let completionTokens = 0;
    const done = (finishReason: FinishReason): GenerateResult => ({
      finishReason,
      promptTokens: prompt.length,
      completionTokens,
    });
    if (maxTokens === 0) return done("length");
    if (signal?.aborted) return done("abort");

    // Room for the prompt and every generated token but the last (which is never fed back).
    const state = model.newState(Math.min(model.maxContext, prompt.length + maxTokens - 1));
    let logits = await model.prefill(state, prompt);
    for (;;) {
      const token = sampler.sample(logits);
      if (stops.has(token)) return done("stop");
      yield token;
      completionTokens++;
      if (completionTokens >= maxTokens) return done("length");
      if (state.length >= state.capacity) return done("context");
      if (signal?.aborted) return done("abort");
      logits = await model.forward(state, token);
    }
  }
}
