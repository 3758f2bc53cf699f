/**
 * What the WASM and WebGPU engines share besides the forward pass: the state rules (one sequence at a
 * time per engine; `newState` retires the previous state), the argument checks with their messages,
 * the option ranges, and reading a weight stream (`readRegion`). Each engine keeps its own pass over
 * its own kernels (docs/ARCHITECTURE.md, "One forward pass, three executors").
 */
import type { ModelConfig } from "../format/model.ts";
import type { WeightTable } from "../format/weights.ts";
import type { InferenceState } from "./generate.ts";

/** A state used after it was retired, or on another engine. */
export class EngineStateError extends Error {
  override readonly name = "EngineStateError";
}

export class WeightStreamError extends Error {
  override readonly name = "WeightStreamError";
}

export interface LoadProgress {
  bytes: number;
  totalBytes: number;
  /** Tensors whose bytes have all arrived (in table order). */
  tensorsReady: number;
}

/** One sequence on an engine: `generation` is the engine's count of newState calls when it was made. */
export class EngineSequence<E extends object> implements InferenceState {
  length = 0;
  constructor(
    readonly owner: E,
    readonly capacity: number,
    readonly generation: number,
  ) {}
}

/** Tokens an engine's KV cache holds: `requested`, or the model's context capped at 2048. */
export function contextSizeFor(config: ModelConfig, requested: number | undefined): number {
  const n = requested ?? Math.min(config.maxContext, 2048);
  if (!Number.isInteger(n) || n < 1 || n > config.maxContext) {
    throw new RangeError(`contextSize must be an integer in 1..${config.maxContext}, got ${requested}`);
  }
  return n;
}

/** Prompt tokens per pass: `requested` (default `max`) in 1..max, at most the context. */
export function prefillBlockFor(requested: number | undefined, max: number, contextSize: number): number {
  const b = requested ?? max;
  if (!Number.isInteger(b) || b < 1 || b > max) {
    throw new RangeError(`prefillBlock must be an integer in 1..${max}, got ${requested}`);
  }
  return Math.min(b, contextSize);
}

export function checkStateSize(maxTokens: number, contextSize: number): void {
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > contextSize) {
    throw new RangeError(`state size must be an integer in 1..${contextSize}, got ${maxTokens}`);
  }
}

/** Throws unless `state` is `engine`'s current sequence. */
export function checkState(state: EngineSequence<object>, engine: object, generation: number): void {
  if (state.owner !== engine) throw new EngineStateError("this state belongs to another engine");
  if (state.generation !== generation) {
    throw new EngineStateError("this state was retired: the engine has started another sequence since");
  }
}

export function checkToken(tokenId: number, vocabSize: number): void {
  if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize) {
    throw new RangeError(`token id ${tokenId} is outside the vocabulary (0..${vocabSize - 1})`);
  }
}

/** Checks a batch of tokens to append: non-empty, in the vocabulary, fitting the state. */
export function checkAppend(state: InferenceState, tokens: readonly number[], vocabSize: number): void {
  if (tokens.length === 0) throw new RangeError("prefill needs at least one token");
  for (const t of tokens) checkToken(t, vocabSize);
  if (state.length + tokens.length > state.capacity) {
    throw new RangeError(
      tokens.length === 1 && state.length >= state.capacity
        ? `the state is full (${state.capacity} tokens)`
        : `${tokens.length} tokens do not fit: the state holds ${state.length} of ${state.capacity}`,
    );
  }
}

/**
 * Reads a data region's stream, handing each chunk to `sink` with its offset in the region, and
 * checks it is exactly as long as the table declares. Shared by every engine's loader.
 */
export async function readRegion(
  table: WeightTable,
  stream: ReadableStream<Uint8Array>,
  sink: (chunk: Uint8Array, offset: number) => void,
  onProgress?: (p: LoadProgress) => void,
): Promise<void> {
  const reader = stream.getReader();
  let pos = 0;
  let ready = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (pos + value.byteLength > table.totalBytes) {
        throw new WeightStreamError(
          `weight stream is longer than the ${table.totalBytes} bytes its table declares`,
        );
      }
      sink(value, pos);
      pos += value.byteLength;
      while (ready < table.tensors.length) {
        const t = table.tensors[ready]!;
        if (t.offset + t.bytes > pos) break;
        ready++;
      }
      onProgress?.({ bytes: pos, totalBytes: table.totalBytes, tensorsReady: ready });
    }
  } finally {
    reader.releaseLock();
  }
  if (pos !== table.totalBytes) {
    throw new WeightStreamError(`weight stream ended after ${pos} of ${table.totalBytes} bytes`);
  }
}
