/**
 * One-command redeploy (CLI: scripts/deploy.ts):
 *   1. build      the injected builder (opts.build; variants whose inputs are unchanged are reused)
 *   2. validate   every manifest in the variants folder: its bytes hash to its name, it parses (shards
 *                 tile the data region), its shards and tokenizer are on disk with their sha256
 *   3. upload     only objects not already in the bucket with the right content (content-addressed
 *                 keys: a present object is read back and must hash to its key; a corrupt one is
 *                 uploaded again), shards and blobs before the manifests naming them; each upload
 *                 read back (size + sha256)
 *   4. record     deployments/<version>.json with the LivePointer about to go live
 *   5. switch     live.json, one small write, only after all of the above succeeded
 * Any failure throws with live.json untouched. --dry-run builds and prints the plan; it writes
 * nothing to the bucket. A set identical to the live one is not switched again, unless some of its
 * objects had to be uploaded again (a repair): then a new version tells workers to retry it.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { readVariantsIndex, sha256Hex, type VariantsIndex } from "../compress/variant-store.ts";
import { readVariantsFile } from "../compress/variants-config.ts";
import { LivePointer, Manifest, R2Keys } from "../format/manifest.ts";
import type { Bucket } from "./buckets.ts";
import { humanBytes } from "./bytes.ts";
import {
  checkComplete,
  DeployError,
  type Deployment,
  formatIssues,
  nextVersion,
  objectState,
  readBucketManifest,
  readHistory,
  readLive,
  sameVariants,
  summarize,
  switchLive,
  type VariantSummary,
  writeDeployment,
} from "./history.ts";

/**
 * Builds the variants folder (the compression pipeline's buildVariants): injected so publishing
 * does not load the pipeline (and the AssemblyScript compiler) for a --skip-build deploy.
 */
export type VariantBuilder = (opts: {
  model: string;
  config: string;
  out: string;
  force?: boolean;
  log: (line: string) => void;
}) => Promise<{ index: VariantsIndex; rows: { variant: string; reused: boolean }[] }>;

export interface LocalObject {
  key: string;
  /** File in the variants folder. */
  path: string;
  sha256: string;
  bytes: number;
}

export interface PlannedObject extends LocalObject {
  /**
   * present: in the bucket, and its bytes hash to its key; missing (or a wrong size): to upload;
   * corrupt: in the bucket with the right size but other content: to upload again (a repair).
   */
  status: "present" | "missing" | "corrupt";
}

export interface ObjectProgress {
  key: string;
  bytes: number;
  action: "uploaded" | "present";
  index: number;
  total: number;
  /** Upload time (PUT), and read-back verification time. */
  putMs: number;
  verifyMs: number;
}

export interface DeployOptions {
  model: string;
  config: string;
  out: string;
  force?: boolean;
  /** Deploy the folder as last built (its variants.json) without building; model and config unused. */
  skipBuild?: boolean;
  dryRun?: boolean;
  /** Builds the folder; required unless skipBuild. */
  build?: VariantBuilder;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  onObject?: (p: ObjectProgress) => void;
}

export interface DeployRow {
  variant: string;
  manifestId: string;
  manifest: Manifest;
  summary: VariantSummary;
  rebuilt: boolean;
  uploaded: number;
  present: number;
}

export interface DeployResult {
  /** What was deployed: variant name -> manifest id (the folder's variants.json). */
  index: VariantsIndex;
  objects: PlannedObject[];
  uploaded: { objects: number; bytes: number };
  previous: LivePointer | null;
  /** The live pointer after the run (the previous one when nothing switched). */
  live: LivePointer | null;
  deployment: Deployment | null;
  /** deployed: switched to a new version; unchanged: the set is already live; dry-run: nothing written. */
  outcome: "deployed" | "unchanged" | "dry-run";
  rows: DeployRow[];
}

