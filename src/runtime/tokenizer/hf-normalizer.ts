/** tokenizer.json "normalizer": text -> text, applied to each fragment between added tokens. */
import { z } from "zod";
import {
  compilePattern,
  nodeType,
  PatternJson,
  parsePart,
  replaceAllLiteral,
  unsupported,
} from "./hf-json.ts";

export type Normalizer = (text: string) => string;

const SUPPORTED = [
  "Sequence",
  "Prepend",
  "Replace",
  "NFC",
  "NFD",
  "NFKC",
  "NFKD",
  "Lowercase",
  "Strip",
] as const;

const SequenceJson = z.object({ normalizers: z.array(z.unknown()) });
const PrependJson = z.object({ prepend: z.string() });
const ReplaceJson = z.object({ pattern: PatternJson, content: z.string() });
const StripJson = z.object({
  strip_left: z.boolean().default(false),
  strip_right: z.boolean().default(false),
});

export function buildNormalizer(json: unknown, where = "normalizer"): Normalizer | null {
  if (json === null || json === undefined) return null;
  const type = nodeType(json, where);
  switch (type) {
    case "Sequence": {
      const parts = parsePart(SequenceJson, json, where).normalizers.map((n, i) =>
        buildNormalizer(n, `${where}.normalizers[${i}]`),
      );
      const steps = parts.filter((p): p is Normalizer => p !== null);
      return (text) => steps.reduce((t, step) => step(t), text);
    }
    case "Prepend": {
      const { prepend } = parsePart(PrependJson, json, where);
      // HF leaves empty fragments empty.
      return (text) => (text.length > 0 ? prepend + text : text);
    }
    case "Replace": {
      const { pattern, content } = parsePart(ReplaceJson, json, where);
      const regex = compilePattern(pattern);
      return (text) => replaceAllLiteral(text, regex, content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD":
      return (text) => text.normalize(type);
    case "Lowercase":
      return (text) => text.toLowerCase();
    case "Strip": {
      const { strip_left, strip_right } = parsePart(StripJson, json, where);
      return (text) => {
        const left = strip_left ? text.trimStart() : text;
        return strip_right ? left.trimEnd() : left;
      };
    }
    default:
      throw unsupported(where, type, SUPPORTED);
  }
}
