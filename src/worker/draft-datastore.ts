/**
 * A variant's model-output draft datastore (manifest speculative.datastore; src/format/ngram-datastore.ts),
 * read from R2 with the variant: the blob's length and SHA-256 are checked against the manifest and
 * its bytes parsed by the format's checked parser. It only proposes drafts (output is the variant's
 * either way), so a missing or corrupt blob costs speed, not answers: the caller serves without it.
 */
import { R2Keys } from "../format/manifest.ts";
import { NgramDatastore, type NgramDatastoreRef } from "../format/ngram-datastore.ts";
import type { R2BucketLike } from "./env.ts";

export class DraftDatastoreError extends Error {
  override readonly name = "DraftDatastoreError";
}

/** Reads, checks and parses the datastore `ref` names; throws DraftDatastoreError saying what is wrong. */
export async function readDraftDatastore(
  bucket: R2BucketLike,
  ref: NgramDatastoreRef,
): Promise<NgramDatastore> {
  const obj = await bucket.get(R2Keys.blob(ref.sha256));
  if (!obj) throw new DraftDatastoreError(`draft datastore blob ${ref.sha256} is missing`);
  const bytes = new Uint8Array(await obj.arrayBuffer());
  if (bytes.byteLength !== ref.bytes)
    throw new DraftDatastoreError(
      `draft datastore blob ${ref.sha256} has ${bytes.byteLength} bytes, not ${ref.bytes}`,
    );
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== ref.sha256)
    throw new DraftDatastoreError(`draft datastore blob ${ref.sha256} does not match its sha256`);
  try {
    return NgramDatastore.parse(bytes);
  } catch (e) {
    throw new DraftDatastoreError(`draft datastore blob ${ref.sha256}: ${(e as Error).message}`);
  }
}
