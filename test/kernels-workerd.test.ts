/**
 * The Workers path, in workerd itself (miniflare): WasmKernels.create(WebAssembly.Module) from an imported
 * .wasm module, for both builds. workerd ships relaxed SIMD, so this is where kernels-relaxed.wasm is checked
 * (Node 20's experimental relaxed SIMD miscompiles it) against the SIMD128 build run here in Node.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureKernelsWasm } from "../scripts/build-wasm.ts";
import { type Int4GroupSize, quantizeRtn } from "../src/format/int4.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadTestKernels, randn, relErr } from "./kernels-helpers.ts";

const WORKER = `
import simd from "./kernels.wasm";
import relaxed from "./kernels-relaxed.wasm";
import { WasmKernels } from "./index.js";
export default {
  async fetch(request) {
    const b = await request.json();
    const k = await WasmKernels.create(b.relaxed ? relaxed : simd);
    const p = { ...b.p, qweight: Uint8Array.from(b.p.qweight), scales: Uint16Array.from(b.p.scales),
      zeros: b.p.zeros ? Uint8Array.from(b.p.zeros) : null };
    const t = k.uploadInt4(p);
    const x = Float32Array.from(b.x);
    return Response.json({
      relaxed: k.relaxedSimd,
      f32: Array.from(k.matvecInt4Array(t, x, "f32")),
      q8: Array.from(k.matvecInt4Array(t, x, "q8")),
    });
  },
};`;

let mf: Miniflare;
let kern: WasmKernels;

beforeAll(async () => {
  kern = await loadTestKernels();
  const [simd, relaxed] = await Promise.all([ensureKernelsWasm(), ensureKernelsWasm({ relaxed: true })]);
  // The wrapper has only type imports, so a plain transpile is the whole "bundle".
  const wrapperTs = await readFile(
    fileURLToPath(new URL("../src/kernels/wasm/index.ts", import.meta.url)),
    "utf8",
  );
  const wrapperJs = ts.transpileModule(wrapperTs, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  mf = new Miniflare({
    modulesRoot: "/",
    modules: [
      { type: "ESModule", path: "/worker.js", contents: WORKER },
      { type: "ESModule", path: "/index.js", contents: wrapperJs },
      { type: "CompiledWasm", path: "/kernels.wasm", contents: await readFile(simd) },
      { type: "CompiledWasm", path: "/kernels-relaxed.wasm", contents: await readFile(relaxed) },
    ],
    compatibilityDate: "2024-09-01",
  });
});

afterAll(async () => {
  await mf?.dispose();
});

describe("kernels in workerd", () => {
  const cases: [number, number, Int4GroupSize, boolean][] = [
    [13, 172, 32, true],
    [9, 768, 64, false],
    [6, 288, 128, true],
    [64, 576, 32, false],
  ];
  for (const relaxed of [false, true]) {
    for (const [N, K, groupSize, zeroPoint] of cases) {
      it(`${relaxed ? "kernels-relaxed" : "kernels"}.wasm ${N}x${K} g${groupSize} ${zeroPoint ? "asym" : "sym"}`, async () => {
        const p = quantizeRtn(randn(N * K, N + K, 0.05), N, K, { groupSize, zeroPoint });
        const x = randn(K, K);
        const res = await mf.dispatchFetch("http://kernels/", {
          method: "POST",
          body: JSON.stringify({
            relaxed,
            x: Array.from(x),
            p: {
              ...p,
              qweight: Array.from(p.qweight),
              scales: Array.from(p.scales),
              zeros: p.zeros && Array.from(p.zeros),
            },
          }),
        });
        const got = (await res.json()) as { relaxed: boolean; f32: number[]; q8: number[] };
        expect(got.relaxed).toBe(relaxed);
        const m = kern.mark();
        try {
          const t = kern.uploadInt4(p);
          expect(relErr(Float32Array.from(got.f32), kern.matvecInt4Array(t, x, "f32"))).toBeLessThan(1e-6);
          expect(relErr(Float32Array.from(got.q8), kern.matvecInt4Array(t, x, "q8"))).toBeLessThan(1e-6);
        } finally {
          kern.release(m);
        }
      });
    }
  }
});
