/**
 * The playground in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; .ci/run
 * installs it): the page streams an answer from the worker in workerd and shows its routing headers.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `SKIPPED test/playground-browser.test.ts: ${CHROMIUM} is absent (apt-get install chromium; .ci/run does)`,
  );
}

export const SCREENSHOT_DIR = mkdtempSync(join(tmpdir(), "shardlm-playground-"));

let api: ApiServer;
let browser: Browser;

async function openPage(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(new URL("/", api.url).toString());
  return page;
}

describe.skipIf(!haveChromium)("the playground in Chromium", () => {
  beforeAll(async () => {
    api = await startApiServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--enable-unsafe-webgpu",
        "--use-webgpu-adapter=swiftshader",
        "--enable-features=Vulkan",
      ],
    });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await api?.close();
  });

  it("streams an answer into the page and shows the routing headers", async () => {
    const page = await openPage();
    await page.selectOption("#tier", "quality");
    await page.fill("#max-tokens", "96");
    await page.fill("#message", "Once upon a time");
    // Record the answer's length each time the page changes it (the stream arrives in several reads).
    await page.evaluate(() => {
      const out = document.getElementById("output")!;
      const w = window as unknown as { lengths: number[] };
      w.lengths = [];
      new MutationObserver(() => w.lengths.push(out.textContent!.length)).observe(out, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await page.click("#send");
    await page.waitForFunction(() => document.body.dataset.state === "done", undefined, { timeout: 60_000 });
    const lengths = await page.evaluate(() => (window as unknown as { lengths: number[] }).lengths);
    const grew = [...new Set(lengths.filter((n) => n > 0))];
    // The page appends each SSE delta as it parses it. A fast tiny model's whole stream may arrive
    // in one network read (so the DOM changes once); the deltas the page consumed prove streaming.
    const deltas = Number(await page.evaluate(() => document.body.dataset.deltas));
    expect(deltas, `lengths seen: ${lengths.join(",")}`).toBeGreaterThan(10);
    const text = (await page.textContent("#output"))!;
    expect(text.length).toBe(Math.max(...grew));
    expect(text).toMatch(/there was a little/);
    expect(await page.textContent("#variant")).toBe("quality");
    expect(await page.textContent("#predicted")).toMatch(/^\d+ ms$/);
    expect(await page.textContent("#server-timing")).toMatch(/load;dur=/);
    expect(await page.textContent("#timings")).toMatch(/load \d+ ms, prefill \d+ ms, decode \d+ ms/);

    const shot = join(SCREENSHOT_DIR, "playground.png");
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.byteLength).toBeGreaterThan(10_000);
    console.log(`playground screenshot: ${shot}`);
    await page.close();
  });
  /** The server's greedy answer, and the page's own with "run in this browser" on `backend`. */
  async function compareInBrowser(backend: "wasm" | "webgpu") {
    const messages = [{ role: "user" as const, content: "Once upon a time" }];
    const server = await api.client.chat.completions.create({
      model: "quality",
      messages,
      temperature: 0,
      max_tokens: 64,
    });
    const page = await openPage();
    await page.selectOption("#tier", "quality");
    await page.fill("#max-tokens", "64");
    await page.check("#local");
    await page.selectOption("#backend", backend);
    await page.click("#send");
    await page.waitForFunction(
      () => ["done", "error"].includes(document.body.dataset.state ?? ""),
      undefined,
      {
        timeout: 90_000,
      },
    );
    const status = await page.textContent("#status");
    expect(await page.evaluate(() => document.body.dataset.state), status ?? "").toBe("done");
    const result = {
      text: (await page.textContent("#output"))!,
      engine: (await page.textContent("#engine"))!,
      variant: (await page.textContent("#variant"))!,
      timings: (await page.textContent("#timings"))!,
    };
    await page.close();
    return { server: server.choices[0]!.message.content!, ...result };
  }

  it("runs the engine in the browser (WASM) with the server's greedy answer", async () => {
    const r = await compareInBrowser("wasm");
    console.log(`in-browser wasm: ${r.engine}; ${r.timings}`);
    expect(r.engine).toMatch(/^this browser: wasm/);
    expect(r.variant).toBe("quality");
    expect(r.server).toMatch(/there was a little/);
    expect(r.text).toBe(r.server);
  });

  it("runs the engine in the browser on WebGPU when Chromium gives an adapter", async (ctx) => {
    const page = await openPage();
    const adapter = await page.evaluate(async () => {
      const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
      if (!gpu) return "navigator.gpu is absent";
      const a = await gpu.requestAdapter();
      return a ? `adapter ${a.info?.vendor} / ${a.info?.architecture}` : "requestAdapter() gave null";
    });
    await page.close();
    console.log(`Chromium WebGPU: ${adapter}`);
    if (!adapter.startsWith("adapter")) ctx.skip();
    const r = await compareInBrowser("webgpu");
    console.log(`in-browser webgpu: ${r.engine}; ${r.timings}`);
    expect(r.engine).toMatch(/^this browser: webgpu/);
    expect(r.text).toBe(r.server);
  });
});
