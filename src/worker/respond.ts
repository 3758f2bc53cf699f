/**
 * Responding: a generation's text as one JSON object or as SSE chunks, in a shape given by the
 * endpoint (chat.completion / text_completion). Both release the variant's queue when the
 * generation ends; streams run as waitUntil work, so a disconnect cannot freeze them halfway.
 */
import type { Context } from "hono";
import type { Manifest } from "../format/manifest.ts";
import { type CompletionOptions, type CompletionResult, complete } from "../runtime/chat.ts";
import { ApiError, errorBody } from "./errors.ts";
import type { Services } from "./services.ts";
import { ClientGoneError, SseBody } from "./sse.ts";
import type { Served } from "./variant-choice.ts";

/** Events a streamed answer may queue beyond what the runtime has taken (see ./sse.ts). */
const STREAM_BUFFER_CHUNKS = 16;

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** How an endpoint's answers look. `head` is the fields every object of the answer shares. */
export interface AnswerShape {
  /** The non-streamed answer's object, given its text (usage is added after). */
  whole(text: string, finish: FinishReason): Record<string, unknown>;
  /** First streamed chunk (e.g. the assistant role), or null. */
  opening(): Record<string, unknown> | null;
  /** A streamed chunk carrying `text`. */
  piece(text: string): Record<string, unknown>;
  /** The chunk that carries the finish reason. */
  closing(finish: FinishReason): Record<string, unknown>;
  /** The fields of a usage-only chunk besides `usage` (id, object, created, model, choices: []). */
  usageOnly(): Record<string, unknown>;
}

export interface Generation {
  served: Served;
  prompt: number[];
  options: Omit<CompletionOptions, "signal">;
  /** stream_options.include_usage: every chunk carries "usage" (null until the last). */
  includeUsage: boolean;
}

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

function usageOf(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function observe(services: Services, manifest: Manifest, promptTokens: number, r: CompletionResult): void {
  services.stats.generations++;
  services.stats.tokens += r.completionTokens;
  if (r.finishReason === "abort") services.stats.clientGone++;
  services.cost.observe(manifest, "prefill", r.prefillMs, promptTokens);
  if (r.completionTokens > 1) services.cost.observe(manifest, "decode", r.decodeMs, r.completionTokens - 1);
}

function routingHeaders(served: Served): Record<string, string> {
  return {
    "X-Variant": served.manifest.variant,
    "X-Predicted-Ms": String(Math.round(served.prediction.totalMs)),
  };
}

const run = (g: Generation, emit: (t: string) => void | Promise<void>) =>
  complete(
    g.served.variant,
    g.prompt,
    { ...g.options, signal: g.served.abort.signal },
    emit,
    g.served.prediction.decodeMsPerToken,
  );

/** The whole answer as JSON. */
export async function respondJson(
  c: Context,
  services: Services,
  g: Generation,
  shape: AnswerShape,
): Promise<Response> {
  const { served } = g;
  let text = "";
  try {
    const r = await run(g, (t) => {
      text += t;
    });
    observe(services, served.manifest, g.prompt.length, r);
    const headers = routingHeaders(served);
    headers["Server-Timing"] = serverTiming({
      loadMs: served.loadMs,
      prefillMs: r.prefillMs,
      decodeMs: r.decodeMs,
      spec: { drafted: r.drafted, accepted: r.accepted },
    });
    if (r.budgetExhausted) headers["X-Budget-Exhausted"] = "true";
    return c.json(
      { ...shape.whole(text, finishOf(r)), usage: usageOf(g.prompt.length, r.completionTokens) },
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
  const work = (async () => {
    try {
      const opening = shape.opening();
      if (opening) await send(withUsage(opening));
      // A client found gone aborts the signal, and generation ends at the next token ("abort").
      const r = await run(g, async (t) => {
        if (!t || sse.isGone) return;
        await send(withUsage(shape.piece(t))).catch((e) => {
          if (!(e instanceof ClientGoneError)) throw e;
        });
      });
      observe(services, served.manifest, g.prompt.length, r);
      if (r.finishReason === "abort") return;
      await send({
        ...withUsage(shape.closing(finishOf(r))),
        shardlm: {
          budget_exhausted: r.budgetExhausted,
          timing_ms: { load: served.loadMs, prefill: r.prefillMs, decode: r.decodeMs },
        },
      });
      if (g.includeUsage)
        await send({ ...shape.usageOnly(), usage: usageOf(g.prompt.length, r.completionTokens) });
      await sse.event("[DONE]");
    } catch (e) {
      served.abort.abort();
      if (!(e instanceof ClientGoneError) && !sse.isGone) {
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
      ...routingHeaders(served),
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "Server-Timing": serverTiming({ loadMs: served.loadMs }),
    },
  });
}
