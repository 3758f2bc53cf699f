/**
 * A variant's weight data region as one stream: its shards read from R2 in order and piped through
 * a SHA-256 check each. A shard that is missing, short or does not hash to its name errors the
 * stream, so the engine never finishes loading (and never runs) corrupt weights.
 */
import type { ShardRef } from "../format/manifest.ts";
import { R2Keys } from "../format/manifest.ts";
import type { R2BucketLike } from "./env.ts";

export class ShardError extends Error {
  override readonly name = "ShardError";
}

function toHex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** workerd's streaming digest (crypto.DigestStream); absent elsewhere. */
interface DigestStreamLike extends WritableStream<Uint8Array> {
  readonly digest: Promise<ArrayBuffer>;
}
type DigestStreamCtor = new (algorithm: string) => DigestStreamLike;

/** A macrotask turn: lets workerd serve other requests' I/O between chunks of a long load. */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export function verifiedShardStream(bucket: R2BucketLike, shards: ShardRef[]): ReadableStream<Uint8Array> {
  let index = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let hasher: WritableStreamDefaultWriter<Uint8Array> | null = null;
  let digest: Promise<ArrayBuffer> | null = null;
  let seen = 0;
  const DigestStream = (crypto as unknown as { DigestStream?: DigestStreamCtor }).DigestStream;
  if (!DigestStream) throw new ShardError("this runtime has no crypto.DigestStream to verify shards with");

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (!reader) {
          const shard = shards[index];
          if (!shard) {
            controller.close();
            return;
          }
          const obj = await bucket.get(R2Keys.shard(shard.sha256));
          if (!obj) throw new ShardError(`shard ${shard.sha256} is missing`);
          reader = obj.body.getReader();
          const ds = new DigestStream("SHA-256");
          digest = ds.digest;
          hasher = ds.getWriter();
          seen = 0;
        }
        const shard = shards[index]!;
        const { done, value } = await reader.read();
        if (!done) {
          seen += value.byteLength;
          if (seen > shard.bytes)
            throw new ShardError(`shard ${shard.sha256} is longer than ${shard.bytes} bytes`);
          await hasher!.write(value);
          controller.enqueue(value);
          await nextTask();
          return;
        }
        await hasher!.close();
        const actual = toHex(await digest!);
        if (seen !== shard.bytes)
          throw new ShardError(`shard ${shard.sha256} has ${seen} of ${shard.bytes} bytes`);
        if (actual !== shard.sha256)
          throw new ShardError(`shard ${shard.sha256} is corrupt (sha256 ${actual})`);
        reader = null;
        index++;
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
}
