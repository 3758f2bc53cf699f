/// <reference types="@webgpu/types" />
/**
 * createEngine's backend choice: auto takes WebGPU when navigator.gpu gives an adapter and falls back to
 * WASM when navigator.gpu is absent (or gives none); an explicit backend is honoured either way.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { nodeGpuWithAdapter } from "../src/kernels/webgpu/node.ts";
import { loadModel } from "../src/model/import/index.ts";
import { type CreatedEngine, createEngine } from "../src/runtime/backend.ts";
import { generate, type LogitsModel } from "../src/runtime/generate.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { type PackedTestModel, packForTest } from "./helpers/packed-model.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { loadTestKernels } from "./kernels-helpers.ts";
import { NO_ADAPTER, openTestDevice } from "./webgpu-helpers.ts";

// Only to learn whether this machine has an adapter at all (the suite skips without one).
const probe = await openTestDevice();
const hasAdapter = probe !== null;
probe?.destroy();

let packed: PackedTestModel;
const made: CreatedEngine[] = [];
const hadNavigator = Object.hasOwn(globalThis, "navigator");
const originalNavigator = (globalThis as { navigator?: unknown }).navigator;

function setNavigator(value: unknown): void {
  Object.defineProperty(globalThis, "navigator", { value, configurable: true, writable: true });
}

function restoreNavigator(): void {
  if (hadNavigator) setNavigator(originalNavigator);
  else delete (globalThis as { navigator?: unknown }).navigator;
}

async function make(opts: Partial<Parameters<typeof createEngine>[0]> = {}): Promise<CreatedEngine> {
  const e = await createEngine({
    table: packed.table,
    weights: bytesToStream(packed.data),
    wasmModule: loadTestKernels,
    ...opts,
  });
  made.push(e);
  return e;
}

async function greedy(e: CreatedEngine, n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const t of generate(e.engine as LogitsModel, [1, 403, 407, 261, 378], {
    maxTokens: n,
    temperature: 0,
  }))
    out.push(t);
  return out;
}

describe("createEngine without WebGPU", () => {
  beforeAll(async () => {
    packed = packForTest(await loadModel(sharedModelPath()));
  });
  afterEach(restoreNavigator);

  it("auto picks wasm when navigator.gpu is absent", async () => {
    setNavigator({});
    const e = await make();
    expect(e.backend).toBe("wasm");
    expect(e.reason).toMatch(/absent/);
    expect((await greedy(e, 8)).length).toBe(8);
  });

  it("auto falls back to wasm when navigator.gpu gives no adapter; webgpu then throws", async () => {
    setNavigator({ gpu: { requestAdapter: async () => null } });
    const e = await make();
    expect(e.backend).toBe("wasm");
    expect(e.reason).toMatch(/no adapter/);
    await expect(make({ backend: "webgpu" })).rejects.toThrow(/WebGPU backend requested/);
    await expect(createEngine({ table: packed.table, weights: bytesToStream(packed.data) })).rejects.toThrow(
      /needs wasmModule/,
    );
  });
});

describe.skipIf(!hasAdapter)(
  hasAdapter ? "createEngine with a WebGPU adapter" : `createEngine: ${NO_ADAPTER}`,
  () => {
    let gpu: GPU | null = null;

    beforeAll(async () => {
      packed ??= packForTest(await loadModel(sharedModelPath()));
      gpu = await nodeGpuWithAdapter();
    });
    afterEach(restoreNavigator);
    afterAll(() => {
      for (const e of made.splice(0)) e.dispose();
      gpu = null;
    });

    it("auto picks webgpu when navigator.gpu gives an adapter, and generates like wasm", async () => {
      setNavigator({ gpu });
      const e = await make();
      expect(e.backend).toBe("webgpu");
      expect(e.reason).toMatch(/WebGPU adapter/);
      const wasm = await make({ backend: "wasm" });
      expect(await greedy(e, 24)).toEqual(await greedy(wasm, 24));
    });

    it("an explicit backend is honoured: wasm despite a GPU, webgpu from an explicit gpu", async () => {
      setNavigator({ gpu });
      expect((await make({ backend: "wasm" })).backend).toBe("wasm");
      restoreNavigator();
      const e = await make({ backend: "webgpu", gpu, webgpu: { kvCache: "f32", contextSize: 64 } });
      expect(e.backend).toBe("webgpu");
      expect(e.engine.maxContext).toBe(64);
    });
  },
);
