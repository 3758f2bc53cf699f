/**
 * `npm start`: the main job on one machine. Builds the kernels, builds the default variants if they
 * are missing or stale, deploys them to wrangler's local R2, and serves the API with `wrangler dev`
 * on http://127.0.0.1:8787.
 *
 * The model: --model <path> | $SHARDLM_MODEL | --hf <owner/name> | $SHARDLM_HF_REPO (downloaded from
 * the Hugging Face Hub, or $HF_ENDPOINT) | the default SmolLM2-135M-Instruct (fetch-model's cache,
 * downloaded when missing) | ../shared/models/stories260K.gguf as the announced offline fallback.
 *
 * SHARDLM_FROZEN_CLOCK=1: the Worker reads time on a clock that advances only at I/O, as deployed
 * Workers' clocks do (src/runtime/clock.ts).
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildVariants, DEFAULT_OUT, defaultConfigFor } from "../src/compress/build-variants.ts";
import { buildKernelsWasm } from "../src/kernels/wasm/build.ts";
import { resolveDefaultModel } from "../src/model/default-model.ts";
import { downloadHfModel } from "../src/model/hf-hub.ts";
import { buildPlayground } from "../src/playground/build.ts";
import { DEFAULT_PERSIST_TO, openBucket, wranglerBucketName } from "../src/publish/buckets.ts";
import { deploy } from "../src/publish/deploy.ts";
import { deploySummary } from "./deploy.ts";

async function chooseModel(flags: { model?: string; hf?: string }): Promise<string> {
  const explicit = flags.model ?? process.env.SHARDLM_MODEL;
  if (explicit) return explicit.startsWith("synthetic:") ? explicit : resolve(explicit);
  const repo = flags.hf ?? process.env.SHARDLM_HF_REPO;
  if (repo) return downloadHfModel(repo);
  return (await resolveDefaultModel()).path;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      hf: { type: "string" },
      config: { type: "string" },
      port: { type: "string", default: "8787" },
      out: { type: "string", default: DEFAULT_OUT },
      "persist-to": { type: "string", default: DEFAULT_PERSIST_TO },
      "no-serve": { type: "boolean", default: false },
    },
  });
  const log = (m: string) => console.error(m);
  log("building the WASM kernels");
  const simd = (await buildKernelsWasm()).path;
  const relaxed = (await buildKernelsWasm({ relaxed: true })).path;
  log("building the playground");
  await buildPlayground({ relaxed, simd });

  const model = await chooseModel(values);
  const persistTo = resolve(values["persist-to"]!);
  const bucket = await openBucket({ remote: false, persistTo, bucketName: wranglerBucketName() });
  try {
    const result = await deploy(bucket, {
      model,
      config: resolve(values.config ?? defaultConfigFor(model)),
      out: resolve(values.out!),
      build: buildVariants,
      log,
    });
    console.log(deploySummary(result));
  } finally {
    await bucket.close();
  }
  if (values["no-serve"]) return;

  const port = values.port!;
  log(`\nserving on http://127.0.0.1:${port}  (Ctrl-C stops)\n`);
  log(`  curl http://127.0.0.1:${port}/v1/chat/completions -H 'content-type: application/json' \\`);
  log(
    `    -d '{"model":"shardlm","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":48}'\n`,
  );
  // API keys reach the local Worker as a var (visible in this machine's process list, like any argv).
  const keys = process.env.SHARDLM_API_KEYS?.trim();
  if (keys) log("API keys on: /v1 routes need Authorization: Bearer <key> (SHARDLM_API_KEYS)\n");
  else log("warning: the API is open (no SHARDLM_API_KEYS); anyone who can reach the port can use it\n");
  const child = spawn(
    "npx",
    [
      "wrangler",
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      port,
      "--persist-to",
      persistTo,
      ...(process.env.SHARDLM_FROZEN_CLOCK === "1" ? ["--var", "SHARDLM_FROZEN_CLOCK:1"] : []),
      ...(keys ? ["--var", `SHARDLM_API_KEYS:${keys}`] : []),
    ],
    {
      stdio: "inherit",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    },
  );
  const stop = () => child.kill("SIGINT");
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  child.on("exit", (code) => process.exit(code ?? 0));
}

main().catch((e: unknown) => {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});
