/**
 * The variant manifest: one zod schema, shared by the build (which writes it), the deploy scripts
 * (which validate before switching anything live) and the Worker (which trusts nothing it did not
 * parse with this schema).
 *
 * Storage layout (R2 keys; content-addressed objects are immutable):
 *   shards/<sha256>            a slice of the weight data region (see ./weights.ts), in order
 *   blobs/<sha256>             the tokenizer (JSON TokenizerSpec), shared by variants of one model
 *   manifests/<sha256>.json    a Manifest (its key is the sha256 of its own bytes)
 *   live.json                  a LivePointer: which manifests serve now (the one mutable key)
 */
import { z } from "zod";
import { ModelConfig } from "./model.ts";
import { SpeculativeProfile } from "./speculative.ts";
import { WeightTable } from "./weights.ts";

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, "a lowercase hex sha256");

export const ShardRef = z
  .object({
    sha256: Sha256,
    /** Byte offset of this shard inside the data region. */
    offset: z.number().int().nonnegative(),
    bytes: z.number().int().positive(),
  })
  .strict();
export type ShardRef = z.infer<typeof ShardRef>;

export const BlobRef = z.object({ sha256: Sha256, bytes: z.number().int().positive() }).strict();

export const QualityMetrics = z
  .object({
    /** Mean KL(original || variant) over evaluation positions, nats. */
    klMean: z.number().nonnegative(),
    /** Fraction of positions where the variant's argmax equals the original's. */
    top1Agreement: z.number().min(0).max(1),
    /** Perplexity on held-out text. */
    perplexity: z.number().positive(),
    /** The original model's perplexity on the same text, for scale. */
    referencePerplexity: z.number().positive(),
    evalTokens: z.number().int().positive(),
  })
  .strict();
export type QualityMetrics = z.infer<typeof QualityMetrics>;

export const SpeedProfile = z
  .object({
    decodeMsPerToken: z.number().positive(),
    /**
     * ms per prompt token: at position 0 (the fit's intercept) when prefillPositionTokens is set,
     * else the mean over the first 32 positions (older manifests).
     */
    prefillMsPerToken: z.number().positive(),
    /**
     * How prefill cost grows with position (attention reads every earlier position): a prompt token
     * at position p costs prefillMsPerToken x (1 + p / prefillPositionTokens), so this is the
     * position where a token costs twice what it costs at 0. A straight-line fit of ms per token
     * over positions 0..1023 (src/compress/measure.ts, measurePrefillByPosition). Absent in older
     * manifests and where the fit found no growth: a flat cost per token.
     */
    prefillPositionTokens: z.number().positive().optional(),
    /**
     * How decode cost grows with position, the same way: a decode step at position p (the prompt
     * and the tokens generated before it in the KV cache) costs decodeMsPerToken x (1 + p /
     * decodePositionTokens). decodeMsPerToken is measured at positions 32..63, so this reads it
     * as the cost at 0 (over by at most 64 / decodePositionTokens). The growth is fitted on the
     * engine layout the Worker serves the variant with, at 8 positions over 0..1023
     * (src/compress/measure.ts, measureCostByPosition). Absent in older manifests and where the
     * fit found no growth: a flat cost per token.
     */
    decodePositionTokens: z.number().positive().optional(),
    /** Time to stream weights into the engine, per MB of data region. */
    loadMsPerMB: z.number().positive(),
    /** Where it was measured, e.g. "node 20.20.2 wasm-simd128 1 thread". */
    measuredOn: z.string(),
  })
  .strict();
export type SpeedProfile = z.infer<typeof SpeedProfile>;

export const Manifest = z
  .object({
    format: z.literal("shardlm-manifest"),
    version: z.literal(1),
    /** Variant name, unique within a deployment (e.g. "quality"). */
    variant: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
    tier: z.enum(["quality", "balanced", "speed"]),
    source: z
      .object({ name: z.string(), format: z.enum(["gguf", "hf"]), sha256: Sha256, bytes: z.number().int() })
      .strict(),
    /** Pipeline version and the variant's config as built (for rebuild decisions and humans). */
    build: z.object({
      pipelineVersion: z.string(),
      config: z.record(z.string(), z.unknown()),
      seed: z.number(),
    }),
    model: z
      .object({
        config: ModelConfig,
        bosTokenId: z.number().int().nullable(),
        eosTokenIds: z.array(z.number().int()),
        chatTemplate: z.string().nullable(),
        tokenizer: BlobRef,
      })
      .strict(),
    weights: WeightTable,
    shards: z.array(ShardRef).min(1),
    size: z
      .object({
        totalBytes: z.number().int().positive(),
        parameters: z.number().int().positive(),
        bitsPerWeight: z.number().positive(),
      })
      .strict(),
    quality: QualityMetrics,
    speed: SpeedProfile,
    /** Speculative decoding settings the build searched and measured (absent in older manifests). */
    speculative: SpeculativeProfile.optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    // Shards must tile the data region exactly, in order: the runtime streams them back to back.
    let pos = 0;
    for (const [i, s] of m.shards.entries()) {
      if (s.offset !== pos)
        ctx.addIssue({ code: "custom", path: ["shards", i], message: `gap or overlap at ${pos}` });
      pos = s.offset + s.bytes;
    }
    if (pos !== m.weights.totalBytes) {
      ctx.addIssue({
        code: "custom",
        path: ["shards"],
        message: `shards cover ${pos} of ${m.weights.totalBytes} bytes`,
      });
    }
    for (const l of m.speculative?.draft.skipLayers ?? []) {
      if (l >= m.model.config.numLayers)
        ctx.addIssue({ code: "custom", path: ["speculative"], message: `skip layer ${l} does not exist` });
    }
    if (JSON.stringify(m.weights.config) !== JSON.stringify(m.model.config)) {
      ctx.addIssue({ code: "custom", path: ["weights", "config"], message: "differs from model.config" });
    }
  });
export type Manifest = z.infer<typeof Manifest>;

const TIER_RANK = { quality: 0, balanced: 1, speed: 2 } as const;

/** Sort order of variants, best quality first: lower measured KL first; ties by tier. */
export function byQuality(a: Manifest, b: Manifest): number {
  return a.quality.klMean - b.quality.klMean || TIER_RANK[a.tier] - TIER_RANK[b.tier];
}

export const LivePointer = z
  .object({
    format: z.literal("shardlm-live"),
    /** Monotonic deployment version. */
    version: z.number().int().positive(),
    /** variant name -> manifest sha256 */
    variants: z.record(z.string(), Sha256),
    updatedAt: z.string(),
  })
  .strict();
export type LivePointer = z.infer<typeof LivePointer>;

export const R2Keys = {
  shard: (sha256: string) => `shards/${sha256}`,
  blob: (sha256: string) => `blobs/${sha256}`,
  manifest: (sha256: string) => `manifests/${sha256}.json`,
  live: "live.json",
} as const;
