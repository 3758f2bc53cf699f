/**
 * Runs a TypeScript worker inside workerd (Miniflare, the runtime wrangler uses) with a local R2
 * bucket: esbuild bundles the entry and leaves .wasm imports to workerd, which gets them as compiled
 * modules at the paths the bundle imports them from, as wrangler does.
 */
import { readFile } from "node:fs/promises";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

export async function bundleWorker(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
    external: ["*.wasm"],
    mainFields: ["module", "main"],
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

export interface WorkerdOptions {
  /** Where the bundle sits in the module tree (its relative .wasm imports resolve from here). */
  workerPath?: string;
  /** Module path (as the bundle imports it, resolved from workerPath) -> file on disk. */
  wasm: Record<string, string>;
  bindings?: Record<string, string>;
  /** Serve HTTP on 127.0.0.1 (port 0 = any free port); without it, use mf.dispatchFetch. */
  http?: boolean;
  /**
   * With `http`: serve the worker on its own socket (mf.unsafeGetDirectURL()) instead of behind
   * Miniflare's entry worker, which hides client disconnects from the worker (its request signal
   * never fires) and re-encodes responses.
   */
  direct?: boolean;
  compatibilityFlags?: string[];
  /** Workers rate-limiting bindings (wrangler.toml [[ratelimits]]), by binding name. */
  ratelimits?: Record<string, { simple: { limit: number; period: 10 | 60 } }>;
}

export async function startWorkerd(entry: string, opts: WorkerdOptions): Promise<Miniflare> {
  const modules = [
    { type: "ESModule" as const, path: opts.workerPath ?? "/worker.js", contents: await bundleWorker(entry) },
    ...(await Promise.all(
      Object.entries(opts.wasm).map(async ([path, file]) => ({
        type: "CompiledWasm" as const,
        path,
        contents: await readFile(file),
      })),
    )),
  ];
  const mf = new Miniflare({
    modulesRoot: "/",
    modules,
    compatibilityDate: "2026-04-01",
    compatibilityFlags: opts.compatibilityFlags ?? [],
    r2Buckets: ["SHARDS"],
    bindings: opts.bindings ?? {},
    ...(opts.ratelimits ? { ratelimits: opts.ratelimits } : {}),
    ...(opts.http ? { host: "127.0.0.1", port: 0 } : {}),
    ...(opts.http && opts.direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
  });
  await mf.ready;
  return mf;
}
