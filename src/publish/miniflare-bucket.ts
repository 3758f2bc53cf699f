/** A Miniflare R2 bucket (in memory, or wrangler's local state folder) as a BucketWriter. */
import type { BucketWriter } from "./publish.ts";

interface MiniflareR2 {
  head(key: string): Promise<{ size: number } | null>;
  get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null>;
  put(key: string, value: Uint8Array): Promise<unknown>;
}

export function miniflareBucket(r2: unknown): BucketWriter {
  const b = r2 as MiniflareR2;
  return {
    head: (key) => b.head(key),
    async get(key) {
      const obj = await b.get(key);
      return obj ? new Uint8Array(await obj.arrayBuffer()) : null;
    },
    async put(key, bytes) {
      await b.put(key, bytes);
    },
  };
}
