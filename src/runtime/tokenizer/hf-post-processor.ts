/**
 * tokenizer.json "post_processor": only the special tokens it wraps a single sequence with matter here
 * (BOS before, EOS after). Pair templates are irrelevant for generation.
 */
import { z } from "zod";
import { nodeType, parsePart, unsupported } from "./hf-json.ts";
import { TokenizerError } from "./types.ts";

export interface SequenceWrapping {
  prefix: number[];
  suffix: number[];
}

const SUPPORTED = ["TemplateProcessing", "ByteLevel", "Sequence"] as const;

const TemplatePiece = z.union([
  z.object({ SpecialToken: z.object({ id: z.string() }) }),
  z.object({ Sequence: z.object({ id: z.string() }) }),
]);
const TemplateJson = z.object({
  single: z.array(TemplatePiece),
  special_tokens: z.record(z.string(), z.object({ ids: z.array(z.number().int().nonnegative()) })),
});
const SequenceJson = z.object({ processors: z.array(z.unknown()) });

export function buildPostProcessor(json: unknown, where = "post_processor"): SequenceWrapping {
  const none: SequenceWrapping = { prefix: [], suffix: [] };
  if (json === null || json === undefined) return none;
  const type = nodeType(json, where);
  switch (type) {
    case "ByteLevel":
      return none; // only adjusts offsets
    case "Sequence": {
      const parts = parsePart(SequenceJson, json, where).processors.map((p, i) =>
        buildPostProcessor(p, `${where}.processors[${i}]`),
      );
      return { prefix: parts.flatMap((p) => p.prefix), suffix: parts.flatMap((p) => p.suffix) };
    }
    case "TemplateProcessing": {
      const template = parsePart(TemplateJson, json, where);
      const wrapping: SequenceWrapping = { prefix: [], suffix: [] };
      let seenSequence = false;
      for (const piece of template.single) {
        if ("Sequence" in piece) {
          seenSequence = true;
          continue;
        }
        const special = template.special_tokens[piece.SpecialToken.id];
        if (!special) {
          throw new TokenizerError(
            `tokenizer.json ${where}: special token "${piece.SpecialToken.id}" is not in special_tokens`,
          );
        }
        (seenSequence ? wrapping.suffix : wrapping.prefix).push(...special.ids);
      }
      return wrapping;
    }
    default:
      throw unsupported(where, type, SUPPORTED);
  }
}
