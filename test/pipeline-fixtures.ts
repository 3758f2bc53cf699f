/**
 * Shared by test/pipeline-*.test.ts: the real stories260K model and its calibration statistics
 * (memoized per test file; ~1k tokens keep each file's set-up near a second on 2 cores).
 */

import {
  CALIBRATION_TEXT,
  type CalibrationStats,
  calibrationSequences,
  collectCalibrationStats,
} from "../src/compress/calibration.ts";
import type { ModelDescription } from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import { sharedModelPath } from "./helpers/paths.ts";
import { mulberry32 } from "./helpers/random.ts";

export interface Fixture {
  model: ModelDescription;
  stats: CalibrationStats;
  /** Held-out token sequences (data/calibration/heldout.txt), for end-to-end checks. */
  heldout: number[][];
  /** Statistics of the held-out text: errors measured on data the methods never saw. */
  heldoutStats: CalibrationStats;
}

let cached: Promise<Fixture> | null = null;

export function loadFixture(): Promise<Fixture> {
  cached ??= (async () => {
    const model = await loadModel(sharedModelPath());
    const stats = collectCalibrationStats(model, calibrationSequences(model, { maxTokens: 1200 }));
    const heldout = calibrationSequences(model, { textPath: CALIBRATION_TEXT.heldout, maxTokens: 400 });
    const heldoutStats = collectCalibrationStats(model, heldout);
    return { model, stats, heldout, heldoutStats };
  })();
  return cached;
}

/** Deterministic values in [-1, 1) (mulberry32). */
export function seededValues(n: number, seed: number): Float64Array {
  const next = mulberry32(seed);
  return Float64Array.from({ length: n }, () => next() * 2 - 1);
}
