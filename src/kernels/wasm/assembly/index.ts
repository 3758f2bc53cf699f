// shardlm WASM SIMD128 kernels (AssemblyScript, --runtime stub, no allocation inside wasm): the module
// entry. One file per op family; scripts/build-wasm.ts compiles this file into build/wasm/kernels.wasm
// (SIMD128) and kernels-relaxed.wasm (+ relaxed SIMD), and writes the host's typed view of these exports
// (src/kernels/wasm/kernels.generated.d.ts) from the compiler's own bindings output.
//
// Every pointer is a byte offset into the exported linear memory; the TypeScript side
// (src/kernels/wasm/index.ts) owns allocation. Weight layouts: src/format/int4.ts.

/** First free byte after the module's static data (the host's bump allocator starts here). */
export function heap_base(): usize {
  return __heap_base;
}

/** 1 in the relaxed-SIMD build (kernels-relaxed.wasm), else 0. */
export function relaxed_simd(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

export * from "./quantize";
export * from "./int4-q8";
export * from "./int4-f32";
export * from "./int8";
export * from "./attention";
export * from "./elementwise";
