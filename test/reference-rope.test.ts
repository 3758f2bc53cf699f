/**
 * The two rope layouts are the same math on permuted rows: the GGUF model (interleaved, llama.cpp
 * layout) and a copy whose q/k rows are permuted to the Hugging Face layout and run with neox rope
 * must give the same logits. This is what lets GGUF and HF checkpoints share one forward pass.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  type ModelDescription,
  memoryTensor,
  permuteQK,
  type RopeStyle,
  type TensorEntry,
  TensorNames,
} from "../src/format/model.ts";
import { loadModel } from "../src/model/import/index.ts";
import { applyRope, ReferenceModel, ropeAngles } from "../src/model/reference/index.ts";
import { sharedModelPath } from "./helpers/paths.ts";

const modelPath = sharedModelPath();

/** Same model with q/k rows in the `to` layout. */
function withRopeStyle(model: ModelDescription, to: RopeStyle): ModelDescription {
  const c = model.config;
  const tensors = new Map<string, TensorEntry>(model.tensors);
  for (let l = 0; l < c.numLayers; l++) {
    for (const [name, heads] of [
      [TensorNames.attnQ(l), c.numHeads],
      [TensorNames.attnK(l), c.numKvHeads],
    ] as const) {
      const t = tensors.get(name)!;
      const cols = t.shape[1]!;
      tensors.set(name, memoryTensor(name, t.shape, permuteQK(t.f32(), heads, c.headDim, cols, to)));
    }
  }
  return { ...model, config: { ...c, ropeStyle: to }, tensors };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("rope layouts", () => {
  let gguf: ModelDescription;
  beforeAll(async () => {
    gguf = await loadModel(modelPath);
  });

  it("computes theta_i = pos * base^(-2i/d)", () => {
    const { cos, sin } = ropeAngles(3, 8, 10000);
    expect(cos.length).toBe(4);
    expect(cos[0]).toBeCloseTo(Math.cos(3), 15);
    expect(sin[1]).toBeCloseTo(Math.sin(0.3), 15); // 3 * 10000^(-1/4)
    expect(sin[3]).toBeCloseTo(Math.sin(0.003), 15); // 3 * 10000^(-3/4)
  });

  it("interleaved rope on permuted rows equals neox rope on HF rows (vector level)", () => {
    const heads = 3;
    const hd = 8;
    const x = Float32Array.from({ length: heads * hd }, (_, i) => Math.sin(i * 1.7) + 0.1 * i);
    const angles = ropeAngles(11, hd, 10000);
    const neox = x.slice();
    applyRope(neox, heads, hd, angles, "neox");
    const interleaved = permuteQK(x, heads, hd, 1, "interleaved");
    applyRope(interleaved, heads, hd, angles, "interleaved");
    expect(maxAbsDiff(permuteQK(interleaved, heads, hd, 1, "neox"), neox)).toBeLessThan(1e-6);
  });

  it("the GGUF model and its neox-permuted copy give equal logits over a 20-token prompt", () => {
    expect(gguf.config.ropeStyle).toBe("interleaved");
    const a = new ReferenceModel(gguf);
    const b = new ReferenceModel(withRopeStyle(gguf, "neox"));
    // BOS then a fixed spread of ids across the vocabulary.
    const prompt = [1, ...Array.from({ length: 19 }, (_, i) => (37 + i * 97) % gguf.config.vocabSize)];
    const sa = a.newState(prompt.length);
    const sb = b.newState(prompt.length);
    let worst = 0;
    for (const t of prompt) worst = Math.max(worst, maxAbsDiff(a.forward(sa, t), b.forward(sb, t)));
    expect(worst).toBeLessThan(1e-5);
  });

  it("the wrong rope style for the rows changes the logits (the test above can fail)", () => {
    const wrong = new ReferenceModel({ ...gguf, config: { ...gguf.config, ropeStyle: "neox" } });
    const right = new ReferenceModel(gguf);
    const prompt = [1, 403, 407, 261, 378];
    const diff = maxAbsDiff(
      right.prefill(right.newState(5), prompt),
      wrong.prefill(wrong.newState(5), prompt),
    );
    expect(diff).toBeGreaterThan(1e-2);
  });
});
