/**
 * Publishing a variants folder to a bucket (local R2 emulation or the real one, through one small
 * interface): upload what is missing, verify every object by reading it back, write manifests, and
 * only then switch live.json with one small write. A failure anywhere leaves live.json untouched.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readManifest, sha256Hex, type VariantsIndex } from "../compress/variant-store.ts";
import { LivePointer, type Manifest, R2Keys } from "../format/manifest.ts";

/** The bucket operations publishing needs (Miniflare's R2, wrangler, or R2's S3 API implement them). */
export interface BucketWriter {
  head(key: string): Promise<{ size: number } | null>;
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
}

export interface PublishProgress {
  key: string;
  bytes: number;
  action: "uploaded" | "present";
  ms: number;
}

export class PublishError extends Error {
  override readonly name = "PublishError";
}

async function putVerified(
  bucket: BucketWriter,
  key: string,
  bytes: Uint8Array,
  sha: string,
): Promise<"uploaded" | "present"> {
  const head = await bucket.head(key);
  if (head && head.size === bytes.byteLength) {
    // Content-addressed: a present object of the right size is checked, not re-sent.
    const back = await bucket.get(key);
    if (back && sha256Hex(back) === sha) return "present";
  }
  await bucket.put(key, bytes);
  const back = await bucket.get(key);
  if (!back || back.byteLength !== bytes.byteLength || sha256Hex(back) !== sha) {
    throw new PublishError(`${key}: read-back does not match what was uploaded`);
  }
  return "uploaded";
}

/** Uploads every object the listed manifests need; returns the manifests. Does not touch live.json. */
export async function uploadVariants(
  bucket: BucketWriter,
  dir: string,
  index: VariantsIndex,
  onProgress: (p: PublishProgress) => void = () => {},
): Promise<Map<string, Manifest>> {
  const manifests = new Map<string, Manifest>();
  for (const [name, id] of Object.entries(index.variants)) {
    const m = readManifest(dir, id);
    if (m.variant !== name)
      throw new PublishError(`manifest ${id} is variant ${m.variant}, listed as ${name}`);
    manifests.set(id, m);
  }
  const objects = new Map<string, string>(); // key -> sha
  for (const m of manifests.values()) {
    for (const s of m.shards) objects.set(R2Keys.shard(s.sha256), s.sha256);
    objects.set(R2Keys.blob(m.model.tokenizer.sha256), m.model.tokenizer.sha256);
  }
  for (const id of manifests.keys()) objects.set(R2Keys.manifest(id), id); // manifests last
  for (const [key, sha] of objects) {
    const bytes = new Uint8Array(readFileSync(join(dir, key)));
    if (sha256Hex(bytes) !== sha)
      throw new PublishError(`${join(dir, key)} is corrupt on disk (sha256 mismatch)`);
    const t0 = performance.now();
    const action = await putVerified(bucket, key, bytes, sha);
    onProgress({ key, bytes: bytes.byteLength, action, ms: performance.now() - t0 });
  }
  return manifests;
}

export async function readLive(bucket: BucketWriter): Promise<LivePointer | null> {
  const bytes = await bucket.get(R2Keys.live);
  return bytes ? LivePointer.parse(JSON.parse(new TextDecoder().decode(bytes))) : null;
}

/** The atomic switch: one small write of live.json naming manifests that are all already uploaded. */
export async function switchLive(
  bucket: BucketWriter,
  variants: Record<string, string>,
): Promise<LivePointer> {
  for (const id of Object.values(variants)) {
    if (!(await bucket.head(R2Keys.manifest(id))))
      throw new PublishError(`manifest ${id} is not in the bucket`);
  }
  const prev = await readLive(bucket);
  const live = LivePointer.parse({
    format: "shardlm-live",
    version: (prev?.version ?? 0) + 1,
    variants,
    updatedAt: new Date().toISOString(),
  });
  await bucket.put(R2Keys.live, new TextEncoder().encode(`${JSON.stringify(live, null, 2)}\n`));
  return live;
}

/** Upload + switch: what `npm start` and the deploy script do. */
export async function publish(
  bucket: BucketWriter,
  dir: string,
  index: VariantsIndex,
  onProgress?: (p: PublishProgress) => void,
): Promise<LivePointer> {
  await uploadVariants(bucket, dir, index, onProgress);
  return switchLive(bucket, index.variants);
}
