/** Refuses to write a model whose tensors disagree with its config (before any file is created). */

import { type ModelDescription, TensorNames } from "../../format/model.ts";
import { expectedShapes } from "../import/validate.ts";
import { ModelExportError } from "./errors.ts";

export function checkWritable(model: ModelDescription, target: string): void {
  const shapes = expectedShapes(model);
  for (const [name, shape] of shapes) {
    const t = model.tensors.get(name);
    if (!t) throw new ModelExportError(target, `model has no tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelExportError(target, `tensor ${name} has shape [${t.shape}], config says [${shape}]`);
    }
  }
  for (const name of model.tensors.keys()) {
    // A tied model may still carry its output head; the writers skip it.
    if (!shapes.has(name) && !(name === TensorNames.output && model.config.tiedEmbeddings)) {
      throw new ModelExportError(
        target,
        `tensor ${name} has no place in a ${model.config.architecture} model`,
      );
    }
  }
}
