/**
 * The host's typed view of the kernel exports (src/kernels/wasm/kernels.generated.d.ts) is the
 * compiler's own declarations for the current kernel sources: fails when a kernel signature changed and
 * `npm run build:wasm` was not re-run, so the bindings can never drift from the module.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { buildKernelsWasm, KERNELS_DTS_PATH } from "../src/kernels/wasm/build.ts";
import type { RawExports } from "../src/kernels/wasm/index.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

describe("kernel bindings", () => {
  it("kernels.generated.d.ts matches the compiler's output for the current sources", async () => {
    const { dts } = await buildKernelsWasm();
    expect(await readFile(KERNELS_DTS_PATH, "utf8"), "stale: run npm run build:wasm").toBe(dts);
  }, 120_000);

  it("every declared function is exported by the module with its declared arity", async () => {
    const kern = await loadTestKernels();
    const text = await readFile(KERNELS_DTS_PATH, "utf8");
    const declared = [...text.matchAll(/export function (\w+)\(([^)]*)\)/g)].map((m) => ({
      name: m[1]!,
      arity: m[2]!.trim() ? m[2]!.split(",").length : 0,
    }));
    expect(declared.length).toBeGreaterThan(20);
    const raw = kern.raw as unknown as Record<string, unknown>;
    for (const { name, arity } of declared) {
      expect(typeof raw[name], name).toBe("function");
      expect((raw[name] as (...a: unknown[]) => unknown).length, name).toBe(arity);
    }
    const exported = Object.keys(raw).filter((k) => typeof raw[k] === "function");
    expect(exported.sort()).toEqual(declared.map((d) => d.name).sort());
    const typed: keyof RawExports = "matvec_q4_q8";
    expect(declared.map((d) => d.name)).toContain(typed);
  });
});
