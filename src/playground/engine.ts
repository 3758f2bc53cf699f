/**
 * The playground's in-browser engine (bundled by scripts/build-playground.ts, served by the Worker at
 * /playground/engine.js): reads the live deployment over the content routes (/v1/live, the manifest,
 * the tokenizer blob, the shards, each checked against its SHA-256), builds the engine with
 * createEngine (WebGPU where navigator.gpu gives an adapter, else WASM) and generates in the page
 * with the Worker's own prompt rendering and completion loop, so greedy answers match the server's.
 *
 * The WASM kernels are inlined into this bundle (esbuild's binary loader): the Worker holds them only
 * as a compiled WebAssembly.Module, which it cannot serve as bytes. The relaxed-SIMD build (what
 * workerd runs) is used where the browser validates it and passes its exactness check, else the plain
 * SIMD build.
 */
import kernelsRelaxed from "shardlm:kernels/relaxed";
import kernelsSimd from "shardlm:kernels/simd";
import { byQuality, LivePointer, Manifest, type ShardRef } from "../format/manifest.ts";
import type { TokenizerSpec } from "../format/model.ts";
import {
  type BackendChoice,
  type CreatedEngine,
  createEngine,
  firstUsableKernels,
} from "../runtime/backend.ts";
import { type ChatMessage, complete, promptTokens, renderPrompt } from "../runtime/chat.ts";
import { systemClock } from "../runtime/clock.ts";
import { decodeStepsWithin, prefillWorkTokens } from "../runtime/cost-model.ts";
import { engineContextFor } from "../runtime/memory-plan.ts";
import { createTokenizer, type Tokenizer } from "../runtime/tokenizer/index.ts";
import { ContextOverflowError } from "./history-window.ts";

export interface BrowserRunOptions {
  /** "auto" (the best-quality live variant), or a tier. */
  tier: "auto" | "quality" | "balanced" | "speed";
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  budgetMs?: number | null;
  backend?: BackendChoice;
  /** Where the API is (default: this page's origin). */
  base?: string;
  /** Sent as `Authorization: Bearer <key>` on every fetch (a Worker with SHARDLM_API_KEYS wants it). */
  apiKey?: string | null;
  /** Stops generation at the next token (finishReason "abort"); loading runs to its end and is kept. */
  signal?: AbortSignal;
  onText(text: string): void;
  onStatus?(status: string): void;
}

export interface BrowserRunResult {
  variant: string;
  manifestId: string;
  backend: "webgpu" | "wasm";
  reason: string;
  text: string;
  tokens: number;
  finishReason: string;
  loadMs: number;
  prefillMs: number;
  decodeMs: number;
}

interface Loaded {
  created: CreatedEngine;
  tokenizer: Tokenizer;
  manifest: Manifest;
  loadMs: number;
}

const engines = new Map<string, Promise<Loaded>>();

/** A content route answered with a non-2xx status (401: the API wants a key). */
export class FetchError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "FetchError";
  }
}

let authHeaders: Record<string, string> = {};

function toHex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchVerified(url: URL, sha256: string): Promise<Uint8Array> {
  const res = await fetch(url, { headers: authHeaders });
  if (!res.ok) throw new FetchError(res.status, `GET ${url.pathname}: ${res.status}`);
  const bytes = await res.arrayBuffer();
  const actual = toHex(await crypto.subtle.digest("SHA-256", bytes));
  if (actual !== sha256) throw new Error(`${url.pathname} is corrupt (sha256 ${actual})`);
  return new Uint8Array(bytes);
}

/** The data region: the shards in order, each fetched whole (the HTTP cache keeps them) and verified. */
function shardStream(base: string, shards: ShardRef[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const s = shards[i++];
      if (!s) {
        controller.close();
        return;
      }
      const bytes = await fetchVerified(new URL(`/v1/shards/${s.sha256}`, base), s.sha256);
      if (bytes.byteLength !== s.bytes) throw new Error(`shard ${s.sha256} has ${bytes.byteLength} bytes`);
      controller.enqueue(bytes);
    },
  });
}

export async function liveVariants(base: string): Promise<{ manifest: Manifest; id: string }[]> {
  const res = await fetch(new URL("/v1/live", base), { cache: "no-cache", headers: authHeaders });
  if (!res.ok) throw new FetchError(res.status, `GET /v1/live: ${res.status}`);
  const live = LivePointer.parse(await res.json());
  const all = await Promise.all(
    Object.values(live.variants).map(async (id) => {
      const bytes = await fetchVerified(new URL(`/v1/manifests/${id}`, base), id);
      return { id, manifest: Manifest.parse(JSON.parse(new TextDecoder().decode(bytes))) };
    }),
  );
  return all.sort((a, b) => byQuality(a.manifest, b.manifest));
}

