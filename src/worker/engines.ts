/**
 * Loaded variants per isolate: engines built from R2 shards on first use, kept while they fit the
 * isolate's memory budget (least recently used evicted first), never loaded twice at once, and never
 * beside busy engines it does not fit with: a load waits (polling, as ./queue.ts does) until enough
 * engines are idle to evict, and past MEMORY_WAIT_POLLS gives up with an OverloadedError (429) rather
 * than take the isolate over its budget (a deployed isolate over 128 MB is killed with every request
 * in it). Loads in progress reserve their bytes, so two concurrent loads cannot both count on the
 * same free memory. A variant
 * whose shards fail verification (missing, short, or not hashing to their names) is marked bad for
 * this isolate: requests skip it (the router falls back) and it is not tried again for
 * BAD_RETRY_MS, or until a new manifest replaces it or a new live.json version (a deploy, which
 * re-uploads and verifies every shard) is seen: then every variant is tried again at once. Other load failures (the bucket erroring) are
 * not remembered: the next request tries again.
 */

import type { Manifest } from "../format/manifest.ts";
import {
  ENGINE_CONTEXT,
  estimateEngineBytes,
  loadEngine,
  servedEngineLayout,
  type WasmEngine,
} from "../runtime/load-engine.ts";
import { PrefixCache, ResidentPrefix } from "../runtime/prefix-cache.ts";
import type { Tokenizer } from "../runtime/tokenizer/index.ts";
import type { R2BucketLike } from "./env.ts";
import { FairQueue, OverloadedError } from "./queue.ts";
import { ShardError, verifiedShardStream } from "./shard-stream.ts";
import { SharedTask, SharedWaitTimeout } from "./shared.ts";
import { tokenizerFor } from "./tokenizers.ts";

export interface LoadedVariant {
  manifestId: string;
  manifest: Manifest;
  engine: WasmEngine;
  tokenizer: Tokenizer;
  queue: FairQueue;
  loadMs: number;
  lastUsed: number;
  /** KV rows of this variant's recent sequences (the next turn of a chat prefills only new tokens). */
  prefixCache?: PrefixCache;
  /**
   * Where the budget leaves no room for a prefixCache (the SmolLM2 build): the engine's own KV rows
   * of its last sequence, zero extra bytes, so a conversation's next turn still prefills only new
   * tokens when no other request ran on the variant in between.
   */
  residentPrefix?: ResidentPrefix<unknown>;
}

/** Bytes of KV rows a variant's prefix cache may keep, when they fit the isolate budget beside it. */
export const PREFIX_CACHE_BYTES = 8 << 20;

export class VariantLoadError extends Error {}

export { ENGINE_CONTEXT };

const MAX_WAITING = 32;
/** How long a request waits for another request's load of the same variant. */
const SHARED_LOAD_WAIT_MS = 60_000;
/** How long a variant whose shards failed verification stays skipped (a repaired bucket heals). */
export const BAD_RETRY_MS = 5 * 60_000;
/** Poll interval (ms) of a load waiting for memory, and how many polls (~30 s) before it gives up. */
const MEMORY_POLL_MS = 10;
const MEMORY_WAIT_POLLS = 3000;

export class EngineCache {
  private readonly loaded = new Map<string, LoadedVariant>();
  private readonly loading = new Map<string, SharedTask<LoadedVariant>>();
  /** manifest id -> why it is bad, and since when */
  private readonly bad = new Map<string, { why: string; at: number }>();
  /** Bytes promised to loads in progress (not yet in `loaded`). */
  private reservedBytes = 0;
  /** contextFor's answers by weight table. */
  private readonly contexts = new WeakMap<object, number>();

  constructor(
    private readonly bucket: R2BucketLike,
    private readonly kernels: WebAssembly.Module,
    private readonly budgetBytes: number,
  ) {}

  isResident(manifestId: string): boolean {
    return this.loaded.has(manifestId);
  }

