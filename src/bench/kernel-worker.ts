/**
 * Bench-only worker: runs the kernel table (src/bench/kernel-table.ts) inside workerd on either
 * kernel build, so Node and workerd are compared on the same code and inputs. The host maps these two
 * module names to the bench builds (production kernels + the floor kernel; workerdKernelTables).
 * Locally workerd's clock runs freely inside a request (in production it only advances on I/O).
 * POST / {relaxed: boolean, batches?, batchMs?, shapes?} -> {relaxed, rows: KernelRow[]}
 */
import { WasmKernels } from "../../src/kernels/wasm/index.ts";
import { type KernelShape, kernelTable } from "./kernel-table.ts";
import simdModule from "./kernels.wasm";
import relaxedModule from "./kernels-relaxed.wasm";

export default {
  async fetch(request: Request): Promise<Response> {
    const b = (await request.json()) as {
      relaxed: boolean;
      batches?: number;
      batchMs?: number;
      shapes?: KernelShape[];
    };
    const kern = await WasmKernels.create(b.relaxed ? relaxedModule : simdModule);
    const rows = kernelTable(kern, {
      ...(b.batches ? { batches: b.batches } : {}),
      ...(b.batchMs ? { batchMs: b.batchMs } : {}),
      ...(b.shapes ? { shapes: b.shapes } : {}),
    });
    return Response.json({ relaxed: kern.relaxedSimd, rows });
  },
};
