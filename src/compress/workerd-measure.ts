/**
 * Verify costs measured where variants are served: a small Worker (./verify-cost-worker.ts) in
 * workerd (Miniflare) on the production kernel build (kernels-relaxed.wasm, i32 dot-add), the engine
 * laid out as the Worker lays it out. Node's SIMD128 build batches verify rows relatively worse
 * (per row ~0.7 of a step against workerd's 0.4-0.6), so costs measured in Node made the served
 * drafter too cautious. One workerd serves every variant of a build.
 */
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import { z } from "zod";
import type { VerifyCostsOrigin } from "../format/speculative.ts";
import type { WeightTable } from "../format/weights.ts";
import { ensureKernelsWasm } from "../kernels/wasm/build.ts";
import { processCpuMs, startWorkerd, workerdPids, workerdUnavailable } from "./workerd-host.ts";

const WORKER = fileURLToPath(new URL("./verify-cost-worker.ts", import.meta.url));

/** What the build records: DraftSettings' rowCost, rowCosts, headShare and headCosts, and where they were measured. */
export interface MeasuredVerifyCosts {
  /** Per-row cost of an 8-row verify (layers and heads) relative to 8 decode steps (measureRowCost). */
  rowCost: number;
  /** Entry m - 1: per-row cost of an m-row verify's layers, in decode steps (measureVerifyCosts). */
  rowCosts: number[];
  /** The head's share of a decode step. */
  headShare: number;
  /** Entry m - 1: per-row cost of one batched head pass over m rows, in decode steps (measureVerifyCosts). */
  headCosts?: number[];
  origin: VerifyCostsOrigin;
}

/** workerd did not start here (no binary for this platform, a broken install): the build cannot measure in it. */
export class WorkerdUnavailableError extends Error {
  override readonly name = "WorkerdUnavailableError";
}

/**
 * The worker's answer; a cost its clock could not resolve is null (0 ms / 0 ms: NaN in JSON) or, for
 * measureRowCost (unclamped), 0 (a verify that read 0 ms).
 */
const Answer = z.object({
  rowCost: z.number().nonnegative().nullable(),
  rowCosts: z.array(z.number().positive().nullable()).min(1),
  headShare: z.number().min(0).max(1).nullable(),
  headCosts: z.array(z.number().nonnegative().nullable()).optional(),
  kvCache: z.enum(["f16", "q8"]),
  contextSize: z.number().int().positive(),
});

const versionOf = (pkg: string): string => {
  try {
    return (createRequire(import.meta.url)(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return "unknown";
  }
};

/**
 * Measurements per variant at most: the worker's clock ticks by 1 ms and lags under load, so on a tiny
 * model a timed section can read 0 ms (a cost of 0/0); a new measurement is taken then.
 */
const ATTEMPTS = 3;

/** Below this share of wall time on the CPU, workerd's measurement is taken once more (the better one is kept). */
const MIN_CPU_SHARE = 0.6;

export class WorkerdVerifyCosts {
  private constructor(
    private readonly mf: Miniflare,
    /** The workerd process started here (null where it cannot be told apart, or without /proc). */
    private readonly pid: number | null,
  ) {}

  /**
   * Starts workerd with the measuring Worker (~1-2 s). Throws WorkerdUnavailableError, naming the
   * cause and the way out, when workerd does not start.
   */
  static async start(): Promise<WorkerdVerifyCosts> {
    const wasm = { "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }) };
    const before = new Set(workerdPids());
    try {
      const why = workerdUnavailable();
      if (why) throw new Error(why);
      const mf = await startWorkerd(WORKER, { wasm });
      const ours = workerdPids().filter((p) => !before.has(p));
      return new WorkerdVerifyCosts(mf, ours.length === 1 ? ours[0]! : null);
    } catch (e) {
      throw new WorkerdUnavailableError(
        `verify costs are measured in workerd (Miniflare ${versionOf("miniflare")}), which did not start here: ` +
          `${(e as Error).message}. Build with --verify-costs node (BuildOptions.verifyCosts "node") to measure ` +
          `in Node instead; the manifest then says so (speculative.measured.verifyCosts.measuredOn "node")`,
        { cause: e },
      );
    }
  }

  /**
   * Measures a packed variant (`table`, its data region `data`) in workerd. Throws an Error with the
   * worker's message when it refuses the variant (a table or data it cannot load) or fails.
   */
  async measure(table: WeightTable, data: Uint8Array): Promise<MeasuredVerifyCosts> {
    const head = Buffer.from(JSON.stringify(table));
    const body = Buffer.concat([head, data]);
    let best: { costs: MeasuredVerifyCosts; cpuShare: number } | null = null;
    let unresolved = 0;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const c0 = this.pid === null ? null : processCpuMs(this.pid);
      const t0 = performance.now();
      const a = await this.post(head.byteLength, body);
      const wallMs = performance.now() - t0;
      const c1 = this.pid === null ? null : processCpuMs(this.pid);
      const { rowCost, headShare } = a;
      const rowCosts = a.rowCosts.filter((c): c is number => c !== null);
      // a head pass the clock could not resolve (a tiny model's) is retried like a row cost
      const headCosts = a.headCosts?.map((c) => c ?? 0);
      if (
        !rowCost ||
        headShare === null ||
        rowCosts.length < a.rowCosts.length ||
        headCosts?.some((c) => !c)
      ) {
        unresolved++;
        continue;
      }
      // workerd's CPU time over the request against its wall time: well below 1 when other processes
      // took the CPU (the worker's clock is wall time: on 2 cores at load 10, 25-31% and costs off by
      // up to 2x), so a disturbed measurement is taken again once and the less disturbed one kept.
      const cpuShare = c0 === null || c1 === null ? null : Math.min(1, (c1 - c0) / wallMs);
      const costs: MeasuredVerifyCosts = {
        rowCost,
        rowCosts,
        headShare,
        ...(headCosts ? { headCosts } : {}),
        origin: {
          measuredOn: "workerd",
          kernels: "relaxed",
          detail:
            `workerd ${versionOf("workerd")} (Miniflare ${versionOf("miniflare")}), kernels-relaxed.wasm, ` +
            `${a.kvCache} KV cache, context ${a.contextSize}, the worker's clock` +
            (cpuShare === null ? "" : ` (workerd on the CPU ${(cpuShare * 100).toFixed(0)}% of it)`) +
            `, ${cpus()[0]?.model ?? "unknown cpu"}`,
        },
      };
      if (cpuShare === null || cpuShare >= MIN_CPU_SHARE) return costs;
      if (!best || cpuShare > best.cpuShare) best = { costs, cpuShare };
      if (attempt - unresolved >= 2) break;
    }
    if (best) return best.costs;
    throw new Error(
      `verify costs in workerd: the worker's clock resolved no time in a timed section ${ATTEMPTS} times`,
    );
  }

  private async post(tableBytes: number, body: Buffer): Promise<z.infer<typeof Answer>> {
    const res = await this.mf.dispatchFetch("http://measure/verify-costs", {
      method: "POST",
      headers: { "x-table-bytes": String(tableBytes) },
      body,
    });
    const text = await res.text();
    if (res.status !== 200) {
      let message = text.slice(0, 500);
      try {
        message = (JSON.parse(text) as { error: { message: string } }).error.message;
      } catch {
        // not the worker's JSON error: show the raw text
      }
      throw new Error(`verify costs in workerd: HTTP ${res.status}: ${message}`);
    }
    return Answer.parse(JSON.parse(text));
  }

  async dispose(): Promise<void> {
    await this.mf.dispose();
  }
}
