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
import { startWorkerd } from "../compress/workerd-host.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import type { Bucket } from "../publish/bucket.ts";
import { bridgeBucket, r2BridgeWorker } from "../publish/buckets.ts";
import { publish } from "../publish/publish.ts";

const WORKER = fileURLToPath(new URL("../worker/index.ts", import.meta.url));

/** Rate-limit bindings by name, as wrangler.toml's [[ratelimits]] declare them. */
export type RateLimits = Record<string, { simple: { limit: number; period: 10 | 60 } }>;

export interface ApiServer {
  mf: Miniflare;
  url: URL;
  /** The Worker's R2 bucket SHARDS, through an R2 bridge worker in the same workerd (closed with the server). */
  bucket: Bucket;
  client: OpenAI;
  index: VariantsIndex;
  dir: string;
  close(): Promise<void>;
}

const wranglerToml = () =>
  readFileSync(fileURLToPath(new URL("../../wrangler.toml", import.meta.url)), "utf8");

/** The worker's compatibility flags, as deployed (wrangler.toml's compatibility_flags). */
export function workerCompatibilityFlags(): string[] {
  const toml = wranglerToml();
  const line = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
  return line ? [...line[1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!) : [];
}

/** A `KEY = "value"` string line of wrangler.toml's [vars], [limits] or any table, or null. */
export function wranglerSetting(table: string, key: string): string | null {
  const toml = wranglerToml();
  const start = toml.search(new RegExp(`^\\[${table}\\]\\s*$`, "m"));
  if (start < 0) return null;
  const body = toml.slice(start).split(/^\[/m)[1] ?? "";
  const m = new RegExp(`^${key}\\s*=\\s*"?([^"\\n]*)"?\\s*$`, "m").exec(body);
  return m ? m[1]!.trim() : null;
}

/**
 * Whether this run serves with the production clock (a clock that advances only at I/O):
 * SHARDLM_FROZEN_CLOCK=1 in the environment, or the SHARDLM_FROZEN_CLOCK binding per server.
 */
export const FROZEN_CLOCK_FROM_ENV = process.env.SHARDLM_FROZEN_CLOCK === "1";

/**
 * Starts the Worker with `bindings` (over defaults from wrangler.toml's [vars] that matter here,
 * CPU_LIMIT_MS, and SHARDLM_FROZEN_CLOCK from the environment) and publishes the variants in `dir`
 * (its variants.json: `index`).
 */
export async function startLocalApi(
  variants: { dir: string; index: VariantsIndex },
  bindings: Record<string, string> = {},
  ratelimits?: RateLimits,
): Promise<ApiServer> {
  const { dir, index } = variants;
  const cpuLimit = wranglerSetting("vars", "CPU_LIMIT_MS");
  const defaults: Record<string, string> = {
    ...(cpuLimit ? { CPU_LIMIT_MS: cpuLimit } : {}),
    ...(FROZEN_CLOCK_FROM_ENV ? { SHARDLM_FROZEN_CLOCK: "1" } : {}),
  };
  // The worker on its own socket, as in production: client disconnects reach it (request.signal).
  const mf = await startWorkerd(WORKER, {
    workerPath: "/src/worker/index.js",
    wasm: { "/build/wasm/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }) },
    bindings: { LIVE_CACHE_SECONDS: "0", ...defaults, ...bindings },
    http: true,
    direct: true,
    compatibilityFlags: workerCompatibilityFlags(),
    ...(ratelimits ? { ratelimits } : {}),
    // Publishing goes through dispatchFetch to this bridge, not Miniflare's getR2Bucket proxy (whose
    // synchronous channel lost replies under CI load: src/publish/buckets.ts).
    workers: [r2BridgeWorker("SHARDS")],
  });
  const url = await mf.unsafeGetDirectURL();
  const bucket = bridgeBucket(mf, "the local API's R2 bucket SHARDS", async () => {});
  await publish(bucket, dir, index);
  const client = new OpenAI({ baseURL: new URL("/v1", url).toString(), apiKey: "unused", maxRetries: 0 });
  return { mf, url, bucket, client, index, dir, close: () => mf.dispose() };
}
