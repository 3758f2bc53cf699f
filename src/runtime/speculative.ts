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
 * - A model-output n-gram datastore (src/format/ngram-datastore.ts; REST, He et al. 2023): what the
 *   variant itself most often said after the last 2-3 tokens when the build had it answer calibration
 *   prompts. Free (a hash lookup); the fallback where prompt lookup finds nothing (open questions,
 *   stories). Priced like prompt lookup, with its own acceptance per matched key length.
 *
 * Adaptive policy (default): a verified row is not free (a batched row costs a fraction of a decode
 * step, measured by the build per row count), so each step the drafter estimates, per source, the
 * probability q that the first drafted token is accepted and qNext that a later one is, given the ones
 * before it were (drafts come in runs: a copy that starts matching tends to go on), and drafts the
 * length k with the best expected tokens per cost (src/format/speculative.ts, expectedSpeedup); when
 * no k beats a plain step it drafts nothing, so a request whose drafts keep failing decodes plainly
 * (worst case ~1.0x). Prompt-lookup q is kept per matched n-gram length (a longer match is a likelier
 * copy), and both q and qNext are also learned for free while decoding plainly: the lookup's would-be
 * drafts are checked against the tokens plain decoding samples next. The layer-skip draft stops when
 * its top probability falls below `minConfidence`.
 */

import type { ModelConfig } from "../format/model.ts";
import type { NgramDatastore } from "../format/ngram-datastore.ts";
import {
  bestDraftLength,
  DraftSettings,
  type DraftSettingsInput,
  type HeadBatchShape,
  headShareOf,
  type SpeculationCosts,
  speculationCosts,
} from "../format/speculative.ts";
import type { InferenceState, LogitsModel } from "./logits-model.ts";
import { argmax } from "./sampler.ts";

/** The rows of a verify pass: logits(i) is the next-token logits after tokens[i] (computed on demand). */
export interface VerifiedRows {
  readonly length: number;
  logits(i: number): Float32Array | Promise<Float32Array>;
}

/** What an engine offers beyond LogitsModel so `generate` can speculate on it. */
export interface Verifier<S extends InferenceState> {
  /** Appends `tokens`; returns the next-token logits after each, each equal to a `forward` step's. */
  verify(state: S, tokens: readonly number[]): Float32Array[] | Promise<Float32Array[]>;
  /**
   * verify, but the heads (final norm and vocabulary projection, a large share of a step) run only
   * when logits are asked for, a row and the ones after it batched in one pass (headBatch): rows
   * after the first rejected draft past that pass never need one. Optional.
   */
  verifyRows?(state: S, tokens: readonly number[]): VerifiedRows | Promise<VerifiedRows>;
  /** The model's shape (head share and layer count for the draft policy's cost model); optional. */
  readonly config?: ModelConfig;
  /**
   * How verifyRows batches a pass's heads (WasmEngine.headBatch); with DraftSettings.headCosts the
   * draft policy prices heads per batched pass. Absent: each needed row's head costs a full head.
   */
  readonly headBatch?: HeadBatchShape;
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
  /** Rows that went through the head in verification passes (the rest were rejected unseen). */
  headRows?: number;
  /** Prompt tokens whose KV rows came from a prefix cache (set before prefill; not speculation, but counted here with the rest). */
  cachedTokens?: number;
  /** Per draft source: verify passes, tokens drafted and accepted. */
  sources?: Record<DraftSource, SourceStats>;
}

/** Where a draft came from: prompt lookup, the layer-skip draft, the model-output datastore. */
export type DraftSource = "ngram" | "skip" | "store";

export interface SourceStats {
  passes: number;
  drafted: number;
  accepted: number;
}

/** A verify pass's rows, lazily if the model can (verifyRows), else all computed up front. */
export async function verifyRows<S extends InferenceState>(
  model: SpeculativeModel<S>,
  state: S,
  tokens: readonly number[],
): Promise<VerifiedRows> {
  if (model.verifyRows) return model.verifyRows(state, tokens);
  const rows = await model.verify(state, tokens);
  return { length: rows.length, logits: (i) => rows[i]! };
}

/**
 * Prompt lookup: the tokens that followed the most recent earlier occurrence of the sequence's last
 * n tokens (n from `maxN` down to `minN`), at most `k`. Empty when no suffix recurs.
 */
export function ngramDraft(history: readonly number[], k: number, maxN: number, minN: number): number[] {
  return ngramMatch(history, k, maxN, minN).tokens;
}

