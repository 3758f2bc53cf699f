/**
 * Chat with the real default model (SmolLM2-135M-Instruct GGUF) through our fp32 reference pass: the
 * GGUF's own ChatML template rendered with @huggingface/jinja (default and custom system prompts,
 * multi-turn), and greedy answers that stop at the template's end-of-turn token <|im_end|>.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { realModelPath } from "../src/bench/real-model.ts";
import type { ModelDescription } from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { promptText, promptTokens, renderPrompt } from "../src/runtime/chat.ts";
import { type GenerateResult, generate } from "../src/runtime/generate.ts";
import { createTokenizer, maxTokenBytes, type Tokenizer } from "../src/runtime/tokenizer/index.ts";
import { planPrompt } from "../src/worker/chat-prompt.ts";
import { ApiError } from "../src/worker/errors.ts";
import type { ChatMessage } from "../src/worker/schemas.ts";

const DEFAULT_SYSTEM =
  "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

let description: ModelDescription;
let tok: Tokenizer;
let model: ReferenceModel;

beforeAll(async () => {
  description = await loadModel(await realModelPath());
  tok = createTokenizer(description.tokenizer);
  model = new ReferenceModel(description);
}, 300_000);

async function answer(
  messages: ChatMessage[],
  maxTokens = 48,
): Promise<{ text: string; ids: number[]; result: GenerateResult }> {
  const prompt = promptTokens(renderPrompt(description.chatTemplate, messages, tok), tok);
  const gen = generate(model, prompt, { maxTokens, temperature: 0, stopTokenIds: description.eosTokenIds });
  const ids: number[] = [];
  for (;;) {
    const next = await gen.next();
    if (next.done) return { text: tok.decode(ids), ids, result: next.value };
    ids.push(next.value);
  }
}

describe("chat with SmolLM2-135M-Instruct (GGUF ChatML template)", () => {
  it("renders the GGUF's template: default system prompt, custom system prompt, multi-turn", () => {
    expect(description.chatTemplate).toContain("<|im_start|>");
    const render = (m: ChatMessage[]) => promptText(renderPrompt(description.chatTemplate, m, tok));
    expect(render([{ role: "user", content: "Hi" }])).toBe(
      `${DEFAULT_SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`,
    );
    expect(
      render([
        { role: "system", content: "You are terse." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello." },
        { role: "user", content: "Bye" },
      ]),
    ).toBe(
      "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
    );
    // OpenAI's "developer" role is the system prompt.
    expect(
      render([
        { role: "developer", content: "Be kind." },
        { role: "user", content: "Hi" },
      ]),
    ).toMatch(/^<\|im_start\|>system\nBe kind\.<\|im_end\|>\n/);
    // The markup becomes the control tokens <|im_start|> (1) and <|im_end|> (2), not text.
    const tokens = (m: ChatMessage[]) => promptTokens(renderPrompt(description.chatTemplate, m, tok), tok);
    const ids = tokens([{ role: "user", content: "Hi" }]);
    expect(ids[0]).toBe(1);
    expect(ids.filter((t) => t === 2)).toHaveLength(2);
    // ...but the same markup typed by the user stays text.
    expect(tokens([{ role: "user", content: "Hi<|im_end|>" }]).filter((t) => t === 2)).toHaveLength(2);
    expect(description.eosTokenIds).toEqual([2]);
  });

  it("answers a factual question and stops at <|im_end|>", async () => {
    const { text, ids, result } = await answer([{ role: "user", content: "What is the capital of France?" }]);
    console.info(`capital of France: ${JSON.stringify(text)} (${ids.length} tokens, ${result.finishReason})`);
    expect(result.finishReason).toBe("stop");
    expect(ids.length).toBeLessThan(48);
    expect(ids).not.toContain(2);
    expect(text).toContain("Paris");
  }, 1_800_000);

  it("holds a multi-turn conversation: each turn stops at <|im_end|>, the second sees the first", async () => {
    const first: ChatMessage[] = [{ role: "user", content: "Hi! My name is Alice." }];
    const a1 = await answer(first);
    expect(a1.result.finishReason).toBe("stop");
    const a2 = await answer([
      ...first,
      { role: "assistant", content: a1.text },
      { role: "user", content: "What is my name?" },
    ]);
    console.info(`turn 1: ${JSON.stringify(a1.text)}; turn 2: ${JSON.stringify(a2.text)}`);
    expect(a2.result.finishReason).toBe("stop");
    expect(a2.ids).not.toContain(2);
    // The second turn's prompt carries the first exchange; its answer differs from a fresh one.
    // (Recalling the name is beyond this 135M model at greedy: measured, it answers with another
    // name, so the test asserts the mechanics, not the model's memory.)
    const fresh = await answer([{ role: "user", content: "What is my name?" }]);
    expect(a2.text).not.toBe(fresh.text);
  }, 1_800_000);
});

describe("prompts far over the context on SmolLM2's vocabulary (planPrompt)", () => {
  const CONTEXT = 1728; // what the Worker gives the quality variant
  const plan = (content: string) =>
    planPrompt(renderPrompt(description.chatTemplate, [{ role: "user", content }], tok), tok, CONTEXT, {
      value: 4,
      param: "max_tokens",
    });

  it("a whitespace run (81 bytes per token at most) over context x 81 characters is refused by its length", () => {
    expect(maxTokenBytes(tok)).toBe(81); // "\n" and 80 spaces
    let err: unknown;
    try {
      plan(" ".repeat(7_000_000));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).message).toMatch(
      /^This model's maximum context length is 1728 tokens; your messages use more than 1728 tokens \(7000\d{3} characters; one token covers at most 81 bytes\)\.$/,
    );
  });

  it("a whitespace run that fits is planned with its exact token count", () => {
    const content = " ".repeat(60_000); // longer than the 16-characters-per-token head, under 1728 x 81
    const { prompt, maxTokens } = plan(content);
    expect(prompt).toEqual(
      promptTokens(renderPrompt(description.chatTemplate, [{ role: "user", content }], tok), tok),
    );
    expect(prompt.length).toBeLessThan(CONTEXT);
    expect(maxTokens).toBe(4);
  });

  it("a prompt of more ids than a call may take arguments tokenizes (no stack overflow)", () => {
    const content = "a ".repeat(150_000);
    const ids = promptTokens(renderPrompt(description.chatTemplate, [{ role: "user", content }], tok), tok);
    expect(ids.length).toBeGreaterThan(150_000);
  });
});
