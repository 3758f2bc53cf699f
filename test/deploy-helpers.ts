/**
 * Shared by test/deploy-*.test.ts: variant folders (the cached test build, and a second "changed"
 * set), a bucket wrapper that counts (and can kill) writes, and the real worker in workerd reading
 * wrangler's local R2 state in a temp folder: the state `npm run deploy --local` writes.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import OpenAI from "openai";
import { buildVariants } from "../src/compress/build-variants.ts";
import { bundleWorker } from "../src/compress/workerd-host.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import type { Bucket } from "../src/publish/buckets.ts";
import { buildTestVariants } from "./helpers/api-server.ts";
import { sharedModelPath } from "./helpers/paths.ts";

export const MODEL = sharedModelPath();
/** What deploy() builds the variants folder with (the pipeline's buildVariants). */
export const build = buildVariants;
export const BUCKET_NAME = "shardlm-shards";
const CACHE = fileURLToPath(new URL("../node_modules/.cache/shardlm", import.meta.url));
const WORKER = fileURLToPath(new URL("../src/worker/index.ts", import.meta.url));

/** The changed variant set: one quality-tier variant with group size 64 (a different name, new shards). */
export const CONFIG_B = {
  seed: 1234,
  variants: [{ name: "quality-g64", tier: "quality", quant: { method: "gptq", groupSize: 64 } }],
};

export interface VariantSet {
  /** Config file the folder was built from (deploy() rebuilds nothing while inputs are unchanged). */
  config: string;
  /** A private copy of the built folder. */
  out: string;
}

/** Set A: the default config's variants (the api tests' cached build), copied to `dir`. */
export async function variantsA(dir: string): Promise<VariantSet> {
  const { dir: cached } = await buildTestVariants();
  const out = join(dir, "variants-a");
  cpSync(cached, out, { recursive: true });
  return { config: fileURLToPath(new URL("../config/variants.json", import.meta.url)), out };
}

/** Set B (CONFIG_B), built once into node_modules/.cache and copied to `dir`. */
export async function variantsB(dir: string): Promise<VariantSet> {
  const cached = join(CACHE, "deploy-test-b");
  mkdirSync(cached, { recursive: true });
  const config = join(CACHE, "deploy-test-b.json");
  writeFileSync(config, JSON.stringify(CONFIG_B));
  await buildVariants({ model: MODEL, config, out: cached, log: () => {} });
  const out = join(dir, "variants-b");
  cpSync(cached, out, { recursive: true });
  return { config, out };
}

/**
 * Counts writes. `failAfter`: the write after that many throws (an upload killed half-way);
 * `failOn`: writes of keys it matches throw.
 */
export function countingBucket(
  inner: Bucket,
  opts: { failAfter?: number; failOn?: (key: string) => boolean } = {},
): Bucket & { puts: string[]; deletes: string[] } {
  const puts: string[] = [];
  const deletes: string[] = [];
  return {
    ...inner,
    puts,
    deletes,
    async put(key, bytes) {
      if (opts.failAfter !== undefined && puts.length >= opts.failAfter)
        throw new Error(`killed after ${opts.failAfter} puts`);
      if (opts.failOn?.(key)) throw new Error(`killed writing ${key}`);
      puts.push(key);
      await inner.put(key, bytes);
    },
    async delete(key) {
      deletes.push(key);
      await inner.delete(key);
    },
  };
}

/** wrangler.toml's compatibility_flags: the worker runs here as it is deployed. */
function wranglerCompatibilityFlags(): string[] {
  const toml = readFileSync(fileURLToPath(new URL("../wrangler.toml", import.meta.url)), "utf8");
  const line = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
  return line ? [...line[1]!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!) : [];
}

export interface PersistedWorker {
  mf: Miniflare;
  url: URL;
  client: OpenAI;
  close(): Promise<void>;
}

/**
 * src/worker in workerd with R2 persisted where wrangler keeps it: binding SHARDS -> bucket
 * shardlm-shards under <persistTo>/v3/r2 (as `wrangler dev --persist-to <persistTo>`).
 */
export async function startPersistedWorker(
  persistTo: string,
  bindings: Record<string, string> = {},
): Promise<PersistedWorker> {
  const wasm = await ensureKernelsWasm({ relaxed: true });
  const mf = new Miniflare({
    modulesRoot: "/",
    modules: [
      { type: "ESModule", path: "/src/worker/index.js", contents: await bundleWorker(WORKER) },
      { type: "CompiledWasm", path: "/build/wasm/kernels-relaxed.wasm", contents: readFileSync(wasm) },
    ],
    compatibilityDate: "2026-04-01",
    compatibilityFlags: wranglerCompatibilityFlags(),
    r2Buckets: { SHARDS: BUCKET_NAME },
    r2Persist: join(persistTo, "v3", "r2"),
    bindings: { LIVE_CACHE_SECONDS: "0", ...bindings },
    host: "127.0.0.1",
    port: 0,
  });
  const url = await mf.ready;
  const client = new OpenAI({ baseURL: new URL("/v1", url).toString(), apiKey: "unused", maxRetries: 0 });
  return { mf, url, client, close: () => mf.dispose() };
}

export const quiet = (): void => {};
