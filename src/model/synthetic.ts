/**
 * Synthetic-weight models in the real shapes of public checkpoints. Decode speed does not depend on
 * weight values, so these are honest for benchmarks (and let CI exercise 110M-scale builds without
 * downloading anything). Weights are seeded Gaussian-ish (std 0.02, norms 1) so runs are repeatable.
 */

import { type ModelConfig, type ModelDescription, memoryTensor, type TensorEntry } from "../format/model.ts";
import { expectedShapes } from "./import/validate.ts";

export const MODEL_SHAPES = ["stories15M", "stories110M", "SmolLM2-135M"] as const;
export type ModelShape = (typeof MODEL_SHAPES)[number];

const base = {
  architecture: "llama",
  ropeStyle: "interleaved",
  rmsNormEps: 1e-5,
  attentionBias: false,
  slidingWindow: null,
} as const;

export const SHAPE_CONFIGS: Record<ModelShape, ModelConfig> = {
  stories15M: {
    ...base,
    vocabSize: 32000,
    hiddenSize: 288,
    intermediateSize: 768,
    numLayers: 6,
    numHeads: 6,
    numKvHeads: 6,
    headDim: 48,
    ropeDim: 48,
    ropeTheta: 10000,
    maxContext: 256,
    tiedEmbeddings: false,
  },
  stories110M: {
    ...base,
    vocabSize: 32000,
    hiddenSize: 768,
    intermediateSize: 2048,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 12,
    headDim: 64,
    ropeDim: 64,
    ropeTheta: 10000,
    maxContext: 1024,
    tiedEmbeddings: false,
  },
  "SmolLM2-135M": {
    ...base,
    ropeStyle: "neox",
    vocabSize: 49152,
    hiddenSize: 576,
    intermediateSize: 1536,
    numLayers: 30,
    numHeads: 9,
    numKvHeads: 3,
    headDim: 64,
    ropeDim: 64,
    ropeTheta: 100000,
    maxContext: 8192,
    tiedEmbeddings: true,
  },
};

/** xorshift-based PRNG, then sum of 4 uniforms ~ Gaussian. */
function gaussianFill(out: Float32Array, seed: number, std: number): void {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const k = std * 1.7320508;
  for (let i = 0; i < out.length; i++) out[i] = (next() + next() + next() + next() - 2) * k;
}

/** A llama sentencepiece-style vocabulary of `n` tokens: unk, bos, eos, 256 bytes, then filler pieces. */
function syntheticVocab(n: number): ModelDescription["tokenizer"] {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  for (let i = tokens.length; i < n; i++) {
    tokens.push(`▁t${i}`);
    types.push(1);
  }
  return {
    kind: "llama-spm",
    tokens,
    scores: tokens.map((_, i) => -i),
    tokenTypes: types,
    bosId: 1,
    eosId: 2,
    unkId: 0,
    padId: null,
    addBos: true,
    addEos: false,
    addSpacePrefix: true,
  };
}

export function syntheticModel(shape: ModelShape | ModelConfig, seed = 1): ModelDescription {
  const config = typeof shape === "string" ? SHAPE_CONFIGS[shape] : shape;
  const stub = { config } as ModelDescription;
  const tensors = new Map<string, TensorEntry>();
  let i = 0;
  for (const [name, dims] of expectedShapes(stub)) {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    if (dims.length === 1) data.fill(1);
    else gaussianFill(data, seed * 7919 + ++i, 0.02);
    tensors.set(name, memoryTensor(name, dims, data));
  }
  return {
    config,
    tensors,
    tokenizer: syntheticVocab(config.vocabSize),
    chatTemplate: null,
    eosTokenIds: [2],
    bosTokenId: 1,
    source: { format: "gguf", path: `synthetic:${typeof shape === "string" ? shape : "custom"}`, files: [] },
  };
}
