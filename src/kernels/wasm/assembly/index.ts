// shardlm WASM SIMD128 kernels (AssemblyScript, --runtime stub, no allocation inside wasm): the module
// entry. One file per op family; scripts/build-wasm.ts compiles this file into build/wasm/kernels.wasm
// (SIMD128), kernels-relaxed.wasm (+ relaxed SIMD with the i32 dot-add) and kernels-relaxed-i16.wasm
// (+ relaxed SIMD, i16 dot only; src/kernels/wasm/build.ts says which runs where), and writes the host's typed view of these exports
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

/** 1 in kernels-relaxed.wasm (the int4 x Q8 kernels use i32x4.relaxed_dot_i8x16_i7x16_add_s), else 0. */
export function relaxed_dot_add(): i32 {
  return ASC_FEATURE_RELAXED_SIMD && DOT_ADD ? 1 : 0;
}

/**
 * 1 when this runtime computes the i32 dot-add exactly for the operands the kernels give it (int8 codes
 * -127..127, nibbles 0..15, a nonzero accumulator), else 0; always 1 in the builds that do not use it.
 * Node 20's baseline tier fails it (2 * dot, accumulator dropped): the host refuses to run the build there.
 * Operands come from memory at p (64 scratch bytes) so that nothing folds at compile time.
 */
export function dot_add_exact(p: usize): i32 {
  if (!(ASC_FEATURE_RELAXED_SIMD && DOT_ADD)) return 1;
  for (let i = 0; i < 16; i++) {
    store<i8>(p + i, <i8>(i & 1 ? 13 * i - 127 : 127 - 11 * i));
    store<u8>(p + 16 + i, <u8>((7 * i + 15) & 15));
  }
  const c = i32x4(1000, -2000, 30000, -400000);
  v128.store(p, c, 48);
  v128.store(p, i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(p), v128.load(p, 16), c), 32);
  for (let lane = 0; lane < 4; lane++) {
    let want = load<i32>(p + 48 + 4 * lane);
    for (let j = 0; j < 4; j++) want += <i32>load<i8>(p + 4 * lane + j) * <i32>load<u8>(p + 16 + 4 * lane + j);
    if (load<i32>(p + 32 + 4 * lane) != want) return 0;
  }
  return 1;
}

export * from "./quantize";
export * from "./int4-q8";
export * from "./int4-f32";
export * from "./int8";
export * from "./attention";
export * from "./elementwise";
