/**
 * How prefill cost grows with position, on a real model file: the fit the build records in each
 * manifest (src/compress/measure.ts, measurePrefillByPosition: speed.prefillPositionTokens), run on
 * the model packed RTN int4 (g32, int4 embeddings, as src/bench/real-model.ts packs it) with each
 * KV cache the Worker may choose (fp16 where it fits the isolate, else int8; `served` marks the one
 * it chooses under its default budget, the one a build measures).
 */

import { engineFor, measurePrefillByPosition, type PrefillByPosition } from "../compress/measure.ts";
import { packWeights, quantizeModelRtn } from "../format/pack.ts";
import { loadModel } from "../model/import/index.ts";
import { servedEngineLayout } from "../runtime/load-engine.ts";

export interface PrefillPositionRow extends PrefillByPosition {
  model: string;
  kvCache: "f16" | "q8";
  /** Whether the Worker serves this model on this KV cache under its default budget (what a build records). */
  served: boolean;
}

/** One row per KV cache kind for the GGUF (or HF folder) at `path`; `name` labels the rows. */
export async function prefillPositionRows(
  path: string,
  name: string,
  repeats = 5,
): Promise<PrefillPositionRow[]> {
  const model = await loadModel(path);
  const { table, data } = packWeights(model, quantizeModelRtn(model, { groupSize: 32, embeddings: "int4" }));
  const layout = servedEngineLayout(table);
  const rows: PrefillPositionRow[] = [];
  for (const kvCache of ["f16", "q8"] as const) {
    const engine = await engineFor(table, data, layout.contextSize, kvCache);
    rows.push({
      model: name,
      kvCache,
      served: kvCache === layout.kvCache,
      ...measurePrefillByPosition(engine, repeats),
    });
  }
  return rows;
}