/** ngramDraft with the length n of the suffix it matched (0 when none). */
export function ngramMatch(
  history: readonly number[],
  k: number,
  maxN: number,
  minN: number,
): { tokens: number[]; n: number } {
  const L = history.length;
  if (k <= 0) return { tokens: [], n: 0 };
  for (let n = Math.min(maxN, L - 1); n >= Math.max(1, minN); n--) {
    // Latest start s < L - n with history[s..s+n) equal to the suffix, followed by at least one token.
    for (let s = L - n - 1; s >= 0; s--) {
      let j = 0;
      while (j < n && history[s + j] === history[L - n + j]) j++;
      if (j === n) return { tokens: history.slice(s + n, Math.min(L, s + n + k)), n };
    }
  }
  return { tokens: [], n: 0 };
}

/** Top softmax probability of `logits` (the draft's confidence in its argmax). */
export function topProbability(logits: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return 1 / sum;
}

type Source = DraftSource;

/**
 * Acceptance estimate: exponentially decayed counts of accepted / tried draft tokens, starting from a
 * prior (mean `prior`, weight 2) that decays with them, so recent outcomes count most (copy spans come
 * and go within an answer) and a long run of hits can push q towards 1 (a prior that never decays
 * capped q near 0.9, which kept drafts short even where every copied token was right).
 */
class Acceptance {
  private hits: number;
  private tries = 2;
  constructor(prior: number) {
    this.hits = 2 * prior;
  }
  get q(): number {
    return this.hits / this.tries;
  }
  observe(accepted: number, tried: number): void {
    for (let i = 0; i < tried; i++) {
      this.hits = 0.9 * this.hits + (i < accepted ? 1 : 0);
      this.tries = 0.9 * this.tries + 1;
    }
  }
}

/**
 * Updates `first` (the first draft token) and `next` (each later one, given the ones before it were
 * accepted) with a verify outcome: `accepted` of `drafted` tokens.
 */
function observeRun(first: Acceptance, next: Acceptance, accepted: number, drafted: number): void {
  if (drafted <= 0) return;
  first.observe(accepted > 0 ? 1 : 0, 1);
  // Later positions looked at: up to the first rejected draft (the ones after it say nothing).
  const tried = Math.min(drafted, accepted + 1) - 1;
  if (tried > 0) next.observe(accepted - 1, tried);
}

/** Prior acceptance of prompt lookup before a request has shown any (low: plain decoding wins ties). */
const NGRAM_PRIOR = 0.4;
/** Prior acceptance of a prompt-lookup draft token after the ones before it were accepted. */
const NGRAM_NEXT_PRIOR = 0.7;
/**
 * Datastore priors where the settings carry no build measurement (DraftSettings.storeAcceptance):
 * low, so plain decoding wins until the request's own shadows show the store is right here.
 */
const STORE_PRIOR = 0.3;
const STORE_NEXT_PRIOR = 0.6;

/** A lookup draft (prompt or datastore) not taken (a plain step ran): checked against the tokens decoded after it. */
interface Shadow {
  source: "ngram" | "store";
  tokens: number[];
  n: number;
  /** history.length when proposed: tokens[j] would have been history[at + j]. */
  at: number;
  /** Tokens checked so far. */
  seen: number;
}

/** One sequence's draft policy (adaptive state included). */
export class Drafter<S extends InferenceState> {
  readonly settings: DraftSettings;
  private readonly skip: ReadonlySet<number>;
  /**
   * Prompt lookup acceptance of a first draft token per matched n-gram length, and of later tokens;
   * layer-skip acceptance of a first and of later draft tokens.
   */
  private readonly ngramQ: Acceptance[] = [];
  private readonly ngramNext = new Acceptance(NGRAM_NEXT_PRIOR);
  private readonly skipQ: Acceptance;
  private readonly skipNext: Acceptance;
  /** Datastore acceptance of a first draft token per matched key length, and of later ones. */
  private readonly storeQ: Acceptance[] = [];
  private readonly storeNext: Acceptance;
  private readonly costs: { ngram: SpeculationCosts; skip: SpeculationCosts };
  /** Non-adaptive: draft length per source (+2 after a full accept, -1 otherwise) and pauses. */
  private readonly k: Record<Source, number>;
  private readonly rate: Record<Source, number> = { ngram: 1, skip: 1, store: 1 };
  private readonly pausedFor: Record<Source, number> = { ngram: 0, skip: 0, store: 0 };
  /** Per source: verify passes, drafted and accepted tokens (SpeculationStats.sources). */
  readonly sources: Record<Source, SourceStats> = {
    ngram: { passes: 0, drafted: 0, accepted: 0 },
    skip: { passes: 0, drafted: 0, accepted: 0 },
    store: { passes: 0, drafted: 0, accepted: 0 },
  };
  private last: { source: Source; drafted: number; n: number } | null = null;
  /** Prompt lookup's drafts not taken (plain steps): checked against the tokens sampled after them. */
  private shadows: Shadow[] = [];
  /** Layer-skip draft steps run so far. */
  passes = 0;

