// wrangler (and our workerd test harness) turn imported .wasm files into compiled modules.
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
