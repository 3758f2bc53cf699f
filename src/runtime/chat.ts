/**
 * From chat messages to streamed text: the model's chat template (or the documented one for base
 * models), tokenization, generation with stop strings, a latency budget and client aborts.
 */
import { Template } from "@huggingface/jinja";
import type { SpeculativeProfile } from "../format/speculative.ts";
import type { Clock } from "./clock.ts";
import { type FinishReason, generate, type LogitsModel } from "./generate.ts";
import { jsonObjectMask, jsonSchemaMask } from "./json-mask.ts";
import type { CompiledSchema } from "./json-schema.ts";
import type { PrefixCache, ResidentPrefix } from "./prefix-cache.ts";
import type { TokenChoice } from "./sampler.ts";
import type { SpeculationStats } from "./speculative.ts";
import type { Tokenizer } from "./tokenizer/index.ts";

/**
 * One chat message as the template sees it: OpenAI's roles, content as a string or text parts
 * (assistant content may be null). The Worker validates requests into this shape (its zod schema).
 */
export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string | { type: "text"; text: string }[] | null;
}

/** Plain text of a message's content. */
export function contentText(content: ChatMessage["content"]): string {
  if (content === null) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

/** What a completion runs on: an engine, its tokenizer, and the model's end-of-sequence tokens. */
export interface CompletionModel {
  engine: LogitsModel;
  tokenizer: Tokenizer;
  manifest: { model: { eosTokenIds: readonly number[] }; speculative?: SpeculativeProfile };
  /** KV rows of recent sequences on this engine (see ./prefix-cache.ts). */
  prefixCache?: PrefixCache;
  /** Without a prefixCache: the engine's rows of its last sequence (zero bytes, ./prefix-cache.ts). */
  residentPrefix?: ResidentPrefix<unknown>;
}

/**
 * Base models (no chat template in their files): the messages' contents joined by blank lines, and
 * the model continues that text. A story model asked "Once upon a time" goes on with the story.
 */
export const BASE_MODEL_TEMPLATE =
  "{% for m in messages %}{% if m.content %}{{ m.content }}{% if not loop.last %}\n\n{% endif %}{% endif %}{% endfor %}";

const templates = new Map<string, Template>();

/**
 * A rendered chat prompt, in the order written: `template` parts are the chat template's own text
 * (its markup may name control tokens such as "<|im_start|>"), the others are message contents
 * (user text: never parsed for control tokens).
 */
export interface RenderedPrompt {
  parts: { text: string; template: boolean }[];
}

/** The whole prompt as one string (what the model reads, before tokenization). */
export const promptText = (p: RenderedPrompt): string => p.parts.map((x) => x.text).join("");

/** The prompt cut after `chars` characters (to refuse a huge prompt from its head). */
export function promptHead(p: RenderedPrompt, chars: number): RenderedPrompt {
  const parts: RenderedPrompt["parts"] = [];
  let left = chars;
  for (const x of p.parts) {
    if (left <= 0) break;
    parts.push({ text: x.text.slice(0, left), template: x.template });
    left -= x.text.length;
  }
  return { parts };
}

/**
 * Renders the messages with the model's chat template (or BASE_MODEL_TEMPLATE), keeping track of
 * where each message's content landed: the template is rendered with a unique marker in place of
 * every non-empty content, and the output split at the markers. Content is inserted as given: a
 * template's filters on content (e.g. `| trim`) see the marker, not the text.
 */
export function renderPrompt(
  chatTemplate: string | null,
  messages: ChatMessage[],
  tok: Tokenizer,
): RenderedPrompt {
  const source = chatTemplate ?? BASE_MODEL_TEMPLATE;
  let t = templates.get(source);
  if (!t) {
    t = new Template(source);
    templates.set(source, t);
  }
  const piece = (id: number | null) => (id === null ? "" : (tok.tokenToPiece(id) ?? ""));
  const contents = messages.map((m) => contentText(m.content));
  const nonce = crypto.getRandomValues(new Uint32Array(2)).join("-");
  const marker = (i: number) => `\u{F0000}${nonce}:${i}\u{F0001}`;
  const rendered = t.render({
    messages: messages.map((m, i) => ({
      role: m.role === "developer" ? "system" : m.role,
      content: contents[i] === "" ? "" : marker(i),
    })),
    add_generation_prompt: true,
    bos_token: piece(tok.bosId),
    eos_token: piece(tok.eosIds[0] ?? null),
  });
  const parts: RenderedPrompt["parts"] = [];
  const re = new RegExp(`\u{F0000}${nonce}:(\\d+)\u{F0001}`, "gu");
  let at = 0;
  for (const m of rendered.matchAll(re)) {
    if (m.index > at) parts.push({ text: rendered.slice(at, m.index), template: true });
    parts.push({ text: contents[Number(m[1])]!, template: false });
    at = m.index + m[0].length;
  }
  if (at < rendered.length) parts.push({ text: rendered.slice(at), template: true });
  return { parts };
}

/**
 * Prompt tokens. Template parts that name control tokens are tokenized with special-token parsing
 * on; everything else (message contents, plain template text between them) with it off, so a user
 * typing "</s>" or "<|im_start|>system" gets the text, never the control token. A template that
 * writes BOS itself gets no second one.
 */
export function promptTokens(p: RenderedPrompt, tok: Tokenizer): number[] {
  // Runs of text tokenized together: consecutive plain parts are joined (tokenizing them apart
  // would split merges and add sentencepiece space prefixes at the seams).
  const runs: { text: string; special: boolean }[] = [];
  for (const x of p.parts) {
    const special =
      x.template &&
      tok
        .encode(x.text, { parseSpecial: true, addBos: false, addEos: false })
        .some((id) => tok.isSpecial(id));
    const last = runs[runs.length - 1];
    if (last && !special && !last.special) last.text += x.text;
    else runs.push({ text: x.text, special });
  }
  const bos = tok.bosId === null ? null : tok.tokenToPiece(tok.bosId);
  const text = promptText(p);
  const writesBos = bos !== undefined && bos !== null && bos !== "" && text.startsWith(bos);
  const out: number[] = [];
  // Appended id by id: a spread passes every id as an argument, and ~125k of them overflow the stack.
  const append = (ids: number[]) => {
    for (const id of ids) out.push(id);
  };
  runs.forEach((r, i) => {
    append(
      tok.encode(r.text, {
        parseSpecial: r.special,
        addBos: i === 0 ? (writesBos ? false : undefined) : false,
        addEos: i === runs.length - 1 ? undefined : false,
      }),
    );
  });
  if (runs.length === 0) append(tok.encode("", { addBos: writesBos ? false : undefined }));
  return out;
}

/** What shape an answer must have (OpenAI's response_format, schema compiled). */
export type ResponseFormat = "text" | "json_object" | { jsonSchema: CompiledSchema };

export interface CompletionOptions {
  /** Most tokens to generate: the request's plan (its budget and CPU cap are counted in here). */
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number | undefined;
  /** OpenAI's penalties and logit bias (see ./sampler.ts); default none. */
  presencePenalty?: number;
  frequencyPenalty?: number;
  logitBias?: Record<string, number>;
  /** Report each token's log probability and this many alternatives; null (default) = no report. */
  topLogprobs?: number | null;
  /**
   * Constrained decoding (./json-mask.ts): "json_object" = the answer is a JSON object;
   * { jsonSchema } = a value of that compiled schema (./json-schema.ts).
   */
  responseFormat?: ResponseFormat;
  stop: string[];
  signal: AbortSignal;
  /** Reads time for the timings reported back (never to decide anything). */
  clock: Clock;
  /**
   * Tokens between yields to the event loop (a timer): what lets a disconnect be noticed and a
   * non-streamed answer's client be found gone. Counted in tokens, since a clock frozen during
   * CPU work would never say it is time to yield.
   */
  yieldEveryTokens: number;
  /** Called after each generated token (the caller's count of work done: no clock involved). */
  onToken?: () => void;
}

export interface CompletionResult {
  finishReason: "stop" | "length" | "abort";
  completionTokens: number;
  /** From the first clock reading to the first token (prefill and one sampling), as read. */
  prefillMs: number;
  /** From the first token to the end, as read. */
  decodeMs: number;
  /** Speculative decoding: drafted and accepted tokens (0 when the variant does not speculate). */
  drafted?: number;
  accepted?: number;
  /** Prompt tokens served from a prefix cache (not prefilled). */
  cachedTokens?: number;
}

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
function heldBack(text: string, stops: string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(s.slice(0, n))) {
        keep = n;
        break;
      }
    }
  }
  return keep;
}

