/**
 * Shared by test/pipeline-*.test.ts: the real stories260K model and its calibration statistics
 * (memoized per test file; ~1k tokens keep each file's set-up near a second on 2 cores).
 */

import {
  CALIBRATION_TEXT,
  type CalibrationStats,
  calibrationSequences,
  collectCalibrationStats,
} from "../scripts/pipeline/calibration.ts";
import { loadModel } from "../src/engine/import/index.ts";
import type { ModelDescription } from "../src/engine/model.ts";
import { sharedModelPath } from "./helpers/paths.ts";

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
  let a = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}
