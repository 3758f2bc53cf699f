/**
 * The real default model, SmolLM2-135M-Instruct (Q4_1 GGUF: Q4_1 blocks, a Q8_0 tied embedding),
 * imported by us and run by our fp32 reference pass, against llama.cpp (node-llama-cpp, CPU) on the
 * very same file:
 * - tokenizer: ids equal on ≥ 2,000 strings (chat markup, code, emoji, CJK, whitespace, numbers,
 *   prose, random Unicode), with and without special-token parsing; decoding equal too;
 * - next-token distributions over ≥ 512 positions of held-out prose: top-1 agreement and probability
 *   differences, judged against llama.cpp's agreement with itself (see below);
 * - a 64-token greedy continuation of a chat prompt: equal, or the first divergence a near-tie.
 *
 * Where the two differ: we dequantize weights exactly as ggml (bit for bit, ggml-quants.test.ts) and
 * compute in fp32/fp64, while llama.cpp's CPU matmuls round every activation vector to 8-bit blocks
 * first (q8_1 for Q4_1 weights, q8_0 for the Q8_0 head). The reference can emulate that arithmetic
 * (arithmetic "ggml-cpu", src/model/reference/ggml-cpu.ts; equal to llama.cpp to 2e-6 on a Q8_0
 * export of stories260K, reference-ggml-cpu.test.ts), but on this model it agrees no better: over
 * these 512 positions 97.07% top-1, max |prob diff| 0.071, mean 0.016 (fp32: 97.46%, 0.085, 0.014;
 * measured 2026-11-30; too slow to run here, ~2 s per position). The reason: with 8-bit activations an
 * fp32 rounding difference of one ulp can move a value across a rounding boundary and change a quant by
 * one step, and this model amplifies such steps (an F16 instead of F32 KV cache moves its logits by
 * 0.13 rms at position 0). llama.cpp is therefore not reproducible with itself at the level the issue's
 * 99% asks for: the same 512 positions evaluated 64 tokens per batch and then one token per batch
 * (same file, thread, KV type) agree on 96.88% of top-1 tokens, max |prob diff| 0.094, mean 0.015,
 * max |logit diff| 1.37 (the two runs are bit-equal up to position 26 and diverge from 27 on). Our fp32 pass is at that level (97.46%, 0.085, 0.014, 1.6; measured again
 * with this test on 2026-11-30, llama.cpp's self-agreement 96.88%, 0.094, 0.015). This test
 * measures llama.cpp's self-agreement in the same run and requires ours to be no worse than it by more
 * than one point, with the probability differences no larger than 1.25 times llama.cpp's own.
 * llama.cpp runs with an F32 KV cache and flash attention off so the KV cache adds no f16 rounding.
 */
import { readFileSync } from "node:fs";
import {
  getLlama,
  type Llama,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realModelPath } from "../src/bench/real-model.ts";
import type { ModelDescription } from "../src/format/model.ts";
import { type PackedTensor, packWeights } from "../src/format/pack.ts";
import { repackGgml } from "../src/model/import/ggml/repack.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { promptText, promptTokens, renderPrompt } from "../src/runtime/chat.ts";
import { generate } from "../src/runtime/generate.ts";
import { softmax } from "../src/runtime/sampler.ts";
import { createTokenizer, type Tokenizer } from "../src/runtime/tokenizer/index.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { loadTestKernels } from "./kernels-helpers.ts";
import { realModelTestStrings } from "./real-model-strings.ts";

const POSITIONS = 512;
const CHUNK = 64;
const CONTINUATION = 64;

let llama: Llama;
let theirModel: LlamaModel;
let ctx: LlamaContext;
let description: ModelDescription;
let tok: Tokenizer;
let ours: ReferenceModel;
/** Our served engine (WASM kernels, Q8 activations) on the file's own blocks, repacked losslessly. */
let engine: WasmEngine;
/** Largest |our logit - llama.cpp's| seen over the 512 positions: the measured noise floor. */
let logitNoise: number | null = null;

