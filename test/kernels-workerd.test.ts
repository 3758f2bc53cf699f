/**
 * The Workers path, in workerd itself (miniflare): WasmKernels.create(WebAssembly.Module) from an imported
 * .wasm module, for both builds workerd can run. workerd ships relaxed SIMD with an exact (and fast) i32
 * dot-add, so this is where kernels-relaxed.wasm is checked (Node 20's baseline tier miscomputes the
 * dot-add) against the SIMD128 build run here in Node.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { matmulInt4Q8Array, matvecInt4Array, matvecInt8Array } from "../src/bench/kernel-arrays.ts";
import {
  type Int4GroupSize,
  type Int8GroupSize,
  type PackedInt4,
  quantizeInt8Rtn,
  quantizeRtn,
} from "../src/format/int4.ts";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import type { WasmKernels } from "../src/kernels/wasm/index.ts";
import { loadTestKernels, q4_1Tensor, randn, relErr } from "./kernels-helpers.ts";

/** A packed int4 tensor as the kernel worker's JSON body carries it (typed arrays as number arrays). */
const packedJson = (p: PackedInt4) => ({
  ...p,
  qweight: Array.from(p.qweight),
  scales: Array.from(p.scales),
  zeros: p.zeros && Array.from(p.zeros),
  mins: p.mins ? Array.from(p.mins) : null,
});

const WORKER = `
import simd from "./kernels.wasm";
import relaxed from "./kernels-relaxed.wasm";
import { WasmKernels } from "./src/kernels/wasm/index.js";
import { matmulInt4Q8Array, matvecInt4Array, matvecInt8Array } from "./kernel-arrays.js";
export default {
  async fetch(request) {
    const b = await request.json();
    const k = await WasmKernels.create(b.relaxed ? relaxed : simd);
    if (b.int8) {
      const p8 = { ...b.int8, data: Int8Array.from(b.int8.data), scales: Uint16Array.from(b.int8.scales) };
      const t8 = k.uploadInt8(p8);
      const x8 = Float32Array.from(b.x);
      return Response.json({
        relaxed: k.relaxedSimd, dotAdd: k.relaxedDotAdd,
        f32: Array.from(matvecInt8Array(k, t8, x8, "f32")),
        q8: Array.from(matvecInt8Array(k, t8, x8, "q8")),
      });
    }
    const p = { ...b.p, qweight: Uint8Array.from(b.p.qweight), scales: Uint16Array.from(b.p.scales),
      zeros: b.p.zeros ? Uint8Array.from(b.p.zeros) : null, mins: b.p.mins ? Uint16Array.from(b.p.mins) : null };
    const t = k.uploadInt4(p);
    const x = Float32Array.from(b.x);
    if (b.m) return Response.json({ relaxed: k.relaxedSimd, dotAdd: k.relaxedDotAdd, y: Array.from(matmulInt4Q8Array(k, t, x, b.m)) });
    return Response.json({
      relaxed: k.relaxedSimd, dotAdd: k.relaxedDotAdd,
      f32: Array.from(matvecInt4Array(k, t, x, "f32")),
      q8: Array.from(matvecInt4Array(k, t, x, "q8")),
    });
  },
};`;

let mf: Miniflare;
let kern: WasmKernels;

