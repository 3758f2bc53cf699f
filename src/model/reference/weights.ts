/**
 * All weights of a model as fp32 arrays, fetched once (tensor.f32() dequantizes and caches) so the
 * forward pass never touches the model file. Shared read-only by every sequence's state.
 */
import { type ModelDescription, TensorNames, tensorOrThrow } from "../../format/model.ts";

export interface LayerWeights {
  readonly attnNorm: Float32Array;
  /** [numHeads*headDim, hidden], rows in the model's ropeStyle layout. */
  readonly wq: Float32Array;
  /** [numKvHeads*headDim, hidden], rows in the model's ropeStyle layout. */
  readonly wk: Float32Array;
  readonly wv: Float32Array;
  /** qwen2 q/k/v biases; null when the config has no attention bias. */
  readonly bq: Float32Array | null;
  readonly bk: Float32Array | null;
  readonly bv: Float32Array | null;
  readonly wo: Float32Array;
  readonly ffnNorm: Float32Array;
  readonly wGate: Float32Array;
  readonly wUp: Float32Array;
  readonly wDown: Float32Array;
}

export interface ReferenceWeights {
  readonly tokenEmbedding: Float32Array;
  readonly layers: readonly LayerWeights[];
  readonly outputNorm: Float32Array;
  /** [vocab, hidden]; the token embedding itself when embeddings are tied. */
  readonly output: Float32Array;
}

export function loadReferenceWeights(model: ModelDescription): ReferenceWeights {
  const get = (name: string) => tensorOrThrow(model, name).f32();
  const bias = model.config.attentionBias;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < model.config.numLayers; l++) {
    layers.push({
      attnNorm: get(TensorNames.attnNorm(l)),
      wq: get(TensorNames.attnQ(l)),
      wk: get(TensorNames.attnK(l)),
      wv: get(TensorNames.attnV(l)),
      bq: bias ? get(TensorNames.attnQBias(l)) : null,
      bk: bias ? get(TensorNames.attnKBias(l)) : null,
      bv: bias ? get(TensorNames.attnVBias(l)) : null,
      wo: get(TensorNames.attnOutput(l)),
      ffnNorm: get(TensorNames.ffnNorm(l)),
      wGate: get(TensorNames.ffnGate(l)),
      wUp: get(TensorNames.ffnUp(l)),
      wDown: get(TensorNames.ffnDown(l)),
    });
  }
  const tokenEmbedding = get(TensorNames.tokenEmbedding);
  return {
    tokenEmbedding,
    layers,
    outputNorm: get(TensorNames.outputNorm),
    output: model.config.tiedEmbeddings ? tokenEmbedding : get(TensorNames.output),
  };
}
