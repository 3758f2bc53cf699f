/**
 * End-to-end quality of a compressed model with the fp32 reference forward pass: perplexity on
 * held-out sequences, and how far its next-token distributions are from the original model's
 * (mean KL(original ‖ candidate) per position, top-1 agreement).
 */
import type { ModelDescription } from "../format/model.ts";
import { ReferenceModel } from "../model/reference/index.ts";
import { argmax } from "../runtime/sampler.ts";

export interface Perplexity {
  /** Positions scored (each sequence's tokens after the first). */
  readonly tokens: number;
  readonly meanNll: number;
  readonly perplexity: number;
}

export interface Comparison {
  readonly reference: Perplexity;
  readonly candidate: Perplexity;
  /** Mean over positions of KL(reference ‖ candidate), nats. */
  readonly meanKl: number;
  /** Fraction of positions where both models' most likely next token agree. */
  readonly top1Agreement: number;
}

/** Anything that turns tokens into logits synchronously: the reference pass, the WASM engine. */
export interface SyncLogits<S> {
  newState(maxTokens: number): S;
  forward(state: S, tokenId: number): Float32Array;
}

function logSoftmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

/** Log-probabilities after every prefix of each sequence but the full one. */
function* positions<S>(model: SyncLogits<S>, sequences: readonly (readonly number[])[]) {
  for (const seq of sequences) {
    const state = model.newState(seq.length);
    for (let t = 0; t + 1 < seq.length; t++) {
      yield { logp: logSoftmax(model.forward(state, seq[t]!)), next: seq[t + 1]! };
    }
  }
}

function toPerplexity(nll: number, tokens: number): Perplexity {
  const meanNll = tokens > 0 ? nll / tokens : 0;
  return { tokens, meanNll, perplexity: Math.exp(meanNll) };
}

export function perplexity(model: ModelDescription, sequences: readonly (readonly number[])[]): Perplexity {
  let nll = 0;
  let tokens = 0;
  for (const { logp, next } of positions(new ReferenceModel(model), sequences)) {
    nll -= logp[next]!;
    tokens++;
  }
  return toPerplexity(nll, tokens);
}

/** Runs both models in lock step over the same sequences. */
export function compareModels(
  reference: ModelDescription,
  candidate: ModelDescription,
  sequences: readonly (readonly number[])[],
): Comparison {
  if (reference.config.vocabSize !== candidate.config.vocabSize)
    throw new Error("compareModels: vocabularies differ");
  return compareLogits(new ReferenceModel(reference), new ReferenceModel(candidate), sequences);
}

/** compareModels for any two logit producers (e.g. the reference vs the engine that serves a variant). */
export function compareLogits<S, T>(
  reference: SyncLogits<S>,
  candidate: SyncLogits<T>,
  sequences: readonly (readonly number[])[],
): Comparison {
  const a = positions(reference, sequences);
  const b = positions(candidate, sequences);
  let nllA = 0;
  let nllB = 0;
  let kl = 0;
  let agree = 0;
  let tokens = 0;
  for (let pa = a.next(), pb = b.next(); !pa.done && !pb.done; pa = a.next(), pb = b.next()) {
    const p = pa.value.logp;
    const q = pb.value.logp;
    nllA -= p[pa.value.next]!;
    nllB -= q[pb.value.next]!;
    let d = 0;
    for (let i = 0; i < p.length; i++) d += Math.exp(p[i]!) * (p[i]! - q[i]!);
    kl += d;
    if (argmax(p) === argmax(q)) agree++;
    tokens++;
  }
  return {
    reference: toPerplexity(nllA, tokens),
    candidate: toPerplexity(nllB, tokens),
    meanKl: tokens > 0 ? kl / tokens : 0,
    top1Agreement: tokens > 0 ? agree / tokens : 1,
  };
}
