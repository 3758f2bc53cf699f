/** Node-only loader (Workers import the .wasm as a module and call WasmKernels.create directly). */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { WasmKernels } from "./index.ts";

/** build/wasm/kernels.wasm, written by `npm run build:wasm`. */
export const DEFAULT_KERNELS_WASM = fileURLToPath(
  new URL("../../../build/wasm/kernels.wasm", import.meta.url),
);

export async function loadKernelsNode(wasmPath: string = DEFAULT_KERNELS_WASM): Promise<WasmKernels> {
  const bytes = await readFile(wasmPath).catch((e: unknown) => {
    throw new Error(`${wasmPath}: ${(e as Error).message} (run npm run build:wasm)`);
  });
  return WasmKernels.create(bytes);
}
