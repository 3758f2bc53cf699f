/**
 * Clients that leave, under `wrangler dev` itself (the server `npm start` runs): there, neither
 * request.signal nor cancelling the response body tells the Worker that a client disconnected;
 * the runtime just stops taking the body's bytes (src/worker/sse.ts). A stream answers at once
 * (headers and the role chunk) and waits for its engine inside its body, sending heartbeats, so a
 * client that leaves while queued or while its answer runs is found within STREAM_STALL_MS (500 ms)
 * and its place freed.
 *
 * The scenario of issue 14: 10 concurrent streams (max_tokens 2000) each dropped after their first
 * bytes, then one small request: it starts within 1 s, and the dropped answers generated a small
 * fraction of their tokens. The 1 s bound is the acceptance criterion (measured here:
 * 0.15-0.6 s on a loaded 2-core box), so a loaded CI machine gets two more tries.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureKernelsWasm } from "../src/kernels/wasm/build.ts";
import { openBucket, wranglerBucketName } from "../src/publish/buckets.ts";
import { publish } from "../src/publish/publish.ts";
import { wranglerDevArgs, wranglerDevEnv } from "../src/publish/wrangler-dev.ts";
import { buildTestVariants } from "./helpers/api-server.ts";
import { tempDirs } from "./helpers/paths.ts";
import { type ServingChild, startServingChild } from "./helpers/serving-child.ts";

const dirs = tempDirs("disconnect");
let server: ServingChild;
let base: string;

beforeAll(async () => {
  const { dir, index } = await buildTestVariants();
  await ensureKernelsWasm({ relaxed: true });
  const persistTo = dirs.make();
  const bucket = await openBucket({ remote: false, persistTo, bucketName: wranglerBucketName() });
  try {
    await publish(bucket, dir, index);
  } finally {
    await bucket.close();
  }
  server = await startServingChild({
    what: "wrangler dev",
    command: "npx",
    args: (port) => wranglerDevArgs({ port, persistTo }),
    env: wranglerDevEnv(),
    timeoutMs: 120_000,
  });
  base = server.base;
}, 600_000);

afterAll(() => {
  server?.stop();
  dirs.cleanup();
});

const body = (maxTokens: number) =>
  JSON.stringify({
    model: "quality",
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: maxTokens,
    temperature: 0,
    stream: true,
  });

const post = (maxTokens: number, signal?: AbortSignal) =>
  fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body(maxTokens),
    signal: signal ?? AbortSignal.timeout(30_000),
  });

interface Health {
  generations: number;
  tokens_generated: number;
  client_gone: number;
}
const health = async () => (await (await fetch(`${base}/healthz`)).json()) as Health;

describe("under wrangler dev", () => {
  it("10 streams dropped after their first bytes, then a small request: it starts within 1 s", {
    retry: 2,
  }, async () => {
    await (await post(4)).text(); // the variant loaded
    const before = await health();
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const ac = new AbortController();
        const res = await post(2000, ac.signal);
        expect(res.status).toBe(200);
        const first = await res.body!.getReader().read(); // queued ones too: the role chunk
        expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
        ac.abort();
      }),
    );
    const t0 = performance.now();
    const res = await post(8);
    const reader = res.body!.getReader();
    let text = "";
    let firstTokenMs = Number.NaN;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      if (Number.isNaN(firstTokenMs) && /"content":"[^"]/.test(text)) firstTokenMs = performance.now() - t0;
    }
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
    expect(firstTokenMs, "the small request's first token").toBeLessThan(1000);

    const after = await health();
    expect(after.client_gone - before.client_gone).toBe(10);
    // The ten dropped answers stopped early: together far fewer tokens than one whole answer.
    expect(after.tokens_generated - before.tokens_generated - 8).toBeLessThan(2000);
  });

  it("a chunked body over the size limit is a 413, and the server goes on serving (JSON answers)", async () => {
    const chunk = new Uint8Array(1024 * 1024).fill(0x20); // 9 MiB of spaces, no Content-Length
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 9) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const big = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "quality",
          messages: [{ role: "user", content: "Hi" }],
          max_tokens: 2,
        }),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(((await res.json()) as { object: string }).object).toBe("chat.completion");
    }
  });
});
