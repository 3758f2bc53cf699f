/**
 * The live variant set, read from R2 (live.json -> manifests) and cached briefly per isolate, so a
 * deploy goes live without a code deploy. Everything read is validated with the manifest schema.
 */
import { byQuality, LivePointer, Manifest, R2Keys } from "../format/manifest.ts";
import type { R2BucketLike } from "./env.ts";
import { ApiError } from "./errors.ts";

export interface LiveSet {
  version: number;
  /** When this deployment went live (live.json's updatedAt), Unix seconds; 0 if unreadable. */
  deployedAt: number;
  /** Variants by name, ordered best quality first. */
  variants: Manifest[];
  /** Manifest sha256 by variant name. */
  manifestIds: Map<string, string>;
}

const manifestCache = new Map<string, Manifest>(); // immutable, content-addressed

async function readManifest(bucket: R2BucketLike, sha256: string): Promise<Manifest> {
  const cached = manifestCache.get(sha256);
  if (cached) return cached;
  const obj = await bucket.get(R2Keys.manifest(sha256));
  if (!obj) throw new Error(`manifest ${sha256} is missing from the bucket`);
  const manifest = Manifest.parse(JSON.parse(await obj.text()));
  manifestCache.set(sha256, manifest);
  return manifest;
}

export { byQuality };

/** The manifest as served with speculation switched off (a copy: cached manifests stay as built). */
function withoutSpeculation(m: Manifest): Manifest {
  return m.speculative?.enabled ? { ...m, speculative: { ...m.speculative, enabled: false } } : m;
}

/**
 * Each request that finds the cached set stale reads live.json itself: sharing one in-flight read
 * would make the others wait on another request's I/O, which workerd cancels as a hang (see
 * ./shared.ts). live.json is small and manifests are cached once parsed, so duplicates are cheap.
 */
export class LiveVariants {
  private current: { set: LiveSet; fetchedAt: number } | null = null;

  /**
   * `speculation` false: serve every manifest with speculation off (Env.SHARDLM_SPECULATION).
   * `onNewVersion` runs when a live.json version other than the cached one is first seen.
   */
  constructor(
    private readonly bucket: R2BucketLike,
    private readonly ttlMs: number,
    private readonly speculation = true,
    private readonly onNewVersion: (set: LiveSet) => void = () => {},
  ) {}

  async get(now = Date.now()): Promise<LiveSet> {
    if (this.current && now - this.current.fetchedAt < this.ttlMs) return this.current.set;
    try {
      const set = await this.fetch();
      if (!this.current || set.version >= this.current.set.version) {
        const changed = this.current !== null && set.version !== this.current.set.version;
        this.current = { set, fetchedAt: Date.now() };
        if (changed) this.onNewVersion(set);
      }
      return set;
    } catch (e) {
      // Keep serving the last good set if the bucket hiccups; fail only when there is none.
      if (this.current) return this.current.set;
      throw new ApiError(503, `no live variants: ${(e as Error).message}`, "server_error", "no_variants");
    }
  }

  private async fetch(): Promise<LiveSet> {
    const obj = await this.bucket.get(R2Keys.live);
    if (!obj) throw new Error("nothing is deployed (live.json is missing; run npm run deploy)");
    const live = LivePointer.parse(JSON.parse(await obj.text()));
    const entries = Object.entries(live.variants);
    const read = await Promise.all(entries.map(([, sha]) => readManifest(this.bucket, sha)));
    const manifests = this.speculation ? read : read.map(withoutSpeculation);
    return {
      version: live.version,
      deployedAt: Math.max(0, Math.floor((Date.parse(live.updatedAt) || 0) / 1000)),
      variants: [...manifests].sort(byQuality),
      manifestIds: new Map(entries),
    };
  }
}
