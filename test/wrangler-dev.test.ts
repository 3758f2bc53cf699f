/**
 * What `npm start` hands `wrangler dev`: the Worker settings from its environment become --var
 * arguments (unset or blank ones are left out, so the Worker's defaults apply).
 */
import { describe, expect, it } from "vitest";
import { WORKER_ENV_VARS, workerVarsFromEnv, wranglerDevArgs } from "../src/publish/wrangler-dev.ts";

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

  it("becomes --var NAME:value arguments (wrangler splits at the first colon, so URLs survive)", () => {
    const args = wranglerDevArgs({
      port: 8788,
      persistTo: "/tmp/state",
      vars: workerVarsFromEnv({
        SHARDLM_CORS_ORIGINS: "https://a.example:8443",
        SHARDLM_MAX_BODY_BYTES: "2048",
      }),
    });
    expect(args.slice(-4)).toEqual([
      "--var",
      "SHARDLM_CORS_ORIGINS:https://a.example:8443",
      "--var",
      "SHARDLM_MAX_BODY_BYTES:2048",
    ]);
  });
});
