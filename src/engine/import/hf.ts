/** Placeholder until the Hugging Face folder importer lands. */
import { type ModelDescription, ModelImportError } from "../model.ts";

export async function importHfFolder(path: string): Promise<ModelDescription> {
  throw new ModelImportError(path, "Hugging Face folders are not supported yet");
}
