/**
 * `npm start`: the main job on one machine. Builds the kernels, builds the default variants if they
 * are missing or stale, deploys them to wrangler's local R2, and serves the API with `wrangler dev`
 * on http://127.0.0.1:8787.
 *
 * The model: --model <path> | $SHARDLM_MODEL | --hf <owner/name> | $SHARDLM_HF_REPO (downloaded from
 * the Hugging Face Hub, or $HF_ENDPOINT) | the default SmolLM2-135M-Instruct (fetch-model's cache,
 * downloaded when missing) | ../shared/models/stories260K.gguf as the announced offline fallback.
 *
 * SHARDLM_API_KEYS, SHARDLM_CORS_ORIGINS, SHARDLM_MAX_BODY_BYTES, SHARDLM_FROZEN_CLOCK and SHARDLM_SPECULATION in this
 * process's environment reach the local Worker (src/worker/env.ts) through a 0600 temp file given to
 * wrangler as --env-file, never on its command line (deleted when wrangler exits); SHARDLM_FROZEN_CLOCK=1
 * makes it read time on a clock that advances only at I/O, as deployed Workers' clocks do.
 *
 * Stopping: package.json runs this file as `exec node --import tsx scripts/start.ts`, so it is npm's
 * own child. npm passes SIGINT and SIGTERM on to its child only; through the `sh -c` npm runs a
 * script in, a SIGINT stopped at the shell (a non-interactive shell waits for its command and passes
 * nothing on), and through the `tsx` launcher it would be relayed with a SIGKILL 30 ms later when the
 * child is slow to acknowledge it (which orphans wrangler's group). SIGINT, SIGTERM and SIGHUP to this
 * process, or to npm (SIGHUP kills npm; the parent watch below sees it), stop wrangler's group.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { constants as osConstants } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { modelFormatProblem } from "../src/model/import/model-format.ts";
import { persistToProblem } from "../src/publish/state-folder.ts";
import {
  curlExample,
  dotenvLine,
  WORKER_ENV_VARS,
  workerVarsFromEnv,
  wranglerDevCommand,
  wranglerDevEnv,
  writeWorkerVarsFile,
} from "../src/publish/wrangler-dev.ts";
import { exitCodeFor, isUsageError, UsageError } from "./lib/usage.ts";

// The build and deploy modules load on use: importing them (the AssemblyScript compiler among
// them) takes seconds to tens of seconds, too long to wait for a usage error.

const USAGE = `usage: npm start -- [--model <path> | --hf <owner/name>] [--config <json>] [--port <n>] [--no-serve]

  --model <path>     the model: a GGUF file or a Hugging Face model folder (or $SHARDLM_MODEL;
                     default: SmolLM2-135M-Instruct, else ../shared/models/stories260K.gguf)
  --hf <owner/name>  download the model from the Hugging Face Hub (or $SHARDLM_HF_REPO)
  --config <json>    the variants config (default: picked by the model's size,
                     config/variants-smollm2.json or the toy config/variants.json)
  --port <n>         serve on 127.0.0.1:<n> (default 8787)
  --no-serve         build and deploy to local R2 only, do not serve
  --out <dir>        where built variants go; --persist-to <dir>: wrangler's local state
  --help             this text

Worker settings from the environment (see README): ${WORKER_ENV_VARS.join(", ")}.`;

/** A path the user named that must exist (checked before minutes of building). */
function existing(path: string, what: string): string {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new UsageError(`${what} ${abs} does not exist`);
  return abs;
}

async function chooseModel(flags: { model?: string; hf?: string }): Promise<string> {
  if (flags.model !== undefined && flags.hf !== undefined)
    throw new UsageError("give --model or --hf, not both");
  const explicit = flags.model ?? process.env.SHARDLM_MODEL;
  if (explicit !== undefined) {
    const from = flags.model !== undefined ? "--model" : "$SHARDLM_MODEL";
    if (explicit.trim() === "") throw new UsageError(`${from} is empty`);
    if (explicit.startsWith("synthetic:")) return explicit;
    const path = existing(explicit, `${from}: the model (a GGUF file or a Hugging Face model folder)`);
    const problem = modelFormatProblem(path);
    if (problem !== null) throw new UsageError(`${from}: ${path} ${problem}`);
    return path;
  }
  const repo = flags.hf ?? process.env.SHARDLM_HF_REPO;
  if (repo) return (await import("../src/model/hf-hub.ts")).downloadHfModel(repo);
  return (await (await import("../src/model/default-model.ts")).resolveDefaultModel()).path;
}

