/**
 * Tokenizers by blob hash (variants of one model share theirs), read from R2 once per isolate.
 * Requests arriving while another request reads it wait for that read (./shared.ts).
 */

import { R2Keys } from "../format/manifest.ts";
import type { TokenizerSpec } from "../format/model.ts";
import { createTokenizer, type Tokenizer } from "../runtime/tokenizer/index.ts";
import type { R2BucketLike } from "./env.ts";
import { SharedTask, SharedWaitTimeout } from "./shared.ts";

const cache = new Map<string, SharedTask<Tokenizer>>();
/** How long a request waits for another request's read of the same tokenizer. */
const SHARED_WAIT_MS = 30_000;

export async function tokenizerFor(bucket: R2BucketLike, sha256: string): Promise<Tokenizer> {
  const shared = cache.get(sha256);
  if (shared) {
    try {
      return await shared.wait(SHARED_WAIT_MS);
    } catch (e) {
      if (!(e instanceof SharedWaitTimeout)) throw e;
      if (cache.get(sha256) === shared) cache.delete(sha256); // its reader is gone: read it anew
    }
  }
  const task = new SharedTask(async () => {
    const obj = await bucket.get(R2Keys.blob(sha256));
    if (!obj) throw new Error(`tokenizer blob ${sha256} is missing`);
    return createTokenizer(JSON.parse(await obj.text()) as TokenizerSpec);
  });
  cache.set(sha256, task);
  try {
    return await task.promise;
  } catch (e) {
    if (cache.get(sha256) === task) cache.delete(sha256);
    throw e;
  }
}
