/**
 * The build's verify-cost measurement in workerd (src/compress/workerd-measure.ts and its worker):
 * sane costs on stories260K on the production kernels, clear refusals of garbage requests (workerd
 * stays usable after them), a clear error where workerd cannot start, the explicit Node measurement
 * recorded as such in the manifest, and the CLI flag's bad values.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildVariants } from "../src/compress/build-variants.ts";
import { engineFor } from "../src/compress/measure.ts";
import { readManifest } from "../src/compress/variant-store.ts";
import { startWorkerd } from "../src/compress/workerd-host.ts";
import { WorkerdUnavailableError, WorkerdVerifyCosts } from "../src/compress/workerd-measure.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { loadModel } from "../src/model/import/index.ts";
import { measureWarmEngineCosts, WARM_UP_MS, warmUp } from "../src/runtime/verify-costs.ts";
import { type PackedTestModel, packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = join(ROOT, "src/compress/verify-cost-worker.ts");
const dirs = tempDirs("workerd-measure");
let packed: PackedTestModel;
let measurer: WorkerdVerifyCosts;
let raw: Miniflare;

beforeAll(async () => {
  packed = packForTest(await loadModel(sharedModelPath()));
  measurer = await WorkerdVerifyCosts.start();
  raw = await startWorkerd(WORKER, {
    wasm: { "/kernels-relaxed.wasm": await ensureKernelsWasm({ relaxed: true }) },
  });
}, 120_000);

afterAll(async () => {
  await measurer?.dispose();
  await raw?.dispose();
  dirs.cleanup();
});

const post = (headers: Record<string, string>, body: Uint8Array | string, path = "/verify-costs") =>
  raw.dispatchFetch(`http://measure${path}`, { method: "POST", headers, body });

describe("verify costs in workerd", () => {
  it("measures a packed model on the relaxed kernels: finite per-row costs, never cheaper for more rows in total", async () => {
    const c = await measurer.measure(packed.table, packed.data);
    expect(c.origin).toMatchObject({ measuredOn: "workerd", kernels: "relaxed" });
    expect(c.origin.detail).toMatch(/^workerd \S+ \(Miniflare \S+\), kernels-relaxed\.wasm, f16 KV cache/);
    expect(c.rowCosts).toHaveLength(8);
    for (const x of [...c.rowCosts, c.rowCost]) {
      expect(Number.isFinite(x)).toBe(true);
      expect(x).toBeGreaterThan(0);
      expect(x).toBeLessThanOrEqual(4);
    }
    for (let m = 2; m <= 8; m++)
      expect(m * c.rowCosts[m - 1]!).toBeGreaterThanOrEqual((m - 1) * c.rowCosts[m - 2]! * (1 - 1e-9));
    expect(c.headShare).toBeGreaterThanOrEqual(0);
    expect(c.headShare).toBeLessThan(1);
  }, 120_000);

  const tableJson = () => Buffer.from(JSON.stringify(packed.table));
  const cases: [string, () => ReturnType<typeof post>, RegExp][] = [
    ["no table length", () => post({}, "{}"), /x-table-bytes must be an integer/],
    ["a table length that is not a number", () => post({ "x-table-bytes": "12abc" }, "{}"), /x-table-bytes/],
    ["a table length past the body", () => post({ "x-table-bytes": "5000" }, "{}"), /body ended after 2 of/],
    ["a table that is not JSON", () => post({ "x-table-bytes": "5" }, "{{{{{"), /not JSON/],
    [
      "JSON that is not a weight table",
      () => post({ "x-table-bytes": "9" }, '{"a": 1} '),
      /not a weight table/,
    ],
    [
      "a data region shorter than the table says",
      () => {
        const t = tableJson();
        return post(
          { "x-table-bytes": String(t.byteLength) },
          Buffer.concat([t, packed.data.subarray(0, 1000)]),
        );
      },
      /loading the variant: weight stream ended after 1000 of/,
    ],
    [
      "a data region longer than the table says",
      () => {
        const t = tableJson();
        return post(
          { "x-table-bytes": String(t.byteLength) },
          Buffer.concat([t, packed.data, Buffer.alloc(64)]),
        );
      },
      /longer than the \d+ bytes its table declares/,
    ],
  ];
  for (const [what, send, message] of cases) {
    it(`refuses ${what} with a 400 and a message`, async () => {
      const res = await send();
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { message: string } };
      expect(body.error.message).toMatch(message);
    });
  }

  it("answers other paths with 404, and the host reports a refused variant with the worker's message", async () => {
    const res = await post({}, "", "/elsewhere");
    expect(res.status).toBe(404);
    await res.arrayBuffer();
    await expect(measurer.measure(packed.table, packed.data.subarray(0, 100))).rejects.toThrow(
      /verify costs in workerd: HTTP 400: loading the variant: weight stream ended after 100 of/,
    );
  });
});

describe("the measurement both Workers run (measureWarmEngineCosts)", () => {
  it("on an engine in Node: warmed up, then costs in the same ranges; the warm-up ends on a clock that never moves", async () => {
    const engine = await engineFor(packed.table, packed.data);
    const c = measureWarmEngineCosts(engine);
    expect(c.rowCosts).toHaveLength(8);
    expect(c.headCosts.length).toBeGreaterThan(0);
    for (const x of [...c.rowCosts, ...c.headCosts, c.rowCost]) {
      expect(x).toBeGreaterThan(0);
      expect(x).toBeLessThanOrEqual(4);
    }
    // A deployed Worker's clock stands still between I/O: the warm-up stops after its round limit.
    let reads = 0;
    warmUp(
      engine,
      () => {
        reads++;
        return 0;
      },
      WARM_UP_MS,
      5,
    );
    expect(reads).toBe(5); // the start, then one check before each round after the first
  }, 120_000);
});

describe("where workerd cannot run", () => {
  it("fails with an error that names the cause and --verify-costs node (a missing binary, one that cannot serve)", async () => {
    const fake = join(dirs.make(), "workerd");
    writeFileSync(
      fake,
      '#!/bin/sh\n[ "$1" = --version ] && echo "workerd fake" && exit 0\necho refused >&2\nexit 3\n',
    );
    chmodSync(fake, 0o755);
    const saved = process.env.MINIFLARE_WORKERD_PATH;
    try {
      for (const [bin, cause] of [
        ["/nonexistent/workerd", /the workerd binary \/nonexistent\/workerd does not exist/],
        [fake, /did not start here: /],
      ] as const) {
        process.env.MINIFLARE_WORKERD_PATH = bin;
        const err = await WorkerdVerifyCosts.start().then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(WorkerdUnavailableError);
        expect((err as Error).message).toMatch(cause);
        expect((err as Error).message).toMatch(/--verify-costs node/);
      }
    } finally {
      if (saved === undefined) delete process.env.MINIFLARE_WORKERD_PATH;
      else process.env.MINIFLARE_WORKERD_PATH = saved;
    }
  }, 60_000);

  it("a build told to measure in Node records measuredOn node in the manifest", async () => {
    const dir = dirs.make();
    const config = join(dir, "variants.json");
    writeFileSync(
      config,
      JSON.stringify({
        calibration: { source: "text", maxTokens: 256 },
        evaluation: { text: "stories", maxTokens: 128 },
        speculative: { prompts: 2, answerTokens: 8 },
        variants: [{ name: "quality", tier: "quality", quant: { method: "rtn" }, prune: null }],
      }),
    );
    const out = join(dir, "out");
    const r = await buildVariants({
      model: sharedModelPath(),
      config,
      out,
      log: () => {},
      verifyCosts: "node",
    });
    const m = readManifest(out, r.index.variants.quality!);
    expect(m.speculative!.measured.verifyCosts).toMatchObject({ measuredOn: "node", kernels: "simd128" });
    expect(m.speculative!.measured.verifyCosts!.detail).toMatch(/^node v\d+/);
    expect(m.speculative!.draft.rowCosts).toHaveLength(8);
  }, 300_000);
});

describe("build:variants --verify-costs", () => {
  it("exits 2 with the usage on a value it does not know, before loading anything", async () => {
    const out = join(dirs.make(), "out");
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        join(ROOT, "node_modules/.bin/tsx"),
        ["scripts/build-variants.ts", "--verify-costs", "gpu", "--out", out],
        { cwd: ROOT, timeout: 60_000 },
        (e, _stdout, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--verify-costs must be one of workerd, node, got "gpu"/);
    expect(r.stderr).toMatch(/usage: npm run build:variants/);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
