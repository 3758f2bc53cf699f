/**
 * Bench-only worker: the kernel A/B (src/bench/kernel-ab.ts) inside workerd. The host maps /a.wasm and
 * /b.wasm to the two binaries.
 * POST / {shapes, rounds?, batchMs?} -> {rows: AbRow[]}
 */
import { WasmKernels } from "../../src/kernels/wasm/index.ts";
import aModule from "./a.wasm";
import bModule from "./b.wasm";
import { kernelAb } from "./kernel-ab.ts";
import type { KernelShape } from "./kernel-table.ts";

export default {
  async fetch(request: Request): Promise<Response> {
    const o = (await request.json()) as { shapes: KernelShape[]; rounds?: number; batchMs?: number };
    const rows = kernelAb(await WasmKernels.create(aModule), await WasmKernels.create(bModule), o);
    return Response.json({ rows });
  },
};
