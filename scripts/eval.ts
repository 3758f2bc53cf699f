/**
 * `npm run eval [-- --json] [--model <path>] [--config <file>] [--out <variants dir>]`
 *
 * CLI over src/compress/eval-variants.ts: the built variants' quality/size/speed table with the
 * rtn-int4 and llama.cpp Q4_0 baselines at the same bytes.
 */
import { parseArgs } from "node:util";
import { DEFAULT_CONFIG, DEFAULT_OUT } from "../src/compress/build-variants.ts";
import { evaluate, formatTable } from "../src/compress/eval-variants.ts";
import { defaultModelPath } from "./lib/default-model.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      model: { type: "string", default: process.env.SHARDLM_MODEL },
      config: { type: "string", default: DEFAULT_CONFIG },
      out: { type: "string", default: DEFAULT_OUT },
    },
  });
  const rows = await evaluate({
    model: values.model ?? (await defaultModelPath()),
    config: values.config!,
    out: values.out!,
    log: (m) => console.error(m),
  });
  if (values.json) for (const r of rows) console.log(JSON.stringify(r));
  else console.log(formatTable(rows));
}

await main();
