/** POST /v1/chat/completions: validate, route to a variant, queue, generate, answer (JSON or SSE). */
import type { Context } from "hono";
import type { Manifest } from "../format/manifest.ts";
import { type CompletionResult, complete, promptTokens, renderPrompt } from "../runtime/chat.ts";
import type { Clock } from "../runtime/clock.ts";
import { observeGeneration, observeLoad } from "./calibrate.ts";
import { type LoadedVariant, VariantLoadError } from "./engines.ts";
import { ApiError, badRequest, errorBody } from "./errors.ts";
import { planRequest } from "./plan.ts";
import { OverloadedError } from "./queue.ts";
import { type Prediction, rankVariants, TIERS, type Tier } from "./router.ts";
import { ChatCompletionRequest, describeIssue } from "./schemas.ts";
import type { Services } from "./services.ts";
import { ClientGoneError, SseBody } from "./sse.ts";
import { tokenizerFor } from "./tokenizers.ts";

const DEFAULT_MAX_TOKENS = 256;
/** Characters of a long prompt tokenized first to see whether it can fit at all. */
const PROMPT_HEAD_CHARS_PER_TOKEN = 16;
const MAX_BUDGET_MS = 600_000;
/** Events a streamed answer may queue beyond what the runtime has taken (see ./sse.ts). */
const STREAM_BUFFER_CHUNKS = 16;
/**
 * Predicted work between the generation's yields to the event loop (where a disconnect is seen and
 * the stream flushes), ms: counted in tokens from the decode cost, since a frozen clock cannot say
 * when 10 ms have passed. A yield costs ~1 ms in workerd, so far fewer would slow a small model.
 */
const YIELD_WORK_MS = 10;
/** How often a queued stream sends an SSE comment to find out whether its client is still there. */
const HEARTBEAT_MS = 100;

function parseTier(raw: string | undefined): Tier | null {
  if (raw === undefined) return null;
  const t = raw.trim().toLowerCase();
  if (!(TIERS as readonly string[]).includes(t)) {
    throw badRequest(
      `X-Quality-Tier must be one of ${TIERS.join(", ")}; got "${raw}"`,
      "X-Quality-Tier",
      "invalid_header",
    );
  }
  return t as Tier;
}

function parseBudget(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > MAX_BUDGET_MS) {
    throw badRequest(
      `X-Latency-Budget-Ms must be an integer number of milliseconds in 1..${MAX_BUDGET_MS}; got "${raw}"`,
      "X-Latency-Budget-Ms",
      "invalid_header",
    );
  }
  return n;
}

async function parseBody(c: Context): Promise<ChatCompletionRequest> {
  let json: unknown;
  try {
    json = await c.req.json();
  } catch {
    throw badRequest(
      "We could not parse the JSON body of your request: it is not valid JSON.",
      null,
      "invalid_json",
    );
  }
  const parsed = ChatCompletionRequest.safeParse(json);
  if (!parsed.success) {
    const { message, param } = describeIssue(parsed.error.issues[0]!);
    throw badRequest(message, param);
  }
  const body = parsed.data;
  if (body.n !== undefined && body.n !== null && body.n !== 1)
    throw badRequest("n: only n = 1 is supported", "n");
  return body;
}

function serverTiming(t: { loadMs: number; prefillMs?: number; decodeMs?: number }): string {
  const parts = [`load;dur=${t.loadMs.toFixed(1)}`];
  if (t.prefillMs !== undefined) parts.push(`prefill;dur=${t.prefillMs.toFixed(1)}`);
  if (t.decodeMs !== undefined) parts.push(`decode;dur=${t.decodeMs.toFixed(1)}`);
  return parts.join(", ");
}

