/**
 * The Worker's bindings. R2 is typed by the few methods we use (the project does not load
 * @cloudflare/workers-types globally: they clash with the DOM and Node types the engine tests use).
 */
export interface R2ObjectBodyLike {
  readonly body: ReadableStream<Uint8Array>;
  readonly size: number;
  text(): Promise<string>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface R2BucketLike {
  get(key: string): Promise<R2ObjectBodyLike | null>;
  head(key: string): Promise<{ size: number } | null>;
}

/** Workers' rate-limiting binding (wrangler.toml [[ratelimits]]): one call per request. */
export interface RateLimiterLike {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export interface Env {
  SHARDS: R2BucketLike;
  /** Seconds the live pointer and manifests are cached per isolate (default 5). */
  LIVE_CACHE_SECONDS?: string;
  /** Bytes of engine memory an isolate may hold across cached variants (default 100 MB). */
  ENGINE_MEMORY_BUDGET?: string;
  /**
   * Milliseconds bytes of a streamed answer may wait for the runtime to take them before the client is
   * taken for gone and its generation stopped (default 500; see src/worker/sse.ts).
   */
  STREAM_STALL_MS?: string;
  /**
   * The CPU limit per request, ms: must equal wrangler.toml's [limits] cpu_ms (the Worker cannot
   * read that table; a test checks they agree). Plans are capped to fit it (src/worker/plan.ts).
   */
  CPU_LIMIT_MS?: string;
  /**
   * "1": read time on a clock that advances only at I/O, as deployed Workers' clocks do
   * (src/runtime/clock.ts), to watch production behaviour locally.
   */
  SHARDLM_FROZEN_CLOCK?: string;
  /**
   * "off": never speculate, whatever the builds measured (manifests are served with
   * `speculative.enabled` false, so routing, plans and GET /v1/models use plain decode costs).
   * Unset or anything else: speculate where the build measured a gain.
   */
  SHARDLM_SPECULATION?: string;
  /**
   * API keys (a secret): comma-separated keys, or their lowercase hex SHA-256 hashes. When set,
   * every /v1 route needs `Authorization: Bearer <key>` (src/worker/api-keys.ts); unset, the API is open.
   */
  SHARDLM_API_KEYS?: string;
  /**
   * Origins browsers may call the API from (CORS): comma-separated, e.g.
   * "https://app.example.com,http://localhost:5173", or "*" (the default: any origin).
   */
  SHARDLM_CORS_ORIGINS?: string;
  /** Largest request body in bytes (default 8 MiB, src/worker/request.ts). */
  SHARDLM_MAX_BODY_BYTES?: string;
  /** Per-key request limit (wrangler.toml [[ratelimits]]); absent, requests are not limited. */
  API_RATE_LIMITER?: RateLimiterLike;
}
