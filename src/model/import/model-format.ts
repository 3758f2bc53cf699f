/**
 * A cheap look at a model path before minutes of building: whether it can be a model loadModel
 * reads (index.ts) — a GGUF file (its first 4 bytes are the magic "GGUF", per the GGUF spec,
 * github.com/ggml-org/ggml/blob/master/docs/gguf.md) or a Hugging Face folder (with config.json).
 * The full checks stay with the importers.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

/** Why `path` (which exists) is not a GGUF file or a Hugging Face model folder; null when it may be one. */
export function modelFormatProblem(path: string): string | null {
  if (statSync(path).isDirectory())
    return existsSync(join(path, "config.json"))
      ? null
      : "is a folder without config.json (not a Hugging Face model folder)";
  if (path.endsWith(".safetensors"))
    return "is a .safetensors file alone: pass its folder (with config.json and tokenizer.json)";
  const head = Buffer.alloc(4);
  const fd = openSync(path, "r");
  try {
    const n = readSync(fd, head, 0, 4, 0);
    if (n === 4 && head.toString("latin1") === "GGUF") return null;
  } finally {
    closeSync(fd);
  }
  return "is not a GGUF file (it does not start with the GGUF magic bytes) nor a Hugging Face model folder";
}
