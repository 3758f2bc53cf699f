/**
 * generate() over a scripted fake engine (exact control of every logit vector, sync and async) and
 * over the reference model.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import {
  type GenerateResult,
  generate,
  type InferenceState,
  type LogitsModel,
} from "../src/runtime/generate.ts";
import { sharedModelPath } from "./helpers/paths.ts";

const VOCAB = 10;

/** Greedy always picks (last token + 1) % VOCAB. Records every call. */
class CountingModel implements LogitsModel<InferenceState & { length: number; capacity: number }> {
  readonly vocabSize = VOCAB;
  calls: string[] = [];
  constructor(
    readonly maxContext = 100,
    private readonly async = false,
  ) {}
  newState(maxTokens: number) {
    this.calls.push(`newState(${maxTokens})`);
    return { length: 0, capacity: maxTokens };
  }
  private logitsAfter(token: number) {
    const l = new Float32Array(VOCAB);
    l[(token + 1) % VOCAB] = 10;
    return this.async ? Promise.resolve(l) : l;
  }
  prefill(state: { length: number; capacity: number }, tokens: readonly number[]) {
    this.calls.push(`prefill(${tokens.length})`);
    if (state.length + tokens.length > state.capacity) throw new Error("overflow");
    state.length += tokens.length;
    return this.logitsAfter(tokens[tokens.length - 1]!);
  }
  forward(state: { length: number; capacity: number }, token: number) {
    this.calls.push(`forward(${token})`);
    if (state.length >= state.capacity) throw new Error("overflow");
    state.length++;
    return this.logitsAfter(token);
  }
}

async function collect(gen: AsyncGenerator<number, GenerateResult, undefined>) {
  const tokens: number[] = [];
  for (;;) {
    const r = await gen.next();
    if (r.done) return { tokens, result: r.value };
    tokens.push(r.value);
  }
}

/** What a plain (non-speculative, uncached) run reports besides its tokens. */
const NO_SPECULATION = { drafted: 0, accepted: 0, cachedTokens: 0 };

describe("generate", () => {
  it("stops at maxTokens without a wasted forward pass, sync or async engine", async () => {
    for (const async of [false, true]) {
      const m = new CountingModel(100, async);
      const { tokens, result } = await collect(generate(m, [1, 2], { maxTokens: 4, temperature: 0 }));
      expect(tokens).toEqual([3, 4, 5, 6]);
      expect(result).toEqual({
        finishReason: "length",
        promptTokens: 2,
        completionTokens: 4,
        ...NO_SPECULATION,
      });
      expect(m.calls).toEqual(["newState(5)", "prefill(2)", "forward(3)", "forward(4)", "forward(5)"]);
    }
  });

  it("stops at a stop token without yielding it", async () => {
    const m = new CountingModel();
    const { tokens, result } = await collect(
      generate(m, [5], { maxTokens: 50, temperature: 0, stopTokenIds: [8, 9] }),
    );
    expect(tokens).toEqual([6, 7]);
    expect(result.finishReason).toBe("stop");
  });

  it("stops when the context is full", async () => {
    const m = new CountingModel(6);
    const { tokens, result } = await collect(generate(m, [0, 1, 2, 3], { maxTokens: 50, temperature: 0 }));
    // 4 prompt tokens + 2 fed back fill 6 positions; the last sampled token is still yielded.
    expect(tokens).toEqual([4, 5, 6]);
    expect(result).toEqual({
      finishReason: "context",
      promptTokens: 4,
      completionTokens: 3,
      ...NO_SPECULATION,
    });
  });

  it("stops when the signal aborts, between tokens", async () => {
    const m = new CountingModel();
    const controller = new AbortController();
    const gen = generate(m, [0], { maxTokens: 50, temperature: 0, signal: controller.signal });
    const tokens: number[] = [];
    let result: GenerateResult | undefined;
    for (;;) {
      const r = await gen.next();
      if (r.done) {
        result = r.value;
        break;
      }
      tokens.push(r.value);
      if (tokens.length === 3) controller.abort();
    }
    expect(tokens).toEqual([1, 2, 3]);
    expect(result.finishReason).toBe("abort");
    expect(m.calls.filter((c) => c.startsWith("forward"))).toHaveLength(2);
  });

  it("does nothing for an already aborted signal or maxTokens 0", async () => {
    const m = new CountingModel();
    const aborted = await collect(generate(m, [0], { maxTokens: 5, signal: AbortSignal.abort() }));
    expect(aborted).toEqual({
      tokens: [],
      result: { finishReason: "abort", promptTokens: 1, completionTokens: 0, ...NO_SPECULATION },
    });
    const zero = await collect(generate(m, [0], { maxTokens: 0 }));
    expect(zero.result.finishReason).toBe("length");
    expect(m.calls).toEqual([]);
  });

  it("validates eagerly, before any iteration", () => {
    const m = new CountingModel(8);
    expect(() => generate(m, [1], { maxTokens: -1 })).toThrow(z.ZodError);
    expect(() => generate(m, [1], { maxTokens: 3, topP: -0.1 })).toThrow(z.ZodError);
    expect(() => generate(m, [1], { maxTokens: 3, stopTokenIds: [-2] })).toThrow(z.ZodError);
    expect(() => generate(m, [1], { maxTokens: 3, max_tokens: 3 } as never)).toThrow(/Unrecognized key/);
    expect(() => generate(m, [], { maxTokens: 3 })).toThrow(/at least one token/);
    expect(() => generate(m, new Array(9).fill(1), { maxTokens: 3 })).toThrow(/context holds 8/);
  });

  it("seeded sampling through the reference model is reproducible", async () => {
    const modelPath = sharedModelPath();
    const desc = await loadModel(modelPath);
    const model = new ReferenceModel(desc);
    const run = (seed: number) =>
      collect(
        generate(model, [1, 403, 407, 261, 378], {
          maxTokens: 40,
          temperature: 0.9,
          topK: 40,
          topP: 0.95,
          seed,
          stopTokenIds: desc.eosTokenIds,
        }),
      );
    const a = await run(11);
    expect(a.tokens.length).toBeGreaterThan(0);
    expect(await run(11)).toEqual(a);
    expect((await run(12)).tokens).not.toEqual(a.tokens);
  });
});