  /**
   * `store`: the variant's model-output datastore (third draft source), or none. Its key lengths are
   * its own (NgramDatastore.minN..maxN), independent of prompt lookup's ngramMin..ngramMax.
   */
  constructor(
    readonly model: SpeculativeModel<S>,
    settings: DraftSettingsInput = {},
    readonly store: NgramDatastore | null = null,
  ) {
    this.settings = DraftSettings.parse(settings);
    this.skip = new Set(this.settings.skipLayers);
    const start = Math.min(this.settings.maxDraft, 4);
    this.k = { ngram: start, skip: start, store: start };
    for (let n = 0; n <= this.settings.ngramMax; n++) this.ngramQ.push(new Acceptance(NGRAM_PRIOR));
    for (let n = 0; n <= (store?.maxN ?? 0); n++)
      this.storeQ.push(new Acceptance(this.settings.storeAcceptance ?? STORE_PRIOR));
    this.storeNext = new Acceptance(this.settings.storeNextAcceptance ?? STORE_NEXT_PRIOR);
    this.skipQ = new Acceptance(this.settings.skipAcceptance);
    this.skipNext = new Acceptance(this.settings.skipAcceptance);
    const c = model.config;
    const s = this.settings;
    const h = s.headShare ?? (c ? headShareOf(c) : 0.15);
    const kept = c ? (c.numLayers - this.skip.size) / c.numLayers : 0.75;
    // Batched heads only where the engine batches them (verifyRows with a headBatch) and the build
    // measured them; a draft step still pays a full single-row head.
    const heads =
      s.headCosts && model.headBatch && typeof model.verifyRows === "function"
        ? { costs: s.headCosts, batch: model.headBatch }
        : undefined;
    this.costs = {
      ngram: speculationCosts(s.rowCost, h, 0, s.rowCosts, heads),
      skip: speculationCosts(s.rowCost, h, h + (1 - h) * kept, s.rowCosts, heads),
    };
  }

  /** Whether the layer-skip draft can run on this model. */
  get layerSkip(): boolean {
    return this.skip.size > 0 && typeof this.model.forwardSkipping === "function";
  }

  /**
   * Drafts up to `room` tokens to follow `history` (whose last token is sampled but not yet in
   * `state`). The layer-skip draft runs on `state` and rolls it back before returning. Empty: decode
   * this step plainly.
   */
  async propose(state: S, history: readonly number[], room: number): Promise<number[]> {
    this.last = null;
    this.checkShadows(history);
    if (room <= 0) return [];
    const s = this.settings;
    if (!s.adaptive) return this.proposeFixed(state, history, room);
    const max = Math.min(room, s.maxDraft);
    const match = ngramMatch(history, max, s.ngramMax, s.ngramMin);
    const ngram =
      match.n > 0
        ? bestDraftLength(match.tokens.length, this.ngramQ[match.n]!.q, this.costs.ngram, this.ngramNext.q)
        : { k: 0, speedup: 1 };
    // The datastore is the fallback: looked up only where prompt lookup has nothing to draft.
    const stored = ngram.k === 0 && this.store ? this.store.lookup(history, max) : null;
    const store =
      stored && stored.n > 0
        ? bestDraftLength(stored.tokens.length, this.storeQ[stored.n]!.q, this.costs.ngram, this.storeNext.q)
        : { k: 0, speedup: 1 };
    const skip = this.layerSkip
      ? bestDraftLength(max, this.skipQ.q, this.costs.skip, this.skipNext.q)
      : { k: 0, speedup: 1 };
    if (ngram.k > 0 && ngram.speedup >= skip.speedup) {
      this.last = { source: "ngram", drafted: ngram.k, n: match.n };
      return match.tokens.slice(0, ngram.k);
    }
    if (store.k > 0 && store.speedup >= skip.speedup) {
      this.last = { source: "store", drafted: store.k, n: stored!.n };
      return stored!.tokens.slice(0, store.k);
    }
    if (skip.k > 0) {
      const drafts = await this.draftSkipping(state, history, skip.k);
      if (drafts.length > 0) {
        this.last = { source: "skip", drafted: drafts.length, n: 0 };
        return drafts;
      }
    }
    const at = history.length;
    if (match.n > 0) this.shadows.push({ source: "ngram", tokens: match.tokens, n: match.n, at, seen: 0 });
    if (stored && stored.n > 0)
      this.shadows.push({ source: "store", tokens: stored.tokens, n: stored.n, at, seen: 0 });
    return [];
  }

