/**
 * The variants file: which compressed variants to build, validated with zod (unknown fields,
 * out-of-range ratios and impossible shapes are errors that name the field).
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

const Ratio = z.number().min(0, "a pruning ratio is at least 0").max(0.9, "a pruning ratio is at most 0.9");

export const QuantConfig = z.strictObject({
  /**
   * gptq: error compensation (best, O(N·K²) per matrix); awq: activation-aware scales + clip search;
   * search: per-group clip search weighted by E[x²] (cheap); rtn: plain rounding (the baseline);
   * source: a GGUF source's own Q4_1 / Q4_0 / Q8_0 blocks, repacked losslessly (Q4_1 -> int4 with fp16
   * mins), where a tensor is unchanged from the source; other tensors by search.
   */
  method: z.enum(["gptq", "awq", "search", "rtn", "source"]).default("gptq"),
  groupSize: z.union([z.literal(32), z.literal(64), z.literal(128)]).default(32),
  zeroPoint: z.boolean().default(false),
  embeddings: z.enum(["int8", "int4"]).default("int8"),
  head: z.enum(["int8", "int4"]).default("int8"),
  /** Rows per weight whose output error is reported (K² work each: lower it for large models). */
  errorRows: z.number().int().min(1).default(64),
  /** int4 embeddings by clip search instead of RTN (src/compress/quantize.ts embeddingSearch). */
  embeddingSearch: z.boolean().default(false),
  /** Tensors (canonical names or suffixes like "ffn_down.weight") kept int8. */
  int8Tensors: z.array(z.string()).default([]),
});

export const PruneConfig = z.strictObject({
  /** Fraction of FFN intermediate channels removed. */
  ffn: Ratio.default(0),
  /** Fraction of KV-head groups (with their query heads) removed. */
  kvHeads: Ratio.default(0),
  /** Fraction of whole layers removed (lowest block influence first). */
  layers: Ratio.default(0),
  /** Re-fit the projection after each pruned block by least squares (closed-form distillation). */
  heal: z.boolean().default(true),
  /**
   * How channels and heads are ranked: "obs" (structured optimal brain surgeon: least error after
   * healing; O(K^2) per removed channel), "wanda" (|W|·‖x‖, cheap), "energy" (output energy).
   */
  importance: z.enum(["obs", "wanda", "energy"]).default("obs"),
});

export const VariantConfig = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "lowercase letters, digits, . _ -"),
  tier: z.enum(["quality", "balanced", "speed"]),
  quant: QuantConfig.default(QuantConfig.parse({})),
  prune: PruneConfig.nullable().default(null),
});
export type VariantConfig = z.infer<typeof VariantConfig>;

export const VariantsFile = z
  .strictObject({
    seed: z.number().int().min(0).default(1234),
    calibration: z
      .strictObject({
        source: z.enum(["text", "sample"]).default("text"),
        maxTokens: z.number().int().min(16).default(4096),
      })
      .default({ source: "text", maxTokens: 4096 }),
    /**
     * Held-out tokens scored for each variant's quality metrics, from `text`: "stories"
     * (data/calibration/heldout.txt, TinyStories-style, for toy models) or "prose" (data/heldout:
     * real public-domain / PSF-licensed English prose, for real models).
     */
    evaluation: z
      .strictObject({
        maxTokens: z.number().int().min(8).default(2048),
        text: z.enum(["stories", "prose"]).default("stories"),
      })
      .default({ maxTokens: 2048, text: "stories" }),
    /**
     * Speculative decoding search (src/compress/speculative-search.ts) on data/chat/calibration.json:
     * `prompts` of them, `answerTokens` greedy tokens each; null = none (manifests get no
     * `speculative` field and the API never speculates).
     */
    speculative: z
      .strictObject({
        prompts: z.number().int().min(1).default(8),
        answerTokens: z.number().int().min(4).default(32),
      })
      .nullable()
      .default({ prompts: 8, answerTokens: 32 }),
    /** Largest shard in bytes (default 16 MiB). */
    shardBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(16 * 1024 * 1024),
    variants: z.array(VariantConfig).min(1),
  })
  .superRefine((f, ctx) => {
    const names = new Set<string>();
    for (const [i, v] of f.variants.entries()) {
      if (names.has(v.name))
        ctx.addIssue({
          code: "custom",
          path: ["variants", i, "name"],
          message: `duplicate variant ${v.name}`,
        });
      names.add(v.name);
    }
  });
export type VariantsFile = z.infer<typeof VariantsFile>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function parseVariantsFile(json: unknown, file = "variants file"): VariantsFile {
  const r = VariantsFile.safeParse(json);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new ConfigError(`${file}: ${msgs.join("; ")}`);
  }
  return r.data;
}

export function readVariantsFile(path: string): VariantsFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path}: cannot read JSON (${(e as Error).message})`);
  }
  return parseVariantsFile(json, path);
}
