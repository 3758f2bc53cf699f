/** Checks that an imported model has every tensor the forward pass needs, with consistent shapes. */
import { type ModelDescription, ModelImportError, TensorNames } from "../../format/model.ts";

export function expectedShapes(model: ModelDescription): Map<string, number[]> {
  const c = model.config;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const shapes = new Map<string, number[]>([[TensorNames.tokenEmbedding, [c.vocabSize, c.hiddenSize]]]);
  for (let l = 0; l < c.numLayers; l++) {
    shapes.set(TensorNames.attnNorm(l), [c.hiddenSize]);
    shapes.set(TensorNames.attnQ(l), [q, c.hiddenSize]);
    shapes.set(TensorNames.attnK(l), [kv, c.hiddenSize]);
    shapes.set(TensorNames.attnV(l), [kv, c.hiddenSize]);
    if (c.attentionBias) {
      shapes.set(TensorNames.attnQBias(l), [q]);
      shapes.set(TensorNames.attnKBias(l), [kv]);
      shapes.set(TensorNames.attnVBias(l), [kv]);
    }
    shapes.set(TensorNames.attnOutput(l), [c.hiddenSize, q]);
    shapes.set(TensorNames.ffnNorm(l), [c.hiddenSize]);
    shapes.set(TensorNames.ffnGate(l), [c.intermediateSize, c.hiddenSize]);
    shapes.set(TensorNames.ffnUp(l), [c.intermediateSize, c.hiddenSize]);
    shapes.set(TensorNames.ffnDown(l), [c.hiddenSize, c.intermediateSize]);
  }
  shapes.set(TensorNames.outputNorm, [c.hiddenSize]);
  if (!c.tiedEmbeddings) shapes.set(TensorNames.output, [c.vocabSize, c.hiddenSize]);
  return shapes;
}

/** Throws a ModelImportError naming the file and the first missing or mis-shaped tensor. */
export function validateTensors(model: ModelDescription): void {
  const file = model.source.path;
  const c = model.config;
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelImportError(
      file,
      `${c.numHeads} query heads are not a multiple of ${c.numKvHeads} KV heads`,
    );
  }
  if (c.headDim % 2 !== 0) throw new ModelImportError(file, `head dim ${c.headDim} is odd; rope needs pairs`);
  for (const [name, shape] of expectedShapes(model)) {
    const t = model.tensors.get(name);
    if (!t) throw new ModelImportError(file, `missing tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelImportError(file, `tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
  }
}