  /**
   * Prompt tokens a resident variant's prefix cache (or its engine's last sequence) would serve for
   * `prompt` now, 0 when not resident: what the router need not predict prefill for. A prediction:
   * another request may run on the variant before this one does.
   */
  cachedTokens(manifestId: string, prompt: readonly number[]): number {
    const v = this.loaded.get(manifestId);
    if (!v) return 0;
    return v.prefixCache ? v.prefixCache.peek(prompt) : (v.residentPrefix?.reusable(prompt) ?? 0);
  }

  /** Why a variant is being skipped (its shards failed verification recently), or null. */
  badReason(manifestId: string, now = Date.now()): string | null {
    const b = this.bad.get(manifestId);
    if (!b) return null;
    if (now - b.at < BAD_RETRY_MS) return b.why;
    this.bad.delete(manifestId);
    return null;
  }

  /** Forgets every bad mark (a new deployment went live: its shards may be repaired). */
  forgetBad(): void {
    this.bad.clear();
  }

  private markBad(manifestId: string, why: string): void {
    this.bad.set(manifestId, { why, at: Date.now() });
  }

  residentCount(): number {
    return this.loaded.size;
  }

  residentBytes(): number {
    let n = 0;
    for (const v of this.loaded.values()) n += v.engine.memoryBytes + (v.prefixCache?.bytes ?? 0);
    return n;
  }

  /** Bytes the resident variants' prefix caches hold now (part of residentBytes). */
  prefixCacheBytes(): number {
    let n = 0;
    for (const v of this.loaded.values()) n += v.prefixCache?.bytes ?? 0;
    return n;
  }

  /** The most the resident variants' prefix caches may hold (PREFIX_CACHE_BYTES each that has one). */
  prefixCacheMaxBytes(): number {
    let n = 0;
    for (const v of this.loaded.values()) n += v.prefixCache?.maxBytes ?? 0;
    return n;
  }

  async get(manifestId: string, manifest: Manifest): Promise<LoadedVariant> {
    const hit = this.loaded.get(manifestId);
    if (hit) {
      hit.lastUsed = Date.now();
      return hit;
    }
    const why = this.badReason(manifestId);
    if (why) throw new VariantLoadError(why);
    const shared = this.loading.get(manifestId);
    if (shared) {
      // Another request is loading it: wait for that load (see ./shared.ts). If it never ends
      // (that request's context went away), load it anew.
      try {
        return await shared.wait(SHARED_LOAD_WAIT_MS);
      } catch (e) {
        if (!(e instanceof SharedWaitTimeout)) throw e;
        if (this.loading.get(manifestId) === shared) this.loading.delete(manifestId);
      }
    }
    const task = new SharedTask(() => this.load(manifestId, manifest));
    this.loading.set(manifestId, task);
    try {
      return await task.promise;
    } finally {
      if (this.loading.get(manifestId) === task) this.loading.delete(manifestId);
    }
  }

  /**
   * The context a variant's engine gets: the model's (at most ENGINE_CONTEXT), shrunk to what fits
   * the isolate budget with an int8 KV cache (contextThatFits); the full one when nothing fits (then
   * load() refuses the variant with the budget error).
   */
  contextFor(manifest: Manifest): number {
    // memoized per weight table: the chat route asks on every request, a search plans up to 32 contexts
    let context = this.contexts.get(manifest.weights);
    if (context === undefined) {
      context = servedEngineLayout(manifest.weights, this.budgetBytes).contextSize;
      this.contexts.set(manifest.weights, context);
    }
    return context;
  }

  /**
   * The engine a variant gets in this isolate: its context, the served layout (servedEngineLayout)
   * and the bytes that needs.
   */
  private engineLayout(manifest: Manifest) {
    const context = this.contextFor(manifest);
    const { kvCache, headRows } = servedEngineLayout(manifest.weights, this.budgetBytes);
    return {
      context,
      kvCache,
      headRows,
      bytes: estimateEngineBytes(manifest.weights, context, kvCache, headRows),
    };
  }

