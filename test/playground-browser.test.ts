/**
 * The playground chat in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core;
 * .ci/run installs it) against the worker in workerd: multi-turn conversations, the composer's keys,
 * the stop button, each answer's variant and timings, and the in-browser engine.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { engineContextFor } from "../src/runtime/memory-plan.ts";
import { countPromptTokens, manifests } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
// In CI (.ci/run installs chromium) a missing browser is a failure, never a silent skip.
if (!haveChromium && process.env.CI) throw new Error(`CI=${process.env.CI}: ${CHROMIUM} is absent`);
if (!haveChromium) {
  console.warn(
    `SKIPPED test/playground-browser.test.ts: ${CHROMIUM} is absent (apt-get install chromium; .ci/run does)`,
  );
}

export const SCREENSHOT_DIR = mkdtempSync(join(tmpdir(), "shardlm-playground-"));

let api: ApiServer;
let browser: Browser;

interface Sent {
  messages: { role: string; content: string }[];
  max_tokens: number;
  temperature: number;
  /** The request's Authorization header. */
  authorization: string | undefined;
}

/**
 * The page (in a fresh browser context: its own storage), every chat request it sends, as
 * Chromium put it on the wire, and every URL that answered 404.
 */
async function openPage(server: ApiServer = api): Promise<{ page: Page; sent: Sent[]; notFound: string[] }> {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const notFound: string[] = [];
  page.on("response", (r) => {
    if (r.status() === 404) notFound.push(r.url());
  });
  const sent: Sent[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/chat/completions") {
      sent.push({ ...JSON.parse(r.postData()!), authorization: r.headers().authorization });
    }
  });
  await page.goto(new URL("/", server.url).toString());
  await page.waitForSelector("body[data-ready=true]");
  return { page, sent, notFound };
}

/**
 * Chromium's own network throttling (CDP): `bytesPerSecond` down (-1 = unthrottled), so a streamed
 * answer is still arriving when the test acts on it. `set` changes it later.
 */
async function throttle(
  page: Page,
  bytesPerSecond: number,
): Promise<{ set(bytesPerSecond: number): Promise<void> }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const set = async (down: number) => {
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 0,
      downloadThroughput: down,
      uploadThroughput: -1,
    });
  };
  await set(bytesPerSecond);
  return { set };
}

async function waitForState(page: Page, states: string[], timeout = 60_000): Promise<string> {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ""), states, { timeout });
  return (await page.evaluate(() => document.body.dataset.state))!;
}

/** Types a message into the composer, sends it with Enter and waits for its answer to end. */
async function say(page: Page, text: string): Promise<void> {
  const before = await page.locator(".turn.assistant").count();
  await page.fill("#message", text);
  await page.press("#message", "Enter");
  await page.waitForFunction(
    (n) => {
      const answers = document.querySelectorAll<HTMLElement>(".turn.assistant");
      return answers.length === n + 1 && answers[n]!.dataset.state !== "streaming";
    },
    before,
    { timeout: 90_000 },
  );
  const state = await page.evaluate(() => document.body.dataset.state);
  expect(state, `status: ${await page.textContent("#status")}`).toBe("done");
}

const lastAnswer = ".turn.assistant:last-child";
const metaOf = (page: Page, key: string) => page.textContent(`${lastAnswer} dd.${key}`);

beforeAll(async () => {
  if (!haveChromium) return;
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
});

afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!haveChromium)("the playground chat in Chromium", () => {
  beforeAll(async () => {
    api = await startApiServer();
  }, 300_000);

  afterAll(async () => {
    await api?.close();
  });

  it("holds a multi-turn conversation: each request carries the history, each answer its variant and timings", async () => {
    const { page, sent } = await openPage();
    await page.selectOption("#tier", "quality");
    await page.fill("#max-tokens", "40");
    await page.click(".system summary");
    await page.fill("#system", "Tell short stories.");

    await say(page, "Once upon a time");
    const first = (await page.textContent(`${lastAnswer} .text`))!;
    expect(first).toMatch(/there was a little/);
    // The page appends each SSE delta as it parses it (a fast tiny model's whole stream may arrive
    // in one network read, so count the deltas the page consumed, not DOM mutations).
    expect(Number(await page.getAttribute(lastAnswer, "data-deltas"))).toBeGreaterThan(10);
    expect(await metaOf(page, "variant")).toBe("quality");
    expect(await metaOf(page, "engine")).toBe("server");
    expect(await metaOf(page, "predicted")).toMatch(/^\d+ ms$/);
    expect(await metaOf(page, "server-timing")).toMatch(/^load \d+ ms$/);
    expect(await metaOf(page, "timings")).toMatch(/^load \d+ ms, prefill \d+ ms, decode \d+ ms$/);
    expect(await metaOf(page, "tokens")).toMatch(/^40(, [\d.]+ tok\/s)?$/);
    expect(await metaOf(page, "first-token")).toMatch(/^\d+ ms$/);
    expect(await metaOf(page, "finish")).toBe("length");

    await page.selectOption("#tier", "speed");
    await say(page, "The dog ran home.");
    expect(sent).toHaveLength(2);
    const conversation: { role: "system" | "user" | "assistant"; content: string }[] = [
      { role: "system", content: "Tell short stories." },
      { role: "user", content: "Once upon a time" },
      { role: "assistant", content: first },
      { role: "user", content: "The dog ran home." },
    ];
    expect(sent[0]!.messages).toEqual(conversation.slice(0, 2));
    expect(sent[1]!.messages).toEqual(conversation);
    // What the page shows is the API's answer to that conversation (greedy, so reproducible).
    const direct = await api.client.chat.completions.create({
      model: "speed",
      messages: conversation,
      temperature: 0,
      max_tokens: 40,
    });
    expect(await page.textContent(`${lastAnswer} .text`)).toBe(direct.choices[0]!.message.content);
    expect(await metaOf(page, "variant")).toBe("speed");
    // Both answers keep their own facts.
    expect(await page.locator(".turn.assistant dd.variant").allTextContents()).toEqual(["quality", "speed"]);
    expect(await page.locator(".turn").count()).toBe(4);

    const shot = join(SCREENSHOT_DIR, "playground-chat.png");
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    console.log(`playground screenshot: ${shot}`);

    // "New chat" forgets the conversation.
    await page.click("#new-chat");
    expect(await page.locator(".turn").count()).toBe(0);
    await say(page, "Once upon a time");
    expect(sent[2]!.messages).toEqual(conversation.slice(0, 2));
    await page.close();
  });

  it("a conversation over the model's context stops sending its oldest turns (not the system prompt) and says so", async () => {
    const { page, sent, notFound } = await openPage();
    const m = [...manifests(api).values()][0]!;
    const context = engineContextFor(m.model.config);
    // Max tokens offers at most the context GET /v1/models reports (context_length).
    await page.waitForSelector(`#max-tokens[max="${context}"]`);
    await page.selectOption("#tier", "speed");
    await page.fill("#max-tokens", "4");
    await page.click(".system summary");
    await page.fill("#system", "Tell short stories.");
    const system = { role: "system" as const, content: "Tell short stories." };
    // Each question is about a quarter of the context, so the fifth cannot join the first four.
    const question = (i: number) => `Question ${i}: ${"Lily ".repeat(Math.floor(context / 4) - 60)}`;
    const window = (msgs: Sent["messages"]) => msgs.map((x) => x.content.slice(0, 11));

    let turns = 0;
    for (; turns < 8; turns++) {
      const before = sent.length;
      await say(page, question(turns)); // every answer is "done", none a context error
      const last = sent.at(-1)!.messages as { role: "system" | "user" | "assistant"; content: string }[];
      expect(last[0], "the system prompt is always sent").toEqual(system);
      expect(last.at(-1)).toEqual({ role: "user", content: question(turns) });
      expect(countPromptTokens(api, last)).toBeLessThan(context);
      if (sent.length > before + 1) break; // a refused request, then the trimmed one
    }
    expect(turns, "the conversation outgrew the context").toBeGreaterThanOrEqual(3);
    expect(turns).toBeLessThan(8);
    // The refused request held the whole conversation; the answered one starts at a later question.
    const refused = sent.at(-2)!.messages;
    const answered = sent.at(-1)!.messages;
    expect(countPromptTokens(api, refused as Parameters<typeof countPromptTokens>[1])).toBeGreaterThanOrEqual(
      context,
    );
    expect(window(refused)[1]).toBe("Question 0:");
    expect(window(answered)[1]).toBe("Question 1:");
    expect(answered.slice(1)).toEqual(refused.slice(3)); // one exchange (question + answer) less
    expect(await metaOf(page, "history")).toBe("2 oldest turns no longer sent (over the model's context)");
    expect(await page.textContent("#status")).toContain(`over the model's context (${context} tokens)`);
    // Everything stays on screen; the next question goes out from the shorter window.
    expect(await page.locator(".turn.user").count()).toBe(turns + 1);
    await say(page, "The end.");
    expect(window(sent.at(-1)!.messages).slice(0, 2)).toEqual([
      "Tell short stories.".slice(0, 11),
      "Question 1:",
    ]);
    // No request of the page 404s. The favicon: headless Chromium does not ask for one, a desktop
    // browser asks for /favicon.ico unless the page names an icon, so the page names an inline one.
    expect(notFound).toEqual([]);
    expect(await page.getAttribute('link[rel="icon"]', "href")).toMatch(/^data:/);
    await page.close();
  });

  it("in the browser's own engine too, an over-long conversation drops its oldest turns and says so", async () => {
    const { page, sent } = await openPage();
    const m = [...manifests(api).values()][0]!;
    const context = engineContextFor(m.model.config);
    // Max tokens offers at most the context GET /v1/models reports (context_length).
    await page.waitForSelector(`#max-tokens[max="${context}"]`);
    await page.selectOption("#tier", "speed");
    await page.fill("#max-tokens", "4");
    await page.check("#local");
    await page.selectOption("#backend", "wasm");
    const question = (i: number) => `Question ${i}: ${"Lily ".repeat(Math.floor(context / 4) - 60)}`;
    for (let i = 0; i < 5; i++) await say(page, question(i)); // all "done": none a context error
    expect(sent).toHaveLength(0);
    expect(await metaOf(page, "history")).toBe("2 oldest turns no longer sent (over the model's context)");
    expect(await metaOf(page, "engine")).toMatch(/^this browser: wasm/);
    await page.close();
  });

  it("an error below the window (a prompt over the context after a long paste) is scrolled into view", async () => {
    const { page } = await openPage();
    const context = engineContextFor([...manifests(api).values()][0]!.model.config);
    await page.waitForSelector(`#max-tokens[max="${context}"]`);
    // A paste of twice the context: its turn alone is taller than the 900 px window.
    await page.fill("#message", "Lily went to the park. ".repeat(context));
    await page.press("#message", "Enter");
    expect(await waitForState(page, ["error", "done"])).toBe("error");
    const error = `${lastAnswer} p.error`;
    expect(await page.textContent(error)).toMatch(/maximum context length is \d+ tokens/);
    const box = (selector: string) =>
      page.evaluate((s) => {
        const r = document.querySelector(s)!.getBoundingClientRect();
        return { top: r.top, bottom: r.bottom, window: window.innerHeight, page: document.body.scrollHeight };
      }, selector);
    const e = await box(error);
    expect(e.page, "the page is taller than the window").toBeGreaterThan(2 * e.window);
    expect(e.top).toBeGreaterThanOrEqual(0);
    expect(e.bottom).toBeLessThanOrEqual(e.window);
    await page.close();
  });

  it("says when it adjusted an invalid max tokens or temperature, and sends the adjusted value", async () => {
    const { page, sent } = await openPage();
    const context = engineContextFor([...manifests(api).values()][0]!.model.config);
    await page.waitForSelector(`#max-tokens[max="${context}"]`);
    await page.selectOption("#tier", "speed");
    const note = (id: string) =>
      page.evaluate((i) => {
        const el = document.getElementById(i)!;
        return el.hidden ? null : el.textContent;
      }, id);
    await page.fill("#max-tokens", "0");
    await page.fill("#temperature", "5");
    await say(page, "Once upon a time");
    expect(sent.at(-1)!.max_tokens).toBe(1);
    expect(sent.at(-1)!.temperature).toBe(2);
    expect(await note("max-tokens-note")).toBe("adjusted to 1 (the minimum is 1)");
    expect(await note("temperature-note")).toBe("adjusted to 2 (the maximum is 2)");
    expect(await page.inputValue("#max-tokens")).toBe("1");
    expect(await page.inputValue("#temperature")).toBe("2");

    await page.fill("#max-tokens", "99999"); // editing the field hides its note
    expect(await note("max-tokens-note")).toBeNull();
    await page.fill("#temperature", "0");
    await say(page, "The dog ran home.");
    expect(sent.at(-1)!.max_tokens).toBe(context);
    expect(await note("max-tokens-note")).toBe(
      `adjusted to ${context} (the model's context is ${context} tokens)`,
    );
    expect(await note("temperature-note")).toBeNull(); // 0 is valid: no note
    await page.close();
  });

  it("sends on Enter and starts a new line on Shift+Enter", async () => {
    const { page, sent } = await openPage();
    await page.fill("#max-tokens", "8");
    await page.focus("#message");
    await page.keyboard.type("line one");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("line two");
    expect(await page.inputValue("#message")).toBe("line one\nline two");
    expect(await page.locator(".turn").count()).toBe(0);
    expect(await page.evaluate(() => document.body.dataset.state)).toBe("idle");

    await page.keyboard.press("Enter");
    expect(await waitForState(page, ["done", "error"])).toBe("done");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.messages).toEqual([{ role: "user", content: "line one\nline two" }]);
    expect(await page.inputValue("#message")).toBe("");
    expect(await page.textContent(".turn.user .text")).toBe("line one\nline two");
    // An empty composer sends nothing.
    await page.keyboard.press("Enter");
    await page.keyboard.type("   ");
    await page.keyboard.press("Enter");
    expect(sent).toHaveLength(1);
    await page.close();
  });

  it("Escape stops a streaming answer wherever the focus is (Send clicked: focus left the message box)", async () => {
    const { page } = await openPage();
    await page.fill("#max-tokens", "400");
    await throttle(page, 3000);
    await page.fill("#message", "Once upon a time");
    await page.click("#send");
    await page.waitForFunction(
      (sel) => Number(document.querySelector(sel)?.getAttribute("data-deltas") ?? 0) >= 2,
      lastAnswer,
      { timeout: 60_000 },
    );
    expect(await page.evaluate(() => document.activeElement?.id)).not.toBe("message");
    await page.keyboard.press("Escape");
    expect(await waitForState(page, ["stopped", "done", "error"])).toBe("stopped");
    expect(await page.isVisible("#send")).toBe(true);
    await page.close();
  });

  it("stops a streaming answer with the stop button and stays usable", async () => {
    const { page, sent } = await openPage();
    await page.selectOption("#tier", "quality");
    await page.fill("#max-tokens", "400");
    // Slow the network (Chromium's own throttling) so the answer is still arriving when Stop is pressed.
    const network = await throttle(page, 3000);
    await page.fill("#message", "Once upon a time");
    await page.press("#message", "Enter");
    await page.waitForFunction(
      (sel) => Number(document.querySelector(sel)?.getAttribute("data-deltas") ?? 0) >= 2,
      lastAnswer,
      { timeout: 60_000 },
    );
    expect(await page.isVisible("#stop")).toBe(true);
    expect(await page.isVisible("#send")).toBe(false);
    await page.click("#stop");
    expect(await waitForState(page, ["stopped", "done", "error"])).toBe("stopped");
    expect(await page.getAttribute(lastAnswer, "data-state")).toBe("stopped");
    const partial = (await page.textContent(`${lastAnswer} .text`))!;
    expect(partial.length).toBeGreaterThan(0);
    expect(await page.locator(`${lastAnswer} dd.finish`).count()).toBe(0);
    // Nothing more arrives after the stop.
    await page.waitForTimeout(500);
    expect(await page.textContent(`${lastAnswer} .text`)).toBe(partial);
    expect(await page.isVisible("#send")).toBe(true);
    expect(await page.isVisible("#stop")).toBe(false);

    // Usable again: the next message goes out with the partial answer in its history and completes.
    await network.set(-1);
    await page.fill("#max-tokens", "16");
    await say(page, "And then?");
    expect(sent[1]!.messages).toEqual([
      { role: "user", content: "Once upon a time" },
      { role: "assistant", content: partial },
      { role: "user", content: "And then?" },
    ]);
    expect(await metaOf(page, "finish")).toBe("length");
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
    const { page, sent } = await openPage();
    await page.selectOption("#tier", "quality");
    await page.fill("#max-tokens", "64");
    await page.check("#local");
    await page.selectOption("#backend", backend);
    await say(page, "Once upon a time");
    expect(sent).toHaveLength(0);
    const result = {
      text: (await page.textContent(`${lastAnswer} .text`))!,
      engine: (await metaOf(page, "engine"))!,
      variant: (await metaOf(page, "variant"))!,
      timings: (await metaOf(page, "timings"))!,
    };
    await page.close();
    return { server: server.choices[0]!.message.content!, ...result };
  }

  it("runs the engine in the browser (WASM) with the server's greedy answer", async () => {
    const r = await compareInBrowser("wasm");
    console.log(`in-browser wasm: ${r.engine}; ${r.timings}`);
    expect(r.engine).toMatch(/^this browser: wasm/);
    // Chromium's V8 has an exact relaxed dot-add, so the page runs the production kernels
    expect(r.engine).toMatch(/kernels: relaxed SIMD \(i32 dot-add\)\)$/);
    expect(r.variant).toBe("quality");
    expect(r.timings).toMatch(/^load \d+ ms, prefill \d+ ms, decode \d+ ms$/);
    expect(r.server).toMatch(/there was a little/);
    expect(r.text).toBe(r.server);
  });

  it("runs the engine in the browser on WebGPU when Chromium gives an adapter", async (ctx) => {
    const { page } = await openPage();
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

describe.skipIf(!haveChromium)("the playground against an API that wants a key", () => {
  const KEY = "sk-playground-test-1";
  let locked: ApiServer;

  beforeAll(async () => {
    locked = await startApiServer({ SHARDLM_API_KEYS: `other-key, ${KEY}` });
  }, 300_000);

  afterAll(async () => {
    await locked?.close();
  });

  const dialogOpen = (page: Page) => page.waitForSelector("#key-dialog[open]", { timeout: 30_000 });
  const storedKeys = (page: Page) =>
    page.evaluate(() => ({
      session: sessionStorage.getItem("shardlm.apiKey"),
      local: localStorage.getItem("shardlm.apiKey"),
    }));

  it("asks for a key on 401, says when one is refused, and sends it as a Bearer header", async () => {
    const { page, sent } = await openPage(locked);
    await page.fill("#max-tokens", "12");
    await page.fill("#message", "Once upon a time");
    await page.press("#message", "Enter");
    await dialogOpen(page);
    expect(await page.textContent("#key-reason")).toMatch(/needs an API key/);
    await page.screenshot({ path: join(SCREENSHOT_DIR, "playground-key.png") });
    // The dialog has the focus: typing goes into the key field.
    await page.keyboard.type("sk-wrong");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /refused/.test(document.getElementById("key-reason")!.textContent!));
    expect(await page.isVisible("#key-dialog")).toBe(true);
    await page.fill("#key-input", KEY);
    await page.click("#key-save");
    await waitForState(page, ["done", "error"]);
    expect(await page.evaluate(() => document.body.dataset.state)).toBe("done");
    expect(await page.isVisible("#key-dialog")).toBe(false);
    expect(sent.map((s) => s.authorization)).toEqual([undefined, "Bearer sk-wrong", `Bearer ${KEY}`]);
    expect((await page.textContent(`${lastAnswer} .text`))!.length).toBeGreaterThan(0);
    // Not remembered: this tab only.
    expect(await storedKeys(page)).toEqual({ session: KEY, local: null });

    // The key outlives a reload of the tab: the next message goes out with it, no dialog.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    await say(page, "Hello");
    expect(sent.at(-1)!.authorization).toBe(`Bearer ${KEY}`);
    expect(await page.textContent("#key-button")).toMatch(/✓/);
    await page.close();
  });

  it("keeps the page usable when the key prompt is cancelled", async () => {
    const { page, sent } = await openPage(locked);
    await page.fill("#message", "Once upon a time");
    await page.press("#message", "Enter");
    await dialogOpen(page);
    await page.keyboard.press("Escape");
    expect(await waitForState(page, ["done", "error"])).toBe("error");
    expect(await page.getAttribute(lastAnswer, "data-state")).toBe("error");
    expect(await page.textContent(`${lastAnswer} .error`)).toMatch(/API key/);
    expect(await page.isVisible("#send")).toBe(true);
    expect(sent).toHaveLength(1);

    // Set the key from the header button, remembered on this device; the question can be asked again.
    await page.click("#key-button");
    await dialogOpen(page);
    await page.fill("#key-input", KEY);
    await page.check("#key-remember");
    await page.click("#key-save");
    expect(await storedKeys(page)).toEqual({ session: null, local: KEY });
    await page.fill("#max-tokens", "8");
    await say(page, "Once upon a time");
    // The failed question left the conversation: the retry is sent alone.
    expect(sent[1]!.messages).toEqual([{ role: "user", content: "Once upon a time" }]);
    expect(sent[1]!.authorization).toBe(`Bearer ${KEY}`);
    await page.close();
  });

  it("sends the key from the in-browser engine too (the content routes are under /v1)", async () => {
    const { page, sent } = await openPage(locked);
    await page.fill("#max-tokens", "16");
    await page.check("#local");
    await page.selectOption("#backend", "wasm");
    const auth: (string | undefined)[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname === "/v1/live") auth.push(r.headers().authorization);
    });
    await page.fill("#message", "Once upon a time");
    await page.press("#message", "Enter");
    await dialogOpen(page);
    await page.fill("#key-input", KEY);
    await page.click("#key-save");
    expect(await waitForState(page, ["done", "error"], 90_000), (await page.textContent("#status"))!).toBe(
      "done",
    );
    expect(await metaOf(page, "engine")).toMatch(/^this browser: wasm/);
    expect(auth).toEqual([undefined, `Bearer ${KEY}`]);
    expect(sent).toHaveLength(0);
    await page.close();
  });
});