beforeAll(async () => {
  kern = await loadTestKernels();
  const [simd, relaxed] = await Promise.all([ensureKernelsWasm(), ensureKernelsWasm({ relaxed: true })]);
  // The wrapper's only value import is src/format/int4.ts (blob header parsing), which imports nothing: a
  // per-file transpile at the same relative paths is the whole "bundle".
  const transpile = async (rel: string) =>
    ts.transpileModule(await readFile(fileURLToPath(new URL(rel, import.meta.url)), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
  const wrapperJs = await transpile("../src/kernels/wasm/index.ts");
  const formatJs = await transpile("../src/format/int4.ts");
  const arraysJs = await transpile("../src/bench/kernel-arrays.ts");
  mf = new Miniflare({
    modulesRoot: "/",
    modules: [
      { type: "ESModule", path: "/worker.js", contents: WORKER },
      { type: "ESModule", path: "/src/kernels/wasm/index.js", contents: wrapperJs },
      { type: "ESModule", path: "/src/format/int4.ts", contents: formatJs },
      { type: "ESModule", path: "/kernel-arrays.js", contents: arraysJs },
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
  // "mins": fp16 per-group mins (ggml Q4_1) instead of zero points
  const cases: [number, number, Int4GroupSize, boolean | "mins"][] = [
    [13, 172, 32, true],
    [9, 768, 64, false],
    [6, 288, 128, true],
    [64, 576, 32, false],
    [13, 576, 32, "mins"],
  ];
  for (const relaxed of [false, true]) {
    for (const [N, K, groupSize, zeroPoint] of cases) {
      const kind = zeroPoint === "mins" ? "mins" : zeroPoint ? "asym" : "sym";
      it(`${relaxed ? "kernels-relaxed" : "kernels"}.wasm ${N}x${K} g${groupSize} ${kind}`, async () => {
        const p =
          zeroPoint === "mins"
            ? q4_1Tensor(N, K, N + K)
            : quantizeRtn(randn(N * K, N + K, 0.05), N, K, { groupSize, zeroPoint });
        const x = randn(K, K);
        const res = await mf.dispatchFetch("http://kernels/", {
          method: "POST",
          body: JSON.stringify({
            relaxed,
            x: Array.from(x),
            p: packedJson(p),
          }),
        });
        const got = (await res.json()) as { relaxed: boolean; dotAdd: boolean; f32: number[]; q8: number[] };
        expect(got.relaxed).toBe(relaxed);
        expect(got.dotAdd).toBe(relaxed); // workerd runs the i32 dot-add build
        const m = kern.mark();
        try {
          const t = kern.uploadInt4(p);
          expect(relErr(Float32Array.from(got.f32), matvecInt4Array(kern, t, x, "f32"))).toBeLessThan(1e-6);
          // integer dots are exact in both builds and the float steps are the same: bit-identical
          expect(Float32Array.from(got.q8)).toEqual(matvecInt4Array(kern, t, x, "q8"));
        } finally {
          kern.release(m);
        }
      });
    }
  }

  for (const relaxed of [false, true]) {
    for (const [N, K, groupSize] of [
      [13, 172, "row"],
      [9, 576, 32],
      [6, 768, 128],
    ] as [number, number, Int8GroupSize][]) {
      it(`${relaxed ? "kernels-relaxed" : "kernels"}.wasm int8 ${N}x${K} ${groupSize}`, async () => {
        const p = quantizeInt8Rtn(randn(N * K, N * K, 0.05), N, K, { groupSize });
        const x = randn(K, K + 3);
        const res = await mf.dispatchFetch("http://kernels/", {
          method: "POST",
          body: JSON.stringify({
            relaxed,
            x: Array.from(x),
            int8: { ...p, data: Array.from(p.data), scales: Array.from(p.scales) },
          }),
        });
        const got = (await res.json()) as { relaxed: boolean; dotAdd: boolean; f32: number[]; q8: number[] };
        expect(got.relaxed).toBe(relaxed);
        expect(got.dotAdd).toBe(relaxed); // workerd runs the i32 dot-add build
        const m = kern.mark();
        try {
          const t = kern.uploadInt8(p);
          expect(relErr(Float32Array.from(got.f32), matvecInt8Array(kern, t, x, "f32"))).toBeLessThan(1e-6);
          expect(relErr(Float32Array.from(got.q8), matvecInt8Array(kern, t, x, "q8"))).toBeLessThan(1e-6);
        } finally {
          kern.release(m);
        }
      });
    }
  }

  for (const relaxed of [false, true]) {
    // 544 = 17 groups of 32: an odd chunk count in the last super-group (the dot-add kernel pairs chunks)
    // the dot-add build holds the rows' accumulators in registers at M = 2 and 4 (tile_dot_add), and
    // in scratch memory otherwise
    for (const [N, K, kind] of [
      [13, 288, "g64 asym"],
      [13, 576, "g32 mins"],
      [7, 544, "g32 sym"],
    ] as const)
      for (const M of [2, 3, 4, 5, 8])
        it(`${relaxed ? "kernels-relaxed" : "kernels"}.wasm int4 Q8 matmul, M=${M}, ${N}x${K} ${kind}`, async () => {
          const p =
            kind === "g32 mins"
              ? q4_1Tensor(N, K, 99)
              : quantizeRtn(randn(N * K, 99, 0.05), N, K, {
                  groupSize: kind === "g64 asym" ? 64 : 32,
                  zeroPoint: kind === "g64 asym",
                });
          const x = randn(M * K, 98);
          const res = await mf.dispatchFetch("http://kernels/", {
            method: "POST",
            body: JSON.stringify({
              relaxed,
              m: M,
              x: Array.from(x),
              p: packedJson(p),
            }),
          });
          const got = (await res.json()) as { relaxed: boolean; dotAdd: boolean; y: number[] };
          expect(got.relaxed).toBe(relaxed);
          expect(got.dotAdd).toBe(relaxed); // workerd runs the i32 dot-add build
          const m = kern.mark();
          try {
            const t = kern.uploadInt4(p);
            expect(Float32Array.from(got.y)).toEqual(matmulInt4Q8Array(kern, t, x, M));
          } finally {
            kern.release(m);
          }
        });
  }
});
