/**
 * How `wrangler dev` is started on this machine (by `npm start` and the tests that run it): its
 * arguments, and an environment that keeps it offline and quiet.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/**
 * Wrangler's documented system environment variables
 * (developers.cloudflare.com/workers/wrangler/system-environment-variables/) that stop its calls
 * home: usage metrics, the error-report prompt, and the `Request.cf` fetch from
 * workers.cloudflare.com (offline it logs a getaddrinfo ENOTFOUND stack at every start and reload,
 * then falls back to a placeholder object anyway).
 */
export const WRANGLER_OFFLINE_ENV: Readonly<Record<string, string>> = {
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};

/** `env` (default: this process's) with WRANGLER_OFFLINE_ENV on top. */
export function wranglerDevEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, ...WRANGLER_OFFLINE_ENV };
}

/**
 * `wrangler dev` on 127.0.0.1:`port` with local R2 state in `persistTo`; the Worker's settings, if
 * any, from `envFile` (writeWorkerVarsFile), never as `--var k:v`: arguments are readable by every
 * user of the machine (`ps`, /proc/<pid>/cmdline) and API keys are among them.
 */
export function wranglerDevArgs(opts: { port: number; persistTo: string; envFile?: string }): string[] {
  return [
    "wrangler",
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(opts.port),
    "--persist-to",
    opts.persistTo,
    ...(opts.envFile === undefined ? [] : ["--env-file", opts.envFile]),
  ];
}

/**
 * wranglerDevArgs run by wrangler's own script (node_modules/wrangler/bin/wrangler.js) rather than
 * through `npx`: `[script, ...arguments]` for `spawn(process.execPath, ...)`. npx does not pass
 * SIGINT/SIGTERM on to wrangler, which then outlives the process that started it.
 */
export function wranglerDevCommand(opts: { port: number; persistTo: string; envFile?: string }): string[] {
  const pkg = createRequire(import.meta.url).resolve("wrangler/package.json");
  return [join(dirname(pkg), "bin", "wrangler.js"), ...wranglerDevArgs(opts).slice(1)];
}

/**
 * One `NAME='value'` line of a dotenv file as wrangler 4.86 reads it (dotenv, then dotenv-expand):
 * single or back quotes keep the value literal (no \n processing), and `$` is escaped because
 * dotenv-expand would substitute `$NAME`/`${NAME}` (it turns `\$` back into `$`). Throws on a
 * value dotenv cannot carry unchanged: control characters, or both quote kinds.
 */
export function dotenvLine(name: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`${name}: not an environment variable name`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new Error(`${name}: a control character (a newline?) in its value`);
  const quote = !value.includes("'") ? "'" : !value.includes("`") ? "`" : null;
  if (quote === null)
    throw new Error(`${name}: its value holds both ' and \` (not expressible in a .env file)`);
  return `${name}=${quote}${value.replaceAll("$", "\\$")}${quote}`;
}

/**
 * `vars` in a dotenv file for `wrangler dev --env-file`, in a fresh temp folder only this user can
 * read (folder 0700, file 0600). `remove()` deletes the folder (idempotent); call it when wrangler
 * exits. Wrangler reads an --env-file instead of the project's .dev.vars, so with settings to pass
 * a .dev.vars is not read.
 */
export function writeWorkerVarsFile(vars: Record<string, string>): { path: string; remove(): void } {
  const lines = Object.entries(vars).map(([k, v]) => dotenvLine(k, v));
  const dir = mkdtempSync(join(tmpdir(), "shardlm-wrangler-vars-"));
  chmodSync(dir, 0o700);
  const path = join(dir, "worker.env");
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600, flag: "wx" });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The Worker settings (src/worker/env.ts documents and validates each) that `npm start` hands from
 * its own environment to the local Worker as vars: API keys, CORS origins, the body-size limit, the
 * frozen clock and the speculation switch. Unset or blank ones are left out, so the Worker's defaults apply.
 */
export const WORKER_ENV_VARS = [
  "SHARDLM_API_KEYS",
  "SHARDLM_CORS_ORIGINS",
  "SHARDLM_MAX_BODY_BYTES",
  "SHARDLM_FROZEN_CLOCK",
  "SHARDLM_SPECULATION",
] as const;

/** WORKER_ENV_VARS as set (trimmed, non-empty) in `env`, for writeWorkerVarsFile. */
export function workerVarsFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const name of WORKER_ENV_VARS) {
    const value = env[name]?.trim();
    if (value) vars[name] = value;
  }
  return vars;
}

/**
 * The curl line `npm start` prints once it serves on 127.0.0.1:`port`, ready to paste. With API keys
 * on, every /v1 route answers 401 without a key, so the line carries an Authorization header whose
 * key the user fills in (the keys themselves are never printed).
 */
export function curlExample(port: number, keyed: boolean): string {
  return [
    `  curl http://127.0.0.1:${port}/v1/chat/completions -H 'content-type: application/json' \\`,
    ...(keyed ? ["    -H 'Authorization: Bearer <one of SHARDLM_API_KEYS>' \\"] : []),
    `    -d '{"model":"shardlm","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":48,"temperature":0.2}'`,
  ].join("\n");
}
