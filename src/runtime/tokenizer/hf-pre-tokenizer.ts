/**
 * tokenizer.json "pre_tokenizer": splits a normalized fragment into words for the BPE model.
 * The ByteLevel step also re-spells each word in GPT-2's byte-level alphabet.
 */
import { z } from "zod";
import { bytesToByteLevel } from "./byte-level.ts";
import { compilePattern, nodeType, PatternJson, parsePart, unsupported } from "./hf-json.ts";
import { compileOniguruma, escapeRegExp } from "./hf-regex.ts";
import { utf8Bytes } from "./utf8.ts";

/** `atStart`: the first piece begins the whole input (Metaspace's prepend_scheme "first"). */
export type PreTokenizer = (pieces: string[], atStart: boolean) => string[];

const SUPPORTED = ["Sequence", "ByteLevel", "Split", "Metaspace", "Digits"] as const;

/** The pattern ByteLevel uses when use_regex is true (tokenizers' pre_tokenizers/byte_level.rs). */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const SplitBehavior = z.enum(["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]);
type SplitBehavior = z.infer<typeof SplitBehavior>;

const SequenceJson = z.object({ pretokenizers: z.array(z.unknown()) });
const ByteLevelJson = z.object({
  add_prefix_space: z.boolean().default(true),
  use_regex: z.boolean().default(true),
});
const SplitJson = z.object({
  pattern: PatternJson,
  behavior: SplitBehavior,
  invert: z.boolean().default(false),
});
const PrependScheme = z.enum(["always", "first", "never"]);
const MetaspaceJson = z.object({
  replacement: z.string().default("▁"),
  prepend_scheme: PrependScheme.optional(),
  /** Older files: true means prepend_scheme "always". */
  add_prefix_space: z.boolean().optional(),
  split: z.boolean().default(true),
});
const DigitsJson = z.object({ individual_digits: z.boolean().default(false) });

interface Segment {
  text: string;
  isMatch: boolean;
}

/** HF's NormalizedString::split: cut `text` at the pattern's matches and combine per `behavior`. */
export function splitByPattern(
  text: string,
  pattern: RegExp,
  behavior: SplitBehavior,
  invert = false,
): string[] {
  const segments: Segment[] = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m[0].length === 0) continue;
    if (m.index > last) segments.push({ text: text.slice(last, m.index), isMatch: invert });
    segments.push({ text: m[0], isMatch: !invert });
    last = m.index + m[0].length;
  }
  if (last < text.length) segments.push({ text: text.slice(last), isMatch: invert });

  const pieces: string[] = [];
  switch (behavior) {
    case "Isolated":
      for (const s of segments) pieces.push(s.text);
      break;
    case "Removed":
      for (const s of segments) if (!s.isMatch) pieces.push(s.text);
      break;
    case "MergedWithPrevious": {
      let previousMatch = false;
      for (const s of segments) {
        if (s.isMatch && !previousMatch && pieces.length > 0) pieces[pieces.length - 1] += s.text;
        else pieces.push(s.text);
        previousMatch = s.isMatch;
      }
      break;
    }
    case "MergedWithNext": {
      let nextMatch = false;
      for (let i = segments.length - 1; i >= 0; i--) {
        const s = segments[i]!;
        if (s.isMatch && !nextMatch && pieces.length > 0)
          pieces[pieces.length - 1] = s.text + pieces[pieces.length - 1];
        else pieces.push(s.text);
        nextMatch = s.isMatch;
      }
      pieces.reverse();
      break;
    }
    case "Contiguous": {
      let previousMatch: boolean | null = null;
      for (const s of segments) {
        if (s.isMatch === previousMatch && pieces.length > 0) pieces[pieces.length - 1] += s.text;
        else pieces.push(s.text);
        previousMatch = s.isMatch;
      }
      break;
    }
  }
  return pieces.filter((p) => p.length > 0);
}

const eachPiece =
  (f: (piece: string, index: number, atStart: boolean) => string[]): PreTokenizer =>
  (pieces, atStart) =>
    pieces.flatMap((piece, index) => f(piece, index, atStart));

export function buildPreTokenizer(json: unknown, where = "pre_tokenizer"): PreTokenizer | null {
  if (json === null || json === undefined) return null;
  const type = nodeType(json, where);
  switch (type) {
    case "Sequence": {
      const steps = parsePart(SequenceJson, json, where)
        .pretokenizers.map((p, i) => buildPreTokenizer(p, `${where}.pretokenizers[${i}]`))
        .filter((p): p is PreTokenizer => p !== null);
      return (pieces, atStart) => steps.reduce((acc, step) => step(acc, atStart), pieces);
    }
    case "ByteLevel": {
      const { add_prefix_space, use_regex } = parsePart(ByteLevelJson, json, where);
      const regex = use_regex ? compileOniguruma(GPT2_PATTERN) : null;
      return eachPiece((piece) => {
        const prefixed = add_prefix_space && !piece.startsWith(" ") ? ` ${piece}` : piece;
        const words = regex ? splitByPattern(prefixed, regex, "Isolated") : [prefixed];
        return words.map((w) => bytesToByteLevel(utf8Bytes(w)));
      });
    }
    case "Split": {
      const { pattern, behavior, invert } = parsePart(SplitJson, json, where);
      const regex = compilePattern(pattern);
      return eachPiece((piece) => splitByPattern(piece, regex, behavior, invert));
    }
    case "Metaspace": {
      const m = parsePart(MetaspaceJson, json, where);
      const scheme = m.prepend_scheme ?? (m.add_prefix_space === false ? "never" : "always");
      const separator = new RegExp(escapeRegExp(m.replacement), "gu");
      return eachPiece((piece, index, atStart) => {
        let text = piece.replaceAll(" ", m.replacement);
        const prepend = scheme === "always" || (scheme === "first" && atStart && index === 0);
        if (prepend && text.length > 0 && !text.startsWith(m.replacement)) text = m.replacement + text;
        return m.split ? splitByPattern(text, separator, "MergedWithNext") : [text];
      });
    }
    case "Digits": {
      const { individual_digits } = parsePart(DigitsJson, json, where);
      // Rust's char::is_numeric is Unicode N (Nd, Nl, No).
      const regex = individual_digits ? /\p{N}/gu : /\p{N}+/gu;
      return eachPiece((piece) => splitByPattern(piece, regex, "Isolated"));
    }
    default:
      throw unsupported(where, type, SUPPORTED);
  }
}
