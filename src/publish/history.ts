/**
 * Deployment history, kept in the bucket next to what it describes:
 *   deployments/<version>.json   a Deployment: the LivePointer that version switched to, with a summary
 *                                of each variant (size, quality, speed) so listings need no manifests
 *   live.json                    the LivePointer that serves now; its version is the newest deployment
 *                                that went live (deploys and rollbacks both take the next version)
 * A record is written (and read back) before live.json is switched to it, so every live version has one.
 */
import { z } from "zod";
import { sha256Hex } from "../compress/variant-store.ts";
import { LivePointer, Manifest, R2Keys, Sha256 } from "../format/manifest.ts";
import type { Bucket } from "./buckets.ts";
import type { BucketWriter } from "./publish.ts";

export const DEPLOYMENTS_PREFIX = "deployments/";
export const deploymentKey = (version: number): string => `${DEPLOYMENTS_PREFIX}${version}.json`;

export const VariantSummary = z.strictObject({
  manifest: Sha256,
  tier: z.enum(["quality", "balanced", "speed"]),
  bytes: z.number().int().positive(),
  bitsPerWeight: z.number().positive(),
  klMean: z.number().nonnegative(),
  top1Agreement: z.number().min(0).max(1),
  perplexity: z.number().positive(),
  decodeMsPerToken: z.number().positive(),
  shards: z.number().int().positive(),
});
export type VariantSummary = z.infer<typeof VariantSummary>;

export const Deployment = z
  .strictObject({
    format: z.literal("shardlm-deployment"),
    version: z.number().int().positive(),
    createdAt: z.iso.datetime(),
    /** deploy: a build went live; rollback: an earlier set went live again; adopted: a live.json found
     * without a record (published by other means), recorded so it can be rolled back to. */
    kind: z.enum(["deploy", "rollback", "adopted"]),
    /** For rollbacks: the version whose variant set this one restores. */
    rollbackOf: z.number().int().positive().nullable(),
    /** The live version this one replaced (null for the first). */
    previousVersion: z.number().int().positive().nullable(),
    live: LivePointer,
    variants: z.record(z.string(), VariantSummary),
    /** Objects this deployment had to upload (0 for rollbacks). */
    uploaded: z.strictObject({
      objects: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
    }),
  })
  .superRefine((d, ctx) => {
    if (d.live.version !== d.version)
      ctx.addIssue({ code: "custom", path: ["live", "version"], message: `is not ${d.version}` });
    const a = Object.keys(d.live.variants).sort().join();
    const b = Object.keys(d.variants).sort().join();
    if (a !== b) ctx.addIssue({ code: "custom", path: ["variants"], message: "differ from live.variants" });
    for (const [name, s] of Object.entries(d.variants)) {
      if (d.live.variants[name] !== s.manifest)
        ctx.addIssue({ code: "custom", path: ["variants", name, "manifest"], message: "differs from live" });
    }
  });
export type Deployment = z.infer<typeof Deployment>;

export class DeployError extends Error {
  override readonly name = "DeployError";
}

