/**
 * The tier speed bench (npm run bench -- --tiers) on the stories260K test variants: one row per
 * variant in index order with measured, positive times (the first is the 1.0x baseline), and a clear
 * error for a folder that holds no built variants. No timing assertions: speeds live in the bench.
 */
import { afterAll, describe, expect, it } from "vitest";
import { tierSpeeds } from "../src/bench/tier-speed.ts";
import { buildTestVariants } from "./helpers/api-server.ts";
import { tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("tier-speed");
afterAll(() => dirs.cleanup());

describe("tierSpeeds", () => {
  it("measures every built variant in alternating rounds", async () => {
    const built = await buildTestVariants();
    const rows = await tierSpeeds(built.dir, { rounds: 2, decodeTokens: 16 });
    expect(rows.map((r) => r.variant)).toEqual(Object.keys(built.index.variants));
    expect(rows[0]!.speedup_cpu).toBe(1);
    for (const r of rows) {
      expect(r.decode_ms_wall).toBeGreaterThan(0);
      expect(r.decode_ms_cpu).toBeGreaterThanOrEqual(0);
      expect(r.bytes).toBeGreaterThan(0);
    }
  }, 300_000);

  it("refuses a folder with no variants index", async () => {
    await expect(tierSpeeds(dirs.make())).rejects.toThrow(/no variants index \(build the variants first\)/);
  });
});