  /**
   * Plain steps ran where prompt lookup had a draft: would its tokens have been accepted? Learned for
   * free, first token and later ones apart, up to the first one that would have been rejected.
   */
  private checkShadows(history: readonly number[]): void {
    if (this.shadows.length === 0) return;
    const open: Shadow[] = [];
    for (const sh of this.shadows) {
      let done = false;
      const [first, next] =
        sh.source === "ngram" ? [this.ngramQ[sh.n]!, this.ngramNext] : [this.storeQ[sh.n]!, this.storeNext];
      while (sh.seen < sh.tokens.length && sh.at + sh.seen < history.length) {
        const right = history[sh.at + sh.seen] === sh.tokens[sh.seen];
        (sh.seen === 0 ? first : next).observe(right ? 1 : 0, 1);
        sh.seen++;
        if (!right) {
          done = true;
          break;
        }
      }
      if (!done && sh.seen < sh.tokens.length) open.push(sh);
    }
    this.shadows = open;
  }

  /** Non-adaptive drafting: prompt lookup when it matches, else the datastore, else the layer-skip draft. */
  private async proposeFixed(state: S, history: readonly number[], room: number): Promise<number[]> {
    const s = this.settings;
    if (this.pausedFor.ngram > 0) this.pausedFor.ngram--;
    else {
      const m = ngramMatch(history, Math.min(room, this.k.ngram), s.ngramMax, s.ngramMin);
      if (m.tokens.length > 0) {
        this.last = { source: "ngram", drafted: m.tokens.length, n: m.n };
        return m.tokens;
      }
    }
    if (this.store) {
      if (this.pausedFor.store > 0) this.pausedFor.store--;
      else {
        const m = this.store.lookup(history, Math.min(room, this.k.store));
        if (m.tokens.length > 0) {
          this.last = { source: "store", drafted: m.tokens.length, n: m.n };
          return m.tokens;
        }
      }
    }
    if (!this.layerSkip) return [];
    if (this.pausedFor.skip > 0) {
      this.pausedFor.skip--;
      return [];
    }
    const drafts = await this.draftSkipping(state, history, Math.min(room, this.k.skip));
    if (drafts.length > 0) this.last = { source: "skip", drafted: drafts.length, n: 0 };
    return drafts;
  }

  /** Up to `want` greedy tokens from the layer-skip draft; stops when its confidence drops. */
  private async draftSkipping(state: S, history: readonly number[], want: number): Promise<number[]> {
    const base = state.length;
    const drafts: number[] = [];
    let token = history.at(-1)!;
    try {
      while (drafts.length < want) {
        const logits = await this.model.forwardSkipping!(state, token, this.skip);
        this.passes++;
        if (topProbability(logits) < this.settings.minConfidence) break;
        token = argmax(logits);
        drafts.push(token);
      }
    } finally {
      this.model.rollback(state, base);
    }
    return drafts;
  }

  /** Feedback after verification: how many of the last proposal's tokens were accepted. */
  update(accepted: number): void {
    const last = this.last;
    if (!last) return;
    const src = last.source;
    const counts = this.sources[src];
    counts.passes++;
    counts.drafted += last.drafted;
    counts.accepted += accepted;
    if (src === "ngram") observeRun(this.ngramQ[last.n]!, this.ngramNext, accepted, last.drafted);
    else if (src === "store") observeRun(this.storeQ[last.n]!, this.storeNext, accepted, last.drafted);
    else observeRun(this.skipQ, this.skipNext, accepted, last.drafted);
    if (this.settings.adaptive) return;
    const max = this.settings.maxDraft;
    this.k[src] = accepted === last.drafted ? Math.min(max, this.k[src] + 2) : Math.max(1, this.k[src] - 1);
    this.rate[src] = 0.7 * this.rate[src] + 0.3 * (accepted / last.drafted);
    if (this.rate[src] < this.settings.minAcceptance) {
      this.pausedFor[src] = 16;
      this.rate[src] = Math.min(1, this.settings.minAcceptance + 0.15); // try again after the pause
    }
  }
}
