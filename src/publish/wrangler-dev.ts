/**
 * How `wrangler dev` is started on this machine (by `npm start` and the tests that run it): its
 * arguments, and an environment that keeps it offline and quiet.
 */

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

/** `wrangler dev` on 127.0.0.1:`port` with local R2 state in `persistTo`; `vars` as --var k:v. */
export function wranglerDevArgs(opts: {
  port: number;
  persistTo: string;
  vars?: Record<string, string>;
}): string[] {
  const vars = Object.entries(opts.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  return [
    "wrangler",
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(opts.port),
    "--persist-to",
    opts.persistTo,
    ...vars,
  ];
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

/** WORKER_ENV_VARS as set (trimmed, non-empty) in `env`, for wranglerDevArgs' `vars`. */
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
    `    -d '{"model":"shardlm","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":48}'`,
  ].join("\n");
}
