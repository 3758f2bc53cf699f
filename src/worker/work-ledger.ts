/**
 * The work this isolate has admitted, per variant, in predicted ms: what a request with a latency
 * budget would wait for before its own work could start (./variant-choice.ts). A request's entry
 * starts as the router's prediction for it (prefill + its decode steps), becomes its plan's work
 * once planned (./plan.ts), and shrinks by the work of the tokens it has generated. All of it is
 * counted in work units (tokens times calibrated per-token costs, ../runtime/cost-model.ts), never
 * read off a clock: deployed Workers' clocks stand still during compute (../runtime/clock.ts).
 * Entries leave when their request releases its variant (ends, fails, or its client leaves).
 */
import type { SpeedProfile } from "../format/manifest.ts";
import { decodeWorkTokens } from "../runtime/cost-model.ts";

/** What an entry's remaining work is computed from. */
export interface WorkEstimate {
  /** Predicted prefill of the prompt (all choices), ms. */
  prefillMs: number;
  /** Predicted prefill + every planned decode step, ms. */
  totalMs: number;
  /** A decode step at position 0 (calibrated), ms; `extraMsPerToken` is added to every step. */
  decodeMsPerToken: number;
  extraMsPerToken: number;
  /** The variant's speed profile (decode cost grows with position: decodeWorkTokens). */
  speed: Pick<SpeedProfile, "decodePositionTokens">;
  promptTokens: number;
}

export class WorkEntry {
  /** Tokens generated so far (all choices). */
  private tokens = 0;

  constructor(
    readonly manifestId: string,
    private estimate: WorkEstimate,
  ) {}

  /** The request's plan replaced the router's first estimate. */
  update(estimate: WorkEstimate): void {
    this.estimate = estimate;
  }

  tokenDone(): void {
    this.tokens++;
  }

  /**
   * Predicted ms of work left: the estimate less the prefill (once a token exists) and the decode
   * steps done. Exact for one choice; with n choices later choices' prefills count as done early.
   */
  remainingMs(): number {
    const e = this.estimate;
    if (this.tokens === 0) return e.totalMs;
    const done =
      e.prefillMs +
      e.decodeMsPerToken * decodeWorkTokens(e.speed, e.promptTokens, this.tokens) +
      e.extraMsPerToken * this.tokens;
    return Math.max(0, e.totalMs - done);
  }
}

export class WorkLedger {
  private readonly entries = new Set<WorkEntry>();

  /** Admits a request's work on a variant (manifest id); remove it when the request lets go. */
  add(manifestId: string, estimate: WorkEstimate): WorkEntry {
    const e = new WorkEntry(manifestId, estimate);
    this.entries.add(e);
    return e;
  }

  remove(entry: WorkEntry): void {
    this.entries.delete(entry);
  }

  /** Predicted ms of admitted work left on these variants (running, queued or waiting to load). */
  pendingMs(manifestIds: Iterable<string>): number {
    const ids = new Set(manifestIds);
    let ms = 0;
    for (const e of this.entries) if (ids.has(e.manifestId)) ms += e.remainingMs();
    return ms;
  }
}
