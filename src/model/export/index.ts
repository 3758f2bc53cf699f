/** Writers: our own GGUF v3 and Hugging Face folder (safetensors) output for a ModelDescription. */
export { ModelExportError } from "./errors.ts";
export { type GgufDType, ggufParts, type WriteGgufOptions, writeGguf } from "./gguf.ts";
export { type HfDType, type WriteHfOptions, writeHfFolder } from "./hf.ts";
