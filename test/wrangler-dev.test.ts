/**
 * What `npm start` hands `wrangler dev`: the Worker settings from its environment (unset or blank
 * ones are left out, so the Worker's defaults apply) in a 0600 dotenv file named by --env-file,
 * never as arguments. test/start.test.ts checks that wrangler reads them and its command line
 * does not show them.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import {
  dotenvLine,
  WORKER_ENV_VARS,
  workerVarsFromEnv,
  wranglerDevArgs,
  writeWorkerVarsFile,
} from "../src/publish/wrangler-dev.ts";

describe("workerVarsFromEnv", () => {
  it("passes API keys, CORS origins, the body limit and the frozen clock through, trimmed", () => {
    const vars = workerVarsFromEnv({
      SHARDLM_API_KEYS: " sk-a,sk-b ",
      SHARDLM_CORS_ORIGINS: "https://app.example.com,http://localhost:5173",
      SHARDLM_MAX_BODY_BYTES: "1024",
      SHARDLM_FROZEN_CLOCK: "1",
      SHARDLM_SPECULATION: "off",
      SHARDLM_MODEL: "not a worker setting",
      PATH: "/usr/bin",
    });
    expect(vars).toEqual({
      SHARDLM_API_KEYS: "sk-a,sk-b",
      SHARDLM_CORS_ORIGINS: "https://app.example.com,http://localhost:5173",
      SHARDLM_MAX_BODY_BYTES: "1024",
      SHARDLM_FROZEN_CLOCK: "1",
      SHARDLM_SPECULATION: "off",
    });
    expect(Object.keys(vars).sort()).toEqual([...WORKER_ENV_VARS].sort());
  });

  it("leaves out unset and blank settings", () => {
    expect(workerVarsFromEnv({ SHARDLM_CORS_ORIGINS: "  ", SHARDLM_MAX_BODY_BYTES: "" })).toEqual({});
  });

  it("reach wrangler as --env-file <path>, not as --var arguments", () => {
    const args = wranglerDevArgs({ port: 8788, persistTo: "/tmp/state", envFile: "/tmp/x/worker.env" });
    expect(args.slice(-2)).toEqual(["--env-file", "/tmp/x/worker.env"]);
    expect(args).not.toContain("--var");
    expect(wranglerDevArgs({ port: 8788, persistTo: "/tmp/state" })).not.toContain("--env-file");
  });
});

describe("writeWorkerVarsFile", () => {
  it("writes one quoted line per setting, readable by this user only, and removes it", () => {
    const file = writeWorkerVarsFile({
      SHARDLM_API_KEYS: "sk-a,sk-$HOME",
      SHARDLM_CORS_ORIGINS: "https://a.example:8443",
    });
    try {
      expect(statSync(file.path).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(file.path)).mode & 0o777).toBe(0o700);
      // `$` escaped: wrangler's dotenv-expand would otherwise substitute $HOME.
      expect(readFileSync(file.path, "utf8")).toBe(
        "SHARDLM_API_KEYS='sk-a,sk-\\$HOME'\nSHARDLM_CORS_ORIGINS='https://a.example:8443'\n",
      );
    } finally {
      file.remove();
    }
    expect(existsSync(dirname(file.path))).toBe(false);
    file.remove(); // twice is fine
  });

  it("picks back quotes for a value with a single quote", () => {
    expect(dotenvLine("SHARDLM_API_KEYS", "it's")).toBe("SHARDLM_API_KEYS=`it's`");
  });

  it.each([
    ["SHARDLM_API_KEYS", "sk-a\nSHARDLM_FROZEN_CLOCK=1", /control character/],
    ["SHARDLM_API_KEYS", "a\rb", /control character/],
    ["SHARDLM_API_KEYS", "a'b`c", /both ' and `/],
    ["BAD NAME", "x", /not an environment variable name/],
  ])("refuses %s=%j (it would not reach the Worker unchanged)", (name, value, message) => {
    expect(() => dotenvLine(name, value)).toThrow(message);
    expect(() => writeWorkerVarsFile({ [name]: value })).toThrow(message);
  });
});