/** Checks a variants folder before anything is uploaded; returns manifests and the objects they need. */
export function validateVariantsFolder(
  dir: string,
  index: VariantsIndex,
): { manifests: Map<string, Manifest>; objects: LocalObject[] } {
  const manifests = new Map<string, Manifest>();
  const objects = new Map<string, LocalObject>();
  const problems: string[] = [];
  const need = (key: string, sha: string, bytes: number, what: string) => {
    if (objects.has(key)) return;
    const path = join(dir, key);
    if (!existsSync(path)) return void problems.push(`${what}: ${path} is missing`);
    const data = readFileSync(path);
    if (data.byteLength !== bytes)
      return void problems.push(`${what}: ${path} is ${data.byteLength} bytes, the manifest says ${bytes}`);
    if (sha256Hex(data) !== sha) return void problems.push(`${what}: ${path} does not match its sha256`);
    objects.set(key, { key, path, sha256: sha, bytes });
  };
  const manifestObjects: LocalObject[] = [];
  for (const [name, id] of Object.entries(index.variants)) {
    const key = R2Keys.manifest(id);
    const path = join(dir, key);
    if (!existsSync(path)) {
      problems.push(`variant ${name}: manifest ${path} is missing`);
      continue;
    }
    const bytes = readFileSync(path);
    if (sha256Hex(bytes) !== id) {
      problems.push(`variant ${name}: manifest ${path} does not hash to its name (edited or corrupt)`);
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString("utf8"));
    } catch (e) {
      problems.push(`variant ${name}: manifest ${path} is not JSON (${(e as Error).message})`);
      continue;
    }
    const parsed = Manifest.safeParse(json);
    if (!parsed.success) {
      problems.push(`variant ${name}: manifest ${path} is invalid: ${formatIssues(parsed.error)}`);
      continue;
    }
    const m = parsed.data;
    if (m.variant !== name) problems.push(`variant ${name}: manifest ${path} is for variant ${m.variant}`);
    for (const s of m.shards)
      need(R2Keys.shard(s.sha256), s.sha256, s.bytes, `variant ${name} shard @${s.offset}`);
    const t = m.model.tokenizer;
    need(R2Keys.blob(t.sha256), t.sha256, t.bytes, `variant ${name} tokenizer`);
    manifests.set(id, m);
    manifestObjects.push({ key, path, sha256: id, bytes: bytes.byteLength });
  }
  if (problems.length > 0) {
    throw new DeployError(
      `the variants folder ${dir} fails validation; nothing was deployed:\n  ${problems.join("\n  ")}`,
    );
  }
  // Manifests last: a manifest in the bucket means its shards are there.
  return { manifests, objects: [...objects.values(), ...manifestObjects] };
}

export interface CheckProgress {
  key: string;
  bytes: number;
  status: PlannedObject["status"];
  /** hashed: read back and hashed; trusted: present with its size, content verified before and unchanged since. */
  how: "hashed" | "trusted" | "head";
  index: number;
  total: number;
}

/**
 * Checks every object in the bucket: present (its content hashes to its key), missing or corrupt.
 * An object the bucket's `verified` record vouches for (same sha256 and size, its state unchanged
 * since: ./verified-content.ts) is checked by size alone instead of read and hashed.
 */
export async function planUpload(
  bucket: Bucket,
  objects: LocalObject[],
  onChecked: (p: CheckProgress) => void = () => {},
): Promise<PlannedObject[]> {
  const out: PlannedObject[] = [];
  const trusted = (await bucket.verified?.trusted()) ?? new Map<string, { sha256: string; bytes: number }>();
  for (const [i, o] of objects.entries()) {
    const known = trusted.get(o.key);
    const trust = known?.sha256 === o.sha256 && known.bytes === o.bytes;
    const { state } = await objectState(
      bucket,
      o.key,
      { bytes: o.bytes, sha256: o.sha256 },
      { content: !trust },
    );
    const status = state === "present" ? "present" : state === "corrupt" ? "corrupt" : "missing";
    out.push({ ...o, status });
    const how = status !== "present" ? "head" : trust ? "trusted" : "hashed";
    onChecked({ key: o.key, bytes: o.bytes, status, how, index: i + 1, total: objects.length });
  }
  return out;
}

/** Objects the plan uploads: missing ones and corrupt ones (repairs). */
export const toUpload = (plan: PlannedObject[]): PlannedObject[] =>
  plan.filter((o) => o.status !== "present");

/** Uploads the missing objects in order, each read back (size + sha256) before the next. */
export async function uploadPlan(
  bucket: Bucket,
  plan: PlannedObject[],
  onObject: (p: ObjectProgress) => void = () => {},
): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  for (const [i, o] of plan.entries()) {
    const base = { key: o.key, bytes: o.bytes, index: i + 1, total: plan.length };
    if (o.status === "present") {
      onObject({ ...base, action: "present", putMs: 0, verifyMs: 0 });
      continue;
    }
    const data = new Uint8Array(readFileSync(o.path));
    if (data.byteLength !== o.bytes || sha256Hex(data) !== o.sha256)
      throw new DeployError(`${o.path} changed on disk during the deploy`);
    const t0 = performance.now();
    await bucket.put(o.key, data);
    const t1 = performance.now();
    const back = await bucket.get(o.key);
    if (!back) throw new DeployError(`${o.key}: not in the bucket right after upload`);
    if (back.byteLength !== o.bytes)
      throw new DeployError(`${o.key}: read back ${back.byteLength} bytes, uploaded ${o.bytes}`);
    if (sha256Hex(back) !== o.sha256) throw new DeployError(`${o.key}: read-back sha256 differs from upload`);
    objects++;
    bytes += o.bytes;
    onObject({ ...base, action: "uploaded", putMs: t1 - t0, verifyMs: performance.now() - t1 });
  }
  return { objects, bytes };
}