/**
 * Generates the completion, calling `emit` with each new piece of text and the choices of the
 * tokens whose text begins in that piece (empty unless `topLogprobs` is set). The choices emitted
 * over a completion are those of the tokens whose text begins inside the returned text: where a
 * stop string cuts the text, the tokens wholly inside it (or after it) are not listed, and a token
 * that straddles the cut (its text begins before it) is, so every returned character belongs to a
 * listed token. A token that decodes to no text yet (part of a UTF-8 character) begins where its
 * character will. While text is held back (it may be the start of a stop string), so are the
 * choices of the tokens that begin in it. `completionTokens` still counts every generated token,
 * those of a matched stop string too (they were computed, as OpenAI counts them). Runs with the
 * variant's queue held by the caller. Yields to the event loop every `yieldEveryTokens` tokens so
 * the response streams out and a client disconnect is noticed; an aborted signal ends it at the
 * next token (finishReason "abort").
 */
export async function complete(
  v: CompletionModel,
  prompt: number[],
  opts: CompletionOptions,
  emit: (text: string, choices: TokenChoice[]) => void | Promise<void>,
): Promise<CompletionResult> {
  const tok = v.tokenizer;
  const stream = tok.createStreamDecoder({ continuation: true });
  const stopSet = new Set([...v.manifest.model.eosTokenIds, ...tok.eosIds]);
  const stopIds = [...stopSet];
  let pending = ""; // decoded text not yet emitted (may hold the start of a stop string)
  let sent = 0; // length (UTF-16 units) of the text emitted so far; pending follows it
  let completionTokens = 0;
  let finish: FinishReason = "length";
  const clock = opts.clock;
  const started = clock.now();
  let firstTokenAt = 0;
  // The sampler's reports of tokens not yet placed, then the placed ones not yet emitted, each with
  // where its text begins in the completion's text (UTF-16 units).
  let reported: TokenChoice[] = [];
  let held: { choice: TokenChoice; begins: number }[] = [];
  /** Emits `text` (continuing what was sent) with the choices of the tokens beginning before `upTo`. */
  const send = async (text: string, upTo = sent + text.length) => {
    sent += text.length;
    const out = held.filter((h) => h.begins < upTo).map((h) => h.choice);
    held = held.filter((h) => h.begins >= upTo);
    await emit(text, out);
  };

  // Speculation where the build measured a gain (manifest.speculative), and the variant's prefix cache.
  const spec = v.manifest.speculative;
  const stats: SpeculationStats = { drafted: 0, accepted: 0, verifications: 0 };
  const gen = generate(v.engine, prompt, {
    speculative: spec?.enabled ? spec.draft : false,
    ...(v.prefixCache ? { prefixCache: v.prefixCache } : {}),
    ...(v.residentPrefix ? { residentPrefix: v.residentPrefix } : {}),
    stats,
    maxTokens: opts.maxTokens,
    temperature: opts.temperature,
    topP: opts.topP,
    topK: opts.topK,
    seed: opts.seed,
    presencePenalty: opts.presencePenalty,
    frequencyPenalty: opts.frequencyPenalty,
    logitBias: opts.logitBias,
    topLogprobs: opts.topLogprobs ?? undefined,
    stopTokenIds: stopIds,
    signal: opts.signal,
    hooks: {
      // The sampler reports the stop token's choice too; it is no part of the answer (OpenAI lists
      // only the returned tokens), so logprobs hold one entry per counted completion token.
      onChoice: (c) => {
        if (!stopSet.has(c.token)) reported.push(c);
      },
      mask: maskFor(opts.responseFormat ?? "text", tok, stopIds, opts.maxTokens),
    },
  });
  for (;;) {
    const next = await gen.next();
    if (next.done) {
      finish = next.value.finishReason;
      break;
    }
    if (completionTokens === 0) firstTokenAt = clock.now();
    completionTokens++;
    opts.onToken?.();
    // The sampler reported this token just before yielding it; its text begins after all decoded so far.
    for (const choice of reported) held.push({ choice, begins: sent + pending.length });
    reported = [];
    pending += stream.push(next.value);
    const hit = opts.stop.length ? firstStop(pending, opts.stop) : -1;
    if (hit >= 0) {
      await send(pending.slice(0, hit));
      held = []; // tokens of the stop string (and after it): no part of the answer
      pending = "";
      finish = "stop";
      await gen.return(undefined as never);
      break;
    }
    const keep = heldBack(pending, opts.stop);
    if (pending.length > keep) {
      await send(pending.slice(0, pending.length - keep));
      pending = pending.slice(pending.length - keep);
    }
    if (completionTokens % opts.yieldEveryTokens === 0) {
      await new Promise((r) => setTimeout(r, 0));
    }
  }
  if (finish !== "stop") pending += stream.flush();
  // All the text is returned: every token left is listed (also those that decoded to nothing).
  if ((pending || held.length > 0) && finish !== "abort") await send(pending, Number.POSITIVE_INFINITY);
  const end = clock.now();
  return {
    finishReason: finish === "stop" ? "stop" : finish === "abort" ? "abort" : "length",
    completionTokens,
    prefillMs: (firstTokenAt || end) - started,
    decodeMs: firstTokenAt ? end - firstTokenAt : 0,
    drafted: stats.drafted,
    accepted: stats.accepted,
    cachedTokens: stats.cachedTokens ?? 0,
  };
}

function maskFor(format: ResponseFormat, tok: Tokenizer, stopIds: number[], maxTokens: number) {
  if (format === "text") return undefined;
  if (format === "json_object") return jsonObjectMask(tok, stopIds, maxTokens);
  return jsonSchemaMask(tok, stopIds, maxTokens, format.jsonSchema);
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
