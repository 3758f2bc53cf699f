/**
 * Garbage collection of the bucket (CLI: scripts/gc.ts, `npm run gc`).
 *
 * Deletes shards/, blobs/ and manifests/ objects that no kept deployment references, and the records
 * of the deployments not kept. Kept: the newest <n> records (default 5) and whatever live.json names.
 * A dry run (the default) prints what would go and how many bytes; --yes deletes. Objects uploaded
 * less than --grace minutes ago (default 60) stay: a deploy may be uploading them right now, before
 * its record exists. Records go first, then manifests, then shards and blobs, so nothing kept ever
 * names something deleted.
 */
import type { Bucket, ListedObject } from "./buckets.ts";
import { humanBytes } from "./bytes.ts";
import { DeployError, deploymentKey, readHistory, readLive, referencedObjects } from "./history.ts";

export interface GcOptions {
  /** Newest deployment records kept (the live one is always kept too). */
  keep?: number;
  /** Objects younger than this are never deleted. */
  graceMs?: number;
  /** Delete; without it, only report. */
  yes?: boolean;
  log?: (line: string) => void;
  now?: Date;
}

export interface GcResult {
  keptVersions: number[];
  droppedVersions: number[];
  /** Objects referenced by what is kept. */
  referenced: number;
  /** What goes (deleted when `deleted`), in deletion order. */
  garbage: ListedObject[];
  /** Unreferenced but younger than the grace period. */
  young: ListedObject[];
  bytes: number;
  deleted: boolean;
}

const CONTENT_PREFIXES = ["shards/", "blobs/", "manifests/"] as const;

export async function gc(bucket: Bucket, opts: GcOptions = {}): Promise<GcResult> {
  const keep = opts.keep ?? 5;
  if (!Number.isInteger(keep) || keep < 1) throw new DeployError("--keep must be at least 1");
  const graceMs = opts.graceMs ?? 60 * 60 * 1000;
  const now = opts.now ?? new Date();
  const log = opts.log ?? ((m: string) => console.error(m));

  const live = await readLive(bucket);
  const history = await readHistory(bucket);
  if (!live && history.length === 0) {
    throw new DeployError(
      `nothing is deployed in ${bucket.description} (no live.json, no deployments/); nothing to keep, refusing to collect`,
    );
  }
  const kept = history.slice(-keep);
  if (live && !kept.some((d) => d.version === live.version)) {
    const rec = history.find((d) => d.version === live.version);
    if (rec) kept.unshift(rec);
  }
  const keptVersions = kept.map((d) => d.version).sort((a, b) => a - b);
  const dropped = history.filter((d) => !keptVersions.includes(d.version));

  const sets = [...kept.map((d) => ({ what: `version ${d.version}`, variants: d.live.variants }))];
  if (live) sets.push({ what: "live.json", variants: live.variants });
  const referenced = new Set<string>();
  for (const s of sets) {
    try {
      for (const key of (await referencedObjects(bucket, s.variants)).keys()) referenced.add(key);
    } catch (e) {
      throw new DeployError(
        `${s.what} names a manifest that cannot be read (${(e as Error).message}); nothing deleted. ` +
          "Roll forward or back to a complete set, or lower --keep to drop that deployment.",
      );
    }
  }
  log(
    `gc: keeping deployment(s) ${keptVersions.map((v) => `v${v}`).join(", ") || "none"}` +
      `${live ? ` (live: v${live.version})` : ""}: ${referenced.size} object(s) referenced`,
  );

  const records: ListedObject[] = [];
  const listedRecords = new Map((await bucket.list("deployments/")).map((o) => [o.key, o]));
  for (const d of dropped) {
    const o = listedRecords.get(deploymentKey(d.version));
    if (o) records.push(o);
  }
  const garbage: ListedObject[] = [...records];
  const young: ListedObject[] = [];
  const content: ListedObject[][] = [];
  for (const prefix of CONTENT_PREFIXES) content.push(await bucket.list(prefix));
  // Deletion order: records, manifests, then shards and blobs.
  for (const o of [...content[2]!, ...content[0]!, ...content[1]!]) {
    if (referenced.has(o.key)) continue;
    if (now.getTime() - o.uploaded.getTime() < graceMs) young.push(o);
    else garbage.push(o);
  }
  const bytes = garbage.reduce((n, o) => n + o.size, 0);
  for (const o of young) log(`  keep (younger than the grace period)  ${o.key}  ${humanBytes(o.size)}`);
  for (const o of garbage) {
    if (opts.yes) await bucket.delete(o.key);
    log(`  ${opts.yes ? "deleted" : "would delete"}  ${o.key}  ${humanBytes(o.size)}`);
  }
  return {
    keptVersions,
    droppedVersions: dropped.map((d) => d.version),
    referenced: referenced.size,
    garbage,
    young,
    bytes,
    deleted: opts.yes === true,
  };
}
