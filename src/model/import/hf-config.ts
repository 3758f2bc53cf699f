/**
 * Hugging Face conventions in one place: config.json <-> ModelConfig, and HF tensor names <->
 * canonical names. Used by the folder importer (hf.ts) and the folder writer (export/hf.ts).
 */
import { z } from "zod";
import {
  ARCHITECTURES,
  type Architecture,
  ModelConfig,
  ModelImportError,
  TensorNames,
} from "../../format/model.ts";

const posInt = z.number().int().positive();
const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]);

/** Rope parameters that mean "plain rope": absent, null, or an explicit default type. */
const RopeParams = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
});

export const HfConfig = z.looseObject({
  model_type: z.string(),
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  rope_theta: z.number().positive().nullish(),
  rope_scaling: z.unknown().optional(),
  /** transformers v5 moved rope_theta/rope_scaling here. */
  rope_parameters: z.unknown().optional(),
  partial_rotary_factor: z.number().nullish(),
  rms_norm_eps: z.number().positive(),
  max_position_embeddings: posInt,
  tie_word_embeddings: z.boolean().nullish(),
  sliding_window: posInt.nullish(),
  use_sliding_window: z.boolean().nullish(),
  max_window_layers: z.number().int().nonnegative().nullish(),
  attention_bias: z.boolean().nullish(),
  mlp_bias: z.boolean().nullish(),
  hidden_act: z.string().nullish(),
  vocab_size: posInt.nullish(),
  bos_token_id: z.number().int().nonnegative().nullish(),
  eos_token_id: tokenIds.nullish(),
});
export type HfConfig = z.infer<typeof HfConfig>;

export const GenerationConfig = z.looseObject({
  bos_token_id: z.number().int().nonnegative().nullish(),
  eos_token_id: tokenIds.nullish(),
});