/**
 * Whether 127.0.0.1:`port` can be bound now. wrangler dev finds a taken port only after the build
 * and deploy (minutes on a first start) and then dies with workerd's stack trace.
 */
function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once("error", () => done(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => done(true)));
  });
}

function parsePort(raw: string): number {
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port < 1 || port > 65535)
    throw new UsageError(`--port ${JSON.stringify(raw)} is not a port number (1-65535)`);
  return port;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      hf: { type: "string" },
      config: { type: "string" },
      port: { type: "string", default: "8787" },
      out: { type: "string" },
      "persist-to": { type: "string" },
      "no-serve": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const log = (m: string) => console.error(m);
  // Arguments and the model first: a typo should not cost the kernel build.
  const port = parsePort(values.port!);
  const config = values.config === undefined ? undefined : existing(values.config, "--config");
  const stateProblem =
    values["persist-to"] === undefined ? null : persistToProblem(resolve(values["persist-to"]));
  if (stateProblem) throw new UsageError(`--persist-to ${resolve(values["persist-to"]!)} ${stateProblem}`);
  // The Worker settings must fit the file wrangler reads them from (writeWorkerVarsFile).
  const vars = workerVarsFromEnv();
  for (const [name, value] of Object.entries(vars)) {
    try {
      dotenvLine(name, value);
    } catch (e) {
      throw new UsageError(`$${(e as Error).message}`);
    }
  }
  const model = await chooseModel(values);
  if (!values["no-serve"] && !(await portFree(port)))
    throw new UsageError(
      `127.0.0.1:${port} is in use (another npm start or wrangler dev?); stop it or pick another --port`,
    );

  log("loading the build and deploy code");
  const t0 = performance.now();
  const { ensureKernelsWasm } = await import("../src/kernels/wasm/build.ts");
  const { buildPlayground } = await import("../src/playground/build.ts");
  const { buildVariants, DEFAULT_OUT, defaultConfigFor } = await import("../src/compress/build-variants.ts");
  const { DEFAULT_PERSIST_TO, openBucket, wranglerBucketName } = await import("../src/publish/buckets.ts");
  const { deploy } = await import("../src/publish/deploy.ts");
  const { deploySummary } = await import("./deploy.ts");
  log(`  loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // Built only when their sources, build script or compiler changed (a stamp of their hash): the
  // compiler alone takes tens of seconds to load, and an unchanged build/ is not rewritten, so a
  // wrangler dev already serving from this folder does not reload.
  log("WASM kernels: checking build/wasm against their sources (a build loads the AssemblyScript compiler)");
  const simd = await ensureKernelsWasm({}, (m) => log(`  ${m}`));
  const relaxed = await ensureKernelsWasm({ relaxed: true }, (m) => log(`  ${m}`));
  log("building the playground");
  await buildPlayground({ relaxed, simd });

  const persistTo = resolve(values["persist-to"] ?? DEFAULT_PERSIST_TO);
  const bucket = await openBucket({ remote: false, persistTo, bucketName: wranglerBucketName() });
  try {
    const result = await deploy(bucket, {
      model,
      config: config ?? resolve(defaultConfigFor(model)),
      out: resolve(values.out ?? DEFAULT_OUT),
      build: buildVariants,
      log,
    });
    console.log(deploySummary(result));
  } finally {
    await bucket.close();
  }
  if (values["no-serve"]) return;

  // The settings (API keys among them) go to wrangler in a file only this user can read: an
  // argument would show in every user's `ps`.
  const keys = vars.SHARDLM_API_KEYS;
  const varsFile = Object.keys(vars).length > 0 ? writeWorkerVarsFile(vars) : null;
  process.on("exit", () => varsFile?.remove());
  log(`\nserving on http://127.0.0.1:${port}  (Ctrl-C stops)\n`);
  log(`${curlExample(port, keys !== undefined)}\n`);
  if (keys) log("API keys on: /v1 routes need Authorization: Bearer <key> (SHARDLM_API_KEYS)\n");
  else log("warning: the API is open (no SHARDLM_API_KEYS); anyone who can reach the port can use it\n");
  // wranglerDevEnv: no metrics, error-report prompt or Request.cf fetch (offline noise otherwise).
  // wrangler's own script, not `npx wrangler` (npx does not pass signals on), in a process group of
  // its own (its node child and workerd in it too), so a stop reaches all of them at once. Its stdin
  // is not the terminal: a background group that reads or configures the terminal is stopped by it
  // (SIGTTIN/SIGTTOU); Ctrl-C reaches this process, which stops the group.
  const [cli, ...args] = wranglerDevCommand({
    port,
    persistTo,
    ...(varsFile ? { envFile: varsFile.path } : {}),
  });
  const child = spawn(process.execPath, [cli!, ...args], {
    stdio: ["ignore", "inherit", "inherit"],
    env: wranglerDevEnv(),
    detached: true,
  });
  stopWithThisProcess(child);
}

