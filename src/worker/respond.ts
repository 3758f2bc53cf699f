/**
 * Responding: a generation's text as one JSON object or as SSE chunks, in a shape given by the
 * endpoint (chat.completion / text_completion). Both release the variant's queue when the
 * generation ends; streams run as waitUntil work, so a disconnect cannot freeze them halfway.
 */
import type { Context } from "hono";
import { type CompletionOptions, type CompletionResult, complete } from "../runtime/chat.ts";
import type { TokenChoice } from "../runtime/sampler.ts";
import type { Tokenizer } from "../runtime/tokenizer/index.ts";
import { observeGeneration } from "./calibrate.ts";
import { ApiError, errorBody } from "./errors.ts";
import type { Plan } from "./plan.ts";
import type { Services } from "./services.ts";
import { ClientGoneError, SseBody } from "./sse.ts";
import type { Served } from "./variant-choice.ts";

/** Events a streamed answer may queue beyond what the runtime has taken (see ./sse.ts). */
const STREAM_BUFFER_CHUNKS = 16;
/** How often a queued stream sends an SSE comment to find out whether its client is still there. */
const HEARTBEAT_MS = 100;
/**
 * Predicted work between the generation's yields to the event loop (where a disconnect is seen and
 * the stream flushes), ms: counted in tokens from the decode cost, since a frozen clock cannot say
 * when 10 ms have passed. A yield costs ~1 ms in workerd, so far fewer would slow a small model.
 */
const YIELD_WORK_MS = 10;

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** OpenAI's: prompt tokens served from the prefix cache (first choice), not prefilled. */
  prompt_tokens_details?: { cached_tokens: number };
}

/** OpenAI's ChatCompletionTokenLogprob: the token's text, natural-log probability and UTF-8 bytes. */
export interface TokenLogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** OpenAI reports tokens of probability 0 (here: masked) as -9999, not -Infinity (not JSON). */
const finiteLogprob = (x: number) => (Number.isFinite(x) ? x : -9999);

/** Choices as OpenAI's logprobs.content entries (the token text decodes its bytes, lossily). */
export function logprobEntries(tok: Tokenizer, choices: TokenChoice[]): TokenLogprobEntry[] {
  const decoder = new TextDecoder();
  const one = (token: number, logprob: number) => {
    const bytes = tok.tokenToBytes(token);
    return { token: decoder.decode(bytes), logprob: finiteLogprob(logprob), bytes: [...bytes] };
  };
  return choices.map((c) => ({
    ...one(c.token, c.logprob),
    top_logprobs: c.top.map((t) => one(t.token, t.logprob)),
  }));
}

/** One finished choice of an answer. */
export interface ChoiceResult {
  text: string;
  finish: FinishReason;
  /** Its tokens' log probabilities, when requested. */
  logprobs: TokenLogprobEntry[] | null;
}

/**
 * How an endpoint's answers look; `index` is the choice (OpenAI's n: choices come one after
 * another, each streamed whole before the next starts).
 */
export interface AnswerShape {
  /** The non-streamed answer's object, given its choices (usage is added after). */
  whole(choices: ChoiceResult[]): Record<string, unknown>;
  /** First streamed chunk of a choice (e.g. the assistant role), or null. */
  opening(index: number): Record<string, unknown> | null;
  /** A streamed chunk carrying `text` (and the log probabilities of its tokens, when requested). */
  piece(index: number, text: string, logprobs: TokenLogprobEntry[] | null): Record<string, unknown>;
  /** The chunk that carries a choice's finish reason. */
  closing(index: number, finish: FinishReason): Record<string, unknown>;
  /** The fields of a usage-only chunk besides `usage` (id, object, created, model, choices: []). */
  usageOnly(): Record<string, unknown>;
}

export interface Generation {
  served: Served;
  prompt: number[];
  /** Sampling and stop strings; the plan (./plan.ts) sets how many tokens. */
  options: Omit<CompletionOptions, "signal" | "maxTokens" | "clock" | "yieldEveryTokens">;
  /** stream_options.include_usage: every chunk carries "usage" (null until the last). */
  includeUsage: boolean;
  /** OpenAI's n: choices generated one after another; seeded, choice i uses seed + i. */
  choices: number;
}

/** Generation `g` for choice `i`: its own seed when seeded (reproducible, yet not n copies). */
const forChoice = (g: Generation, i: number): Generation =>
  i === 0 || g.options.seed === undefined
    ? g
    : { ...g, options: { ...g.options, seed: (g.options.seed + i) >>> 0 } };

