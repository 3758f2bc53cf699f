/**
 * Hugging Face folder import: config.json, model.safetensors (or shards + model.safetensors.index.json),
 * tokenizer.json (+ tokenizer_config.json, generation_config.json, chat_template.jinja).
 * HF checkpoints keep q/k rows unpermuted, so the description says ropeStyle "neox".
 * Every file is checked before the description is returned; tensors are read lazily afterwards.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import {
  type ModelDescription,
  ModelImportError,
  type TensorEntry,
  TensorNames,
  type TokenizerSpec,
} from "../../format/model.ts";
import { canonicalName, GenerationConfig, hfName, parseHfConfig, tokenIdList } from "./hf-config.ts";
import { readSafetensorsHeader, type SafetensorsTensor, safetensorsEntry } from "./safetensors.ts";
import { expectedShapes } from "./validate.ts";

const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ModelImportError(path, `cannot read file (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelImportError(path, `not valid JSON (${(e as Error).message})`);
  }
}

function parseFile<T>(path: string, schema: z.ZodType<T>, what: string): T {
  const r = schema.safeParse(readJson(path));
  if (!r.success) throw new ModelImportError(path, `bad ${what}: ${z.prettifyError(r.error)}`);
  return r.data;
}

interface Located {
  hfName: string;
  file: string;
  tensor: SafetensorsTensor;
}

const Index = z.object({
  metadata: z.record(z.string(), z.unknown()).nullish(),
  // Shard names are plain file names next to the index: no paths, no hidden files.
  weight_map: z.record(z.string(), z.string().regex(/^[^/\\.][^/\\]*\.safetensors$/, "a shard file name")),
});

/** Every tensor of the checkpoint with the file it lives in; `files` lists the weight files read. */
function locateWeights(dir: string): { tensors: Located[]; files: string[]; weightsFile: string } {
  const single = join(dir, SINGLE);
  if (existsSync(single)) {
    const header = readSafetensorsHeader(single);
    const tensors = [...header.tensors.values()].map((tensor) => ({
      hfName: tensor.name,
      file: single,
      tensor,
    }));
    return { tensors, files: [single], weightsFile: single };
  }
  const indexPath = join(dir, INDEX);
  if (!existsSync(indexPath)) {
    const bin = existsSync(join(dir, "pytorch_model.bin"))
      ? " (pytorch_model.bin is not supported: convert it)"
      : "";
    throw new ModelImportError(dir, `no ${SINGLE} or ${INDEX} in the folder${bin}`);
  }
  const index = parseFile(indexPath, Index, "safetensors index");
  const shards = new Map<string, ReturnType<typeof readSafetensorsHeader>>();
  for (const shard of new Set(Object.values(index.weight_map))) {
    const path = join(dir, shard);
    if (!existsSync(path)) throw new ModelImportError(indexPath, `shard ${shard} is listed but missing`);
    shards.set(shard, readSafetensorsHeader(path));
  }
  const tensors: Located[] = [];
  for (const [hfName, shard] of Object.entries(index.weight_map)) {
    const header = shards.get(shard)!;
    const tensor = header.tensors.get(hfName);
    if (!tensor) {
      throw new ModelImportError(header.path, `tensor ${hfName} is listed in ${INDEX} but not in this shard`);
    }
    tensors.push({ hfName, file: header.path, tensor });
  }
  for (const [shard, header] of shards) {
    for (const name of header.tensors.keys()) {
      if (index.weight_map[name] !== shard) {
        throw new ModelImportError(
          header.path,
          `tensor ${name} is in this shard but ${INDEX} does not map it here`,
        );
      }
    }
  }
  return { tensors, files: [indexPath, ...[...shards.values()].map((h) => h.path)], weightsFile: indexPath };
}

const TokenizerJson = z.looseObject({ model: z.looseObject({}) });
const TokenizerConfig = z.record(z.string(), z.unknown());
const NamedTemplates = z.array(z.object({ name: z.string(), template: z.string() }));
const AddedTokens = z.looseObject({
  added_tokens: z.array(z.looseObject({ id: z.number().int(), content: z.string() })).optional(),
});

function chatTemplate(dir: string, config: Record<string, unknown> | null, files: string[]): string | null {
  const t = config?.chat_template;
  if (typeof t === "string") return t;
  const named = NamedTemplates.safeParse(t);
  if (named.success) return named.data.find((x) => x.name === "default")?.template ?? null;
  // Newer transformers save the template as its own file.
  const jinja = join(dir, "chat_template.jinja");
  if (!existsSync(jinja)) return null;
  files.push(jinja);
  return readFileSync(jinja, "utf8");
}

