/**
 * Test conveniences over WasmKernels: run a kernel on JS arrays (upload, run, copy out, free the
 * temporaries). For tests and the kernel bench only: the engine works on pointers into wasm memory.
 */
import type { Int4Tensor, Int8Tensor, WasmKernels } from "../kernels/wasm/index.ts";

/** Uploads m rows of K values as m zero-padded rows of kPadded floats. */
function uploadRows(kern: WasmKernels, x: Float32Array, m: number, K: number, kPadded: number): number {
  const xp = kern.allocZeroed(m * kPadded * 4);
  const xv = kern.f32(xp, m * kPadded);
  for (let i = 0; i < m; i++) xv.set(x.subarray(i * K, (i + 1) * K), i * kPadded);
  return xp;
}

/** y = W x for a JS array x of length w.K (int4 weights, fp32 or Q8 activations). */
export function matvecInt4Array(
  kern: WasmKernels,
  w: Int4Tensor,
  x: Float32Array,
  mode: "f32" | "q8" = "f32",
): Float32Array {
  if (x.length !== w.K) throw new Error(`matvecInt4Array: x has ${x.length} values, K = ${w.K}`);
  return kern.scoped(() => {
    const xp = kern.uploadF32(x, w.kPadded);
    const y = kern.alloc(w.N * 4);
    if (mode === "q8") kern.matvecInt4Q8(w, kern.quantizeQ8(xp, kern.allocQ8(w.kPadded)), y);
    else kern.matvecInt4(w, xp, y);
    return kern.f32(y, w.N).slice();
  });
}

/**
 * Y [m][N] for X [m][K] through Q8 activations: the rows uploaded at the weights' padded K, quantized
 * as one batch, then `run` (one batched kernel call into y).
 */
function matmulQ8Rows(
  name: string,
  kern: WasmKernels,
  w: { K: number; N: number; kPadded: number },
  x: Float32Array,
  m: number,
  run: (q8: ReturnType<WasmKernels["allocQ8Batch"]>, y: number) => void,
): Float32Array {
  if (x.length !== m * w.K) throw new Error(`${name}: x has ${x.length} values, want ${m} x ${w.K}`);
  return kern.scoped(() => {
    const xp = uploadRows(kern, x, m, w.K, w.kPadded);
    const q8 = kern.quantizeQ8Batch(xp, kern.allocQ8Batch(w.kPadded, m));
    const y = kern.alloc(m * w.N * 4);
    run(q8, y);
    return kern.f32(y, m * w.N).slice();
  });
}

/** Y [m][N] for X [m][K] through Q8 activations (matmulInt4Q8). */
export function matmulInt4Q8Array(
  kern: WasmKernels,
  w: Int4Tensor,
  x: Float32Array,
  m: number,
): Float32Array {
  return matmulQ8Rows("matmulInt4Q8Array", kern, w, x, m, (q8, y) => kern.matmulInt4Q8(w, q8, y, m));
}

/** y = W x for a JS array x of length w.K (int8 weights, fp32 or Q8 activations). */
export function matvecInt8Array(
  kern: WasmKernels,
  w: Int8Tensor,
  x: Float32Array,
  mode: "f32" | "q8" = "q8",
): Float32Array {
  if (x.length !== w.K) throw new Error(`matvecInt8Array: x has ${x.length} values, K = ${w.K}`);
  return kern.scoped(() => {
    const xp = kern.uploadF32(x, w.kPadded);
    const y = kern.alloc(w.N * 4);
    if (mode === "q8") kern.matvecInt8Q8(w, kern.quantizeQ8(xp, kern.allocQ8(w.kPadded)), y);
    else kern.matvecInt8(w, xp, y);
    return kern.f32(y, w.N).slice();
  });
}

/** Y [m][N] for X [m][K] (int8 weights, Q8 activations, one batched call). */
export function matmulInt8Q8Array(
  kern: WasmKernels,
  w: Int8Tensor,
  x: Float32Array,
  m: number,
): Float32Array {
  return matmulQ8Rows("matmulInt8Q8Array", kern, w, x, m, (q8, y) => kern.matmulInt8Q8(w, q8, y, m));
}

/** Y [m][N] for X [m][K] (m <= 16, fp32 activations). */
export function matmulInt4Array(kern: WasmKernels, w: Int4Tensor, x: Float32Array, m: number): Float32Array {
  if (x.length !== m * w.K) throw new Error(`matmulInt4Array: x has ${x.length} values, want ${m} x ${w.K}`);
  return kern.scoped(() => {
    const xp = uploadRows(kern, x, m, w.K, w.kPadded);
    const y = kern.alloc(m * w.N * 4);
    kern.matmulInt4(w, xp, y, m);
    return kern.f32(y, m * w.N).slice();
  });
}
