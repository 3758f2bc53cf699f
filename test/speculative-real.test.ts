/**
 * Exactness on the real model (issue 13): SmolLM2-135M-Instruct (the GGUF in /work/models-cache,
 * packed once by src/bench/real-model.ts), 52 chat prompts (data/chat/bench-prompts.json, each with
 * and without a system message) x 128 greedy tokens: speculative output equals plain decoding token
 * for token. Prompt lookup throughout; every fourth prompt also drafts with skipped layers.
 * The model file missing is a failure with instructions, not a skip.
 */
import { beforeAll, expect, it } from "vitest";
import { loadRealModel, type RealModel, readBenchPrompts } from "../src/bench/real-model.ts";
import { promptTokens, renderPrompt } from "../src/runtime/chat.ts";
import { generate } from "../src/runtime/generate.ts";
import { createTokenizer } from "../src/runtime/tokenizer/index.ts";
import { WasmEngine } from "../src/runtime/wasm/engine.ts";
import { bytesToStream } from "../src/runtime/wasm/load-weights.ts";
import { loadTestKernels } from "./kernels-helpers.ts";

let model: RealModel;
let engine: WasmEngine;

beforeAll(async () => {
  model = await loadRealModel();
  engine = await WasmEngine.load(await loadTestKernels(), model.table, bytesToStream(model.data), {
    contextSize: 512,
  });
}, 600_000);

it("52 chat prompts x 128 greedy tokens: speculative output equals plain decoding", async () => {
  const tok = createTokenizer(model.tokenizer);
  const sets = readBenchPrompts();
  const texts = [...sets.grounded, ...sets.open];
  const prompts = texts.flatMap((t) => [
    [{ role: "user" as const, content: t }],
    [
      { role: "system" as const, content: "You are a concise assistant." },
      { role: "user" as const, content: t },
    ],
  ]);
  expect(prompts.length).toBeGreaterThanOrEqual(50);
  const stop = model.eosTokenIds;
  let drafted = 0;
  let accepted = 0;
  let compared = 0;
  for (const [i, messages] of prompts.entries()) {
    const ids = promptTokens(renderPrompt(model.chatTemplate, messages, tok), tok);
    const opts = { maxTokens: 128, temperature: 0, stopTokenIds: stop };
    const plain: number[] = [];
    for await (const t of generate(engine, ids, opts)) plain.push(t);
    const spec: number[] = [];
    const speculative = i % 4 === 0 ? { skipLayers: [11, 12, 13, 14, 15, 16, 17, 18] } : {};
    const gen = generate(engine, ids, { ...opts, speculative });
    let r = await gen.next();
    for (; !r.done; r = await gen.next()) spec.push(r.value);
    expect(spec, `prompt ${i}`).toEqual(plain);
    drafted += r.value.drafted;
    accepted += r.value.accepted;
    compared += plain.length;
  }
  console.log(`real model: ${compared} tokens identical; accepted ${accepted}/${drafted} drafts`);
  expect(compared).toBeGreaterThan(50 * 32);
  expect(accepted).toBeGreaterThan(0);
}, 3_600_000);
