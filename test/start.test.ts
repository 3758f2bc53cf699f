/**
 * `npm start` for real: kernels built, variants built from stories260K and deployed to a fresh local
 * R2 state, `wrangler dev` serving on 127.0.0.1 — and the openai client streams an answer from it.
 */
import { spawnSync } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_ENV_VARS, WRANGLER_OFFLINE_ENV } from "../src/publish/wrangler-dev.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";
import { type ServingChild, startServingChild } from "./helpers/serving-child.ts";

const dirs = tempDirs("start");
let server: ServingChild;
let base: string;
const output = () => server.output();

beforeAll(async () => {
  server = await startServingChild({
    what: "npm start",
    command: process.execPath,
    args: (port) => [
      "--import",
      "tsx",
      "scripts/start.ts",
      "--port",
      String(port),
      "--out",
      dirs.make(),
      "--persist-to",
      dirs.make(),
    ],
    // The toy model keeps this test to about a minute; the real default model's build takes
    // minutes (README, "The default model's build"). The wrangler settings are npm start's to set.
    env: { ...withoutWranglerSettings(process.env), SHARDLM_MODEL: sharedModelPath() },
    timeoutMs: 240_000,
    pollMs: 1000,
  });
  base = server.base;
}, 300_000);

afterAll(() => {
  server?.stop();
  dirs.cleanup();
});

/** `env` less the variables npm start itself must set for wrangler. */
function withoutWranglerSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of Object.keys(WRANGLER_OFFLINE_ENV)) delete out[k];
  return out;
}

/** npm start with `args` and `env` added, run to its end (it must end: these are refused). */
function startWith(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/start.ts", ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe("npm start refuses bad arguments before building anything", () => {
  it.each([
    [
      ["--model", "/nonexistent/model.gguf"],
      {},
      /--model: the model .*\/nonexistent\/model\.gguf does not exist/,
    ],
    [
      [],
      { SHARDLM_MODEL: "/nonexistent/env-model.gguf" },
      /\$SHARDLM_MODEL: .*env-model\.gguf does not exist/,
    ],
    [["--model", ""], {}, /--model is empty/],
    [["--port", "http"], {}, /--port "http" is not a port number/],
    [["--port", "70000"], {}, /--port "70000" is not a port number/],
    [["--config", "/nonexistent/variants.json"], {}, /--config .*variants\.json does not exist/],
    [["--modle", "x.gguf"], {}, /Unknown option '--modle'/],
  ])("%j %j: exit 2 with %s", (args, env, message) => {
    const r = startWith(args, env);
    expect(r.output).toMatch(message);
    expect(r.output).toMatch(/usage: npm start/);
    expect(r.output).not.toMatch(/building the WASM kernels/);
    expect(r.status).toBe(2);
  });

  it("a port already in use is refused before building (wrangler would fail on it only after the build)", async () => {
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, "127.0.0.1", ok));
    const { port } = busy.address() as AddressInfo;
    try {
      const r = startWith(["--port", String(port)], { SHARDLM_MODEL: sharedModelPath() });
      expect(r.output).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use`));
      expect(r.output).not.toMatch(/building the WASM kernels/);
      expect(r.status).toBe(2);
    } finally {
      busy.close();
    }
  });

  it("--help prints the usage with every option and exits 0", () => {
    const r = startWith(["--help"]);
    for (const option of ["--model", "--config", "--port", "--no-serve", "--hf"])
      expect(r.output).toContain(option);
    // Every Worker setting npm start passes on (SHARDLM_SPECULATION among them) is listed.
    for (const name of WORKER_ENV_VARS) expect(r.output).toContain(name);
    expect(r.output).toMatch(/usage: npm start/);
    expect(r.output).not.toMatch(/building the WASM kernels|Unknown option/);
    expect(r.status).toBe(0);
  });
});

describe("npm start", () => {
  it("serves the stories260K variants; the openai client streams an answer", async () => {
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(expect.arrayContaining(["quality", "balanced", "speed"]));
    const stream = await client.chat.completions.create({
      model: "quality",
      messages: [{ role: "user", content: "Once upon a time" }],
      temperature: 0,
      max_tokens: 16,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toMatch(/^, there was a little girl/);
    expect(output()).toMatch(/deployed version 1: uploaded \d+ object/);
    // wrangler stays offline: no Request.cf fetch (an ENOTFOUND stack per start here), no metrics.
    expect(output()).toMatch(/Ready on http:\/\/127\.0\.0\.1/);
    expect(output()).not.toMatch(/ENOTFOUND|Request\.cf/);
  });

  it("serves the playground's page and bundles through wrangler's module rules", async () => {
    const files = [
      ["/", /^text\/html/, 'src="/playground/app.js"'],
      ["/playground/app.js", /^text\/javascript/, "/playground/engine.js"],
      ["/playground/app.css", /^text\/css/, ".turn"],
      ["/playground/engine.js", /^text\/javascript/, "runInBrowser"],
    ] as const;
    for (const [path, type, marker] of files) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(type);
      expect(await res.text(), path).toContain(marker);
    }
  });
});
