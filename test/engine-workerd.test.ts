/**
 * The engine inside workerd (Miniflare, as wrangler runs it): weights streamed from a local R2
 * object into wasm memory, kernels imported as compiled modules. Same tokens as in Node, for both
 * kernel builds (relaxed SIMD exists in workerd only).
 */
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWorkerd } from "../src/compress/workerd-host.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { loadModel } from "../src/model/import/index.ts";
import { bridgeBucket, r2BridgeWorker } from "../src/publish/buckets.ts";
import { generate } from "../src/runtime/generate.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { type PackedTestModel, packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

const PROMPT = [1, 403, 407, 261, 378];
let mf: Miniflare;
let packed: PackedTestModel;

beforeAll(async () => {
  packed = packForTest(await loadModel(sharedModelPath()));
  const wasm = {
    "/kernels.wasm": await ensureKernelsWasm(),
    "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }),
  };
  mf = await startWorkerd(fileURLToPath(new URL("../src/bench/engine-worker.ts", import.meta.url)), {
    wasm,
    workers: [r2BridgeWorker("SHARDS")],
  });
  // Through the R2 bridge (dispatchFetch), not getR2Bucket's proxy, which lost replies under CI load.
  const bucket = bridgeBucket(mf, "the test's R2 bucket SHARDS", async () => {});
  await bucket.put("table.json", new TextEncoder().encode(JSON.stringify(packed.table)));
  await bucket.put("weights.bin", packed.data);
});

afterAll(async () => {
  await mf?.dispose();
});

async function nodeTokens(kvCache: "f16" | "q8"): Promise<number[]> {
  const engine = await WasmEngine.load(await loadTestKernels(), packed.table, bytesToStream(packed.data), {
    kvCache,
  });
  const out: number[] = [];
  for await (const t of generate(engine, PROMPT, { maxTokens: 48, temperature: 0 })) out.push(t);
  return out;
}

describe("wasm engine in workerd", () => {
  for (const relaxed of [false, true]) {
    for (const kvCache of ["f16", "q8"] as const) {
      it(`${relaxed ? "relaxed-SIMD" : "SIMD128"} build, ${kvCache} KV: same greedy tokens as in Node`, async () => {
        const res = await mf.dispatchFetch("http://engine/", {
          method: "POST",
          body: JSON.stringify({ prompt: PROMPT, maxTokens: 48, kvCache, relaxed }),
        });
        expect(res.status).toBe(200);
        const got = (await res.json()) as { tokens: number[]; memoryBytes: number };
        expect(got.tokens).toEqual(await nodeTokens(kvCache));
        expect(got.tokens.length).toBe(48);
        expect(got.memoryBytes).toBeLessThan(4 << 20);
      });
    }
  }
});

describe("speculative decoding in workerd (the bench's /generate-timed and /row-cost)", () => {
  const post = async <T>(path: string, body: object): Promise<T> => {
    const res = await mf.dispatchFetch(`http://engine${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  };
  interface TimedRun {
    tokens: number[];
    decodeMs: number;
    ttftMs: number;
    stats: { drafted: number; accepted: number; verifications: number };
    cached: number;
  }
  // a repetitive prompt, so prompt lookup drafts (stories260K continues it)
  const prompt = [...PROMPT, ...PROMPT, ...PROMPT];

  it("speculation on the production kernels keeps the greedy tokens; verify costs are measured there", async () => {
    const key = { relaxed: true, kvCache: "f16" };
    const plain = await post<TimedRun>("/generate-timed", { ...key, prompt, maxTokens: 48 });
    const spec = await post<TimedRun>("/generate-timed", {
      ...key,
      prompt,
      maxTokens: 48,
      speculative: { ngramMin: 1, adaptive: false, maxDraft: 4 },
    });
    expect(plain.tokens).toHaveLength(48);
    expect(spec.tokens).toEqual(plain.tokens);
    expect(plain.stats.drafted).toBe(0);
    expect(spec.stats.drafted).toBeGreaterThan(0);
    expect(spec.stats.accepted).toBeLessThanOrEqual(spec.stats.drafted);
    type Costs = { rowCost: number; rowCosts: number[]; headShare: number; headCosts: number[] };
    // The worker's clock ticks by 1 ms and lags under load: a section can read 0 ms, a cost 0/0 (null
    // in JSON). As the build's host does (ATTEMPTS in src/compress/workerd-measure.ts), ask again then.
    let costs = await post<Costs>("/row-cost", key);
    for (let attempt = 2; attempt <= 3 && JSON.stringify(costs).includes("null"); attempt++)
      costs = await post<Costs>("/row-cost", key);
    expect(costs.rowCost).toBeGreaterThan(0);
    expect(costs.rowCosts).toHaveLength(8);
    for (const c of costs.rowCosts) expect(c).toBeGreaterThan(0);
    expect(costs.headShare).toBeGreaterThanOrEqual(0);
    expect(costs.headShare).toBeLessThan(1);
    // Batched head passes of 1..8 rows: a pass of more rows never costs less in all.
    expect(costs.headCosts).toHaveLength(8);
    for (let m = 2; m <= 8; m++)
      expect(m * costs.headCosts[m - 1]!).toBeGreaterThanOrEqual(
        (m - 1) * costs.headCosts[m - 2]! * (1 - 1e-9),
      );
  });
});
