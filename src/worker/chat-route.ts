/** POST /v1/chat/completions: validate, route to a variant, queue, generate, answer (JSON or SSE). */
import type { Context } from "hono";
import type { Manifest } from "../format/manifest.ts";
import { complete, promptTokens, renderPrompt } from "./chat.ts";
import { type LoadedVariant, VariantLoadError } from "./engines.ts";
import { ApiError, badRequest } from "./errors.ts";
import { OverloadedError } from "./queue.ts";
import { type Prediction, rankVariants, TIERS, type Tier } from "./router.ts";
import { ChatCompletionRequest, describeIssue } from "./schemas.ts";
import type { Services } from "./services.ts";
import { tokenizerFor } from "./tokenizers.ts";

const DEFAULT_MAX_TOKENS = 256;
const MAX_BUDGET_MS = 600_000;

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
  const body = await parseBody(c);
  const headerTier = parseTier(c.req.header("X-Quality-Tier"));
  const budgetMs = parseBudget(c.req.header("X-Latency-Budget-Ms"));
  const live = await services.live.get();
  if (live.variants.length === 0)
    throw new ApiError(503, "no variants are live", "server_error", "no_variants");

  // `model`: a tier name acts like the header (the header wins); a variant name pins it; anything
  // else that names the deployment (its source model, "shardlm", "auto") lets the router choose.
  const modelIsTier = (TIERS as readonly string[]).includes(body.model);
  const pinned = live.variants.some((v) => v.variant === body.model) && !modelIsTier ? body.model : null;
  const sourceNames = new Set(live.variants.map((v) => v.source.name));
  if (!modelIsTier && !pinned && !["shardlm", "auto"].includes(body.model) && !sourceNames.has(body.model)) {
    throw new ApiError(
      404,
      `The model '${body.model}' does not exist. See GET /v1/models.`,
      "not_found_error",
      "model_not_found",
      "model",
    );
  }
  const tier = headerTier ?? (modelIsTier ? (body.model as Tier) : null);

  // Every live variant of one deployment shares the tokenizer and template of its source model.
  const first = live.variants[0]!;
  const tokenizer = await tokenizerFor(services.bucket, first.model.tokenizer.sha256);
  const prompt = promptTokens(renderPrompt(first.model.chatTemplate, body.messages, tokenizer), tokenizer);
  const context = Math.min(
    ...live.variants.map((v) => Math.min(v.model.config.maxContext, services.engineContext)),
  );
  if (prompt.length >= context) {
    throw new ApiError(
      413,
      `This model's maximum context length is ${context} tokens; your messages use ${prompt.length}.`,
      "invalid_request_error",
      "context_length_exceeded",
      "messages",
    );
  }
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
  const { variant, manifest, prediction, loadMs } = await loadFirst(services, live.manifestIds, ranked);

  const abort = new AbortController();
  c.req.raw.signal?.addEventListener("abort", () => abort.abort(), { once: true });
  let release: () => void;
  try {
    release = await variant.queue.acquire(abort.signal);
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
    throw e;
  }

  const id = `chatcmpl-${crypto.randomUUID().replace(/-/g, "")}`;
  const created = Math.floor(started / 1000);
  const headers: Record<string, string> = {
    "X-Variant": manifest.variant,
    "X-Predicted-Ms": String(Math.round(prediction.totalMs)),
  };
  const opts = {
    maxTokens,
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
    deadline: budgetMs === null ? null : started + budgetMs,
  };
  const observe = (r: { prefillMs: number; decodeMs: number; completionTokens: number }) => {
    services.cost.observe(manifest, "prefill", r.prefillMs, prompt.length);
    if (r.completionTokens > 1) services.cost.observe(manifest, "decode", r.decodeMs, r.completionTokens - 1);
  };
  const usage = (n: number) => ({
    prompt_tokens: prompt.length,
    completion_tokens: n,
    total_tokens: prompt.length + n,
  });

  if (!body.stream) {
    let text = "";
    try {
      const r = await complete(
        variant,
        prompt,
        opts,
        (t) => {
          text += t;
        },
        prediction.decodeMsPerToken,
      );
      observe(r);
      headers["Server-Timing"] = serverTiming({ loadMs, prefillMs: r.prefillMs, decodeMs: r.decodeMs });
      if (r.budgetExhausted) headers["X-Budget-Exhausted"] = "true";
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

  // Streaming: SSE chunks as OpenAI sends them, then [DONE]. A client that goes away cancels the
  // body stream, which aborts generation and frees the engine for the next request.
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const send = (obj: unknown) => writer.write(encoder.encode(`data: ${JSON.stringify(obj)}\n\n`));
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
      const r = await complete(
        variant,
        prompt,
        opts,
        (t) => (t ? send(chunk({ content: t }, null)) : undefined),
        prediction.decodeMsPerToken,
      );
      observe(r);
      if (r.finishReason === "abort") return;
      await send(
        chunk({}, r.finishReason, {
          shardlm: {
            budget_exhausted: r.budgetExhausted,
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
      await writer.write(encoder.encode("data: [DONE]\n\n"));
      await writer.close();
    } catch {
      abort.abort(); // the client went away mid-write
    } finally {
      release();
      writer.close().catch(() => {});
    }
  })();
  const reader = readable.getReader();
  const body$ = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      const { done, value } = await reader.read();
      if (done) ctrl.close();
      else ctrl.enqueue(value);
    },
    cancel() {
      abort.abort();
      reader.cancel().catch(() => {});
    },
  });
  services.waitUntil(c, work);
  return new Response(body$, {
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
): Promise<{ variant: LoadedVariant; manifest: Manifest; prediction: Prediction; loadMs: number }> {
  const failures: string[] = [];
  for (const { manifest, prediction } of ranked) {
    const id = ids.get(manifest.variant)!;
    if (services.engines.bad.has(id)) {
      failures.push(services.engines.bad.get(id)!);
      continue;
    }
    const wasResident = services.engines.isResident(id);
    const t0 = Date.now();
    try {
      const variant = await services.engines.get(id, manifest);
      const loadMs = wasResident ? 0 : Date.now() - t0;
      if (!wasResident) services.cost.observe(manifest, "load", loadMs, manifest.weights.totalBytes / 1e6);
      return { variant, manifest, prediction, loadMs };
    } catch (e) {
      if (!(e instanceof VariantLoadError)) throw e;
      failures.push(e.message);
    }
  }
  throw new ApiError(
    503,
    `No variant could be loaded: ${failures.join("; ") || "none matches"}`,
    "server_error",
    "variant_unavailable",
  );
}
