/**
 * The real API in workerd for tests: variants built from stories260K (cached in
 * node_modules/.cache, rebuilt only when the pipeline or config changes), published to the
 * worker's local R2 with the same code the deploy script uses, served over HTTP on 127.0.0.1.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import OpenAI from "openai";
import { buildVariants, DEFAULT_CONFIG } from "../../scripts/build-variants.ts";
import { ensureKernelsWasm } from "../../scripts/build-wasm.ts";
import { startWorkerd } from "../../src/bench/workerd-host.ts";
import type { VariantsIndex } from "../../src/compress/variant-store.ts";
import { miniflareBucket } from "../../src/publish/miniflare-bucket.ts";
import { type BucketWriter, publish } from "../../src/publish/publish.ts";
import { sharedModelPath } from "./paths.ts";

export const TEST_VARIANTS_DIR = fileURLToPath(
  new URL("../../node_modules/.cache/shardlm/test-variants", import.meta.url),
);
const WORKER = fileURLToPath(new URL("../../src/worker/index.ts", import.meta.url));

export async function buildTestVariants(): Promise<{ dir: string; index: VariantsIndex }> {
  const r = await buildVariants({
    model: sharedModelPath(),
    config: DEFAULT_CONFIG,
    out: TEST_VARIANTS_DIR,
    log: () => {},
  });
  return { dir: r.out, index: r.index };
}

export interface ApiServer {
  mf: Miniflare;
  url: URL;
  bucket: BucketWriter;
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
 * Whether this test run serves with the production clock (a clock that advances only at I/O):
 * SHARDLM_FROZEN_CLOCK=1 in the environment, or `frozenClock` per server.
 */
export const FROZEN_CLOCK_FROM_ENV = process.env.SHARDLM_FROZEN_CLOCK === "1";

/**
 * Starts the API. Bindings default to wrangler.toml's [vars] that matter here (CPU_LIMIT_MS) and
 * SHARDLM_FROZEN_CLOCK from the environment; `bindings` override them.
 */
export async function startApiServer(
  bindings: Record<string, string> = {},
  ratelimits?: Record<string, { simple: { limit: number; period: 10 | 60 } }>,
): Promise<ApiServer> {
  const cpuLimit = wranglerSetting("vars", "CPU_LIMIT_MS");
  const defaults: Record<string, string> = {
    ...(cpuLimit ? { CPU_LIMIT_MS: cpuLimit } : {}),
    ...(FROZEN_CLOCK_FROM_ENV ? { SHARDLM_FROZEN_CLOCK: "1" } : {}),
  };
  const { dir, index } = await buildTestVariants();
  // The worker on its own socket, as in production: client disconnects reach it (request.signal).
  const mf = await startWorkerd(WORKER, {
    workerPath: "/src/worker/index.js",
    wasm: { "/build/wasm/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }) },
    bindings: { LIVE_CACHE_SECONDS: "0", ...defaults, ...bindings },
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
