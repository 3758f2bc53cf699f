/**
 * The playground page's input paths, in Node: its SSE parser, its Server-Timing parser, its composer
 * key rule, and its chat client (src/playground/chat-api.ts) over real HTTP against a local server
 * that answers well-formed streams, OpenAI errors and garbage.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError, type ChatRequest, streamChat } from "../src/playground/chat-api.ts";
import { isSendKey } from "../src/playground/composer-keys.ts";
import { parseServerTiming } from "../src/playground/server-timing.ts";
import { sseData } from "../src/playground/sse.ts";

/** A stream that delivers `text` as UTF-8 in reads of `size` bytes (splitting characters and CR LF). */
function bytesIn(text: string, size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function all(body: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const d of sseData(body)) out.push(d);
  return out;
}

describe("sseData", () => {
  const stream =
    ': a comment\r\n\r\ndata: {"a":"é✓"}\r\n\r\nevent: x\ndata: line one\ndata:line two\n\n' +
    "data: last\r\rdata: cut off at the end";
  const expected = ['{"a":"é✓"}', "line one\nline two", "last"];

  it("yields each event's data whatever the read boundaries", async () => {
    for (const size of [1, 2, 3, 5, 7, 64, 4096]) {
      expect(await all(bytesIn(stream, size)), `reads of ${size} bytes`).toEqual(expected);
    }
  });

  it("yields nothing from garbage without data lines", async () => {
    expect(await all(bytesIn("\u0000\u0001garbage\n\n\n:::\r\n\r\n", 3))).toEqual([]);
    expect(await all(bytesIn("", 1))).toEqual([]);
  });
});

describe("parseServerTiming", () => {
  it("reads names, durations and descriptions", () => {
    expect(parseServerTiming('load;dur=12.5, prefill;dur=3;desc="first pass", miss, db;dur=x')).toEqual([
      { name: "load", durMs: 12.5, desc: null },
      { name: "prefill", durMs: 3, desc: "first pass" },
      { name: "miss", durMs: null, desc: null },
      { name: "db", durMs: null, desc: null },
    ]);
  });

  it("never throws on garbage", () => {
    for (const h of [null, "", ",,,", ";dur=1", "a b;dur=1", "ok;dur=", "ok;=;;dur==2", "\u0000;dur=1"]) {
      const r = parseServerTiming(h);
      for (const m of r) expect(m.name).toMatch(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/);
    }
    expect(parseServerTiming("ok;=;;dur==2")).toEqual([{ name: "ok", durMs: null, desc: null }]);
  });
});

describe("isSendKey", () => {
  const key = (k: Partial<KeyboardEvent>) =>
    isSendKey({ key: "Enter", shiftKey: false, isComposing: false, keyCode: 13, ...k });
  it("sends on Enter, not on Shift+Enter, other keys, or an input method's Enter", () => {
    expect(key({})).toBe(true);
    expect(key({ shiftKey: true })).toBe(false);
    expect(key({ key: "a", keyCode: 65 })).toBe(false);
    expect(key({ isComposing: true })).toBe(false);
    expect(key({ keyCode: 229 })).toBe(false);
  });
});

