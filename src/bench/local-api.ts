/**
 * The real API in workerd on this machine: the Worker (src/worker) bundled and served over HTTP on
 * 127.0.0.1 with its kernels and the deployed compatibility flags, and a built variants folder
 * published to its local R2 with the deploy code. Used by the API tests and the load test.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import OpenAI from "openai";
import type { VariantsIndex } from "../compress/variant-store.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { miniflareBucket } from "../publish/miniflare-bucket.ts";
import { type BucketWriter, publish } from "../publish/publish.ts";
import { startWorkerd } from "./workerd-host.ts";

const WORKER = fileURLToPath(new URL("../worker/index.ts", import.meta.url));

/** Rate-limit bindings by name, as wrangler.toml's [[ratelimits]] declare them. */
export type RateLimits = Record<string, { simple: { limit: number; period: 10 | 60 } }>;

export interface ApiServer {
  mf: Miniflare;
  url: URL;
  bucket: BucketWriter;
  client: OpenAI;
  index: VariantsIndex;
  dir: string;
  close(): Promise<void>;
}

/** The worker's compatibility flags, as deployed (wrangler.toml's compatibility_flags). */
export function workerCompatibilityFlags(): string[] {
  const toml = readFileSync(fileURLToPath(new URL("../../wrangler.toml", import.meta.url)), "utf8");
  const line = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
  return line ? [...line[1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!) : [];
}

/** Starts the Worker with `bindings` and publishes the variants in `dir` (its variants.json: `index`). */
export async function startLocalApi(
  variants: { dir: string; index: VariantsIndex },
  bindings: Record<string, string> = {},
  ratelimits?: RateLimits,
): Promise<ApiServer> {
  const { dir, index } = variants;
  // The worker on its own socket, as in production: client disconnects reach it (request.signal).
  const mf = await startWorkerd(WORKER, {
    workerPath: "/src/worker/index.js",
    wasm: { "/build/wasm/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }) },
    bindings: { LIVE_CACHE_SECONDS: "0", ...bindings },
    http: true,
    direct: true,
    compatibilityFlags: workerCompatibilityFlags(),
    ...(ratelimits ? { ratelimits } : {}),
  });
  const url = await mf.unsafeGetDirectURL();
  const bucket = miniflareBucket(await mf.getR2Bucket("SHARDS"));
  await publish(bucket, dir, index);
  const client = new OpenAI({ baseURL: new URL("/v1", url).toString(), apiKey: "unused", maxRetries: 0 });
  return { mf, url, bucket, client, index, dir, close: () => mf.dispose() };
}