function serverTiming(t: {
  loadMs: number;
  prefillMs?: number;
  decodeMs?: number;
  /** Speculative decoding: accepted / drafted tokens (left out when nothing was drafted). */
  spec?: { drafted: number; accepted: number };
}): string {
  const parts = [`load;dur=${t.loadMs.toFixed(1)}`];
  if (t.prefillMs !== undefined) parts.push(`prefill;dur=${t.prefillMs.toFixed(1)}`);
  if (t.decodeMs !== undefined) parts.push(`decode;dur=${t.decodeMs.toFixed(1)}`);
  if (t.spec && t.spec.drafted > 0) parts.push(`spec;desc="${t.spec.accepted}/${t.spec.drafted}"`);
  return parts.join(", ");
}

const finishOf = (r: CompletionResult): FinishReason => (r.finishReason === "length" ? "length" : "stop");

function usageOf(prompt: number, completion: number, cached?: number): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    ...(cached === undefined ? {} : { prompt_tokens_details: { cached_tokens: cached } }),
  };
}

function observe(services: Services, g: Generation, r: CompletionResult): void {
  services.stats.generations++;
  services.stats.tokens += r.completionTokens;
  if (r.finishReason === "abort") services.stats.clientGone++;
  const { served } = g;
  observeGeneration(services, served.clock, served.manifest, served.prediction, g.prompt.length, r);
}

function routingHeaders(served: Served, plan: Plan): Record<string, string> {
  const h: Record<string, string> = {
    "X-Variant": served.manifest.variant,
    // What is planned (X-Planned-Tokens decode steps), not max_tokens: a cut plan predicts less.
    // The plan's own numbers: the time already spent (the real load, queueing) plus its predicted
    // work, so it stays within the budget unless the plan says the budget is exhausted.
    "X-Predicted-Ms": String(Math.round(plan.spentMs + plan.predictedMs)),
    "X-Planned-Tokens": String(plan.maxDecodeTokens),
  };
  if (plan.limitedBy === "cpu") h["X-Max-Tokens-Capped"] = "cpu";
  return h;
}

/** The answer was cut by its latency budget: it ran the whole plan, and the plan was the budget's. */
const budgetExhausted = (plan: Plan, r: CompletionResult) =>
  plan.limitedBy === "budget" && r.finishReason === "length" && r.completionTokens >= plan.maxDecodeTokens;

/** Runs the planned generation, counted in GET /healthz while it runs. */
async function run(
  services: Services,
  g: Generation,
  plan: Plan,
  emit: (t: string, logprobs: TokenLogprobEntry[] | null) => void | Promise<void>,
): Promise<CompletionResult> {
  const { served } = g;
  services.stats.running++;
  try {
    return await complete(
      served.variant,
      g.prompt,
      {
        ...g.options,
        maxTokens: plan.maxDecodeTokens,
        signal: served.abort.signal,
        clock: served.clock,
        yieldEveryTokens: Math.max(1, Math.ceil(YIELD_WORK_MS / served.prediction.decodeMsPerToken)),
        onToken: () => served.tokenDone(),
      },
      (t, choices) =>
        emit(
          t,
          g.options.topLogprobs === null || g.options.topLogprobs === undefined
            ? null
            : logprobEntries(served.variant.tokenizer, choices),
        ),
    );
  } finally {
    services.stats.running--;
  }
}

/** The whole answer as JSON. */
export async function respondJson(
  c: Context,
  services: Services,
  g: Generation,
  shape: AnswerShape,
): Promise<Response> {
  const { served } = g;
  const wantLogprobs = g.options.topLogprobs !== null && g.options.topLogprobs !== undefined;
  try {
    const plan = served.plan();
    const choices: ChoiceResult[] = [];
    const sum = { completion: 0, prefillMs: 0, decodeMs: 0, drafted: 0, accepted: 0, exhausted: false };
    let cached: number | undefined;
    for (let i = 0; i < g.choices; i++) {
      let text = "";
      const logprobs: TokenLogprobEntry[] = [];
      const r = await run(services, forChoice(g, i), plan, (t, lp) => {
        text += t;
        if (lp) logprobs.push(...lp);
      });
      observe(services, g, r);
      choices.push({ text, finish: finishOf(r), logprobs: wantLogprobs ? logprobs : null });
      sum.completion += r.completionTokens;
      cached ??= r.cachedTokens;
      sum.prefillMs += r.prefillMs;
      sum.decodeMs += r.decodeMs;
      sum.drafted += r.drafted ?? 0;
      sum.accepted += r.accepted ?? 0;
      sum.exhausted ||= budgetExhausted(plan, r);
      if (r.finishReason === "abort") break; // the client left: nobody reads the rest
    }
    const headers = routingHeaders(served, plan);
    headers["Server-Timing"] = serverTiming({
      loadMs: served.loadMs,
      prefillMs: sum.prefillMs,
      decodeMs: sum.decodeMs,
      spec: { drafted: sum.drafted, accepted: sum.accepted },
    });
    if (sum.exhausted) headers["X-Budget-Exhausted"] = "true";
    return c.json(
      { ...shape.whole(choices), usage: usageOf(g.prompt.length, sum.completion, cached) },
      200,
      headers,
    );
  } finally {
    served.release();
  }
}

