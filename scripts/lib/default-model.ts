/** The model a CLI uses when --model is not given (see src/model/default-model.ts). */
import { resolveDefaultModel } from "../../src/model/default-model.ts";

export async function defaultModelPath(): Promise<string> {
  return (await resolveDefaultModel()).path;
}
