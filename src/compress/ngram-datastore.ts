/**
 * Builds the model-output n-gram datastore (src/format/ngram-datastore.ts) from the variant's own
 * greedy answers to calibration chat prompts: for every key (the n = minN..maxN tokens before an
 * answer position), the continuation the variant most often produced after it, walked token by token
 * by majority (REST, He et al. 2023, drafts the most frequent continuations of a corpus the same way,
 * from a suffix array). Pruned to a byte budget, most frequent keys first.
 *
 * `draftCoverage` replays prompts with known greedy answers through a lookup the way the drafter uses
 * it (draft whenever the lookup offers, keep the agreeing prefix, the verifier's token after it) and
 * counts the answer tokens a draft got right: the share of decode steps drafts could save.
 */
import { createHash } from "node:crypto";
import {
  encodeNgramDatastore,
  MAX_CONTINUATION,
  NgramDatastore,
  type NgramEntry,
} from "../format/ngram-datastore.ts";
import { generate } from "../runtime/generate.ts";
import type { LogitsModel } from "../runtime/logits-model.ts";

/** A calibration prompt (token ids, chat template applied) and the variant's greedy answer to it. */
export interface PromptAnswer {
  prompt: readonly number[];
  answer: readonly number[];
}

export interface DatastoreBuildOptions {
  /** Shortest and longest key (tokens). Default 2..3 (the prompt lookup's). */
  minN?: number;
  maxN?: number;
  /** Longest stored continuation. Default 8. */
  continuation?: number;
  /** Keys seen fewer times are dropped. Default 1 (keep all). */
  minCount?: number;
  /** Keys whose majority next token followed them less often than this (hits / count) are dropped. Default 0. */
  minConfidence?: number;
  /** Most bytes the encoded datastore may take (most frequent keys kept). Default 1 MiB. */
  maxBytes?: number;
}

/**
 * The datastore of `answers` (entries, encoded; null bytes when there is none), keyed on the answer's positions after its first
 * token (the first comes from prefill, never from a draft); keys may reach back into the prompt.
 */
export function buildNgramDatastore(
  answers: readonly PromptAnswer[],
  vocabSize: number,
  opts: DatastoreBuildOptions = {},
): { entries: NgramEntry[]; bytes: Uint8Array | null; sourceTokens: number } {
  const minN = opts.minN ?? 2;
  const maxN = opts.maxN ?? 3;
  const depth = Math.min(MAX_CONTINUATION, opts.continuation ?? 8);
  const minCount = opts.minCount ?? 1;
  const minConfidence = opts.minConfidence ?? 0;
  const maxBytes = opts.maxBytes ?? 1 << 20;
  // key ("n:t1,t2,..") -> the continuations that followed it (up to `depth` tokens each).
  const follow = new Map<string, { key: number[]; next: number[][] }>();
  let sourceTokens = 0;
  for (const { prompt, answer } of answers) {
    const full = [...prompt, ...answer];
    sourceTokens += answer.length;
    for (let i = prompt.length + 1; i < full.length; i++) {
      for (let n = minN; n <= maxN && n <= i; n++) {
        const key = full.slice(i - n, i);
        const id = `${n}:${key.join(",")}`;
        let f = follow.get(id);
        if (!f) follow.set(id, (f = { key, next: [] }));
        f.next.push(full.slice(i, i + depth));
      }
    }
  }
  const entries: NgramEntry[] = [];
  for (const { key, next } of follow.values()) {
    if (next.length < minCount) continue;
    const { continuation, hits } = majorityPath(next);
    if (hits < minConfidence * next.length) continue;
    entries.push({ key, continuation, count: Math.min(0xffff, next.length), hits: Math.min(0xffff, hits) });
  }
  // Most frequent first (then longer keys: more specific), within the byte budget.
  entries.sort((a, b) => b.hits - a.hits || b.count - a.count || b.key.length - a.key.length);
  const tokenBytes = vocabSize <= 0x10000 ? 2 : 4;
  let size = 20;
  let kept = 0;
  for (const e of entries) {
    const s = 6 + tokenBytes * (e.key.length + e.continuation.length);
    if (size + s > maxBytes) break;
    size += s;
    kept++;
  }
  const chosen = entries.slice(0, kept);
  const bytes = chosen.length > 0 ? encodeNgramDatastore(chosen, vocabSize) : null;
  return { entries: chosen, bytes, sourceTokens };
}

/** The continuation read token by token by majority among `next`, and how many agreed on its first token. */
function majorityPath(next: readonly number[][]): { continuation: number[]; hits: number } {
  let group = next;
  const continuation: number[] = [];
  let hits = 0;
  for (let d = 0; ; d++) {
    const counts = new Map<number, number>();
    for (const c of group) if (c.length > d) counts.set(c[d]!, (counts.get(c[d]!) ?? 0) + 1);
    let best = -1;
    let bestCount = 0;
    for (const [t, n] of counts)
      if (n > bestCount || (n === bestCount && t < best)) [best, bestCount] = [t, n];
    if (bestCount === 0) break;
    if (d === 0) hits = bestCount;
    continuation.push(best);
    group = group.filter((c) => c[d] === best);
  }
  return { continuation, hits };
}

/** A draft source for draftCoverage: up to `k` tokens to follow `history` (empty: none). */
export type DraftLookup = (history: readonly number[], k: number) => readonly number[];