/** A tokenizer_config special token ("</s>" or {content: "</s>"}) resolved through tokenizer.json's added_tokens. */
function specialTokenId(
  tokenizerJson: unknown,
  config: Record<string, unknown> | null,
  key: string,
): number | null {
  const v = config?.[key];
  const content = typeof v === "string" ? v : z.object({ content: z.string() }).safeParse(v).data?.content;
  if (content === undefined) return null;
  const added = AddedTokens.safeParse(tokenizerJson).data?.added_tokens ?? [];
  return added.find((t) => t.content === content)?.id ?? null;
}

export async function importHfFolder(dir: string): Promise<ModelDescription> {
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw new ModelImportError(configPath, "missing config.json");
  const { hf, toConfig } = parseHfConfig(configPath, readJson(configPath));
  const files = [configPath];

  const weights = locateWeights(dir);
  files.push(...weights.files);
  const found = new Map<string, Located>();
  for (const loc of weights.tensors) {
    const name = canonicalName(loc.hfName, hf.num_hidden_layers);
    if (name === "ignore") continue;
    if (name === null) {
      throw new ModelImportError(
        loc.file,
        `unknown tensor ${loc.hfName} (not part of a ${hf.model_type} checkpoint)`,
      );
    }
    found.set(name, loc);
  }
  const embd = found.get(TensorNames.tokenEmbedding);
  if (!embd) throw new ModelImportError(weights.weightsFile, "missing tensor model.embed_tokens.weight");
  const config = toConfig(embd.tensor.shape[0] ?? 0);
  // No lm_head means tied; a tied checkpoint that still stores lm_head is read through the embeddings.
  config.tiedEmbeddings ||= !found.has(TensorNames.output);
  if (config.tiedEmbeddings) found.delete(TensorNames.output);

  const tokenizerPath = join(dir, "tokenizer.json");
  if (!existsSync(tokenizerPath)) throw new ModelImportError(tokenizerPath, "missing tokenizer.json");
  const tokenizerJson = parseFile(tokenizerPath, TokenizerJson, "tokenizer.json");
  files.push(tokenizerPath);
  const tokConfigPath = join(dir, "tokenizer_config.json");
  let tokenizerConfig: Record<string, unknown> | null = null;
  if (existsSync(tokConfigPath)) {
    tokenizerConfig = parseFile(tokConfigPath, TokenizerConfig, "tokenizer_config.json");
    files.push(tokConfigPath);
  }
  const genPath = join(dir, "generation_config.json");
  let gen: z.infer<typeof GenerationConfig> = {};
  if (existsSync(genPath)) {
    gen = parseFile(genPath, GenerationConfig, "generation_config.json");
    files.push(genPath);
  }
  const tokenizer: TokenizerSpec = { kind: "hf", tokenizerJson, tokenizerConfig };
  let eos = [...new Set([...tokenIdList(hf.eos_token_id), ...tokenIdList(gen.eos_token_id)])];
  if (eos.length === 0) eos = tokenIdList(specialTokenId(tokenizerJson, tokenizerConfig, "eos_token"));
  const bos =
    hf.bos_token_id ?? gen.bos_token_id ?? specialTokenId(tokenizerJson, tokenizerConfig, "bos_token");

  const model: ModelDescription = {
    config,
    tensors: new Map<string, TensorEntry>(),
    tokenizer,
    chatTemplate: chatTemplate(dir, tokenizerConfig, files),
    eosTokenIds: eos,
    bosTokenId: bos,
    source: { format: "hf", path: dir, files },
  };
  // Check names and shapes here, where we can still name the HF tensor and its file.
  const shapes = expectedShapes(model);
  for (const [name, loc] of found) {
    const want = shapes.get(name);
    if (!want) {
      const why = /\.bias$/.test(name) ? " (config.json says the attention has no bias)" : "";
      throw new ModelImportError(loc.file, `unexpected tensor ${loc.hfName}${why}`);
    }
    const shape = loc.tensor.shape;
    if (shape.length !== want.length || shape.some((d, i) => d !== want[i])) {
      throw new ModelImportError(loc.file, `tensor ${loc.hfName} has shape [${shape}], expected [${want}]`);
    }
  }
  for (const name of shapes.keys()) {
    const loc = found.get(name);
    if (!loc) throw new ModelImportError(weights.weightsFile, `missing tensor ${hfName(name)}`);
    model.tensors.set(name, safetensorsEntry(loc.file, loc.tensor, name));
  }
  return model;
}
