/**
 * Offline estimate for the model-output n-gram datastore (issue 13; src/bench/datastore-coverage.ts):
 * built from the real model's greedy answers to calibration prompts, replayed on its answers to the
 * bench prompts. Prints, per set and draft source, the share of answer tokens a draft got right.
 *
 *   npx tsx scripts/datastore-coverage.ts [--calibration data/chat/calibration.json] [--from 8]
 *     [--min-n 2] [--max-n 3] [--min-count 1] [--max-bytes 1048576] [--continuation 8] [--max-draft 6]
 */
import { readFileSync } from "node:fs";
import { datastoreCoverage } from "../src/bench/datastore-coverage.ts";

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
  maxBytes: num("max-bytes"),
  continuation: num("continuation"),
  maxDraft: num("max-draft"),
};
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
