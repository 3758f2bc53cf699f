/**
 * Packing: a model description's fp32 tensors -> the weight table + data region that the runtime
 * streams into WebAssembly memory (layout: ./weights.ts). Quantizers are pluggable so the pipeline's
 * error-aware int4 can replace plain round-to-nearest; this module only lays bytes out.
 */

import {
  hasMins,
  type Int4GroupSize,
  type PackedInt4,
  type PackedInt8,
  quantizeInt8Rtn,
  quantizeRtn,
  serializeInt4,
  serializeInt8,
} from "./int4.ts";
import { type ModelDescription, TensorNames } from "./model.ts";
import { canonicalOrder, layoutWeights, type TensorEncoding, type WeightTable } from "./weights.ts";

export type PackedTensorValue = PackedInt4 | PackedInt8 | Float32Array;

export interface PackedTensor {
  name: string;
  shape: number[];
  value: PackedTensorValue;
}

export interface PackOptions {
  /** Group size of int4 linear weights (default 32). */
  groupSize?: Int4GroupSize;
  /** Asymmetric int4 with per-group zero points (default false). */
  zeroPoint?: boolean;
  /** How the token embedding (and a tied head) is stored (default int8, per-row scale). */
  embeddings?: "int8" | "int4";
  /** How an untied output head is stored (default int8). */
  head?: "int8" | "int4";
}

function encodingOf(value: PackedTensorValue): TensorEncoding {
  if (value instanceof Float32Array) return { kind: "f32" };
  if (value.format === "int4")
    return {
      kind: "int4",
      groupSize: value.groupSize,
      zeroPoint: value.zeros !== null,
      ...(hasMins(value) ? { mins: true as const } : {}),
    };
  return { kind: "int8", groupSize: value.perRow ? "row" : (value.groupSize as 32 | 64 | 128) };
}

function payloadOf(value: PackedTensorValue): Uint8Array {
  if (value instanceof Float32Array) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return value.format === "int4" ? serializeInt4(value) : serializeInt8(value);
}

/** Lays packed tensors out in canonical (layer) order; returns the table and the data region. */
export function packWeights(
  model: Pick<ModelDescription, "config">,
  tensors: PackedTensor[],
): { table: WeightTable; data: Uint8Array } {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const ordered = canonicalOrder(byName.keys()).map((name) => {
    const t = byName.get(name)!;
    const payload = payloadOf(t.value);
    return { name, shape: t.shape, encoding: encodingOf(t.value), bytes: payload.byteLength, payload };
  });
  const table = layoutWeights(model.config, ordered);
  const data = new Uint8Array(table.totalBytes);
  for (const [i, entry] of table.tensors.entries()) data.set(ordered[i]!.payload, entry.offset);
  return { table, data };
}

/** True for tensors that stay fp32 (norms, biases). */
function isVector(shape: readonly number[]): boolean {
  return shape.length === 1;
}

/** Plain round-to-nearest int4 for every linear weight (the baseline the pipeline improves on). */
export function quantizeModelRtn(model: ModelDescription, opts: PackOptions = {}): PackedTensor[] {
  const groupSize = opts.groupSize ?? 32;
  const zeroPoint = opts.zeroPoint ?? false;
  const out: PackedTensor[] = [];
  for (const t of model.tensors.values()) {
    const shape = [...t.shape];
    const values = t.f32();
    if (isVector(shape)) {
      out.push({ name: t.name, shape, value: values });
      continue;
    }
    const [N, K] = shape as [number, number];
    const isEmbedding = t.name === TensorNames.tokenEmbedding;
    const isHead = t.name === TensorNames.output;
    const kind = isEmbedding ? (opts.embeddings ?? "int8") : isHead ? (opts.head ?? "int8") : "int4";
    const value =
      kind === "int8" ? quantizeInt8Rtn(values, N, K) : quantizeRtn(values, N, K, { groupSize, zeroPoint });
    out.push({ name: t.name, shape, value });
  }
  return out;
}