export async function chatCompletions(c: Context, services: Services): Promise<Response> {
  const started = Date.now();
  const clock = services.clock();
  const arrival = clock.now();
  const body = await parseBody(c);
  const headerTier = parseTier(c.req.header("X-Quality-Tier"));
  const budgetMs = parseBudget(c.req.header("X-Latency-Budget-Ms"));
  const live = await services.live.get();
  if (live.variants.length === 0)
    throw new ApiError(503, "no variants are live", "server_error", "no_variants");

  // `model` (see ./router.ts): with X-Quality-Tier it only has to name this deployment (the header
  // routes). Without it, a live variant's name pins that variant, also when the name is a tier's
  // too (deployments name variants after their tiers); a tier name that is no variant's acts like
  // the header; the source model's name, "shardlm" or "auto" let the router choose.
  const modelIsTier = (TIERS as readonly string[]).includes(body.model);
  const modelIsVariant = live.variants.some((v) => v.variant === body.model);
  const pinned = headerTier === null && modelIsVariant ? body.model : null;
  const sourceNames = new Set(live.variants.map((v) => v.source.name));
  if (
    !modelIsTier &&
    !modelIsVariant &&
    !["shardlm", "auto"].includes(body.model) &&
    !sourceNames.has(body.model)
  ) {
    throw new ApiError(
      404,
      `The model '${body.model}' does not exist. See GET /v1/models.`,
      "not_found_error",
      "model_not_found",
      "model",
    );
  }
  const tier = headerTier ?? (modelIsTier && !pinned ? (body.model as Tier) : null);

  // Every live variant of one deployment shares the tokenizer and template of its source model.
  const first = live.variants[0]!;
  const tokenizer = await tokenizerFor(services.bucket, first.model.tokenizer.sha256);
  const context = Math.min(
    ...live.variants.map((v) => Math.min(v.model.config.maxContext, services.engineContext)),
  );
  const tooLong = (used: string) =>
    new ApiError(
      413,
      `This model's maximum context length is ${context} tokens; your messages use ${used}.`,
      "invalid_request_error",
      "context_length_exceeded",
      "messages",
    );
  const text = renderPrompt(first.model.chatTemplate, body.messages, tokenizer);
  // A prompt far over the context is refused from its head, not tokenized whole (that costs CPU
  // in proportion to its size: ~1 s per MB).
  const headChars = context * PROMPT_HEAD_CHARS_PER_TOKEN;
  if (text.length > headChars) {
    const head = promptTokens(text.slice(0, headChars), tokenizer).length;
    if (head > context) throw tooLong(`at least ${head - 1}`);
  }
  const prompt = promptTokens(text, tokenizer);
  if (prompt.length >= context) throw tooLong(String(prompt.length));
  const requested = body.max_completion_tokens ?? body.max_tokens ?? null;
  const maxParam =
    body.max_completion_tokens !== undefined && body.max_completion_tokens !== null
      ? "max_completion_tokens"
      : "max_tokens";
  if (requested !== null && requested > context) {
    throw badRequest(
      `${maxParam} is ${requested}; this model's context holds ${context} tokens in all.`,
      maxParam,
    );
  }
  const maxTokens = Math.min(requested ?? DEFAULT_MAX_TOKENS, context - prompt.length);

  const ranked = rankVariants(
    live.variants,
    { tier, budgetMs, pinned, promptTokens: prompt.length, maxTokens },
    services.cost,
    (m) => services.engines.isResident(live.manifestIds.get(m.variant)!),
  );
  const { variant, manifest, prediction, loadMs } = await loadFirst(
    services,
    live.manifestIds,
    ranked,
    clock,
  );
  // The plan (./plan.ts): refused here if even its first token would pass the CPU limit.
  const planInput = {
    manifest,
    prediction,
    promptTokens: prompt.length,
    maxTokens,
    budgetMs,
    spentMs: 0,
    cpuLimitMs: services.cpuLimitMs,
  };
  planRequest(planInput);

  // The request's signal (compatibility flag enable_request_signal) fires for some client
  // disconnects, not all (see ./sse.ts): it stops a queued request and ends a running generation.
  const abort = new AbortController();
  const clientSignal = c.req.raw.signal;
  if (clientSignal?.aborted) abort.abort();
  else clientSignal?.addEventListener("abort", () => abort.abort(), { once: true });
  // A stream waits for its turn inside its body, where a client that leaves is noticed (./sse.ts);
  // only a full queue (refused at once, before any await) is answered here, as a 429.
  const turn = variant.queue.acquire(abort.signal);
  const noTurn = () => {};
  let release: () => void = noTurn;
  let queued = false;
  try {
    const now = await Promise.race([turn, Promise.resolve(null)]);
    if (now) release = now;
    else if (body.stream) queued = true;
    else release = await turn;
  } catch (e) {
    if (e instanceof OverloadedError) {
      throw new ApiError(
        429,
        "This variant is busy; retry shortly.",
        "rate_limit_error",
        "overloaded",
        null,
        { "Retry-After": "1" },
      );
    }
    // Gone while queued: nobody reads the answer (nginx's 499, "client closed request").
    if (abort.signal.aborted) return new Response(null, { status: 499 });
    throw e;
  }

  // Planned once it is this request's turn: time queued counts against the budget.
  // The load is done (and counted in the time spent), so the plan charges only what is left.
  const replan = () =>
    planRequest({
      ...planInput,
      prediction: { ...prediction, loadMs: 0 },
      spentMs: Math.max(0, clock.now() - arrival),
    });
  let plan = replan();
  const id = `chatcmpl-${crypto.randomUUID().replace(/-/g, "")}`;
  const created = Math.floor(started / 1000);
  const headers: Record<string, string> = {
    "X-Variant": manifest.variant,
    "X-Predicted-Ms": String(Math.round(prediction.totalMs)),
    "X-Planned-Tokens": String(plan.maxDecodeTokens),
  };
  if (plan.limitedBy === "cpu") headers["X-Max-Tokens-Capped"] = "cpu";
  const budgetExhausted = (r: CompletionResult) =>
    plan.limitedBy === "budget" && r.finishReason === "length" && r.completionTokens >= plan.maxDecodeTokens;
  const opts = () => ({
    maxTokens: plan.maxDecodeTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    seed: body.seed === null || body.seed === undefined ? undefined : body.seed >>> 0,
    stop:
      body.stop === undefined || body.stop === null
        ? []
        : typeof body.stop === "string"
          ? [body.stop]
          : body.stop,
    signal: abort.signal,
    clock,
    yieldEveryTokens: Math.max(1, Math.ceil(YIELD_WORK_MS / prediction.decodeMsPerToken)),
  });
  const observe = (r: CompletionResult) => {
    services.stats.generations++;
    services.stats.tokens += r.completionTokens;
    if (r.finishReason === "abort") services.stats.clientGone++;
    observeGeneration(services, clock, manifest, prediction, prompt.length, r);
  };
  // Runs the planned generation, counted in GET /healthz while it runs.
  const generateCounted = async (emit: (text: string) => void | Promise<void>): Promise<CompletionResult> => {
    services.stats.running++;
    try {
      return await complete(variant, prompt, opts(), emit);
    } finally {
      services.stats.running--;
    }
  };
  const usage = (n: number) => ({
    prompt_tokens: prompt.length,
    completion_tokens: n,
    total_tokens: prompt.length + n,
  });

  if (!body.stream) {
    let text = "";
    try {
      const r = await generateCounted((t) => {
        text += t;
      });
      observe(r);
      headers["Server-Timing"] = serverTiming({ loadMs, prefillMs: r.prefillMs, decodeMs: r.decodeMs });
      if (budgetExhausted(r)) headers["X-Budget-Exhausted"] = "true";
      return c.json(
        {
          id,
          object: "chat.completion",
          created,
          model: manifest.variant,
          system_fingerprint: `shardlm-${live.manifestIds.get(manifest.variant)!.slice(0, 12)}`,
          choices: [
            {
              index: 0,
              message: { role: "assistant", content: text },
              logprobs: null,
              finish_reason: r.finishReason === "abort" ? "stop" : r.finishReason,
            },
          ],
          usage: usage(r.completionTokens),
        },
        200,
        headers,
      );
    } finally {
      release();
    }
  }

  // Streaming: SSE chunks as OpenAI sends them, then [DONE]. The generation runs as waitUntil work
  // (so a disconnect cannot freeze it halfway) and always releases the engine's queue when it ends:
  // normally, on an error, or when the client goes away (see ./sse.ts for how that is noticed).
  const sse = new SseBody({
    bufferChunks: STREAM_BUFFER_CHUNKS,
    stallMs: services.streamStallMs,
    onGone: () => abort.abort(),
  });
  const send = (obj: unknown) => sse.event(JSON.stringify(obj));
  const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model: manifest.variant,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...extra,
  });
  const work = (async () => {
    try {
      await send(chunk({ role: "assistant", content: "" }, null));
      if (queued) {
        // Heartbeats while queued: a client that left stops taking them, and its turn is given up.
        const beat = setInterval(() => sse.comment("queued").catch(() => {}), HEARTBEAT_MS);
        try {
          release = await turn;
        } finally {
          clearInterval(beat);
        }
        plan = replan(); // time queued counts against the budget
      }
      // A client found gone aborts the signal, and generation ends at the next token ("abort").
      const r = await generateCounted(async (t) => {
        if (!t || sse.isGone) return;
        await send(chunk({ content: t }, null)).catch((e) => {
          if (!(e instanceof ClientGoneError)) throw e;
        });
      });
      observe(r);
      if (r.finishReason === "abort") return;
      await send(
        chunk({}, r.finishReason, {
          shardlm: {
            budget_exhausted: budgetExhausted(r),
            timing_ms: { load: loadMs, prefill: r.prefillMs, decode: r.decodeMs },
          },
        }),
      );
      if (body.stream_options?.include_usage) {
        await send({
          id,
          object: "chat.completion.chunk",
          created,
          model: manifest.variant,
          choices: [],
          usage: usage(r.completionTokens),
        });
      }
      await sse.event("[DONE]");
    } catch (e) {
      const gone = abort.signal.aborted || sse.isGone || e instanceof ClientGoneError;
      abort.abort();
      if (gone && queued && release === noTurn) services.stats.clientGone++; // left while queued
      if (!gone) {
        // Headers are sent: the error goes in the stream, as OpenAI's streams report them.
        console.error(e);
        await sse
          .event(JSON.stringify(errorBody(new ApiError(500, "generation failed", "server_error"))))
          .catch(() => {});
      }
    } finally {
      release();
      sse.close();
    }
  })();
  services.waitUntil(c, work);
  return new Response(sse.stream, {
    headers: {
      ...headers,
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      "Server-Timing": serverTiming({ loadMs }),
    },
  });
}

