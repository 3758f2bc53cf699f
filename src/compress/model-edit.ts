/**
 * Building new ModelDescriptions from old ones (pruned, healed, AWQ-folded, dequantized): same
 * tokenizer and metadata, new config and/or tensors, validated before anyone computes with them.
 */

import { dequantize, dequantizeInt8 } from "../format/int4.ts";
import {
  type ModelConfig,
  type ModelDescription,
  memoryTensor,
  type TensorEntry,
  tensorOrThrow,
} from "../format/model.ts";
import type { PackedTensor } from "../format/pack.ts";
import { validateTensors } from "../model/import/validate.ts";

/** A tensor as the packer (src/format/pack.ts packWeights) takes it: int4, int8 or fp32. */
export type QuantizedTensor = PackedTensor;

/** fp32 values of a tensor, as a row-major Float32Array (the model's own cached array: do not write). */
export function tensorValues(model: ModelDescription, name: string): Float32Array {
  return tensorOrThrow(model, name).f32();
}

/**
 * A model with `config` (default: unchanged) whose tensors are `tensors` (name -> [shape, values]),
 * in the given order; throws if any tensor the forward pass needs is missing or mis-shaped.
 */
export function withTensors(
  base: ModelDescription,
  tensors: Iterable<TensorEntry>,
  config: ModelConfig = base.config,
): ModelDescription {
  const map = new Map<string, TensorEntry>();
  for (const t of tensors) map.set(t.name, t);
  const model: ModelDescription = { ...base, config: { ...config }, tensors: map };
  validateTensors(model);
  return model;
}

/** The model with some tensors' values replaced (same shapes, same config). */
export function replaceTensors(
  base: ModelDescription,
  replacements: ReadonlyMap<string, Float32Array>,
): ModelDescription {
  const entries = [...base.tensors.values()].map((t) => {
    const data = replacements.get(t.name);
    return data ? memoryTensor(t.name, t.shape, data) : t;
  });
  for (const name of replacements.keys()) {
    if (!base.tensors.has(name)) throw new Error(`replaceTensors: the model has no tensor ${name}`);
  }
  return withTensors(base, entries);
}

/** fp32 values of a quantized tensor (what the engine computes with). */
export function dequantizeTensor(t: QuantizedTensor): Float32Array {
  if (t.value instanceof Float32Array) return t.value;
  return t.value.format === "int4" ? dequantize(t.value) : dequantizeInt8(t.value);
}

/** The fp32 model the quantized tensors stand for (for evaluation with the reference forward pass). */
export function dequantizedModel(
  base: ModelDescription,
  tensors: readonly QuantizedTensor[],
): ModelDescription {
  return withTensors(
    base,
    tensors.map((t) => memoryTensor(t.name, t.shape, dequantizeTensor(t))),
  );
}
