/**
 * Small helpers for the API tests: raw HTTP calls that cannot hang a test, OpenAI error-shape checks,
 * the router's live costs (GET /v1/models) turned into predictions, and prompt token counts computed
 * the way the worker computes them.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { expect } from "vitest";
import { readManifest } from "../../src/compress/variant-store.ts";
import { type Manifest, R2Keys } from "../../src/format/manifest.ts";
import type { TokenizerSpec } from "../../src/format/model.ts";
import { promptTokens, renderPrompt } from "../../src/runtime/chat.ts";
import { createTokenizer, type Tokenizer } from "../../src/runtime/tokenizer/index.ts";
import type { ChatMessage } from "../../src/worker/schemas.ts";
import type { ApiServer } from "./api-server.ts";

export const story: ChatMessage[] = [{ role: "user", content: "Once upon a time" }];

/** Every raw call gives up after this long: a hang fails the test instead of stalling the run. */
const CALL_TIMEOUT_MS = 30_000;

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
  ms: number;
}

export async function call(
  api: ApiServer,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const t0 = performance.now();
  const res = await fetch(new URL(path, api.url), {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { "content-type": "application/json", ...init.headers },
    body:
      init.body === undefined
        ? undefined
        : typeof init.body === "string"
          ? init.body
          : JSON.stringify(init.body),
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json, ms: performance.now() - t0 };
}

/** POST /v1/chat/completions with a raw body (an object is sent as JSON, a string as is). */
export const chat = (api: ApiServer, body: unknown, headers: Record<string, string> = {}) =>
  call(api, "/v1/chat/completions", { method: "POST", body, headers });

export interface ExpectedError {
  type?: string;
  code?: string | null;
  param?: string | null;
  message?: RegExp;
}

/** The response is OpenAI's error JSON, exactly `{"error": {message, type, param, code}}`. */
export function expectApiError(r: RawResponse, status: number, expected: ExpectedError = {}): void {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  const body = r.json as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof body.error.message).toBe("string");
  expect((body.error.message as string).length).toBeGreaterThan(0);
  if (expected.type !== undefined) expect(body.error.type).toBe(expected.type);
  if (expected.code !== undefined) expect(body.error.code).toBe(expected.code);
  if (expected.param !== undefined) expect(body.error.param).toBe(expected.param);
  if (expected.message) expect(body.error.message).toMatch(expected.message);
}

/** The error the openai client throws for a call (fails the test if it does not throw one). */
export async function clientError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(OpenAI.APIError);
    return e as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error("expected the call to fail");
}

export interface Health {
  ok: boolean;
  engine_bytes: number;
  /** Of engine_bytes: the prefix caches' KV rows now, and the most they may hold. */
  prefix_cache_bytes: number;
  prefix_cache_max_bytes: number;
  resident_variants: number;
  generations: number;
  tokens_generated: number;
  client_gone: number;
  generations_running: number;
}

export async function healthz(api: ApiServer): Promise<Health> {
  const r = await call(api, "/healthz");
  expect(r.status).toBe(200);
  return r.json as Health;
}

export interface ModelEntry {
  id: string;
  tier: string;
  alias_of?: string;
  resident: boolean;
  available: boolean;
  unavailable_reason?: string;
  cost: {
    load_ms: number;
    prefill_ms_per_token: number;
    prefill_position_tokens: number | null;
    decode_ms_per_token: number;
    decode_position_tokens: number | null;
  };
}

/** The live variants (not the tier aliases), best quality first, as GET /v1/models lists them. */
export async function liveVariants(api: ApiServer): Promise<ModelEntry[]> {
  const r = await call(api, "/v1/models");
  expect(r.status).toBe(200);
  return (r.json as { data: ModelEntry[] }).data.filter((m) => m.alias_of === undefined);
}

/**
 * What the router predicts now for each variant, from the costs GET /v1/models reports, computed
 * as the router computes it (src/worker/router.ts), so the values match X-Predicted-Ms.
 */
export async function predictions(
  api: ApiServer,
  promptTokenCount: number,
  maxTokens: number,
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of await liveVariants(api)) {
    // A prompt token at position p costs prefill_ms_per_token x (1 + p / prefill_position_tokens).
    const l = m.cost.prefill_position_tokens;
    const n = promptTokenCount;
    const prefillMs = (l === null ? n : n + (n * (n - 1)) / (2 * l)) * m.cost.prefill_ms_per_token;
    out.set(m.id, m.cost.load_ms + prefillMs + decodeMsAfter(m.cost, promptTokenCount, maxTokens));
  }
  return out;
}

/**
 * `steps` decode steps after a `promptTokens`-token prompt by the published cost: a step at
 * position p costs decode_ms_per_token x (1 + p / decode_position_tokens), positions P..P+steps-1.
 */
export function decodeMsAfter(cost: ModelEntry["cost"], promptTokens: number, steps: number): number {
  const d = cost.decode_position_tokens;
  const work = d === null ? steps : steps + (steps * (2 * promptTokens + steps - 1)) / (2 * d);
  return work * cost.decode_ms_per_token;
}

/** The published manifests, by variant name. */
export function manifests(api: ApiServer): Map<string, Manifest> {
  return new Map(Object.entries(api.index.variants).map(([name, id]) => [name, readManifest(api.dir, id)]));
}

const tokenizers = new Map<string, Tokenizer>();

/** The deployment's tokenizer, read from the published blob. */
export function deployedTokenizer(api: ApiServer): Tokenizer {
  const m = [...manifests(api).values()][0]!;
  let tok = tokenizers.get(m.model.tokenizer.sha256);
  if (!tok) {
    const spec = JSON.parse(readFileSync(join(api.dir, R2Keys.blob(m.model.tokenizer.sha256)), "utf8"));
    tok = createTokenizer(spec as TokenizerSpec);
    tokenizers.set(m.model.tokenizer.sha256, tok);
  }
  return tok;
}

/** Prompt tokens for `messages`, computed the way the worker computes them (src/runtime/chat.ts). */
export function countPromptTokens(api: ApiServer, messages: ChatMessage[]): number {
  const m = [...manifests(api).values()][0]!;
  const tok = deployedTokenizer(api);
  return promptTokens(renderPrompt(m.model.chatTemplate, messages, tok), tok).length;
}

/**
 * Reads an SSE chat stream until its first token's content has arrived (failing if the stream ends
 * before), and leaves the rest unread: `text` is what came so far, `finish()` reads to the end and
 * returns the whole body.
 */
export async function readToFirstToken(res: Response): Promise<{ text: string; finish(): Promise<string> }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!/"content":"[^"]/.test(text)) {
    const { done, value } = await reader.read();
    expect(done).toBe(false);
    text += decoder.decode(value, { stream: true });
  }
  return {
    text,
    async finish() {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return text + decoder.decode();
        text += decoder.decode(value, { stream: true });
      }
    },
  };
}