/** The answer as server-sent events, as OpenAI streams them, ending with `data: [DONE]`. */
export function respondStream(c: Context, services: Services, g: Generation, shape: AnswerShape): Response {
  const { served } = g;
  const sse = new SseBody({
    bufferChunks: STREAM_BUFFER_CHUNKS,
    stallMs: services.streamStallMs,
    onGone: () => served.abort.abort(),
  });
  const withUsage = (o: Record<string, unknown>) => (g.includeUsage ? { ...o, usage: null } : o);
  const send = (obj: unknown) => sse.event(JSON.stringify(obj));
  // Headers go out at once, before the turn: the plan's numbers there are an upper bound.
  let plan = served.plan();
  let inQueue = served.queued;
  const work = (async () => {
    try {
      const opening = shape.opening(0);
      if (opening) await send(withUsage(opening));
      else if (served.queued) await sse.comment("queued");
      if (served.queued) {
        // Heartbeats while queued: a client that left stops taking them, and its turn is given up.
        const beat = setInterval(() => sse.comment("queued").catch(() => {}), HEARTBEAT_MS);
        try {
          await served.turn();
          inQueue = false;
        } finally {
          clearInterval(beat);
        }
        plan = served.plan(); // time queued counts against the budget
      }
      let completion = 0;
      // The first choice's, as respondJson reports it: usage is the same for a streamed request.
      let cached: number | undefined;
      for (let i = 0; i < g.choices; i++) {
        if (i > 0) {
          const open = shape.opening(i);
          if (open) await send(withUsage(open));
        }
        // A client found gone aborts the signal, and generation ends at the next token ("abort").
        const r = await run(services, forChoice(g, i), plan, async (t, lp) => {
          if ((!t && !lp?.length) || sse.isGone) return;
          await send(withUsage(shape.piece(i, t, lp))).catch((e) => {
            if (!(e instanceof ClientGoneError)) throw e;
          });
        });
        observe(services, g, r);
        if (r.finishReason === "abort") return;
        completion += r.completionTokens;
        cached ??= r.cachedTokens;
        // Headers (Server-Timing among them) went out before the answer, and fetch has no trailers:
        // a stream reports speculation's accepted/drafted in each closing chunk's shardlm object.
        await send({
          ...withUsage(shape.closing(i, finishOf(r))),
          shardlm: {
            budget_exhausted: budgetExhausted(plan, r),
            timing_ms: { load: i === 0 ? served.loadMs : 0, prefill: r.prefillMs, decode: r.decodeMs },
            speculation: { drafted: r.drafted ?? 0, accepted: r.accepted ?? 0 },
          },
        });
      }
      if (g.includeUsage)
        await send({ ...shape.usageOnly(), usage: usageOf(g.prompt.length, completion, cached) });
      await sse.event("[DONE]");
    } catch (e) {
      const gone = served.abort.signal.aborted || sse.isGone || e instanceof ClientGoneError;
      served.abort.abort();
      if (gone && inQueue) services.stats.clientGone++; // left while queued
      if (!gone) {
        // Headers are sent: the error goes in the stream, as OpenAI's streams report them.
        console.error(e);
        await sse
          .event(JSON.stringify(errorBody(new ApiError(500, "generation failed", "server_error"))))
          .catch(() => {});
      }
    } finally {
      served.release();
      sse.close();
    }
  })();
  services.waitUntil(c, work);
  return new Response(sse.stream, {
    headers: {
      ...routingHeaders(served, plan),
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "Server-Timing": serverTiming({ loadMs: served.loadMs }),
    },
  });
}
