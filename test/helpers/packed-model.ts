/** Packs a model for the wasm engine and builds the matching dequantized-weights reference. */

import { dequantize, dequantizeInt8 } from "../../src/format/int4.ts";
import { type ModelDescription, memoryTensor, type TensorEntry } from "../../src/format/model.ts";
import { type PackedTensor, type PackOptions, packWeights, quantizeModelRtn } from "../../src/format/pack.ts";
import type { WeightTable } from "../../src/format/weights.ts";

export interface PackedTestModel {
  table: WeightTable;
  data: Uint8Array;
  /** The same model with every tensor replaced by its dequantized packed value. */
  dequantized: ModelDescription;
}

function valuesOf(t: PackedTensor): Float32Array {
  const v = t.value;
  if (v instanceof Float32Array) return v;
  return v.format === "int4" ? dequantize(v) : dequantizeInt8(v);
}

export function packForTest(model: ModelDescription, opts: PackOptions = {}): PackedTestModel {
  const packed = quantizeModelRtn(model, opts);
  const { table, data } = packWeights(model, packed);
  const tensors = new Map<string, TensorEntry>();
  for (const t of packed) tensors.set(t.name, memoryTensor(t.name, t.shape, valuesOf(t)));
  return { table, data, dequantized: { ...model, tensors } };
}
