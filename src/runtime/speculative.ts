/**
 * Draft sources for exact speculative decoding (issue 13). A drafter proposes the next few tokens
 * cheaply; `generate` has the full model verify them in one batched pass and keeps the longest prefix
 * the full model's own sampler agrees with, so the output is exactly what plain decoding gives.
 *
 * - Prompt lookup (Saxena 2023, "prompt lookup decoding"): the longest recent n-gram of the sequence
 *   that occurred before, and the tokens that followed it then. Free; strong when the answer copies
 *   from the prompt (rewrite, extract, summarize).
 * - Self-speculative layer skipping (Zhang et al. 2023, "Draft & Verify"): the same weights with some
 *   layers left out, greedy. No extra memory; its KV rows are overwritten by the verification pass.
 *
 * Draft length adapts per source like transformers' assisted generation heuristic: +2 after a fully
 * accepted draft, -1 otherwise; the layer-skip draft also stops when its top probability falls below
 * `minConfidence`, and either source pauses while its running acceptance rate is below `minAcceptance`.
 */
import { DraftSettings, type DraftSettingsInput } from "../format/speculative.ts";
import type { InferenceState, LogitsModel } from "./generate.ts";
import { argmax } from "./sampler.ts";

/** What an engine offers beyond LogitsModel so `generate` can speculate on it. */
export interface Verifier<S extends InferenceState> {
  /** Appends `tokens`; returns the next-token logits after each, each equal to a `forward` step's. */
  verify(state: S, tokens: readonly number[]): Float32Array[] | Promise<Float32Array[]>;
  /** Shortens the sequence to `length` tokens (rejected drafts). */
  rollback(state: S, length: number): void;
  /** One decode step with the layers in `skip` left out (the self-speculative draft); optional. */
  forwardSkipping?(
    state: S,
    tokenId: number,
    skip: ReadonlySet<number>,
  ): Float32Array | Promise<Float32Array>;
}

export type SpeculativeModel<S extends InferenceState> = LogitsModel<S> & Verifier<S>;

export function supportsSpeculation<S extends InferenceState>(
  model: LogitsModel<S>,
): model is SpeculativeModel<S> {
  const m = model as Partial<Verifier<S>>;
  return typeof m.verify === "function" && typeof m.rollback === "function";
}

/** Drafted and accepted token counts (accepted: drafts the full model's sampler agreed with). */
export interface SpeculationStats {
  drafted: number;
  accepted: number;
  /** Verification passes that carried drafts. */
  verifications: number;
  /** Layer-skip draft steps run (each a partial forward pass; 0 with prompt lookup only). */
  draftPasses?: number;
}

/**
 * Prompt lookup: the tokens that followed the most recent earlier occurrence of the sequence's last
 * n tokens (n from `maxN` down to `minN`), at most `k`. Empty when no suffix recurs.
 */
export function ngramDraft(history: readonly number[], k: number, maxN: number, minN: number): number[] {
  const L = history.length;
  if (k <= 0) return [];
  for (let n = Math.min(maxN, L - 1); n >= Math.max(1, minN); n--) {
    // Latest start s < L - n with history[s..s+n) equal to the suffix, followed by at least one token.
    for (let s = L - n - 1; s >= 0; s--) {
      let j = 0;
      while (j < n && history[s + j] === history[L - n + j]) j++;
      if (j === n) return history.slice(s + n, Math.min(L, s + n + k));
    }
  }
  return [];
}

/** Top softmax probability of `logits` (the draft's confidence in its argmax). */
export function topProbability(logits: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return 1 / sum;
}

type Source = "ngram" | "skip";

/** One sequence's draft policy (adaptive state included). */
export class Drafter<S extends InferenceState> {
  readonly settings: DraftSettings;
  private readonly skip: ReadonlySet<number>;
  private readonly k: Record<Source, number>;
  /** Running acceptance rate per source, and draft steps each source sits out after falling too low. */
  private readonly rate: Record<Source, number> = { ngram: 1, skip: 1 };
  private readonly pausedFor: Record<Source, number> = { ngram: 0, skip: 0 };
  private last: { source: Source; drafted: number } | null = null;
  /** Layer-skip draft steps run so far. */
  passes = 0;

  constructor(
    readonly model: SpeculativeModel<S>,
    settings: DraftSettingsInput = {},
  ) {
    this.settings = DraftSettings.parse(settings);
    this.skip = new Set(this.settings.skipLayers);
    const start = Math.min(this.settings.maxDraft, 4);
    this.k = { ngram: start, skip: start };
  }

  /** Whether the layer-skip draft can run on this model. */
  get layerSkip(): boolean {
    return this.skip.size > 0 && typeof this.model.forwardSkipping === "function";
  }

  /**
   * Drafts up to `room` tokens to follow `history` (whose last token is sampled but not yet in
   * `state`). The layer-skip draft runs on `state` and rolls it back before returning.
   */
  async propose(state: S, history: readonly number[], room: number): Promise<number[]> {
    this.last = null;
    if (room <= 0) return [];
    const s = this.settings;
    if (this.pausedFor.ngram > 0) this.pausedFor.ngram--;
    else {
      const fromNgram = ngramDraft(history, Math.min(room, this.k.ngram), s.ngramMax, s.ngramMin);
      if (fromNgram.length > 0) {
        this.last = { source: "ngram", drafted: fromNgram.length };
        return fromNgram;
      }
    }
    if (!this.layerSkip) return [];
    if (this.pausedFor.skip > 0) {
      this.pausedFor.skip--;
      return [];
    }
    const base = state.length;
    const drafts: number[] = [];
    let token = history.at(-1)!;
    const want = Math.min(room, this.k.skip);
    try {
      while (drafts.length < want) {
        const logits = await this.model.forwardSkipping!(state, token, this.skip);
        this.passes++;
        if (topProbability(logits) < s.minConfidence) break;
        token = argmax(logits);
        drafts.push(token);
      }
    } finally {
      this.model.rollback(state, base);
    }
    if (drafts.length > 0) this.last = { source: "skip", drafted: drafts.length };
    return drafts;
  }

  /** Feedback after verification: how many of the last proposal's tokens were accepted. */
  update(accepted: number): void {
    const last = this.last;
    if (!last) return;
    const max = this.settings.maxDraft;
    this.k[last.source] =
      accepted === last.drafted
        ? Math.min(max, this.k[last.source] + 2)
        : Math.max(1, this.k[last.source] - 1);
    // A rejected draft costs a verified row for nothing: a source whose acceptance falls below
    // minAcceptance (set by the build to the measured per-row verify cost) sits out a while.
    const src = last.source;
    this.rate[src] = 0.7 * this.rate[src] + 0.3 * (accepted / last.drafted);
    if (this.rate[src] < this.settings.minAcceptance) {
      this.pausedFor[src] = 16;
      this.rate[src] = Math.min(1, this.settings.minAcceptance + 0.15); // try again after the pause
    }
  }
}
