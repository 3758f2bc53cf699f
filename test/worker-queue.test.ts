/**
 * The engine queue (src/worker/queue.ts) and the streamed-answer body (src/worker/sse.ts), in Node:
 * order, bounds, aborts, turns nobody takes, and clients that cancel or stop reading.
 */
import { describe, expect, it } from "vitest";
import { FairQueue, OverloadedError } from "../src/worker/queue.ts";
import { ClientGoneError, SseBody } from "../src/worker/sse.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("FairQueue", () => {
  it("runs holders one at a time, in arrival order", async () => {
    const q = new FairQueue(8, { pollMs: 5 });
    const log: string[] = [];
    await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const release = await q.acquire();
        log.push(`start ${i}`);
        await sleep(10);
        log.push(`end ${i}`);
        release();
      }),
    );
    expect(log).toEqual(["start 0", "end 0", "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    expect(q.length).toBe(0);
  });

  it("hands over within the head's poll interval, however slowly the others poll", async () => {
    const q = new FairQueue(8, { headPollMs: 2, pollMs: 10_000 });
    const first = await q.acquire();
    const t0 = performance.now();
    const second = q.acquire();
    setTimeout(first, 5);
    (await second)();
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("refuses past maxWaiting with OverloadedError", async () => {
    const q = new FairQueue(2, { pollMs: 5 });
    const release = await q.acquire();
    const waiting = [q.acquire(), q.acquire()];
    await expect(q.acquire()).rejects.toBeInstanceOf(OverloadedError);
    expect(q.length).toBe(3);
    release();
    for (const w of waiting) (await w)();
    expect(q.length).toBe(0);
  });

  it("an aborted waiter leaves the queue; the next one gets the turn", async () => {
    const q = new FairQueue(8, { pollMs: 5 });
    const release = await q.acquire();
    const ac = new AbortController();
    const gone = q.acquire(ac.signal);
    const next = q.acquire();
    ac.abort(new Error("client went away"));
    await expect(gone).rejects.toThrow("client went away");
    expect(q.length).toBe(2);
    release();
    (await next)();
    expect(q.length).toBe(0);
  });

  it("a turn nobody takes passes on after claimMs (a waiter whose request died)", async () => {
    const q = new FairQueue(8, { pollMs: 5, claimMs: 30 });
    const release = await q.acquire();
    // A waiter whose code never runs again (workerd dropped its request's context): its ticket
    // is queued, nothing polls it.
    const internals = q as unknown as {
      waiting: { state: string; grantedAt: number; grantedAtPoll: number }[];
    };
    internals.waiting.push({ state: "waiting", grantedAt: 0, grantedAtPoll: 0 });
    const next = q.acquire();
    release(); // the turn goes to the dead waiter...
    const t0 = performance.now();
    (await next)(); // ...and, untaken, on to the next one after claimMs
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    expect(q.length).toBe(0);
  });

  it("a busy event loop does not take a live waiter's turn away", async () => {
    const q = new FairQueue(8, { headPollMs: 5, pollMs: 5, claimMs: 20 });
    const release = await q.acquire();
    const a = q.acquire();
    const b = q.acquire();
    await sleep(15);
    release(); // the turn goes to a...
    const until = Date.now() + 80;
    while (Date.now() < until) {} // ...while the loop is blocked for longer than claimMs
    (await a)(); // a still takes it (b's polls did not see it left untaken)
    (await b)();
    expect(q.length).toBe(0);
  });

  it("release is idempotent", async () => {
    const q = new FairQueue(8);
    const release = await q.acquire();
    release();
    release();
    const again = await q.acquire();
    expect(q.length).toBe(1);
    again();
    expect(q.length).toBe(0);
  });
});

describe("SseBody", () => {
  const decode = (chunks: Uint8Array[]) => chunks.map((c) => new TextDecoder().decode(c)).join("");

  it("streams events in order and closes", async () => {
    const sse = new SseBody({ bufferChunks: 2, stallMs: 1000 });
    const reading = (async () => {
      const out: Uint8Array[] = [];
      for await (const c of sse.stream as unknown as AsyncIterable<Uint8Array>) out.push(c);
      return decode(out);
    })();
    for (let i = 0; i < 10; i++) await sse.event(String(i));
    sse.close();
    expect(await reading).toBe(Array.from({ length: 10 }, (_, i) => `data: ${i}\n\n`).join(""));
  });

  it("a cancelled body makes the next write fail with ClientGoneError and calls onGone once", async () => {
    let gone = 0;
    const sse = new SseBody({ bufferChunks: 4, stallMs: 1000, onGone: () => gone++ });
    await sse.event("a");
    await sse.stream.cancel();
    expect(sse.isGone).toBe(true);
    await expect(sse.event("b")).rejects.toBeInstanceOf(ClientGoneError);
    expect(gone).toBe(1);
  });

  it("a reader that stops reading is taken for gone once bytes waited stallMs", async () => {
    let gone = 0;
    const sse = new SseBody({ bufferChunks: 3, stallMs: 40, onGone: () => gone++ });
    const reader = sse.stream.getReader();
    const first = reader.read(); // reads a little, then nothing more (still holding the stream)
    const t0 = performance.now();
    const written = async () => {
      for (let i = 0; ; i++) await sse.event(String(i));
    };
    await expect(written()).rejects.toBeInstanceOf(ClientGoneError);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    expect(gone).toBe(1);
    expect(new TextDecoder().decode((await first).value)).toBe("data: 0\n\n");
    await expect(reader.read()).rejects.toBeInstanceOf(ClientGoneError);
  });

  it("a slow reader that keeps reading is never cut off", async () => {
    const sse = new SseBody({ bufferChunks: 2, stallMs: 40 });
    const reading = (async () => {
      let text = "";
      for await (const c of sse.stream as unknown as AsyncIterable<Uint8Array>) {
        text += new TextDecoder().decode(c);
        await sleep(15);
      }
      return text;
    })();
    for (let i = 0; i < 12; i++) await sse.event(String(i));
    sse.close();
    // Events that waited meanwhile arrive together, in order.
    expect(await reading).toBe(Array.from({ length: 12 }, (_, i) => `data: ${i}\n\n`).join(""));
  });

  it("a heartbeat finds a reader that is gone while nothing else is written (a queued request)", async () => {
    let gone = 0;
    const sse = new SseBody({ bufferChunks: 16, stallMs: 40, onGone: () => gone++ });
    const reader = sse.stream.getReader();
    await sse.event("first");
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("data: first\n\n");
    // The reader stops asking; one heartbeat later (not a full buffer) it counts as gone.
    const t0 = performance.now();
    await sse.comment("queued");
    expect(sse.isGone).toBe(false);
    await sleep(80);
    expect(sse.isGone).toBe(true);
    expect(gone).toBe(1);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(40);
    await expect(sse.comment("queued")).rejects.toBeInstanceOf(ClientGoneError);
  });

  it("heartbeats to a reader that keeps reading are comments, never a disconnect", async () => {
    const sse = new SseBody({ bufferChunks: 16, stallMs: 40 });
    const reading = (async () => {
      let text = "";
      for await (const c of sse.stream as unknown as AsyncIterable<Uint8Array>)
        text += new TextDecoder().decode(c);
      return text;
    })();
    for (let i = 0; i < 5; i++) {
      await sse.comment("queued");
      await sleep(20);
    }
    await sse.event("x");
    sse.close();
    expect(await reading).toBe(`${": queued\n\n".repeat(5)}data: x\n\n`);
    expect(sse.isGone).toBe(false);
  });
});
