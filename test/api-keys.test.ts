/**
 * API keys (SHARDLM_API_KEYS) in workerd over real HTTP: without a key or with a wrong one every
 * /v1 route is a 401 in OpenAI's format; a configured key (given plainly or as its SHA-256) works
 * with the openai client; /healthz and the playground page stay open; CORS preflights need no key.
 * With the API_RATE_LIMITER binding, a key over its budget gets 429 rate_limit_exceeded.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlExample } from "../src/publish/wrangler-dev.ts";
import { call, clientError, expectApiError, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

const execFileAsync = promisify(execFile);
const PLAIN = "sk-test-plain-0123456789";
const HASHED = "sk-test-hashed-abcdef";
const LIMITED = 3;

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer(
    { SHARDLM_API_KEYS: `${PLAIN}, ${createHash("sha256").update(HASHED).digest("hex")}` },
    { API_RATE_LIMITER: { simple: { limit: LIMITED, period: 60 } } },
  );
}, 300_000);

afterAll(async () => {
  await api?.close();
});

const client = (apiKey: string) =>
  new OpenAI({ baseURL: new URL("/v1", api.url).toString(), apiKey, maxRetries: 0 });

describe("SHARDLM_API_KEYS", () => {
  it("no Authorization header: 401 on every /v1 route, in OpenAI's format", async () => {
    for (const [method, path] of [
      ["POST", "/v1/chat/completions"],
      ["GET", "/v1/models"],
      ["GET", "/v1/models/quality"],
      ["GET", "/v1/live"],
      ["GET", "/v1/nope"],
    ] as const) {
      const r = await call(api, path, {
        method,
        ...(method === "POST" ? { body: { model: "quality", messages: story } } : {}),
      });
      expectApiError(r, 401, { type: "invalid_request_error", code: "missing_api_key", param: null });
    }
  });

  it("a wrong key (or a malformed header) is a 401 invalid_api_key; the openai client raises AuthenticationError", async () => {
    const e = await clientError(client("sk-wrong").models.list());
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect([e.status, e.type, e.code]).toEqual([401, "invalid_request_error", "invalid_api_key"]);
    const almost = await call(api, "/v1/models", { headers: { Authorization: `Bearer ${PLAIN}x` } });
    expectApiError(almost, 401, { code: "invalid_api_key" });
    const basic = await call(api, "/v1/models", {
      headers: { Authorization: `Basic ${btoa(`u:${PLAIN}`)}` },
    });
    expectApiError(basic, 401, { code: "missing_api_key" });
    for (const malformed of [`Bearer ${PLAIN} ${PLAIN}`, `Bearer ${PLAIN},x`]) {
      const r = await call(api, "/v1/models", { headers: { Authorization: malformed } });
      expectApiError(r, 401, { code: "invalid_api_key" });
    }
    expectApiError(await call(api, "/v1/models", { headers: { Authorization: "Bearer " } }), 401, {
      code: "missing_api_key",
    });
    // The configured hash itself is not a key.
    const hash = createHash("sha256").update(HASHED).digest("hex");
    expectApiError(await call(api, "/v1/models", { headers: { Authorization: `Bearer ${hash}` } }), 401, {
      code: "invalid_api_key",
    });
  });

  it("the curl line npm start prints works as printed once a key fills its placeholder", async () => {
    const url = new URL(api.url);
    expect(url.hostname).toBe("127.0.0.1"); // what npm start serves on and the line names
    const port = Number(url.port);
    const run = async (line: string) =>
      (await execFileAsync("bash", ["-c", `${line} -s -w '\\n%{http_code}'`])).stdout.split("\n").at(-1);
    const keyed = curlExample(port, true);
    expect(await run(keyed.replace("<one of SHARDLM_API_KEYS>", PLAIN))).toBe("200");
    // The line without the header (what npm start printed with keys on) only gets a 401.
    expect(await run(curlExample(port, false))).toBe("401");
  });

  it("a configured key works, given plainly or as its SHA-256", async () => {
    expect((await client(PLAIN).models.list()).data.length).toBeGreaterThan(0);
    const r = await client(HASHED).chat.completions.create({
      model: "speed",
      messages: story,
      max_tokens: 2,
    });
    expect(r.object).toBe("chat.completion");
  });

  it("/healthz and / stay open; a CORS preflight needs no key", async () => {
    expect((await call(api, "/healthz")).status).toBe(200);
    expect((await call(api, "/")).status).toBe(200);
    const pre = await fetch(new URL("/v1/chat/completions", api.url), {
      method: "OPTIONS",
      headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST" },
    });
    expect(pre.status).toBe(204);
  });

  it("the rate limiter counts per key: over its budget a key gets 429 rate_limit_exceeded, others still pass", async () => {
    const key = PLAIN;
    let limited: Awaited<ReturnType<typeof call>> | null = null;
    // Earlier tests spent some of this key's budget; LIMITED + 2 more calls must cross it.
    for (let i = 0; i < LIMITED + 2 && !limited; i++) {
      const r = await call(api, "/v1/models", { headers: { Authorization: `Bearer ${key}` } });
      if (r.status === 429) limited = r;
      else expect(r.status, r.text).toBe(200);
    }
    expect(limited, "no 429 within the budget + 2").not.toBeNull();
    expectApiError(limited!, 429, { type: "rate_limit_error", code: "rate_limit_exceeded" });
    expect(limited!.headers.get("retry-after")).toMatch(/^\d+$/);
    // The other key has its own budget (it was used once above).
    expect((await call(api, "/v1/models", { headers: { Authorization: `Bearer ${HASHED}` } })).status).toBe(
      200,
    );
  });
});
