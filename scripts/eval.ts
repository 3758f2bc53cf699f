/**
 * `npm run eval [-- --json] [--model <path>] [--config <file>] [--out <variants dir>] [--text <file>] [--tokens N]`
 *
 * CLI over src/compress/eval-variants.ts: the built variants' quality/size/speed table with the
 * rtn-int4 and llama.cpp Q4_0 baselines at the same bytes, and the benchmark target (met/missed).
 */
import { parseArgs } from "node:util";
import { DEFAULT_OUT, defaultConfigFor } from "../src/compress/build-variants.ts";
import { evaluate, formatTable, formatTarget } from "../src/compress/eval-variants.ts";
import { defaultModelPath } from "./lib/default-model.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      model: { type: "string", default: process.env.SHARDLM_MODEL },
      config: { type: "string" },
      out: { type: "string", default: DEFAULT_OUT },
      text: { type: "string" },
      tokens: { type: "string" },
    },
  });
  const model = values.model ?? (await defaultModelPath());
  const report = await evaluate({
    model,
    config: values.config ?? defaultConfigFor(model),
    out: values.out!,
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
  process.exit(1);
});
