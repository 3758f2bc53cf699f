/**
 * Runs a TypeScript worker inside workerd (Miniflare, the runtime wrangler uses) with a local R2
 * bucket: esbuild bundles the entry and leaves .wasm imports to workerd, which gets them as compiled
 * modules at the paths the bundle imports them from, as wrangler does. The build measures verify costs
 * in workerd with it (./workerd-measure.ts); the bench and the tests run their workers with it. Also
 * the workerd processes this one started and their CPU time (Linux /proc), since a Worker has no CPU
 * clock of its own.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { build } from "esbuild";
import { Log, LogLevel, Miniflare, type WorkerOptions } from "miniflare";

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
  /**
   * More workers in the same workerd, after this one (Miniflare's `workers`; each named, reached by
   * dispatchFetch through its `routes`). An R2 bucket of the same name is the same bucket in all
   * of them: local-api publishes through an R2 bridge worker this way.
   */
  workers?: WorkerOptions[];
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
  const main: WorkerOptions = {
    modulesRoot: "/",
    modules,
    compatibilityDate: "2026-04-01",
    compatibilityFlags: opts.compatibilityFlags ?? [],
    r2Buckets: ["SHARDS"],
    bindings: opts.bindings ?? {},
    ...(opts.ratelimits ? { ratelimits: opts.ratelimits } : {}),
    ...(opts.http && opts.direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
  };
  const mf = new Miniflare({
    // The first worker is the default one (dispatchFetch without a route, getR2Bucket, direct URL).
    workers: [main, ...(opts.workers ?? [])],
    ...(opts.http ? { host: "127.0.0.1", port: 0 } : {}),
    // SHARDLM_WORKERD_VERBOSE=1: workerd's own logs (cancelled requests, cross-request promises).
    ...(process.env.SHARDLM_WORKERD_VERBOSE === "1" ? { verbose: true, log: new Log(LogLevel.VERBOSE) } : {}),
  });
  try {
    await mf.ready;
  } catch (e) {
    // A workerd that failed to start must not keep this process alive.
    await mf.dispose().catch(() => {});
    throw e;
  }
  return mf;
}

/** The workerd binary Miniflare runs: MINIFLARE_WORKERD_PATH, else the `workerd` package's for this platform. */
export function workerdBinary(): string {
  const env = process.env.MINIFLARE_WORKERD_PATH;
  if (env) return env;
  return (createRequire(import.meta.url)("workerd") as { default: string }).default;
}

/**
 * Why workerd cannot run here (no binary for this platform, one that fails `--version`), or null
 * when it can. Miniflare itself crashes the process on a missing binary (an unhandled spawn error).
 */
export function workerdUnavailable(): string | null {
  let bin: string;
  try {
    bin = workerdBinary();
  } catch (e) {
    return `no workerd binary for ${process.platform}-${process.arch}: ${(e as Error).message}`;
  }
  if (!existsSync(bin)) return `the workerd binary ${bin} does not exist`;
  const r = spawnSync(bin, ["--version"], { timeout: 10_000, encoding: "utf8" });
  if (r.error) return `${bin} --version: ${r.error.message}`;
  if (r.status !== 0) {
    const err = (r.stderr ?? "").trim().slice(0, 200);
    return `${bin} --version exited ${r.status ?? r.signal}${err ? `: ${err}` : ""}`;
  }
  return null;
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The workerd processes descended from this one (Linux /proc; empty elsewhere). */
export function workerdPids(): number[] {
  if (!existsSync("/proc/self/task")) return [];
  const found: number[] = [];
  const queue = [process.pid];
  while (queue.length) {
    for (const c of childPids(queue.shift()!)) {
      try {
        if (readFileSync(`/proc/${c}/comm`, "utf8").trim() === "workerd") found.push(c);
        else queue.push(c);
      } catch {
        // gone meanwhile
      }
    }
  }
  return found;
}

/**
 * CPU time (ms, ns resolution) all threads of process `pid` have run so far, from
 * /proc/PID/task/TID/schedstat: how the bench times workerd by CPU as it times Node, since a
 * Worker has no CPU clock of its own. null where /proc is not there.
 */
export function processCpuMs(pid: number): number | null {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // thread gone meanwhile
      }
    }
    return ns / 1e6;
  } catch {
    return null;
  }
}
