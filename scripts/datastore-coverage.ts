/**
 * Offline estimate for the model-output n-gram datastore (issue 13; src/bench/datastore-coverage.ts):
 * built from the real model's greedy answers to calibration prompts, replayed on its answers to the
 * bench prompts. Prints, per set and draft source, the share of answer tokens a draft got right.
 *
 *   npx tsx scripts/datastore-coverage.ts [--calibration data/chat/calibration.json] [--from 8]
 *     [--min-n 2] [--max-n 3] [--min-count 1] [--min-confidence 0] [--max-bytes 1048576] [--continuation 8]
 *     [--max-draft 6]
 *   npx tsx scripts/datastore-coverage.ts --trace [--per-set 8] [--row-costs a,b,..] [--head-costs a,b,..]
 *     [--head-share h] [table options as above]
 *
 * --trace: our engine decodes the bench prompts with the adaptive drafter with and without the
 * datastore, priced at the given verify costs (default: the ones a SmolLM2 build measured in workerd).
 */
import { readFileSync } from "node:fs";
import {
  datastoreCoverage,
  realDraftDatastore,
  tracePricedSpeedups,
} from "../src/bench/datastore-coverage.ts";

const argv = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const num = (name: string): number | undefined => {
  const v = arg(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name}: a number (got ${v})`);
  return n;
};
const calibrationFile = arg("calibration") ?? "data/chat/calibration.json";
// From the 9th prompt on by default: the build counts the datastore from those (the first 8 are the layer-skip search's).
const prompts = (JSON.parse(readFileSync(calibrationFile, "utf8")) as { prompts: string[] }).prompts.slice(
  num("from") ?? 8,
);
const opts = {
  minN: num("min-n"),
  maxN: num("max-n"),
  minCount: num("min-count"),
  minConfidence: num("min-confidence"),
  maxBytes: num("max-bytes"),
  continuation: num("continuation"),
  maxDraft: num("max-draft"),
};
const list = (name: string, fallback: number[]): number[] => arg(name)?.split(",").map(Number) ?? fallback;
if (argv.includes("--trace")) {
  const table = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
  const d = await realDraftDatastore({ ...table, searchPrompts: num("from") ?? 8 });
  // workerd, SmolLM2 build (layers per row at 1..8 rows; batched heads per row at 1..8 rows).
  const rowCosts = list("row-costs", [0.594, 0.484, 0.458, 0.453, 0.381, 0.427, 0.366, 0.32]);
  const headCosts = list("head-costs", [0.205, 0.167, 0.145, 0.122, 0.116, 0.11, 0.105, 0.101]);
  const costs = {
    rowCost: rowCosts.at(-1)! + headCosts.at(-1)!,
    rowCosts,
    headCosts,
    headShare: num("head-share") ?? 0.205,
  };
  console.log(
    `datastore: ${d.ref.entries} entries, ${d.ref.bytes} bytes, held-out coverage ${(100 * d.ref.coverage).toFixed(1)}%, ` +
      `acceptance ${d.acceptance.first.toFixed(2)} / ${d.acceptance.next.toFixed(2)}; costs ${JSON.stringify(costs)}`,
  );
  console.log("set       datastore  tokens  passes  accepted/drafted  datastore acc/drafted  est. speedup");
  for (const r of await tracePricedSpeedups(costs, d, num("per-set") ?? 8))
    console.log(
      `${r.set.padEnd(9)} ${String(r.datastore).padEnd(9)}  ${String(r.tokens).padStart(6)}  ${String(r.verifications).padStart(6)}  ` +
        `${`${r.accepted}/${r.drafted}`.padStart(16)}  ${`${r.storeAccepted}/${r.storeDrafted}`.padStart(21)}  ${r.estimatedSpeedup.toFixed(3).padStart(12)}`,
    );
  process.exit(0);
}
const r = await datastoreCoverage(
  prompts,
  Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
);
console.log(
  `datastore from ${r.calibrationPrompts} prompts (${calibrationFile}), ${r.calibrationTokens} answer tokens: ` +
    `${r.entries} entries, ${r.bytes} bytes; ${JSON.stringify(opts)}`,
);
console.log(
  "set       answers  source            tokens  covered  passes  first-right  accepted/drafted  mean-run",
);
for (const { set, source, answers, counts: c } of r.rows) {
  console.log(
    `${set.padEnd(9)} ${answers.padEnd(8)} ${source.padEnd(17)} ${String(c.tokens).padStart(6)}  ${((100 * c.accepted) / c.tokens).toFixed(1).padStart(6)}%  ` +
      `${String(c.passes).padStart(6)}  ${(c.passes ? c.firstRight / c.passes : 0).toFixed(2).padStart(11)}  ` +
      `${`${c.accepted}/${c.drafted}`.padStart(16)}  ${(c.passes ? c.accepted / c.passes : 0).toFixed(2).padStart(8)}`,
  );
}
