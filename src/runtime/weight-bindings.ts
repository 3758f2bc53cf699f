/**
 * One walk of a packed model's weight table, shared by the engines: each engine says how it binds a
 * vector (norms, biases), a block's int4 matrix and the embedding/head (int4 or int8); this checks
 * every tensor is there with the encoding the forward pass needs and assembles the layers.
 */

import { TensorNames } from "../format/model.ts";
import type { TensorEncoding, WeightEntry, WeightTable } from "../format/weights.ts";

export interface LayerWeights<V, M> {
  attnNorm: V;
  ffnNorm: V;
  wq: M;
  wk: M;
  wv: M;
  wo: M;
  wGate: M;
  wUp: M;
  wDown: M;
  /** null when the model has no q/k/v biases. */
  bq: V | null;
  bk: V | null;
  bv: V | null;
}

export interface ModelWeights<V, M, E> {
  layers: LayerWeights<V, M>[];
  embedding: E;
  /** The embedding itself when tied. */
  head: E;
  outputNorm: V;
}

export interface WeightBinders<V, M, E> {
  vector(entry: WeightEntry): V;
  int4(entry: WeightEntry): M;
  /** Embedding or head: int4 or int8. */
  matrix(entry: WeightEntry): E;
}

export function bindWeights<V, M, E>(
  table: WeightTable,
  bind: WeightBinders<V, M, E>,
): ModelWeights<V, M, E> {
  const c = table.config;
  const entries = new Map(table.tensors.map((t) => [t.name, t]));
  const at = (name: string, kinds: readonly TensorEncoding["kind"][]): WeightEntry => {
    const e = entries.get(name);
    if (!e) throw new Error(`weight table has no ${name}`);
    if (!kinds.includes(e.encoding.kind)) {
      throw new Error(`${name}: expected ${kinds.join(" or ")}, table says ${e.encoding.kind}`);
    }
    return e;
  };
  const vector = (name: string) => bind.vector(at(name, ["f32"]));
  const int4 = (name: string) => bind.int4(at(name, ["int4"]));
  const matrix = (name: string) => bind.matrix(at(name, ["int4", "int8"]));
  const bias = (name: string) => (c.attentionBias ? vector(name) : null);

  const layers: LayerWeights<V, M>[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    layers.push({
      attnNorm: vector(TensorNames.attnNorm(l)),
      ffnNorm: vector(TensorNames.ffnNorm(l)),
      wq: int4(TensorNames.attnQ(l)),
      wk: int4(TensorNames.attnK(l)),
      wv: int4(TensorNames.attnV(l)),
      wo: int4(TensorNames.attnOutput(l)),
      wGate: int4(TensorNames.ffnGate(l)),
      wUp: int4(TensorNames.ffnUp(l)),
      wDown: int4(TensorNames.ffnDown(l)),
      bq: bias(TensorNames.attnQBias(l)),
      bk: bias(TensorNames.attnKBias(l)),
      bv: bias(TensorNames.attnVBias(l)),
    });
  }
  const embedding = matrix(TensorNames.tokenEmbedding);
  return {
    layers,
    embedding,
    head: c.tiedEmbeddings ? embedding : matrix(TensorNames.output),
    outputNorm: vector(TensorNames.outputNorm),
  };
}
