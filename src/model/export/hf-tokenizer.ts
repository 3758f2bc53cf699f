/**
 * tokenizer.json + tokenizer_config.json for a Hugging Face folder. The vocabulary conversions
 * belong to the tokenizer module; this only picks one per TokenizerSpec kind and adds what the
 * model knows (chat template, context length).
 */
import type { ModelDescription } from "../../format/model.ts";
import { ggufBpeToTokenizerJson } from "../../runtime/tokenizer/gguf-bpe.ts";
import { spmToTokenizerJson } from "../../runtime/tokenizer/index.ts";
import { ModelExportError } from "./errors.ts";

export function hfTokenizerFiles(
  model: ModelDescription,
  dir: string,
): { tokenizerJson: unknown; tokenizerConfig: Record<string, unknown> } {
  const tok = model.tokenizer;
  const extra: Record<string, unknown> = { model_max_length: model.config.maxContext };
  if (model.chatTemplate !== null) extra.chat_template = model.chatTemplate;
  try {
    switch (tok.kind) {
      case "hf":
        // Written as found; only the chat template follows the model (it may have been replaced).
        return {
          tokenizerJson: tok.tokenizerJson,
          tokenizerConfig: {
            ...(tok.tokenizerConfig ?? {}),
            ...(model.chatTemplate !== null ? { chat_template: model.chatTemplate } : {}),
          },
        };
      case "llama-spm": {
        const { tokenizerJson, tokenizerConfig } = spmToTokenizerJson(tok, {
          chatTemplate: model.chatTemplate,
          modelMaxLength: model.config.maxContext,
        });
        return { tokenizerJson, tokenizerConfig: { ...tokenizerConfig } };
      }
      case "gguf-bpe": {
        const { tokenizerJson, tokenizerConfig } = ggufBpeToTokenizerJson(tok);
        return { tokenizerJson, tokenizerConfig: { ...tokenizerConfig, ...extra } };
      }
    }
  } catch (e) {
    throw new ModelExportError(
      dir,
      `cannot write the ${tok.kind} vocabulary as tokenizer.json (${(e as Error).message})`,
    );
  }
}
