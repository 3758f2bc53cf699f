/**
 * `npm run eval [-- --json] [--model <path>] [--config <file>] [--out <variants dir>] [--text <file>] [--tokens N]`
 *
 * CLI over src/compress/eval-variants.ts: the built variants' quality/size/speed table with the
 * rtn-int4 and llama.cpp Q4_0 baselines at the same bytes, and the benchmark target (met/missed).
 */
import { parseArgs } from "node:util";
import { defaultModelPath } from "./lib/default-model.ts";
import { exitCodeFor, isUsageError, UsageError } from "./lib/usage.ts";

const USAGE = `usage: npm run eval -- [--json] [--model <path>] [--config <file>] [--out <dir>] [--text <file>] [--tokens <n>]
  --model <path>   the model the variants were built from (default $SHARDLM_MODEL, else SmolLM2-135M-Instruct)
  --config <file>  its variants config (default: picked by the model's size)
  --out <dir>      the built variants folder (default variants/)
  --text <file>    held-out text to score (default: the config's evaluation text)
  --tokens <n>     held-out tokens to score
  --json           one JSON line per row`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      model: { type: "string", default: process.env.SHARDLM_MODEL },
      config: { type: "string" },
      out: { type: "string" },
      text: { type: "string" },
      tokens: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.tokens !== undefined && !/^[1-9]\d*$/.test(values.tokens))
    throw new UsageError(`--tokens ${JSON.stringify(values.tokens)} is not a positive whole number`);
  // Loaded after the arguments are checked: the pipeline takes seconds to import.
  const { DEFAULT_OUT, defaultConfigFor } = await import("../src/compress/build-variants.ts");
  const { evaluate, formatTable, formatTarget } = await import("../src/compress/eval-variants.ts");
  const model = values.model ?? (await defaultModelPath());
  const report = await evaluate({
    model,
    config: values.config ?? defaultConfigFor(model),
    out: values.out ?? DEFAULT_OUT,
    log: (m) => console.error(m),
    ...(values.text !== undefined ? { text: values.text } : {}),
    ...(values.tokens !== undefined ? { tokens: Number(values.tokens) } : {}),
  });
  if (values.json) {
    for (const r of report.rows) console.log(JSON.stringify(r));
    console.log(JSON.stringify({ target: report.target }));
  } else {
    console.log(`held-out text: ${report.text}`);
    console.log(formatTable(report.rows));
    console.log(formatTarget(report.target));
  }
}

main().catch((e: unknown) => {
  console.error(`eval: ${e instanceof Error ? e.message : String(e)}`);
  if (isUsageError(e)) console.error(USAGE);
  process.exit(exitCodeFor(e));
});
