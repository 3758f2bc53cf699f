/**
 * A variants folder mirrors the R2 layout (src/format/manifest.ts): shards/<sha256>, blobs/<sha256>,
 * manifests/<sha256>.json, plus variants.json (variant name -> manifest sha256) describing the last
 * build, and builds/<input key>.json (the manifest each variant build produced), so building another
 * model or config into the same folder does not lose the earlier builds' reuse. Content-addressed files are written to a temp name and renamed, so a crash never leaves a
 * file whose content does not match its name; variants.json is written last.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { Manifest, R2Keys, type ShardRef } from "../format/manifest.ts";

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function writeAtomic(path: string, bytes: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/** Writes `bytes` under its content hash unless already there; returns the hash. */
export function putContent(dir: string, key: (sha: string) => string, bytes: Uint8Array | string): string {
  const sha = sha256Hex(bytes);
  const path = join(dir, key(sha));
  mkdirSync(join(path, ".."), { recursive: true });
  if (!existsSync(path)) writeAtomic(path, bytes);
  return sha;
}

/** Cuts the data region into shards of at most `maxBytes` and stores them; returns their refs. */
export function putShards(dir: string, data: Uint8Array, maxBytes: number): ShardRef[] {
  const refs: ShardRef[] = [];
  for (let offset = 0; offset < data.byteLength; offset += maxBytes) {
    const slice = data.subarray(offset, Math.min(offset + maxBytes, data.byteLength));
    refs.push({ sha256: putContent(dir, R2Keys.shard, slice), offset, bytes: slice.byteLength });
  }
  return refs;
}

/** Validates and stores a manifest; returns its id (the sha256 of its JSON). */
export function putManifest(dir: string, manifest: Manifest): string {
  const json = `${JSON.stringify(Manifest.parse(manifest), null, 1)}\n`;
  return putContent(dir, R2Keys.manifest, json);
}

export function readManifest(dir: string, id: string): Manifest {
  return Manifest.parse(JSON.parse(readFileSync(join(dir, R2Keys.manifest(id)), "utf8")));
}

export const VariantsIndex = z.strictObject({
  format: z.literal("shardlm-variants"),
  /** variant name -> manifest sha256, in the order the config lists them. */
  variants: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
  /** What each variant was built from, so unchanged ones can be skipped. */
  inputs: z.record(z.string(), z.string()),
});
export type VariantsIndex = z.infer<typeof VariantsIndex>;

export function readVariantsIndex(dir: string): VariantsIndex | null {
  const path = join(dir, "variants.json");
  if (!existsSync(path)) return null;
  return VariantsIndex.parse(JSON.parse(readFileSync(path, "utf8")));
}

export function writeVariantsIndex(dir: string, index: VariantsIndex): void {
  mkdirSync(dir, { recursive: true });
  writeAtomic(join(dir, "variants.json"), `${JSON.stringify(VariantsIndex.parse(index), null, 2)}\n`);
}

/** builds/<key>.json: which manifest a variant with these inputs (build-variants' input key) built. */
const BuildRecord = z.strictObject({
  format: z.literal("shardlm-build"),
  variant: z.string(),
  manifest: z.string().regex(/^[0-9a-f]{64}$/),
});

const buildRecordPath = (dir: string, inputKey: string): string => join(dir, "builds", `${inputKey}.json`);

/** The manifest id an earlier build with exactly these inputs produced, or null (none, or unreadable). */
export function readBuildRecord(dir: string, inputKey: string, variant: string): string | null {
  const path = buildRecordPath(dir, inputKey);
  if (!existsSync(path)) return null;
  const r = BuildRecord.safeParse(
    (() => {
      try {
        return JSON.parse(readFileSync(path, "utf8"));
      } catch {
        return null;
      }
    })(),
  );
  // A damaged record only costs a rebuild.
  return r.success && r.data.variant === variant ? r.data.manifest : null;
}

export function writeBuildRecord(dir: string, inputKey: string, variant: string, manifest: string): void {
  mkdirSync(join(dir, "builds"), { recursive: true });
  const record = BuildRecord.parse({ format: "shardlm-build", variant, manifest });
  writeAtomic(buildRecordPath(dir, inputKey), `${JSON.stringify(record, null, 2)}\n`);
}
