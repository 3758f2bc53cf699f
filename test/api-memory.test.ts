/**
 * The isolate's engine memory budget holds under concurrent traffic for different variants: a
 * variant that does not fit beside a busy one waits for it to go idle and evicts it, instead of
 * loading beside it (a deployed isolate over 128 MB is killed with every request in it). workerd
 * over real HTTP; the bytes are the worker's own count of its engines' wasm memory (/healthz).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PREFIX_CACHE_BYTES } from "../src/worker/engines.ts";
import { chat, healthz, story } from "./helpers/api-calls.ts";
import { type ApiServer, startApiServer } from "./helpers/api-server.ts";

const TIERS = ["quality", "balanced", "speed"];

let budget = 0;
let tight: ApiServer;
let roomy: ApiServer;

beforeAll(async () => {
  // Each variant's engine size, measured in an isolate with room for all of them.
  roomy = await startApiServer();
  const sizes: number[] = [];
  for (const tier of TIERS) {
    const before = (await healthz(roomy)).engine_bytes;
    const r = await chat(
      roomy,
      { model: "shardlm", messages: story, max_tokens: 2 },
      { "X-Quality-Tier": tier },
    );
    expect(r.status).toBe(200);
    sizes.push((await healthz(roomy)).engine_bytes - before);
  }
  const largest = Math.max(...sizes);
  // Room for the largest variant, never for two of them (their sizes are within 2x of each other).
  expect(Math.min(...sizes) * 2).toBeGreaterThan(largest);
  budget = Math.floor(largest * 1.5);
  tight = await startApiServer({ ENGINE_MEMORY_BUDGET: String(budget) });
}, 300_000);

afterAll(async () => {
  await roomy?.close();
  await tight?.close();
});

describe("engine memory under many prompts (what npm run loadtest checks)", () => {
  it("grows only by the prefix caches, which stay within the maximum /healthz reports", async () => {
    const first = await healthz(roomy);
    expect(first.resident_variants).toBe(TIERS.length);
    // Each resident variant has room beside it for a prefix cache of PREFIX_CACHE_BYTES.
    expect(first.prefix_cache_max_bytes).toBe(TIERS.length * PREFIX_CACHE_BYTES);
    const engines = first.engine_bytes - first.prefix_cache_bytes;
    for (let i = 0; i < 12; i++) {
      const content = `Prompt number ${i}: once upon a time there was a ${"very ".repeat(i)}little dog`;
      for (const tier of TIERS) {
        const r = await chat(
          roomy,
          { model: "shardlm", messages: [{ role: "user", content }], max_tokens: 4 },
          { "X-Quality-Tier": tier },
        );
        expect(r.status, r.text).toBe(200);
      }
    }
    const after = await healthz(roomy);
    expect(after.prefix_cache_bytes).toBeGreaterThan(first.prefix_cache_bytes); // they filled up
    expect(after.prefix_cache_bytes).toBeLessThanOrEqual(after.prefix_cache_max_bytes);
    // The engines themselves (wasm memory, KV caches) did not grow: only the bounded caches did.
    expect(after.engine_bytes - after.prefix_cache_bytes).toBe(engines);
    expect(after.engine_bytes).toBeLessThanOrEqual(engines + after.prefix_cache_max_bytes);
  });
});

describe("engine memory budget under concurrent variants", () => {
  it("mixed-tier bursts all succeed and never leave more than the budget resident", async () => {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await healthz(tight)).engine_bytes);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const rs = await Promise.all(
          Array.from({ length: 18 }, (_, i) =>
            chat(
              tight,
              { model: "shardlm", messages: story, max_tokens: 24, stream: i % 2 === 0 },
              { "X-Quality-Tier": TIERS[i % 3]! },
            ),
          ),
        );
        expect(rs.map((r) => r.status)).toEqual(rs.map(() => 200));
        const h = await healthz(tight);
        expect(h.engine_bytes).toBeLessThanOrEqual(budget);
        expect(h.resident_variants).toBe(1);
      }
    } finally {
      sampling = false;
      await sampler;
    }
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(budget);
  }, 300_000);

  it("no room for a separate prefix cache: the next turn reuses the engine's own KV rows and equals a cold run", async () => {
    type Answer = {
      choices: { message: { content: string } }[];
      usage: { prompt_tokens_details?: { cached_tokens: number } };
    };
    const ask = async (messages: unknown[], model = "quality") => {
      const r = await chat(tight, { model, messages, max_tokens: 12, temperature: 0 });
      expect(r.status, r.text).toBe(200);
      return r.json as Answer;
    };
    const first = await ask(story);
    const turn2 = [
      ...story,
      { role: "assistant", content: first.choices[0]!.message.content },
      { role: "user", content: "And then?" },
    ];
    const warm = await ask(turn2);
    await ask(story, "speed"); // evicts quality (the budget holds one variant): the next load is cold
    const cold = await ask(turn2);
    expect(cold.usage.prompt_tokens_details?.cached_tokens).toBe(0);
    expect(warm.usage.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    expect(warm.choices[0]!.message.content).toBe(cold.choices[0]!.message.content);
    expect((await healthz(tight)).engine_bytes).toBeLessThanOrEqual(budget);
  }, 120_000);
});
