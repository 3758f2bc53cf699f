/**
 * Runs a TypeScript worker inside workerd (Miniflare) with a local R2 bucket: esbuild bundles the
 * entry (leaving .wasm imports to workerd, which receives them as compiled modules, as wrangler does).
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
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

export async function startWorkerd(entry: string, wasmFiles: string[]): Promise<Miniflare> {
  const modules = [
    { type: "ESModule" as const, path: "/worker.js", contents: await bundleWorker(entry) },
    ...(await Promise.all(
      wasmFiles.map(async (f) => ({
        type: "CompiledWasm" as const,
        path: `/${basename(f)}`,
        contents: await readFile(f),
      })),
    )),
  ];
  const mf = new Miniflare({
    modulesRoot: "/",
    modules,
    compatibilityDate: "2026-04-01",
    r2Buckets: ["SHARDS"],
  });
  await mf.ready;
  return mf;
}