  /**
   * The variants (manifest ids) whose work a load of `manifest` would wait for now: none when it is
   * resident or fits beside the busy engines once the idle ones are evicted; else every busy
   * resident variant and every load in progress (reserve() waits until they go idle). A prediction
   * for the router, in the same terms as reserve(): another request may change it before the load.
   */
  blockedBy(manifestId: string, manifest: Manifest): string[] {
    if (this.loaded.has(manifestId)) return [];
    const busy = [...this.loaded.values()].filter((v) => v.queue.length > 0);
    const busyBytes = busy.reduce((n, v) => n + v.engine.memoryBytes + (v.prefixCache?.bytes ?? 0), 0);
    if (busyBytes + this.reservedBytes + this.engineLayout(manifest).bytes <= this.budgetBytes) return [];
    return [...busy.map((v) => v.manifestId), ...[...this.loading.keys()].filter((id) => id !== manifestId)];
  }

  private async load(manifestId: string, manifest: Manifest): Promise<LoadedVariant> {
    // An fp16 KV cache where it fits the isolate, else int8 (half the bytes, same tokens in tests):
    // the layout the build measured prefill on (servedEngineLayout).
    const { context, kvCache, headRows, bytes: need } = this.engineLayout(manifest);
    if (need > this.budgetBytes) {
      const why = `variant ${manifest.variant} needs ~${need} bytes, over the isolate budget of ${this.budgetBytes}`;
      this.markBad(manifestId, why);
      throw new VariantLoadError(why);
    }
    const cacheBytes = need + PREFIX_CACHE_BYTES <= this.budgetBytes ? PREFIX_CACHE_BYTES : 0;
    await this.reserve(need + cacheBytes, manifest.variant);
    const started = Date.now();
    try {
      const tokenizer = await tokenizerFor(this.bucket, manifest.model.tokenizer.sha256);
      const engine = await loadEngine(
        this.kernels,
        manifest.weights,
        verifiedShardStream(this.bucket, manifest.shards),
        { kvCache, contextSize: context, headRows },
      );
      const v: LoadedVariant = {
        manifestId,
        manifest,
        engine,
        tokenizer,
        queue: new FairQueue(MAX_WAITING),
        loadMs: Date.now() - started,
        lastUsed: Date.now(),
        ...(cacheBytes > 0
          ? { prefixCache: new PrefixCache(cacheBytes) }
          : { residentPrefix: new ResidentPrefix() }),
      };
      this.loaded.set(manifestId, v);
      return v;
    } catch (e) {
      const why = `variant ${manifest.variant} could not load: ${(e as Error).message}`;
      if (e instanceof ShardError) this.markBad(manifestId, why);
      throw new VariantLoadError(why);
    } finally {
      this.reservedBytes -= need + cacheBytes;
    }
  }

  /**
   * Waits until `bytes` fit the budget beside resident engines and other loads, evicting idle
   * engines as they become idle. Counts polls, not clock time: in production Date.now() only moves
   * at I/O. Throws OverloadedError when busy engines hold the memory for MEMORY_WAIT_POLLS polls.
   */
  private async reserve(bytes: number, variant: string): Promise<void> {
    for (let polls = 0; ; polls++) {
      this.evictFor(bytes);
      if (this.residentBytes() + this.reservedBytes + bytes <= this.budgetBytes) {
        this.reservedBytes += bytes;
        return;
      }
      if (polls >= MEMORY_WAIT_POLLS)
        throw new OverloadedError(
          `variant ${variant} needs ~${bytes} bytes while busy variants hold the isolate's memory`,
        );
      await new Promise<void>((resolve) => setTimeout(resolve, MEMORY_POLL_MS));
    }
  }

  /** Drops idle engines, least recently used first, until `need` more bytes fit the budget. */
  private evictFor(need: number): void {
    const idle = [...this.loaded.values()]
      .filter((v) => v.queue.length === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.residentBytes() + this.reservedBytes + need > this.budgetBytes && idle.length > 0) {
      this.loaded.delete(idle.shift()!.manifestId);
    }
  }
}
