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
}
