/**
 * Token generation over any engine that turns tokens into next-token logits.
 * Framework-free: the HTTP layer consumes the async iterator (streaming) and passes an AbortSignal
 * (client disconnect).
 */
import { z } from "zod";
import type { NgramDatastore } from "../format/ngram-datastore.ts";
import type { DraftSettingsInput } from "../format/speculative.ts";
import type { InferenceState, LogitsModel } from "./logits-model.ts";
import {
  type PrefixCache,
  type ResidentPrefix,
  supportsKvResume,
  supportsKvTransfer,
} from "./prefix-cache.ts";
import { createSampler, type SamplerHooks, SamplerOptions } from "./sampler.ts";
import {
  Drafter,
  type SpeculationStats,
  supportsSpeculation,
  type VerifiedRows,
  verifyRows,
} from "./speculative.ts";

/** One sequence's context inside an engine (KV cache and whatever else it needs). */
export type { InferenceState, LogitsModel } from "./logits-model.ts";

export const GenerateOptions = SamplerOptions.extend({
  /** Most tokens to generate (stop tokens are not counted: they are never yielded). */
  maxTokens: z.number().int().min(0),
  /** Generation ends when one of these is sampled; it is not yielded. */
  stopTokenIds: z.array(z.number().int().min(0)).default([]),
});
export type GenerateOptionsInput = z.input<typeof GenerateOptions> & {
  signal?: AbortSignal;
  /** The sampler's choice reports (logprobs) and token mask (constrained decoding). */
  hooks?: SamplerHooks;
  /**
   * Speculative decoding (src/runtime/speculative.ts) with these draft settings, on models that can
   * verify (WasmEngine, WebGpuEngine); ignored on others. Output is exactly plain decoding's.
   */
  speculative?: DraftSettingsInput | false;
  /** The variant's model-output datastore: a third draft source when speculating (else ignored). */
  draftStore?: NgramDatastore;
  /** Reuse and keep KV rows of recent sequences (src/runtime/prefix-cache.ts) on models that export them. */
  prefixCache?: PrefixCache;
  /**
   * Without a prefixCache: continue from the KV rows the engine's last sequence left (zero extra
   * bytes; see ./prefix-cache.ts ResidentPrefix). Ignored when prefixCache is given.
   */
  residentPrefix?: ResidentPrefix<unknown>;
  /** Filled in as generation runs (readable even when the consumer stops the generator early). */
  stats?: SpeculationStats;
};

/**
 * Why generation ended: a stop token, `maxTokens`, the context (state or model) filled up, or the
 * signal aborted.
 */
export type FinishReason = "stop" | "length" | "context" | "abort";

export interface GenerateResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose KV rows came from the prefix cache instead of prefill. */
  cachedTokens: number;
  /** Speculation: tokens drafted and accepted (0 without speculation). */
  drafted: number;
  accepted: number;
}

