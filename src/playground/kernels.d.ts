// The WASM kernels' bytes, inlined into the playground's engine bundle (./build.ts).
declare module "shardlm:kernels/relaxed" {
  const bytes: Uint8Array;
  export default bytes;
}
declare module "shardlm:kernels/simd" {
  const bytes: Uint8Array;
  export default bytes;
}
