/**
 * `npm run build:variants -- --model <path> [--config config/variants.json] [--out variants] [--force]
 *   [--verify-costs workerd|node]`
 *
 * CLI over src/compress/build-variants.ts: parses arguments, prints progress and the summary table.
 */
import { parseArgs } from "node:util";
import {
  type BuildResult,
  buildVariants,
  DEFAULT_OUT,
  defaultConfigFor,
  VERIFY_COSTS_ON,
  type VerifyCostsOn,
} from "../src/compress/build-variants.ts";
import { ConfigError } from "../src/compress/variants-config.ts";
import { WorkerdUnavailableError } from "../src/compress/workerd-measure.ts";
import { ModelImportError } from "../src/format/model.ts";
import { defaultModelPath } from "./lib/default-model.ts";
import { table } from "./lib/table.ts";
import { exitCodeFor, UsageError } from "./lib/usage.ts";

function summaryTable(rows: BuildResult["rows"]): string {
  const head = ["variant", "tier", "MB", "bits/w", "KL", "top-1", "ppl", "decode ms/tok", ""];
  const body = rows.map(({ variant, manifest: m, reused }) => [
    variant,
    m.tier,
    (m.size.totalBytes / 1e6).toFixed(2),
    m.size.bitsPerWeight.toFixed(2),
    m.quality.klMean.toFixed(4),
    `${(m.quality.top1Agreement * 100).toFixed(1)}%`,
    m.quality.perplexity.toFixed(2),
    m.speed.decodeMsPerToken.toFixed(3),
    reused ? "(reused)" : "",
  ]);
  return table(head, body);
}

const USAGE =
  "usage: npm run build:variants -- [--model <path>] [--config <file>] [--out <dir>] [--force] " +
  "[--verify-costs workerd|node]\n  --verify-costs: where speculation's verify costs are measured " +
  "(default workerd, where the Worker serves; node for machines without workerd: the manifest says so)";

async function main(): Promise<void> {
  let values: { model?: string; config?: string; out?: string; force?: boolean; "verify-costs"?: string };
  try {
    values = parseArgs({
      options: {
        model: { type: "string", default: process.env.SHARDLM_MODEL },
        config: { type: "string" },
        out: { type: "string", default: DEFAULT_OUT },
        force: { type: "boolean", default: false },
        "verify-costs": { type: "string", default: "workerd" },
      },
    }).values;
    if (!(VERIFY_COSTS_ON as readonly string[]).includes(values["verify-costs"]!))
      throw new UsageError(
        `--verify-costs must be one of ${VERIFY_COSTS_ON.join(", ")}, got "${values["verify-costs"]}"`,
      );
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    process.exit(exitCodeFor(e)); // 2: a bad argument
  }
  try {
    const t0 = performance.now();
    const model = values.model ?? (await defaultModelPath());
    const r = await buildVariants({
      model,
      config: values.config ?? defaultConfigFor(model),
      out: values.out!,
      force: values.force,
      verifyCosts: values["verify-costs"] as VerifyCostsOn,
    });
    console.log(summaryTable(r.rows));
    console.log(`\nwrote ${r.out}/variants.json in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    if (
      e instanceof ModelImportError ||
      e instanceof ConfigError ||
      e instanceof WorkerdUnavailableError ||
      (e as Error).name === "PruneError"
    ) {
      console.error(`error: ${(e as Error).message}`);
      process.exit(1);
    }
    throw e;
  }
}

await main();
