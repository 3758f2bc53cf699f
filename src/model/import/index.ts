/**
 * `loadModel(path)`: one entry point for every model file we read.
 * A folder is a Hugging Face checkpoint (config.json + *.safetensors + tokenizer.json);
 * a file must be GGUF. Either way the result is validated before anyone computes with it.
 */
import { statSync } from "node:fs";
import { type ModelDescription, ModelImportError } from "../../format/model.ts";
import { importGguf } from "./gguf.ts";
import { importHfFolder } from "./hf.ts";
import { validateTensors } from "./validate.ts";

export async function loadModel(path: string): Promise<ModelDescription> {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new ModelImportError(path, "no such file or folder");
  }
  if (!isDir && path.endsWith(".safetensors")) {
    throw new ModelImportError(
      path,
      "a .safetensors file alone is not a model: pass its folder (with config.json)",
    );
  }
  const model = isDir ? await importHfFolder(path) : await importGguf(path);
  validateTensors(model);
  return model;
}

export { ModelImportError };
