/**
 * Which objects of wrangler's local R2 state were last read back and found to hash to their keys,
 * so a later deploy (every `npm start`) need not read and hash them all again (147 MB for the
 * SmolLM2 variants: ~30 s on a loaded machine).
 *
 * Why skipping is safe: Miniflare keeps each object's bytes in a file under
 * <persist-to>/v3/r2/<bucket>/blobs/ and never changes a blob file in place (a put writes a new
 * file, a delete removes one). The record holds a fingerprint of that folder (every file's name,
 * size, mtime and inode) taken when the objects were verified; while the folder's fingerprint is
 * the same, no object's bytes can have changed short of a write that keeps a file's size and
 * restores its mtime (the trust fetch-model's stamp already gives the cached model: sha256, size,
 * mtime). Any other change (an edit, an upload, a delete, a copied state folder) changes the
 * fingerprint and every object is read and hashed again. The record lives next to the state
 * (<persist-to>/shardlm-verified.json); a missing or unreadable one means "nothing verified".
 */
import { createHash } from "node:crypto";
import { readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

export interface VerifiedContent {
  /** Keys (with the sha256 and size they were verified against) whose content need not be read again. */
  trusted(): Promise<Map<string, { sha256: string; bytes: number }>>;
  /** Records `objects` as verified against the state as it is now (call after the last write). */
  remember(objects: { key: string; sha256: string; bytes: number }[]): Promise<void>;
}

const Record = z.object({
  format: z.literal("shardlm-verified-content"),
  fingerprint: z.string(),
  objects: z.record(z.string(), z.object({ sha256: z.string(), bytes: z.number() })),
});

/** sha256 over each blob file's name, size, mtime and inode, in name order. */
async function blobsFingerprint(blobsDir: string): Promise<string> {
  const names = (await readdir(blobsDir).catch(() => [] as string[])).sort();
  const hash = createHash("sha256");
  for (const name of names) {
    const st = await stat(join(blobsDir, name));
    hash.update(`${name} ${st.size} ${st.mtimeMs} ${st.ino}\n`);
  }
  return hash.digest("hex");
}

/** The record for the local R2 bucket `bucketName` under `persistTo` (wrangler's --persist-to). */
export function localVerifiedContent(persistTo: string, bucketName: string): VerifiedContent {
  const blobs = join(persistTo, "v3", "r2", bucketName, "blobs");
  const file = join(persistTo, "shardlm-verified.json");
  return {
    async trusted() {
      let record: z.infer<typeof Record>;
      try {
        record = Record.parse(JSON.parse(await readFile(file, "utf8")));
      } catch {
        return new Map();
      }
      if (record.fingerprint !== (await blobsFingerprint(blobs))) return new Map();
      return new Map(Object.entries(record.objects));
    },
    async remember(objects) {
      const record: z.infer<typeof Record> = {
        format: "shardlm-verified-content",
        fingerprint: await blobsFingerprint(blobs),
        objects: Object.fromEntries(objects.map((o) => [o.key, { sha256: o.sha256, bytes: o.bytes }])),
      };
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(record)}\n`);
      await rename(tmp, file);
    },
  };
}