/** Which kernel build the WASM engine runs here (shown with the engine's reason). */
let kernelsBuild = "";

/** The relaxed-SIMD build where this browser compiles it and computes its dot-add exactly, else SIMD128. */
async function kernelsForThisBrowser(): ReturnType<typeof firstUsableKernels> {
  const k = await firstUsableKernels([kernelsRelaxed as BufferSource, kernelsSimd as BufferSource]);
  kernelsBuild = k.relaxedDotAdd ? "relaxed SIMD (i32 dot-add)" : "SIMD128";
  return k;
}

async function load(
  base: string,
  manifest: Manifest,
  backend: BackendChoice,
  status: (s: string) => void,
): Promise<Loaded> {
  const t0 = performance.now();
  status(`fetching the tokenizer of ${manifest.variant}`);
  const t = manifest.model.tokenizer;
  const spec = JSON.parse(
    new TextDecoder().decode(await fetchVerified(new URL(`/v1/blobs/${t.sha256}`, base), t.sha256)),
  ) as TokenizerSpec;
  const tokenizer = createTokenizer(spec);
  status(`loading ${manifest.shards.length} shards of ${manifest.variant}`);
  // The Worker's engine settings, so both run the same arithmetic on the WASM backend.
  const contextSize = engineContextFor(manifest.model.config);
  const created = await createEngine({
    table: manifest.weights,
    weights: shardStream(base, manifest.shards),
    backend,
    wasmModule: kernelsForThisBrowser,
    wasm: { kvCache: "f16", contextSize },
    webgpu: { kvCache: "f16", contextSize },
  });
  return { created, tokenizer, manifest, loadMs: Math.round(performance.now() - t0) };
}

export async function runInBrowser(opts: BrowserRunOptions): Promise<BrowserRunResult> {
  const base = opts.base ?? location.origin;
  const status = opts.onStatus ?? (() => {});
  const backend = opts.backend ?? "auto";
  authHeaders = opts.apiKey ? { Authorization: `Bearer ${opts.apiKey}` } : {};
  status("reading the live deployment");
  const variants = await liveVariants(base);
  const chosen = opts.tier === "auto" ? variants[0] : variants.find((v) => v.manifest.tier === opts.tier);
  if (!chosen) throw new Error(`no live variant for tier ${opts.tier}`);
  const key = `${chosen.id}:${backend}`;
  let p = engines.get(key);
  const cached = !!p;
  if (!p) {
    p = load(base, chosen.manifest, backend, status);
    p.catch(() => engines.delete(key));
    engines.set(key, p);
  }
  const loaded = await p;
  status(`generating on ${loaded.created.backend}`);
  const prompt = promptTokens(
    renderPrompt(loaded.manifest.model.chatTemplate, opts.messages, loaded.tokenizer),
    loaded.tokenizer,
  );
  // The Worker's rule (src/worker/chat-prompt.ts): the prompt must leave a token to generate.
  const context = engineContextFor(loaded.manifest.model.config);
  if (prompt.length >= context) throw new ContextOverflowError(prompt.length, context);
  let text = "";
  // A budget is planned in tokens from the manifest's measured costs, as the Worker does.
  const speed = loaded.manifest.speed;
  const budgetTokens = opts.budgetMs
    ? Math.max(
        1,
        decodeStepsWithin(
          speed,
          prompt.length,
          opts.budgetMs - prefillWorkTokens(speed, prompt.length) * speed.prefillMsPerToken,
          speed.decodeMsPerToken,
        ),
      )
    : opts.maxTokens;
  const r = await complete(
    { engine: loaded.created.engine, tokenizer: loaded.tokenizer, manifest: loaded.manifest },
    prompt,
    {
      maxTokens: Math.min(opts.maxTokens, budgetTokens),
      temperature: opts.temperature,
      topP: 1,
      topK: 0,
      seed: undefined,
      stop: [],
      signal: opts.signal ?? new AbortController().signal,
      clock: systemClock,
      yieldEveryTokens: 8,
    },
    (t) => {
      text += t;
      opts.onText(t);
    },
  );
  return {
    variant: loaded.manifest.variant,
    manifestId: chosen.id,
    backend: loaded.created.backend,
    reason:
      loaded.created.backend === "wasm"
        ? `${loaded.created.reason}; kernels: ${kernelsBuild}`
        : loaded.created.reason,
    text,
    tokens: r.completionTokens,
    finishReason: r.finishReason,
    loadMs: cached ? 0 : loaded.loadMs,
    prefillMs: r.prefillMs,
    decodeMs: r.decodeMs,
  };
}
