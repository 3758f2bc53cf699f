/**
 * What a verified row costs on this engine, measured (issue 13): the draft policy prices speculation
 * with these numbers (src/format/speculative.ts). Runtime-neutral (the engine and a clock), so the build
 * measures in Node (src/compress/speculative-search.ts) and in workerd (src/compress/verify-cost-worker.ts,
 * measureWarmEngineCosts), and the bench in both (src/bench/engine-worker.ts /row-cost).
 */
import type { WasmEngine } from "./wasm/engine.ts";

/** Calls of `fn` that span at least 10 ms of `clock` (a runtime's clock may tick by 1 ms). */
function callsFor(clock: () => number, fn: () => void): number {
  for (let n = 1; ; n *= 2) {
    const t0 = clock();
    for (let i = 0; i < n; i++) fn();
    if (clock() - t0 >= 10 || n >= 4096) return n;
  }
}

/** ms per call of `fn`, over `n` calls. */
function perCall(clock: () => number, fn: () => void, n: number): number {
  const t0 = clock();
  for (let i = 0; i < n; i++) fn();
  return (clock() - t0) / n;
}

/**
 * Per-row cost of a batched verify over `rows` rows relative to `rows` decode steps (layers and heads;
 * best of 3), by `clock` (default wall time).
 */
export function measureRowCost(
  engine: WasmEngine,
  rows = 8,
  clock: () => number = () => performance.now(),
): number {
  const prompt = Array.from({ length: 16 }, (_, i) => 1 + ((i * 37) % (engine.vocabSize - 1)));
  const tokens = prompt.slice(0, rows);
  const s = engine.newState(prompt.length + rows);
  engine.prefill(s, prompt);
  const steps = () => {
    engine.rollback(s, prompt.length);
    for (const t of tokens) engine.forward(s, t);
  };
  const verify = () => {
    engine.rollback(s, prompt.length);
    engine.verify(s, tokens);
  };
  const n = callsFor(clock, steps);
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 3; r++) best = Math.min(best, perCall(clock, verify, n) / perCall(clock, steps, n));
  // Within DraftSettings.rowCost's bounds, as measureVerifyCosts' entries: on a loaded host all three
  // rounds of a tiny model's verify were once descheduled (> 4 steps per row), failing the build.
  return Math.min(4, Math.max(0.01, best));
}

/** What measureVerifyCosts found: DraftSettings' rowCosts, headShare and headCosts, measured on the engine. */
export interface VerifyCosts {
  /** Entry m - 1: per-row cost of a verify pass's layers (no head) at m rows, in decode steps. */
  rowCosts: number[];
  /** Share of a decode step spent in the final norm and head (one row's head). */
  headShare: number;
  /**
   * Entry m - 1: per-row cost of one batched head pass over m verified rows (final norm, head matmul,
   * logits copied out), in decode steps, for m = 1..min(maxRows, engine.headBatch.rows).
   */
  headCosts: number[];
}

/**
 * Per-row cost of verify passes of 1..`maxRows` rows (layers only: verifyRows computes heads on
 * demand), of batched head passes of 1..maxRows rows (at most the engine's headBatch.rows), and the
 * head's share of a decode step, on the engine as it runs now, by `clock` (CPU time
 * where there is one: a build or bench on a shared machine is descheduled at random, which only ever
 * adds wall time): best of `reps` rounds for the plain step, the head and each pass (at load 4-5 on 2
 * cores the minima agreed within ~0.03 over most runs, medians of per-round ratios did not); the
 * step and the passes timed over enough calls to span 10 ms of the clock (Miniflare's ticks by 1 ms),
 * the head passes over passes of already verified rows spanning >= 12 single-row heads (~2-3 ms each
 * on SmolLM2). A pass of more rows (layers or heads) is never priced below one of fewer.
 */