const single = (logits: Float32Array): VerifiedRows => ({ length: 1, logits: () => logits });

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
  const {
    signal,
    hooks,
    speculative,
    draftStore,
    prefixCache,
    residentPrefix,
    stats: statsOut,
    ...rest
  } = options;
  const opts = GenerateOptions.parse(rest);
  const { maxTokens, stopTokenIds, ...samplerOptions } = opts;
  if (promptTokens.length === 0) throw new RangeError("the prompt needs at least one token (e.g. BOS)");
  if (promptTokens.length > model.maxContext) {
    throw new RangeError(
      `the prompt has ${promptTokens.length} tokens; the model's context holds ${model.maxContext}`,
    );
  }
  const prompt = [...promptTokens]; // the caller may reuse its array while we iterate
  const sampler = createSampler(samplerOptions, hooks);
  const stops = new Set(stopTokenIds);
  const drafter =
    speculative !== undefined && speculative !== false && supportsSpeculation(model)
      ? new Drafter(model, speculative, draftStore ?? null)
      : null;
  const cache = prefixCache && supportsKvTransfer<S>(model) ? { store: prefixCache, kv: model } : null;
  const resident =
    !cache && residentPrefix && supportsKvResume<S>(model)
      ? { rows: residentPrefix as ResidentPrefix<S>, kv: model }
      : null;
  const stats = statsOut ?? { drafted: 0, accepted: 0, verifications: 0 };
  if (drafter) stats.sources = drafter.sources;
  return run();

  /**
   * Plain decoding is the case without drafts. With drafts, the full model's logits after each
   * verified position go through the same sampler, in the same order, as plain decoding would run it;
   * a draft is accepted exactly when the sampled token equals it. For a deterministic draft (q = one
   * token) this is speculative sampling's accept/reject rule (Leviathan et al. 2023, Chen et al. 2023):
   * accept with probability p(draft), else draw from p without the draft; and it even consumes the
   * seeded random stream exactly as plain decoding does, so seeded output is the same text.
   */
  async function* run(): AsyncGenerator<number, GenerateResult, undefined> {
    let completionTokens = 0;
    let cachedTokens = 0;
    const done = (finishReason: FinishReason): GenerateResult => ({
      finishReason,
      promptTokens: prompt.length,
      completionTokens,
      cachedTokens,
      drafted: stats.drafted,
      accepted: stats.accepted,
    });
    if (maxTokens === 0) return done("length");
    if (signal?.aborted) return done("abort");

    // Room for the prompt and every generated token but the last (which is never fed back).
    const capacity = Math.min(model.maxContext, prompt.length + maxTokens - 1);
    let state: S | null = null;
    if (resident?.rows.last) {
      const keep = resident.rows.reusable(prompt);
      if (keep > 0) state = resident.kv.resumeState(resident.rows.last.state, capacity, keep);
      if (state) cachedTokens = keep;
    }
    // From here the rows belong to this sequence: forget the last one first (a throw below must not
    // leave a record of rows that are being overwritten).
    if (resident) resident.rows.last = null;
    state ??= model.newState(capacity);
    if (cache) {
      const hit = cache.store.lookup(prompt);
      if (hit) {
        cache.kv.importKv(state, hit.kv, hit.reuse);
        cachedTokens = hit.reuse;
      }
    }
    stats.cachedTokens = cachedTokens;
    // The sequence: its first state.length tokens are in the state; a sampled token waits at the end.
    const history = [...prompt];
    try {
      // rows.logits(i): logits after sequence position state.length - rows.length + i; drafts[i] was
      // proposed for it. Rows are asked for in order and not past the first rejection (lazy heads).
      let rows: VerifiedRows = single(await model.prefill(state, prompt.slice(cachedTokens)));
      let drafts: number[] = [];
      for (;;) {
        let accepted = 0;
        for (let i = 0; i < rows.length; i++) {
          if (drafts.length > 0) stats.headRows = (stats.headRows ?? 0) + 1;
          const token = sampler.sample(await rows.logits(i));
          if (stops.has(token)) return done("stop");
          yield token;
          completionTokens++;
          history.push(token);
          if (i < drafts.length && token === drafts[i]) {
            accepted++;
            stats.accepted++;
            if (completionTokens >= maxTokens) return done("length");
            if (signal?.aborted) return done("abort");
            continue;
          }
          // A token the drafts did not predict: positions after it hold rejected drafts.
          const keep = state.length - rows.length + i + 1;
          if (keep < state.length) drafter!.model.rollback(state, keep);
          break;
        }
        if (drafts.length > 0) drafter!.update(accepted);
        if (completionTokens >= maxTokens) return done("length");
        if (state.length >= state.capacity) return done("context");
        if (signal?.aborted) return done("abort");
        const token = history.at(-1)!;
        const room = Math.min(state.capacity - state.length - 1, maxTokens - completionTokens - 1);
        if (drafter) {
          const before = drafter.passes;
          drafts = await drafter.propose(state, history, room);
          stats.draftPasses = (stats.draftPasses ?? 0) + drafter.passes - before;
        }
        if (drafts.length > 0) {
          stats.drafted += drafts.length;
          stats.verifications++;
          rows = await verifyRows(drafter!.model, state, [token, ...drafts]);
        } else rows = single(await model.forward(state, token));
      }
    } finally {
      // Best effort: keep this sequence's KV rows for a later prompt that starts the same way.
      // (An early return can leave unchecked drafts past the sequence: only history's rows count.)
      const n = Math.min(state.length, history.length);
      if (resident && n > 0) resident.rows.last = { state, tokens: history.slice(0, n) };
      if (cache && n > 0) {
        try {
          cache.store.store(history.slice(0, n), cache.kv.exportKv(state, n));
        } catch {
          // the engine moved on to another sequence (state retired): nothing to keep
        }
      }
    }
  }
}
