/**
 * The foundation end to end on the real model, with only our own code on our side:
 * text -> our tokenizer -> reference forward pass -> our detokenizer equals llama.cpp's text; and the
 * model written as a Hugging Face folder (neox q/k rows) and imported back gives the same logits as
 * the GGUF it came from (interleaved rows) — the rope-permutation handling, proven on outputs.
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDescription } from "../src/format/model.ts";
import { writeHfFolder } from "../src/model/export/index.ts";
import { loadModel } from "../src/model/import/index.ts";
import { ReferenceModel } from "../src/model/reference/index.ts";
import { generate } from "../src/runtime/generate.ts";
import { createTokenizer } from "../src/runtime/tokenizer/index.ts";
import { LlamaCpp } from "./helpers/llama-cpp.ts";
import { sharedModelPath, tempDirs } from "./helpers/paths.ts";

const dirs = tempDirs("e2e");
let gguf: ModelDescription;
let llamaCpp: LlamaCpp;

beforeAll(async () => {
  gguf = await loadModel(sharedModelPath());
  llamaCpp = await LlamaCpp.start();
});

afterAll(async () => {
  await llamaCpp?.dispose();
  dirs.cleanup();
});

describe("text in, text out, against llama.cpp", () => {
  it("64 greedy tokens of 'Once upon a time': same ids and same text as llama.cpp", async () => {
    const tok = createTokenizer(gguf.tokenizer);
    const prompt = tok.encode("Once upon a time"); // adds BOS, as the vocab asks
    const peer = await llamaCpp.greedy(sharedModelPath(), "Once upon a time", 64);
    expect(prompt).toEqual(peer.input);

    const ids: number[] = [];
    const stream = tok.createStreamDecoder({ continuation: true });
    let streamed = "";
    for await (const t of generate(new ReferenceModel(gguf), prompt, { maxTokens: 64, temperature: 0 })) {
      ids.push(t);
      streamed += stream.push(t);
    }
    streamed += stream.flush();
    expect(ids).toEqual(peer.output);
    expect(streamed).toMatch(/^, there was a little girl named Lily/);
    expect(streamed).toBe(tok.decode(ids, { continuation: true }));
  });
});

describe("GGUF -> Hugging Face folder -> import", () => {
  it("gives the same logits as the GGUF over a 24-token sequence", async () => {
    const dir = `${dirs.make()}/hf`;
    await writeHfFolder(gguf, dir);
    const hf = await loadModel(dir);
    expect(gguf.config.ropeStyle).toBe("interleaved");
    expect(hf.config.ropeStyle).toBe("neox");
    const [a, b] = [new ReferenceModel(gguf), new ReferenceModel(hf)];
    const [sa, sb] = [a.newState(24), b.newState(24)];
    const tokens = createTokenizer(hf.tokenizer).encode("Lily saw a big red ball in the park and she");
    expect(tokens).toEqual(
      createTokenizer(gguf.tokenizer).encode("Lily saw a big red ball in the park and she"),
    );
    let worst = 0;
    for (const t of tokens) {
      const [la, lb] = [a.forward(sa, t), b.forward(sb, t)];
      for (let i = 0; i < la.length; i++) worst = Math.max(worst, Math.abs(la[i]! - lb[i]!));
    }
    // Same weights, rows re-ordered: only float summation order may differ.
    expect(worst).toBeLessThan(1e-5);
  });
});

describe("npm run inspect", () => {
  const run = (arg: string) =>
    spawnSync(process.execPath, ["--import", "tsx", "scripts/inspect.ts", arg], { encoding: "utf8" });

  it("prints architecture, parameters, tensors and the tokenizer", () => {
    const r = run(sharedModelPath());
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("architecture: llama");
    expect(r.stdout).toContain("parameters: 292,800");
    expect(r.stdout).toMatch(/blk\.4\.ffn_down\.weight\s+\[64, 172\]\s+f32\s+43\.0 KiB/);
    expect(r.stdout).toMatch(/vocab: 512/);
  });

  it("exits 1 with the file and the problem for a bad file", () => {
    const r = run("package.json");
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: package\.json: not a GGUF file/);
  });
});