export function measureVerifyCosts(
  engine: WasmEngine,
  /** ms: Node's CPU time where there is one (the build), else the runtime's clock (workerd, locally). */
  clock: () => number,
  maxRows = 8,
  reps = 7,
): VerifyCosts {
  const prompt = Array.from({ length: 64 }, (_, i) => 1 + ((i * 37) % (engine.vocabSize - 1)));
  const tokens = Array.from({ length: maxRows }, (_, i) => 1 + ((i * 53 + 11) % (engine.vocabSize - 1)));
  const s = engine.newState(prompt.length + maxRows);
  engine.prefill(s, prompt);
  const base = prompt.length;
  const step = () => {
    engine.rollback(s, base);
    engine.forward(s, tokens[0]!);
  };
  const verify = (m: number) => () => {
    engine.rollback(s, base);
    engine.verifyRows(s, tokens.slice(0, m));
  };
  const n = callsFor(clock, step);
  const headMax = Math.min(maxRows, engine.headBatch.rows);
  let stepMs = Number.POSITIVE_INFINITY;
  const pass = new Array<number>(maxRows + 1).fill(Number.POSITIVE_INFINITY);
  const heads = new Array<number>(headMax + 1).fill(Number.POSITIVE_INFINITY);
  for (let r = 0; r < reps; r++) {
    stepMs = Math.min(stepMs, perCall(clock, step, n));
    for (let m = 1; m <= maxRows; m++) pass[m] = Math.min(pass[m]!, perCall(clock, verify(m), n));
    for (let m = 1; m <= headMax; m++) {
      // Head passes of m rows, each over rows verified beforehand (their kept hidden states; the KV
      // cache moves on, the heads do not read it): row 0 asked for first, all m in one pass.
      const count = Math.ceil(12 / m);
      const verified = Array.from({ length: count }, () => {
        engine.rollback(s, base);
        return engine.verifyRows(s, tokens.slice(0, m), m);
      });
      const t0 = clock();
      for (const rows of verified) rows.logits(0);
      heads[m] = Math.min(heads[m]!, (clock() - t0) / count);
    }
  }
  const perRow = (ms: number[], last: number) => {
    const out: number[] = [];
    let most = 0;
    for (let m = 1; m <= last; m++) {
      most = Math.max(most, ms[m]!);
      out.push(Math.min(4, Math.max(0.01, most / stepMs / m)));
    }
    return out;
  };
  const headCosts = perRow(heads, headMax);
  return {
    rowCosts: perRow(pass, maxRows),
    headShare: Math.min(0.95, Math.max(0, heads[1]! / stepMs)),
    headCosts,
  };
}

/** Wall time (ms) warmUp runs the engine before it is timed. */
export const WARM_UP_MS = 300;

/**
 * Runs decode steps and 8-row verify passes (with row 0's head) for `ms` of `clock`: a fresh isolate
 * runs the kernels in V8's baseline tier until they tier up, and measureVerifyCosts sizes its timed
 * sections on its first calls, so timed cold it picks too few calls per section (sections of a few
 * ms; 0 ms / 0 ms on stories260K in a fresh workerd isolate). At most `maxRounds` rounds, so a clock
 * that does not advance (a deployed Worker's, between I/O) cannot hang it.
 */
export function warmUp(
  engine: WasmEngine,
  clock: () => number = () => performance.now(),
  ms = WARM_UP_MS,
  maxRounds = 100_000,
): void {
  const tokens = Array.from({ length: 16 }, (_, i) => 1 + ((i * 37) % (engine.vocabSize - 1)));
  const s = engine.newState(tokens.length + 8);
  engine.prefill(s, tokens);
  const t0 = clock();
  for (let round = 0; round < maxRounds && (round === 0 || clock() - t0 < ms); round++) {
    engine.rollback(s, tokens.length);
    engine.forward(s, tokens[0]!);
    engine.rollback(s, tokens.length);
    engine.verifyRows(s, tokens.slice(0, 8)).logits(0);
  }
}

/** measureRowCost's rowCost and measureVerifyCosts' entries, on one engine by one clock. */
export interface EngineCosts extends VerifyCosts {
  /** Per-row cost of an 8-row verify (layers and heads) relative to 8 decode steps (measureRowCost). */
  rowCost: number;
}

/**
 * The engine warmed up (warmUp, WARM_UP_MS of `clock`), then measureRowCost and measureVerifyCosts
 * by `clock`: how a Worker measures on an engine it may have just loaded (the build's verify-cost
 * worker, the bench's engine worker), so both report the same thing the same way.
 */
export function measureWarmEngineCosts(
  engine: WasmEngine,
  clock: () => number = () => performance.now(),
): EngineCosts {
  warmUp(engine, clock);
  return { rowCost: measureRowCost(engine, 8, clock), ...measureVerifyCosts(engine, clock) };
}