export function summarize(id: string, m: Manifest): VariantSummary {
  return {
    manifest: id,
    tier: m.tier,
    bytes: m.size.totalBytes,
    bitsPerWeight: m.size.bitsPerWeight,
    klMean: m.quality.klMean,
    top1Agreement: m.quality.top1Agreement,
    perplexity: m.quality.perplexity,
    decodeMsPerToken: m.speed.decodeMsPerToken,
    shards: m.shards.length,
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function jsonBytes(value: unknown): Uint8Array {
  return encoder.encode(`${JSON.stringify(value, null, 2)}\n`);
}

/** Parses a JSON object from the bucket with `schema`; errors name the key. */
export function parseObject<T>(schema: z.ZodType<T>, key: string, bytes: Uint8Array): T {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new DeployError(`${key}: not JSON (${(e as Error).message})`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new DeployError(`${key}: ${formatIssues(r.error)}`);
  return r.data;
}

export function formatIssues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

export async function readLive(bucket: BucketWriter): Promise<LivePointer | null> {
  const bytes = await bucket.get(R2Keys.live);
  return bytes ? parseObject(LivePointer, R2Keys.live, bytes) : null;
}

/** Every deployment record in the bucket, oldest first. */
export async function readHistory(bucket: Bucket): Promise<Deployment[]> {
  const listed = await bucket.list(DEPLOYMENTS_PREFIX);
  const out: Deployment[] = [];
  for (const o of listed) {
    if (!/^deployments\/\d+\.json$/.test(o.key)) continue;
    const bytes = await bucket.get(o.key);
    if (!bytes) continue; // deleted meanwhile (gc)
    const d = parseObject(Deployment, o.key, bytes);
    if (deploymentKey(d.version) !== o.key) throw new DeployError(`${o.key}: holds version ${d.version}`);
    out.push(d);
  }
  return out.sort((a, b) => a.version - b.version);
}

/** The next version: above both live.json and every record (a record may exist for a switch that failed). */
export function nextVersion(live: LivePointer | null, history: Deployment[]): number {
  return Math.max(live?.version ?? 0, ...history.map((d) => d.version)) + 1;
}

export function sameVariants(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** Writes `bytes` and reads them back (size + sha256). */
export async function putVerified(bucket: BucketWriter, key: string, bytes: Uint8Array): Promise<void> {
  await bucket.put(key, bytes);
  const back = await bucket.get(key);
  if (!back || back.byteLength !== bytes.byteLength || sha256Hex(back) !== sha256Hex(bytes)) {
    throw new DeployError(`${key}: read-back does not match what was written`);
  }
}

export async function writeDeployment(bucket: BucketWriter, d: Deployment): Promise<void> {
  await putVerified(bucket, deploymentKey(d.version), jsonBytes(Deployment.parse(d)));
}

/**
 * The switch: one small write of live.json. Refuses if live.json changed since `expected` was read
 * (another deploy or rollback ran meanwhile), then reads it back.
 */
export async function switchLive(
  bucket: BucketWriter,
  pointer: LivePointer,
  expected: LivePointer | null,
): Promise<void> {
  const now = await readLive(bucket);
  if ((now?.version ?? null) !== (expected?.version ?? null)) {
    throw new DeployError(
      `live.json changed while this ran (version ${expected?.version ?? "none"} -> ${now?.version ?? "none"}); not switching`,
    );
  }
  const bytes = jsonBytes(LivePointer.parse(pointer));
  await bucket.put(R2Keys.live, bytes);
  const back = await bucket.get(R2Keys.live);
  if (!back || sha256Hex(back) !== sha256Hex(bytes)) throw new DeployError("live.json: read-back differs");
}

/** A manifest from the bucket: its bytes must hash to its id and parse with the schema. */
export async function readBucketManifest(bucket: BucketWriter, id: string): Promise<Manifest> {
  const key = R2Keys.manifest(id);
  const bytes = await bucket.get(key);
  if (!bytes) throw new DeployError(`${key} is not in the bucket`);
  if (sha256Hex(bytes) !== id) throw new DeployError(`${key}: content does not match its name`);
  return parseObject(Manifest, key, bytes);
}

/** A content-addressed key a variant set needs: its expected size and sha256 (the key names it). */
export interface ReferencedObject {
  bytes: number;
  sha256: string;
}

/** Content-addressed keys a variant set needs (manifests, shards, tokenizer blobs). */
export async function referencedObjects(
  bucket: BucketWriter,
  variants: Record<string, string>,
): Promise<Map<string, ReferencedObject>> {
  const keys = new Map<string, ReferencedObject>();
  for (const id of new Set(Object.values(variants))) {
    const m = await readBucketManifest(bucket, id);
    for (const s of m.shards) keys.set(R2Keys.shard(s.sha256), { bytes: s.bytes, sha256: s.sha256 });
    const t = m.model.tokenizer;
    keys.set(R2Keys.blob(t.sha256), { bytes: t.bytes, sha256: t.sha256 });
    const head = await bucket.head(R2Keys.manifest(id));
    keys.set(R2Keys.manifest(id), { bytes: head?.size ?? 0, sha256: id });
  }
  return keys;
}

/**
 * What the bucket holds under a content-addressed key: present (right size and its bytes hash to
 * `sha256`), missing, wrong-size or corrupt. Content is read back and hashed: a head's size cannot see
 * a flipped byte, and a stored checksum describes the upload, not the bytes now served.
 */
export async function objectState(
  bucket: BucketWriter,
  key: string,
  want: ReferencedObject,
  opts: { content?: boolean } = {},
): Promise<{ state: "present" | "missing" | "wrong-size" | "corrupt"; size?: number }> {
  const head = await bucket.head(key);
  if (!head) return { state: "missing" };
  if (head.size !== want.bytes) return { state: "wrong-size", size: head.size };
  if (opts.content === false) return { state: "present" };
  const bytes = await bucket.get(key);
  if (!bytes) return { state: "missing" }; // deleted between head and get
  if (bytes.byteLength !== want.bytes) return { state: "wrong-size", size: bytes.byteLength };
  return { state: sha256Hex(bytes) === want.sha256 ? "present" : "corrupt" };
}

/**
 * Throws unless every object a variant set needs is in the bucket with its size and, unless
 * `content: false` (heads only), with bytes that hash to its key. Returns the number of objects.
 */
export async function checkComplete(
  bucket: BucketWriter,
  variants: Record<string, string>,
  opts: { content?: boolean } = {},
): Promise<number> {
  const keys = await referencedObjects(bucket, variants);
  const problems: string[] = [];
  for (const [key, want] of keys) {
    const s = await objectState(bucket, key, want, opts);
    if (s.state === "missing") problems.push(`${key} is missing`);
    else if (s.state === "wrong-size") problems.push(`${key} is ${s.size} bytes, expected ${want.bytes}`);
    else if (s.state === "corrupt")
      problems.push(`${key} is corrupt (its content does not match its sha256)`);
  }
  if (problems.length > 0) throw new DeployError(problems.join("; "));
  return keys.size;
}

/** Versions that were live at some point: the live one, and every one a later record replaced. */
export function wentLive(history: Deployment[], live: LivePointer | null): Set<number> {
  const out = new Set<number>();
  if (live) out.add(live.version);
  for (const d of history) if (d.previousVersion !== null) out.add(d.previousVersion);
  return out;
}