export function tokenIdList(v: number | number[] | null | undefined): number[] {
  if (v === null || v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function ropeTheta(file: string, cfg: HfConfig): number {
  const scaling = cfg.rope_scaling;
  const params = cfg.rope_parameters;
  for (const [key, value] of [
    ["rope_scaling", scaling],
    ["rope_parameters", params],
  ] as const) {
    if (value === undefined || value === null) continue;
    const p = RopeParams.safeParse(value);
    const kind = p.success ? (p.data.rope_type ?? p.data.type) : undefined;
    if (kind !== "default") {
      throw new ModelImportError(
        file,
        `unsupported ${key} ${JSON.stringify(value)} (only plain rope is supported)`,
      );
    }
  }
  const fromParams = RopeParams.safeParse(params);
  return cfg.rope_theta ?? (fromParams.success ? fromParams.data.rope_theta : undefined) ?? 10000;
}

/** Qwen2 slides the window only on layers >= max_window_layers; we support all-or-none. */
function slidingWindow(file: string, arch: Architecture, cfg: HfConfig): number | null {
  const w = cfg.sliding_window ?? null;
  if (arch === "llama" || w === null) return null;
  if (arch === "mistral") return w;
  if (!cfg.use_sliding_window) return null;
  const from = cfg.max_window_layers ?? 0;
  if (from >= cfg.num_hidden_layers) return null;
  if (from > 0) {
    throw new ModelImportError(
      file,
      `sliding window on layers ${from}.. only (max_window_layers ${from} of ${cfg.num_hidden_layers}) is unsupported`,
    );
  }
  return w;
}

/** Validates config.json and turns it into a ModelConfig; `vocabSize` comes from the embedding matrix. */
export function parseHfConfig(
  file: string,
  json: unknown,
): { hf: HfConfig; toConfig(vocabSize: number): ModelConfig } {
  const type = z.looseObject({ model_type: z.string() }).safeParse(json);
  if (!type.success) throw new ModelImportError(file, "config.json has no model_type string");
  const arch = ARCHITECTURES.find((a) => a === type.data.model_type);
  if (!arch) {
    throw new ModelImportError(
      file,
      `unsupported model_type "${type.data.model_type}" (supported: ${ARCHITECTURES.join(", ")})`,
    );
  }
  const parsed = HfConfig.safeParse(json);
  if (!parsed.success) throw new ModelImportError(file, `bad config.json: ${z.prettifyError(parsed.error)}`);
  const cfg = parsed.data;
  if (cfg.hidden_act && cfg.hidden_act !== "silu") {
    throw new ModelImportError(file, `unsupported hidden_act "${cfg.hidden_act}" (only silu)`);
  }
  if (
    cfg.partial_rotary_factor !== undefined &&
    cfg.partial_rotary_factor !== null &&
    cfg.partial_rotary_factor !== 1
  ) {
    throw new ModelImportError(
      file,
      `partial rotary (partial_rotary_factor ${cfg.partial_rotary_factor}) is unsupported`,
    );
  }
  if (cfg.mlp_bias) throw new ModelImportError(file, "mlp_bias is unsupported");
  const theta = ropeTheta(file, cfg);
  const window = slidingWindow(file, arch, cfg);
  const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  return {
    hf: cfg,
    toConfig(vocabSize) {
      if (cfg.vocab_size && cfg.vocab_size !== vocabSize) {
        throw new ModelImportError(
          file,
          `vocab_size ${cfg.vocab_size} disagrees with the ${vocabSize}-row embedding matrix`,
        );
      }
      const c = ModelConfig.safeParse({
        architecture: arch,
        vocabSize,
        hiddenSize: cfg.hidden_size,
        intermediateSize: cfg.intermediate_size,
        numLayers: cfg.num_hidden_layers,
        numHeads: cfg.num_attention_heads,
        numKvHeads: cfg.num_key_value_heads ?? cfg.num_attention_heads,
        headDim,
        ropeDim: headDim,
        ropeTheta: theta,
        // HF checkpoints are not permuted: rotate_half pairs (i, i + d/2).
        ropeStyle: "neox",
        rmsNormEps: cfg.rms_norm_eps,
        maxContext: cfg.max_position_embeddings,
        tiedEmbeddings: cfg.tie_word_embeddings ?? false,
        attentionBias: cfg.attention_bias ?? arch === "qwen2",
        slidingWindow: window,
      });
      if (!c.success) throw new ModelImportError(file, `bad config.json: ${z.prettifyError(c.error)}`);
      return c.data;
    },
  };
}

const HF_CLASS: Record<Architecture, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

/** config.json for a ModelConfig (the reverse of parseHfConfig). */
export function hfConfigJson(
  c: ModelConfig,
  ids: { bos: number | null; eos: number[] },
  torchDtype: string,
): Record<string, unknown> {
  // Mistral is llama with a sliding window (and llama.cpp writes it as "llama" GGUF).
  const arch = c.architecture === "llama" && c.slidingWindow !== null ? "mistral" : c.architecture;
  const out: Record<string, unknown> = {
    architectures: [HF_CLASS[arch]],
    model_type: arch,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: "silu",
    max_position_embeddings: c.maxContext,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tiedEmbeddings,
    attention_dropout: 0,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos,
    torch_dtype: torchDtype,
    use_cache: true,
  };
  if (arch === "llama") Object.assign(out, { attention_bias: false, mlp_bias: false });
  if (arch === "mistral") out.sliding_window = c.slidingWindow;
  if (arch === "qwen2") {
    Object.assign(out, {
      use_sliding_window: c.slidingWindow !== null,
      sliding_window: c.slidingWindow,
      max_window_layers: 0,
    });
  }
  return out;
}

/** HF tensor name -> canonical name; "ignore" for harmless buffers; null for anything unknown. */
export function canonicalName(hfName: string, numLayers: number): string | "ignore" | null {
  if (/^model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$/.test(hfName)) return "ignore";
  if (hfName === "model.embed_tokens.weight") return TensorNames.tokenEmbedding;
  if (hfName === "model.norm.weight") return TensorNames.outputNorm;
  if (hfName === "lm_head.weight") return TensorNames.output;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (!m) return null;
  const layer = Number(m[1]);
  if (layer >= numLayers || String(layer) !== m[1]) return null;
  const rest = m[2]!;
  const proj = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
  if (proj) return `blk.${layer}.attn_${proj[1]}.${proj[2]}`;
  const simple: Record<string, string> = {
    "self_attn.o_proj.weight": TensorNames.attnOutput(layer),
    "mlp.gate_proj.weight": TensorNames.ffnGate(layer),
    "mlp.up_proj.weight": TensorNames.ffnUp(layer),
    "mlp.down_proj.weight": TensorNames.ffnDown(layer),
    "input_layernorm.weight": TensorNames.attnNorm(layer),
    "post_attention_layernorm.weight": TensorNames.ffnNorm(layer),
  };
  return simple[rest] ?? null;
}

const HF_OF_CANONICAL: Record<string, string> = {
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
  attn_norm: "input_layernorm",
  ffn_norm: "post_attention_layernorm",
};

/** Canonical name -> HF name (the reverse of canonicalName). */
export function hfName(canonical: string): string {
  if (canonical === TensorNames.tokenEmbedding) return "model.embed_tokens.weight";
  if (canonical === TensorNames.outputNorm) return "model.norm.weight";
  if (canonical === TensorNames.output) return "lm_head.weight";
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(canonical);
  const base = m ? HF_OF_CANONICAL[m[2]!] : undefined;
  if (!m || !base) throw new Error(`no Hugging Face name for tensor ${canonical}`);
  return `model.layers.${m[1]}.${base}.${m[3]}`;
}
