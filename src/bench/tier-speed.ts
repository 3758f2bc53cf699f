/**
 * Decode speed of the built variants of one variants folder, measured in alternating rounds (as
 * ./paired.ts, and for the same reason): every round runs each variant once (a 32-token prompt, then
 * `decodeTokens` greedy steps) and each keeps its best time, so all of them see the same load; the
 * ratio to the first variant (quality) is the number to read on a shared machine. Timed by wall
 * clock and by this process's CPU time (which other processes' time-slicing does not inflate).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { engineFor } from "../compress/measure.ts";
import { readManifest, readVariantsIndex } from "../compress/variant-store.ts";
import { R2Keys } from "../format/manifest.ts";
import { argmax, promptIds } from "./common.ts";

export interface TierSpeed {
  variant: string;
  tier: string;
  bytes: number;
  layers: number;
  /** Best decode ms/token over the rounds, wall clock and process CPU time. */
  decode_ms_wall: number;
  decode_ms_cpu: number;
  /** First variant's CPU ms/token over this one's: > 1 is faster. */
  speedup_cpu: number;
  kl_mean: number;
}

export async function tierSpeeds(
  dir: string,
  opts: { rounds?: number; decodeTokens?: number; log?: (m: string) => void } = {},
): Promise<TierSpeed[]> {
  const index = readVariantsIndex(dir);
  if (!index) throw new Error(`${dir}: no variants index (build the variants first)`);
  const rounds = opts.rounds ?? 5;
  const steps = opts.decodeTokens ?? 32;
  const variants = [];
  for (const [name, id] of Object.entries(index.variants)) {
    const m = readManifest(dir, id);
    const data = new Uint8Array(m.weights.totalBytes);
    for (const s of m.shards) data.set(readFileSync(join(dir, R2Keys.shard(s.sha256))), s.offset);
    const engine = await engineFor(m.weights, data, 256);
    variants.push({ name, m, engine, wall: Number.POSITIVE_INFINITY, cpu: Number.POSITIVE_INFINITY });
  }
  const prompt = promptIds(32, variants[0]!.m.weights.config.vocabSize);
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const state = v.engine.newState(prompt.length + steps);
      let logits = v.engine.prefill(state, prompt);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) logits = v.engine.forward(state, argmax(logits));
      const wall = (performance.now() - t0) / steps;
      const c = process.cpuUsage(c0);
      v.wall = Math.min(v.wall, wall);
      v.cpu = Math.min(v.cpu, (c.user + c.system) / 1000 / steps);
    }
    opts.log?.(
      `round ${r + 1}/${rounds}: ${variants.map((v) => `${v.name} ${v.cpu.toFixed(1)}`).join(", ")} ms/token (CPU)`,
    );
  }
  const base = variants[0]!.cpu;
  return variants.map((v) => ({
    variant: v.name,
    tier: v.m.tier,
    bytes: v.m.size.totalBytes,
    layers: v.m.model.config.numLayers,
    decode_ms_wall: v.wall,
    decode_ms_cpu: v.cpu,
    speedup_cpu: base / v.cpu,
    kl_mean: v.m.quality.klMean,
  }));
}