describe("streamChat over HTTP", () => {
  let server: Server;
  let base: string;
  /** What the next request gets: status, content type and body. */
  let answer: { status: number; type: string; body: string; headers?: Record<string, string> };
  let seen: { headers: IncomingHttpHeaders; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        seen.push({ headers: req.headers, body });
        res.writeHead(answer.status, { "content-type": answer.type, ...answer.headers });
        res.end(answer.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const request = (over: Partial<ChatRequest> = {}): ChatRequest => ({
    messages: [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
      { role: "user", content: "again" },
    ],
    tier: "balanced",
    budgetMs: 250,
    maxTokens: 7,
    temperature: 0,
    apiKey: "sk-test",
    signal: new AbortController().signal,
    base,
    ...over,
  });
  const sse = (...events: string[]) => events.map((e) => `data: ${e}\n\n`).join("");
  const chunk = (content: string | null, finish: string | null = null, extra = {}) =>
    JSON.stringify({
      choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
      ...extra,
    });

  async function run(over: Partial<ChatRequest> = {}) {
    const texts: string[] = [];
    const heads: unknown[] = [];
    const end = await streamChat(request(over), { head: (h) => heads.push(h), text: (t) => texts.push(t) });
    return { end, texts, heads };
  }

  it("sends the conversation with its headers and reads head, deltas and end", async () => {
    seen = [];
    answer = {
      status: 200,
      type: "text/event-stream",
      headers: { "X-Variant": "balanced", "X-Predicted-Ms": "42", "Server-Timing": "load;dur=3" },
      body: sse(
        chunk(""),
        chunk("Hel"),
        chunk("lo"),
        chunk(null, "length", {
          shardlm: { budget_exhausted: true, timing_ms: { load: 3, prefill: 4, decode: 5 } },
        }),
        JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }),
        "[DONE]",
      ),
    };
    const r = await run();
    expect(r.texts).toEqual(["Hel", "lo"]);
    expect(r.heads).toEqual([
      { variant: "balanced", predictedMs: 42, serverTiming: [{ name: "load", durMs: 3, desc: null }] },
    ]);
    expect(r.end).toEqual({
      finishReason: "length",
      timingMs: { load: 3, prefill: 4, decode: 5 },
      budgetExhausted: true,
      completionTokens: 2,
    });
    const { headers, body } = seen[0]!;
    expect(headers.authorization).toBe("Bearer sk-test");
    expect(headers["x-quality-tier"]).toBe("balanced");
    expect(headers["x-latency-budget-ms"]).toBe("250");
    expect(JSON.parse(body)).toMatchObject({ messages: request().messages, max_tokens: 7, stream: true });

    seen = [];
    await run({ tier: "auto", budgetMs: null, apiKey: null });
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(seen[0]!.headers["x-quality-tier"]).toBeUndefined();
    expect(seen[0]!.headers["x-latency-budget-ms"]).toBeUndefined();
  });

  it("turns an OpenAI error body into an ApiError with its status, message and code", async () => {
    answer = {
      status: 401,
      type: "application/json",
      body: JSON.stringify({
        error: { message: "Invalid API key", type: "invalid_request_error", code: "invalid_api_key" },
      }),
    };
    const e = await run().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e).toMatchObject({ status: 401, message: "Invalid API key", code: "invalid_api_key" });
  });

  it("reports garbage as clear errors, never as an answer", async () => {
    const cases: [typeof answer, RegExp][] = [
      [{ status: 502, type: "text/html", body: "<html>bad gateway</html>" }, /^502 Bad Gateway$/],
      [{ status: 500, type: "application/json", body: '{"error": 5}' }, /^500/],
      [{ status: 200, type: "text/event-stream", body: sse("{not json") }, /not JSON: \{not json/],
      [{ status: 200, type: "text/event-stream", body: sse('{"choices": 5}') }, /unexpected chunk/],
      [{ status: 200, type: "text/event-stream", body: sse(chunk("a")) }, /ended before \[DONE\]/],
      [
        {
          status: 200,
          type: "text/event-stream",
          body: sse(
            chunk("a"),
            JSON.stringify({ error: { message: "generation failed", type: "server_error" } }),
          ),
        },
        /^generation failed$/,
      ],
      [{ status: 200, type: "text/event-stream", body: "\u0000\u0001\u0002" }, /ended before \[DONE\]/],
    ];
    for (const [a, message] of cases) {
      answer = a;
      const e = await run().catch((x: unknown) => x);
      expect(e, a.body).toBeInstanceOf(Error);
      expect((e as Error).message, a.body).toMatch(message);
    }
  });

  it("stops when its signal aborts", async () => {
    answer = { status: 200, type: "text/event-stream", body: sse(chunk("a"), "[DONE]") };
    const ctrl = new AbortController();
    ctrl.abort();
    await expect(run({ signal: ctrl.signal })).rejects.toThrow(/abort/i);
  });
});