/** "[ 3/12]": an object's place in a pass over all of them, padded so the lines align. */
function counter(p: { index: number; total: number }): string {
  return `[${String(p.index).padStart(String(p.total).length)}/${p.total}]`;
}

function checkLine(p: CheckProgress): string {
  const n = counter(p);
  const how =
    p.how === "trusted"
      ? "size checked; content verified before and the local state unchanged since"
      : p.how === "hashed"
        ? "read back, sha256 ok"
        : p.status === "corrupt"
          ? "read back, sha256 differs"
          : "not in the bucket (or another size)";
  return `  ${n} ${p.status.padEnd(7)} ${p.key}  ${humanBytes(p.bytes)}  (${how})`;
}

function progressLine(p: ObjectProgress): string {
  const n = counter(p);
  if (p.action === "present") return `  ${n} present   ${p.key}  ${humanBytes(p.bytes)}`;
  const rate = p.bytes / 1e6 / Math.max(p.putMs / 1000, 1e-6);
  return `  ${n} uploaded  ${p.key}  ${humanBytes(p.bytes)}  ${rate.toFixed(1)} MB/s  verified in ${p.verifyMs.toFixed(0)} ms`;
}

/** Model and config checks that need neither the build code nor the bucket. */
export function preflight(opts: Pick<DeployOptions, "model" | "config" | "out" | "skipBuild">): void {
  if (opts.skipBuild) {
    if (!readVariantsIndex(opts.out))
      throw new DeployError(`--skip-build: ${join(opts.out, "variants.json")} does not exist (build first)`);
    return;
  }
  if (!opts.model.startsWith("synthetic:") && !existsSync(opts.model)) {
    throw new DeployError(`model not found: ${opts.model} (pass --model <file.gguf | hf folder>)`);
  }
  if (!existsSync(opts.config)) throw new DeployError(`variants config not found: ${opts.config}`);
  readVariantsFile(opts.config); // ConfigError naming the field
}

async function build(
  opts: DeployOptions,
  log: (line: string) => void,
): Promise<{ index: VariantsIndex; rebuilt: Set<string> }> {
  if (opts.skipBuild) {
    log(`build: skipped; deploying ${opts.out} as built`);
    return { index: readVariantsIndex(opts.out)!, rebuilt: new Set() };
  }
  log(`build: ${opts.model} with ${opts.config} -> ${opts.out}`);
  if (!opts.build)
    throw new DeployError("deploy needs a variant builder (opts.build) unless skipBuild is set");
  try {
    const r = await opts.build({
      model: opts.model,
      config: opts.config,
      out: opts.out,
      ...(opts.force ? { force: true } : {}),
      log: (m) => log(`  ${m}`),
    });
    return {
      index: r.index,
      rebuilt: new Set(r.rows.filter((row) => !row.reused).map((row) => row.variant)),
    };
  } catch (e) {
    if (e instanceof z.ZodError) {
      throw new DeployError(
        `a manifest in ${opts.out} fails validation (${formatIssues(e)}); nothing was deployed (rebuild with --force)`,
      );
    }
    throw e;
  }
}

