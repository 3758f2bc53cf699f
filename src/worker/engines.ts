/**
 * Loaded variants per isolate: engines built from R2 shards on first use, kept while they fit the
 * isolate's memory budget (least recently used evicted first), never loaded twice at once. A variant
 * whose shards fail verification is marked bad for this isolate and not tried again until a new
 * manifest replaces it.
 */
import { estimateEngineBytes, loadEngine, type WasmEngine } from "../engine/runtime.ts";
import type { Tokenizer } from "../engine/tokenizer/index.ts";
import type { Manifest } from "../format/manifest.ts";
import type { R2BucketLike } from "./env.ts";
import { FairQueue } from "./queue.ts";
import { verifiedShardStream } from "./shard-stream.ts";
import { tokenizerFor } from "./tokenizers.ts";

export interface LoadedVariant {
  manifestId: string;
  manifest: Manifest;
  engine: WasmEngine;
  tokenizer: Tokenizer;
  queue: FairQueue;
  loadMs: number;
  lastUsed: number;
}

export class VariantLoadError extends Error {}

/** Context the engines allocate: the model's, capped so variants stay small in an isolate. */
export const ENGINE_CONTEXT = 2048;
const MAX_WAITING = 32;

export class EngineCache {
  private readonly loaded = new Map<string, LoadedVariant>();
  private readonly loading = new Map<string, Promise<LoadedVariant>>();
  /** manifest id -> why it is bad */
  readonly bad = new Map<string, string>();

  constructor(
    private readonly bucket: R2BucketLike,
    private readonly kernels: WebAssembly.Module,
    private readonly budgetBytes: number,
  ) {}

  isResident(manifestId: string): boolean {
    return this.loaded.has(manifestId);
  }

  residentBytes(): number {
    let n = 0;
    for (const v of this.loaded.values()) n += v.engine.memoryBytes;
    return n;
  }

  async get(manifestId: string, manifest: Manifest): Promise<LoadedVariant> {
    const hit = this.loaded.get(manifestId);
    if (hit) {
      hit.lastUsed = Date.now();
      return hit;
    }
    const why = this.bad.get(manifestId);
    if (why) throw new VariantLoadError(why);
    let p = this.loading.get(manifestId);
    if (!p) {
      p = this.load(manifestId, manifest).finally(() => this.loading.delete(manifestId));
      this.loading.set(manifestId, p);
    }
    return p;
  }

  private contextFor(manifest: Manifest): number {
    return Math.min(manifest.model.config.maxContext, ENGINE_CONTEXT);
  }

  private async load(manifestId: string, manifest: Manifest): Promise<LoadedVariant> {
    const need = estimateEngineBytes(manifest.weights, this.contextFor(manifest));
    if (need > this.budgetBytes) {
      const why = `variant ${manifest.variant} needs ~${need} bytes, over the isolate budget of ${this.budgetBytes}`;
      this.bad.set(manifestId, why);
      throw new VariantLoadError(why);
    }
    this.evictFor(need);
    const started = Date.now();
    try {
      const tokenizer = await tokenizerFor(this.bucket, manifest.model.tokenizer.sha256);
      const engine = await loadEngine(
        this.kernels,
        manifest.weights,
        verifiedShardStream(this.bucket, manifest.shards),
        {
          kvCache: "f16",
          contextSize: this.contextFor(manifest),
        },
      );
      const v: LoadedVariant = {
        manifestId,
        manifest,
        engine,
        tokenizer,
        queue: new FairQueue(MAX_WAITING),
        loadMs: Date.now() - started,
        lastUsed: Date.now(),
      };
      this.loaded.set(manifestId, v);
      return v;
    } catch (e) {
      const why = `variant ${manifest.variant} could not load: ${(e as Error).message}`;
      this.bad.set(manifestId, why);
      throw new VariantLoadError(why);
    }
  }

  /** Drops idle engines, least recently used first, until `need` more bytes fit the budget. */
  private evictFor(need: number): void {
    const idle = [...this.loaded.values()]
      .filter((v) => v.queue.length === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.residentBytes() + need > this.budgetBytes && idle.length > 0) {
      this.loaded.delete(idle.shift()!.manifestId);
    }
  }
}