/**
 * The parent's ancestors, nearest first, at most `levels` of them and never init (pid 1): the
 * launchers above this process when it is not npm's child (`npx tsx scripts/start.ts`: tsx, sh,
 * npx). Read from /proc/<pid>/stat (field 4: the parent); none where there is no /proc.
 */
function ancestorPids(levels: number): number[] {
  const pids: number[] = [];
  let pid = process.ppid;
  for (let i = 0; i < levels; i++) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    } catch {
      break;
    }
    if (!(pid > 1)) break;
    pids.push(pid);
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether process group `group` has a process left (the SIGKILL after GRACE_MS bounds the wait). */
function groupAlive(group: number): boolean {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops `child`'s process group when this process is asked to stop (SIGTERM, SIGINT, SIGHUP) or its
 * parent (npm) dies, and exits with the child's code once the child has exited (the "exit" handlers,
 * the settings file's removal among them, then run). A group still up GRACE_MS after the signal
 * gets SIGKILL.
 */
function stopWithThisProcess(child: ChildProcess): void {
  const GRACE_MS = 10_000;
  const group = child.pid!;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-group, signal);
    } catch {
      // the group has exited
    }
  };
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    signalGroup(signal === "SIGHUP" ? "SIGTERM" : signal);
    setTimeout(() => signalGroup("SIGKILL"), GRACE_MS).unref();
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(signal));
  // npm gone (SIGHUP or SIGKILL, which it does not pass on), or a launcher between it and this
  // process (started another way than `npm start`): the parent or one of its ancestors is gone.
  const parent = process.ppid;
  const ancestors = ancestorPids(3);
  setInterval(() => {
    if (process.ppid !== parent || ancestors.some((pid) => !alive(pid))) stop("SIGTERM");
  }, 1000).unref();
  child.on("error", (e) => {
    console.error(`error: wrangler dev: ${e.message}`);
    process.exit(1);
  });
  child.on("exit", async (code, signal) => {
    if (!stopping) stop("SIGTERM"); // workerd must not outlive a wrangler that died
    // Exit once the whole group is gone (workerd last), so the port is free when this process ends.
    while (groupAlive(group)) await new Promise((r) => setTimeout(r, 100));
    process.exit(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 0));
  });
}

main().catch((e: unknown) => {
  console.error(`error: ${(e as Error).message}`);
  // Usage errors (parseArgs' own included; reported before any build starts) exit 2.
  if (isUsageError(e)) console.error(`${USAGE.split("\n")[0]}\n(npm start -- --help for more)`);
  process.exit(exitCodeFor(e));
});
