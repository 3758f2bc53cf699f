/**
 * `npm start` for real: kernels built, variants built from stories260K and deployed to a fresh local
 * R2 state, `wrangler dev` serving on 127.0.0.1 — and the openai client streams an answer from it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("start");
let child: ChildProcess;
let base: string;
let output = "";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  child = spawn(
    process.execPath,
    [
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
    {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      // The toy model keeps this test to about a minute; the real default model's build takes
      // minutes (README, "The default model's build").
      env: { ...process.env, SHARDLM_MODEL: sharedModelPath() },
    },
  );
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const deadline = Date.now() + 240_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${output}`);
    try {
      const res = await fetch(`${base}/v1/models`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`npm start did not serve within 240 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}, 300_000);

afterAll(() => {
  if (child?.pid) {
    try {
      process.kill(-child.pid, "SIGTERM"); // the whole group: tsx, wrangler, workerd
    } catch {
      // already gone
    }
  }
  dirs.cleanup();
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
    expect(output).toMatch(/deployed version 1: uploaded \d+ object/);
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