export async function deploy(bucket: Bucket, opts: DeployOptions): Promise<DeployResult> {
  const log = opts.log ?? ((m: string) => console.error(m));
  preflight(opts);
  const { index, rebuilt } = await build(opts, log);

  const { manifests, objects } = validateVariantsFolder(opts.out, index);
  log(`validate: ${manifests.size} manifest(s), ${objects.length} object(s) ok`);

  log(`plan: checking ${objects.length} object(s) in ${bucket.description}`);
  const t0 = performance.now();
  const plan = await planUpload(bucket, objects, (p) => log(checkLine(p)));
  log(`plan: checked in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const previous = await readLive(bucket);
  const history = await readHistory(bucket);
  const missing = toUpload(plan);
  // A live set whose objects had to be repaired (missing or corrupt) is switched to a new version
  // anyway: workers forget the variants they marked bad when they see a new live.json version.
  const unchanged =
    previous !== null && sameVariants(previous.variants, index.variants) && missing.length === 0;
  const corrupt = plan.filter((o) => o.status === "corrupt");
  for (const o of corrupt)
    log(
      `  corrupt: ${o.key} in the bucket does not match its sha256; ${opts.dryRun ? "would re-upload" : "re-uploading"} it`,
    );

  const rowsFor = (uploaded: Set<string>): DeployRow[] =>
    Object.entries(index.variants).map(([variant, id]) => {
      const m = manifests.get(id)!;
      const keys = [
        R2Keys.manifest(id),
        R2Keys.blob(m.model.tokenizer.sha256),
        ...m.shards.map((s) => R2Keys.shard(s.sha256)),
      ];
      const up = keys.filter((k) => uploaded.has(k)).length;
      return {
        variant,
        manifestId: id,
        manifest: m,
        summary: summarize(id, m),
        rebuilt: rebuilt.has(variant),
        uploaded: up,
        present: keys.length - up,
      };
    });

  if (opts.dryRun) {
    for (const o of plan)
      log(
        `  ${o.status === "present" ? "present        " : o.status === "corrupt" ? "would re-upload" : "would upload   "} ${o.key}  ${humanBytes(o.bytes)}`,
      );
    const bytes = missing.reduce((n, o) => n + o.bytes, 0);
    log(
      `dry run: would upload ${missing.length} object(s)${corrupt.length ? ` (${corrupt.length} corrupt in the bucket)` : ""}, ${humanBytes(bytes)}; ` +
        (unchanged
          ? `live.json already serves this set (version ${previous!.version}): no switch`
          : `would switch live.json from ${previous ? `version ${previous.version}` : "nothing"} to version ${nextVersion(previous, history)}`),
    );
    return {
      index,
      objects: plan,
      uploaded: { objects: 0, bytes: 0 },
      previous,
      live: previous,
      deployment: null,
      outcome: "dry-run",
      rows: rowsFor(new Set(missing.map((o) => o.key))),
    };
  }

  log(
    `upload: ${missing.length - corrupt.length} of ${plan.length} object(s) missing` +
      (corrupt.length ? `, ${corrupt.length} corrupt (content does not match its sha256): re-uploading` : ""),
  );
  const uploaded = await uploadPlan(bucket, plan, (p) => {
    log(progressLine(p));
    opts.onObject?.(p);
  });
  const rows = rowsFor(new Set(missing.map((o) => o.key)));

  // Every object of the plan is now verified: hashed, trusted, or uploaded and read back.
  const remember = async () => {
    try {
      await bucket.verified?.remember(plan);
    } catch (e) {
      log(
        `plan: could not record the verified objects (${(e as Error).message}); the next deploy hashes them again`,
      );
    }
  };
  if (unchanged) {
    await remember();
    log(`live.json already serves this set (version ${previous!.version}); nothing to switch`);
    return {
      index,
      objects: plan,
      uploaded,
      previous,
      live: previous,
      deployment: null,
      outcome: "unchanged",
      rows,
    };
  }

  // A live.json published by other means (no record): record it so it can be rolled back to.
  if (previous && !history.some((d) => d.version === previous.version)) {
    try {
      const variants: Record<string, VariantSummary> = {};
      for (const [name, id] of Object.entries(previous.variants))
        variants[name] = summarize(id, await readBucketManifest(bucket, id));
      const adopted: Deployment = {
        format: "shardlm-deployment",
        version: previous.version,
        createdAt: new Date(Date.parse(previous.updatedAt) || Date.now()).toISOString(),
        kind: "adopted",
        rollbackOf: null,
        previousVersion: null,
        live: previous,
        variants,
        uploaded: { objects: 0, bytes: 0 },
      };
      await writeDeployment(bucket, adopted);
      history.push(adopted);
      log(
        `history: recorded the current live.json (version ${previous.version}) as deployments/${previous.version}.json`,
      );
    } catch (e) {
      log(
        `history: could not record the current live.json (${(e as Error).message}); it cannot be rolled back to`,
      );
    }
  }

  const version = nextVersion(previous, history);
  const live = LivePointer.parse({
    format: "shardlm-live",
    version,
    variants: index.variants,
    updatedAt: new Date().toISOString(),
  });
  const deployment: Deployment = {
    format: "shardlm-deployment",
    version,
    createdAt: live.updatedAt,
    kind: "deploy",
    rollbackOf: null,
    previousVersion: previous?.version ?? null,
    live,
    variants: Object.fromEntries(rows.map((r) => [r.variant, r.summary])),
    uploaded,
  };
  await writeDeployment(bucket, deployment);
  // The record now protects these objects from gc; make sure none went missing meanwhile.
  await checkComplete(bucket, live.variants, { content: false });
  await switchLive(bucket, live, previous);
  log(`switch: live.json -> version ${version}${previous ? ` (was ${previous.version})` : ""}`);
  await remember(); // after the last write: the fingerprint covers live.json and the record too
  return { index, objects: plan, uploaded, previous, live, deployment, outcome: "deployed", rows };
}
