/** Tokenizers by blob hash (variants of one model share theirs), read from R2 once per isolate. */
import type { TokenizerSpec } from "../engine/model.ts";
import { createTokenizer, type Tokenizer } from "../engine/tokenizer/index.ts";
import { R2Keys } from "../format/manifest.ts";
import type { R2BucketLike } from "./env.ts";

const cache = new Map<string, Promise<Tokenizer>>();

export function tokenizerFor(bucket: R2BucketLike, sha256: string): Promise<Tokenizer> {
  let t = cache.get(sha256);
  if (!t) {
    t = (async () => {
      const obj = await bucket.get(R2Keys.blob(sha256));
      if (!obj) throw new Error(`tokenizer blob ${sha256} is missing`);
      return createTokenizer(JSON.parse(await obj.text()) as TokenizerSpec);
    })();
    t.catch(() => cache.delete(sha256));
    cache.set(sha256, t);
  }
  return t;
}
