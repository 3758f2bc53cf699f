/**
 * What deploy, rollback, gc and the listing need of a bucket: publish.ts's BucketWriter plus list and
 * delete. Implemented by ./buckets.ts (local, memory) and ./s3-bucket.ts (remote); apart from both so
 * neither imports the other.
 */
import type { BucketWriter } from "./publish.ts";
import type { VerifiedContent } from "./verified-content.ts";

export interface ListedObject {
  key: string;
  size: number;
  /** When the object was written (R2's `uploaded`, S3's LastModified). */
  uploaded: Date;
}

export interface Bucket extends BucketWriter {
  /** For messages: "local R2 shardlm-shards at .wrangler/state". */
  readonly description: string;
  /**
   * Local state only: which objects' content was verified and cannot have changed since, so a
   * deploy's plan need not read them again (./verified-content.ts says why that is safe).
   */
  readonly verified?: VerifiedContent;
  list(prefix: string): Promise<ListedObject[]>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}