async function loadFirst(
  services: Services,
  ids: Map<string, string>,
  ranked: { manifest: Manifest; prediction: Prediction }[],
  clock: Clock,
): Promise<{ variant: LoadedVariant; manifest: Manifest; prediction: Prediction; loadMs: number }> {
  const failures: string[] = [];
  for (const { manifest, prediction } of ranked) {
    const id = ids.get(manifest.variant)!;
    const bad = services.engines.badReason(id);
    if (bad) {
      failures.push(bad);
      continue;
    }
    const wasResident = services.engines.isResident(id);
    const t0 = clock.now();
    try {
      const variant = await services.engines.get(id, manifest);
      const loadMs = wasResident ? 0 : clock.now() - t0;
      if (!wasResident) observeLoad(services, manifest, loadMs);
      return { variant, manifest, prediction, loadMs };
    } catch (e) {
      if (!(e instanceof VariantLoadError)) throw e;
      failures.push(e.message);
    }
  }
  throw new ApiError(
    503,
    ranked.length === 1
      ? `The model '${ranked[0]!.manifest.variant}' is unavailable: ${failures.join("; ")}`
      : `No variant could be loaded: ${failures.join("; ") || "none matches"}`,
    "server_error",
    "variant_unavailable",
    ranked.length === 1 ? "model" : null,
  );
}