export interface CoverageCounts {
  /** Answer tokens after the first (the ones a draft could have produced). */
  tokens: number;
  /** Verify passes (drafts offered and checked). */
  passes: number;
  drafted: number;
  /** Draft tokens equal to the answer's (the agreeing prefix of each draft). */
  accepted: number;
  /** Passes whose first draft token was right. */
  firstRight: number;
  /** Later draft tokens looked at (up to the first wrong one) after right ones, and how many were right. */
  nextTried: number;
  nextRight: number;
}

/** All-zero coverage counts, to add runs into. */
function noCoverage(): CoverageCounts {
  return { tokens: 0, passes: 0, drafted: 0, accepted: 0, firstRight: 0, nextTried: 0, nextRight: 0 };
}

/**
 * Replays each answer through `lookup` as the non-adaptive drafter would: at each position, draft up
 * to `maxDraft` tokens, keep the prefix equal to the answer, then the verifier's own token. Greedy
 * answers make this exact: the tokens a real run would have accepted.
 */
export function draftCoverage(
  answers: readonly PromptAnswer[],
  lookup: DraftLookup,
  maxDraft = 6,
): CoverageCounts {
  const c = noCoverage();
  for (const { prompt, answer } of answers) {
    c.tokens += Math.max(0, answer.length - 1);
    const history = [...prompt, answer[0]!];
    for (let i = 1; i < answer.length; ) {
      const d = lookup(history, Math.min(maxDraft, answer.length - i));
      let r = 0;
      if (d.length > 0) {
        while (r < d.length && d[r] === answer[i + r]) r++;
        c.passes++;
        c.drafted += d.length;
        c.accepted += r;
        if (r > 0) {
          c.firstRight++;
          c.nextTried += Math.min(d.length, r + 1) - 1;
          c.nextRight += r - 1;
        }
      }
      const step = Math.min(r + 1, answer.length - i);
      for (let j = 0; j < step; j++) history.push(answer[i + j]!);
      i += step;
    }
  }
  return c;
}

/** A DraftLookup over a datastore. */
export function datastoreLookup(store: NgramDatastore): DraftLookup {
  return (history, k) => store.lookup(history, k).tokens;
}

/** Greedy answers of `model` to `prompts` (plain decoding, ending at a stop token or `maxTokens`). */
export async function greedyAnswers(
  model: LogitsModel,
  prompts: readonly (readonly number[])[],
  maxTokens: number,
  stopTokenIds: readonly number[] = [],
): Promise<PromptAnswer[]> {
  const out: PromptAnswer[] = [];
  for (const prompt of prompts) {
    const answer: number[] = [];
    const opts = { maxTokens, temperature: 0, stopTokenIds: [...stopTokenIds] };
    for await (const t of generate(model, prompt, opts)) answer.push(t);
    if (answer.length > 0) out.push({ prompt, answer });
  }
  return out;
}

/**
 * The datastore replayed on answers it was not counted from: `folds`-fold (answer i is in fold
 * i mod folds; each fold replayed on a table counted from the others), summed.
 */
export function heldOutCoverage(
  answers: readonly PromptAnswer[],
  vocabSize: number,
  opts: DatastoreBuildOptions = {},
  folds = 2,
  maxDraft = 6,
): CoverageCounts {
  const sum = noCoverage();
  for (let f = 0; f < folds; f++) {
    const train = answers.filter((_, i) => i % folds !== f);
    const test = answers.filter((_, i) => i % folds === f);
    if (train.length === 0 || test.length === 0) continue;
    const bytes = buildNgramDatastore(train, vocabSize, opts).bytes;
    if (!bytes) continue;
    const c = draftCoverage(test, datastoreLookup(NgramDatastore.parse(bytes)), maxDraft);
    for (const k of Object.keys(sum) as (keyof CoverageCounts)[]) sum[k] += c[k];
  }
  return sum;
}

/** A built datastore: its bytes and what it holds. */
export interface NgramDatastoreSummary {
  sha256: string;
  bytes: number;
  entries: number;
  /** Calibration answer tokens the table was counted from. */
  sourceTokens: number;
  /** Share of calibration answer tokens a datastore draft got right on answers it was not counted from (2-fold). */
  coverage: number;
}

/** A variant's datastore: its bytes, a summary and the drafter's priors. */
export interface DraftDatastore {
  bytes: Uint8Array;
  ref: NgramDatastoreSummary;
  /** Held-out acceptance of a first and of a later draft token (DraftSettings.storeAcceptance, storeNextAcceptance). */
  acceptance: { first: number; next: number };
}

/**
 * The datastore of a variant's `answers` (greedyAnswers on the calibration prompts), with its
 * held-out coverage and acceptance (2-fold) for the manifest and the drafter's priors. Null when the
 * answers give no entry.
 */
export function draftDatastore(
  answers: readonly PromptAnswer[],
  vocabSize: number,
  opts: DatastoreBuildOptions = {},
): DraftDatastore | null {
  const built = buildNgramDatastore(answers, vocabSize, opts);
  if (!built.bytes) return null;
  const held = heldOutCoverage(answers, vocabSize, opts);
  return {
    bytes: built.bytes,
    ref: {
      sha256: createHash("sha256").update(built.bytes).digest("hex"),
      bytes: built.bytes.byteLength,
      entries: built.entries.length,
      sourceTokens: built.sourceTokens,
      coverage: held.tokens > 0 ? held.accepted / held.tokens : 0,
    },
    acceptance: {
      first: held.passes > 0 ? held.firstRight / held.passes : 0,
      next: held.nextTried > 0 ? held.nextRight / held.nextTried : 0,
    },
  };
}