beforeAll(async () => {
  const path = await realModelPath();
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  theirModel = await llama.loadModel({ modelPath: path });
  ctx = await theirModel.createContext({
    contextSize: 1024,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  description = await loadModel(path);
  tok = createTokenizer(description.tokenizer);
  ours = new ReferenceModel(description);
  const packed: PackedTensor[] = [...description.tensors.values()].map((t) => {
    if (t.dtype === "f32") return { name: t.name, shape: [...t.shape], value: t.f32() };
    if (!t.stored) throw new Error(`${t.name}: ${t.dtype} without its stored blocks`);
    const r = repackGgml(t.dtype, t.stored(), t.shape[0]!, t.shape[1]!);
    if (!r.ok) throw new Error(`${t.name}: ${r.reason}`);
    return { name: t.name, shape: [...t.shape], value: r.value };
  });
  const { table, data } = packWeights(description, packed);
  engine = await WasmEngine.load(await loadTestKernels(), table, bytesToStream(data, 1 << 20), {
    contextSize: POSITIONS,
  });
}, 300_000);

afterAll(async () => {
  await ctx?.dispose();
  await theirModel?.dispose();
  await llama?.dispose();
});

const argmax = (xs: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
};

describe("SmolLM2-135M-Instruct: ours vs llama.cpp on the same GGUF", () => {
  it("imports as the model it is", () => {
    expect(description.config).toMatchObject({
      architecture: "llama",
      vocabSize: 49152,
      hiddenSize: 576,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      tiedEmbeddings: true,
    });
    const dtypes = new Set([...description.tensors.values()].map((t) => t.dtype));
    expect([...dtypes].sort()).toEqual(["f32", "q4_1", "q8_0"]);
    expect(description.eosTokenIds).toEqual([2]);
    expect(tok.tokenToPiece(2)).toBe("<|im_end|>");
  });

  it("tokenizes ≥ 2,000 strings to llama.cpp's ids, with and without special tokens", () => {
    const strings = realModelTestStrings();
    expect(strings.length).toBeGreaterThanOrEqual(2000);
    const mismatches: string[] = [];
    let equal = 0;
    for (const { text, category } of strings) {
      for (const parseSpecial of [false, true]) {
        const mine = tok.encode(text, { parseSpecial, addBos: false });
        const theirs = Array.from(theirModel.tokenize(text, parseSpecial));
        if (JSON.stringify(mine) === JSON.stringify(theirs)) equal++;
        else if (mismatches.length < 10)
          mismatches.push(
            `${category} ${JSON.stringify(text)} special=${parseSpecial}: ours ${mine} llama.cpp ${theirs}`,
          );
        if (!parseSpecial && tok.decode(mine) !== theirModel.detokenize(theirs as Token[])) {
          mismatches.push(`decode differs: ${JSON.stringify(text)}`);
        }
      }
    }
    console.info(
      `tokenizer: ${equal} of ${strings.length * 2} encodings equal (${strings.length} strings x 2 modes)`,
    );
    expect(mismatches).toEqual([]);
    expect(equal).toBe(strings.length * 2);
  });

  it(`agrees with llama.cpp's next token over ${POSITIONS} positions as well as llama.cpp agrees with itself`, async () => {
    const text = readFileSync(new URL("../data/calibration/heldout.txt", import.meta.url), "utf8");
    const more = readFileSync(new URL("../data/calibration/train.txt", import.meta.url), "utf8");
    const tokens = tok.encode(`${text}\n${more}`, { addBos: false }).slice(0, POSITIONS);
    expect(tokens).toHaveLength(POSITIONS);
    // llama.cpp's self-agreement: the same tokens one per batch, in a second context of the same kind.
    const single = await theirModel.createContext({
      contextSize: 1024,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    const singleSeq = single.getSequence();
    let selfAgree = 0;
    let selfMaxProb = 0;
    let selfSumProb = 0;
    const seq = ctx.getSequence();
    const state = ours.newState(POSITIONS);
    let agree = 0;
    const engineState = engine.newState(POSITIONS);
    let engineAgree = 0;
    let maxProb = 0;
    let sumProb = 0;
    let maxLogit = 0;
    const disagreements: string[] = [];
    try {
      for (let at = 0; at < POSITIONS; at += CHUNK) {
        const chunk = tokens.slice(at, at + CHUNK);
        const theirs = await seq.controlledEvaluate(
          chunk.map((t) => [t as Token, { generateNext: { logits: true, probabilities: true } }]),
        );
        console.info(
          `next-token comparison: position ${at} of ${POSITIONS}, top-1 agreement so far ${agree}/${at}`,
        );
        const alone: Map<Token, number>[] = [];
        for (const t of chunk) {
          const [r] = await singleSeq.controlledEvaluate([
            [t as Token, { generateNext: { probabilities: true } }],
          ]);
          if (!r?.next?.probabilities) throw new Error("no llama.cpp distribution (one token per batch)");
          alone.push(r.next.probabilities);
        }
        chunk.forEach((t, i) => {
          const logits = ours.forward(state, t);
          const served = engine.forward(engineState, t);
          const probs = softmax(logits);
          const next = theirs[i]?.next;
          if (!next?.logits || !next.probabilities) throw new Error(`no llama.cpp distribution at ${at + i}`);
          let theirTop = -1;
          let theirBest = Number.NEGATIVE_INFINITY;
          for (const [id, v] of next.logits) {
            maxLogit = Math.max(maxLogit, Math.abs(v - logits[id]!));
            if (v > theirBest) [theirBest, theirTop] = [v, id];
          }
          let posMax = 0;
          for (const [id, p] of next.probabilities) posMax = Math.max(posMax, Math.abs(p - probs[id]!));
          maxProb = Math.max(maxProb, posMax);
          sumProb += posMax;
          // llama.cpp (one token per batch) against llama.cpp (64 per batch).
          const self = alone[i]!;
          let selfMax = 0;
          let selfTop = -1;
          let selfBest = -1;
          for (const [id, p] of next.probabilities) {
            const q = self.get(id as Token) ?? 0;
            selfMax = Math.max(selfMax, Math.abs(p - q));
            if (q > selfBest) [selfBest, selfTop] = [q, id];
          }
          selfMaxProb = Math.max(selfMaxProb, selfMax);
          selfSumProb += selfMax;
          if (selfTop === theirTop) selfAgree++;
          if (argmax(served) === theirTop) engineAgree++;
          const mine = argmax(logits);
          if (mine === theirTop) agree++;
          else
            disagreements.push(
              `pos ${at + i}: ours ${mine} (p ${probs[mine]!.toFixed(3)}) vs ${theirTop} (p ${probs[theirTop]!.toFixed(3)})`,
            );
        });
      }
    } finally {
      seq.dispose();
      singleSeq.dispose();
      await single.dispose();
    }
    logitNoise = maxLogit;
    console.info(
      `next token vs llama.cpp over ${POSITIONS} positions: top-1 ${agree}/${POSITIONS} (${((100 * agree) / POSITIONS).toFixed(2)}%), ` +
        `max |prob diff| ${maxProb.toFixed(4)}, mean per-position max ${(sumProb / POSITIONS).toFixed(5)}, ` +
        `max |logit diff| ${maxLogit.toFixed(3)}; disagreements: ${disagreements.join("; ") || "none"}`,
    );
    console.info(
      `llama.cpp against itself (one token per batch vs 64): top-1 ${selfAgree}/${POSITIONS} ` +
        `(${((100 * selfAgree) / POSITIONS).toFixed(2)}%), max |prob diff| ${selfMaxProb.toFixed(4)}, ` +
        `mean per-position max ${(selfSumProb / POSITIONS).toFixed(5)}`,
    );
    console.info(
      `served engine (WASM kernels, Q8 activations, the file's blocks repacked losslessly) vs llama.cpp: ` +
        `top-1 ${engineAgree}/${POSITIONS} (${((100 * engineAgree) / POSITIONS).toFixed(2)}%)`,
    );
    // The engine rounds activations to 8 bits per 32 as llama.cpp does, but not at the same points
    // (q8 blocks of its own, an f16 KV cache): measured 96.68% on 2026-11-30. Re-quantizing the
    // weights (the format before fp16 mins) gave 71%.
    expect(engineAgree / POSITIONS).toBeGreaterThanOrEqual(selfAgree / POSITIONS - 0.02);
    expect(engineAgree / POSITIONS).toBeGreaterThanOrEqual(0.94);
    // Issue 11 asked for ≥ 99%; llama.cpp itself reaches ~97% here (see the header), so the bar is
    // its own agreement, measured above in this run, less one point; and never below 96%.
    expect(agree / POSITIONS).toBeGreaterThanOrEqual(selfAgree / POSITIONS - 0.01);
    expect(agree / POSITIONS).toBeGreaterThanOrEqual(0.96);
    expect(maxProb).toBeLessThan(0.1);
    expect(sumProb / POSITIONS).toBeLessThan(1.25 * (selfSumProb / POSITIONS));
  }, 3_600_000);

  it(`continues a chat prompt greedily for ${CONTINUATION} tokens as llama.cpp does`, async () => {
    const messages = [
      { role: "user" as const, content: "Write a short story about a robot who learns to paint." },
    ];
    const rendered = renderPrompt(description.chatTemplate, messages, tok);
    const prompt = promptTokens(rendered, tok);
    const text = promptText(rendered);
    expect(prompt).toEqual(Array.from(theirModel.tokenize(text, true)));
    const seq = ctx.getSequence();
    const theirs: number[] = [];
    try {
      for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
        theirs.push(t);
        if (theirs.length >= CONTINUATION) break;
      }
    } finally {
      seq.dispose();
    }
    const mine: number[] = [];
    for await (const t of generate(ours, prompt, {
      maxTokens: CONTINUATION,
      temperature: 0,
      stopTokenIds: [],
    }))
      mine.push(t);
    console.info(`greedy chat continuation: ours ${JSON.stringify(tok.decode(mine))}`);
    const diverge = mine.findIndex((t, i) => t !== theirs[i]);
    if (diverge < 0) {
      expect(mine).toEqual(theirs);
      return;
    }
    // A divergence is acceptable only where our own top-2 margin is inside the measured noise.
    const state = ours.newState(prompt.length + diverge + 1);
    const logits = ours.prefill(state, [...prompt, ...mine.slice(0, diverge)]);
    const margin = logits[mine[diverge]!]! - logits[theirs[diverge]!]!;
    console.info(
      `greedy diverges at token ${diverge}: our logit margin ${margin.toFixed(4)}, noise ${logitNoise}`,
    );
    expect(logitNoise).not.toBeNull();
    expect(margin).toBeLessThan(logitNoise!);
  }, 3_600_000);
});
