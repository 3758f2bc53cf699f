/**
 * tokenizer.json "decoder", reduced to what streaming needs: a per-token function from the vocabulary
 * string to output bytes, plus the characters stripped once from the start of the whole text.
 * HF's decoders work on the list of token strings; every supported one is per-token except
 * Strip-after-Fuse and Metaspace's first-token rule, which only touch the start of the text.
 */
import { z } from "zod";
import { byteLevelToBytes } from "./byte-level.ts";
import {
  compilePattern,
  nodeType,
  PatternJson,
  parsePart,
  replaceAllLiteral,
  unsupported,
} from "./hf-json.ts";
import { TokenizerError } from "./types.ts";
import { parseBytePiece, utf8Bytes } from "./utf8.ts";

/** A token on its way through the decoder chain: still text, or already bytes. */
type Decoding = string | Uint8Array;

export interface DecoderPlan {
  /** Vocabulary string -> bytes. */
  render(token: string): Uint8Array;
  leadingStrip: { bytes: Uint8Array; count: number } | null;
}

const SUPPORTED = ["Sequence", "ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"] as const;

const SequenceJson = z.object({ decoders: z.array(z.unknown()) });
const ReplaceJson = z.object({ pattern: PatternJson, content: z.string() });
const StripJson = z.object({
  content: z.string(),
  start: z.number().int().nonnegative(),
  stop: z.number().int().nonnegative(),
});
const MetaspaceJson = z.object({
  replacement: z.string().default("▁"),
  prepend_scheme: z.enum(["always", "first", "never"]).optional(),
  add_prefix_space: z.boolean().optional(),
});

type Step = (token: Decoding) => Decoding;

function flatten(json: unknown, where: string, out: { json: unknown; where: string }[]): void {
  if (nodeType(json, where) === "Sequence") {
    for (const [i, d] of parsePart(SequenceJson, json, where).decoders.entries()) {
      flatten(d, `${where}.decoders[${i}]`, out);
    }
  } else {
    out.push({ json, where });
  }
}

/** No decoder: tokens are their own text. */
export const PLAIN_DECODER: DecoderPlan = { render: (token) => utf8Bytes(token), leadingStrip: null };

export function buildDecoder(json: unknown, where = "decoder"): DecoderPlan {
  if (json === null || json === undefined) return PLAIN_DECODER;
  const parts: { json: unknown; where: string }[] = [];
  flatten(json, where, parts);

  const steps: Step[] = [];
  let fused = false;
  let leadingStrip: DecoderPlan["leadingStrip"] = null;
  for (const part of parts) {
    const type = nodeType(part.json, part.where);
    switch (type) {
      case "ByteLevel":
        // Characters outside the byte alphabet mean the token was not byte-level: keep its UTF-8 (as HF does).
        steps.push((t) => (typeof t === "string" ? (byteLevelToBytes(t) ?? utf8Bytes(t)) : t));
        break;
      case "Replace": {
        const { pattern, content } = parsePart(ReplaceJson, part.json, part.where);
        const regex = compilePattern(pattern);
        steps.push((t) => (typeof t === "string" ? replaceAllLiteral(t, regex, content) : t));
        break;
      }
      case "ByteFallback":
        steps.push((t) => {
          const byte = typeof t === "string" ? parseBytePiece(t) : null;
          return byte === null ? t : Uint8Array.of(byte);
        });
        break;
      case "Fuse":
        // Joining tokens changes nothing for a byte stream; it only makes a later Strip act on the whole text.
        fused = true;
        break;
      case "Strip": {
        const { content, start, stop } = parsePart(StripJson, part.json, part.where);
        if (fused) {
          if (stop > 0) {
            throw new TokenizerError(
              `tokenizer.json ${part.where}: Strip with stop > 0 after Fuse (stripping the end of the whole text) is not supported`,
            );
          }
          if (start > 0) leadingStrip = { bytes: utf8Bytes(content), count: start };
        } else {
          steps.push((t) => (typeof t === "string" ? stripChars(t, content, start, stop) : t));
        }
        break;
      }
      case "Metaspace": {
        const m = parsePart(MetaspaceJson, part.json, part.where);
        const scheme = m.prepend_scheme ?? (m.add_prefix_space === false ? "never" : "always");
        steps.push((t) => (typeof t === "string" ? t.replaceAll(m.replacement, " ") : t));
        // HF strips the space from the first token only; for a byte stream that is the start of the text.
        if (scheme !== "never") leadingStrip = { bytes: utf8Bytes(" "), count: 1 };
        break;
      }
      default:
        throw unsupported(part.where, type, SUPPORTED);
    }
  }
  return {
    render(token) {
      const out = steps.reduce<Decoding>((t, step) => step(t), token);
      return typeof out === "string" ? utf8Bytes(out) : out;
    },
    leadingStrip,
  };
}

/** Strip up to `start` leading and `stop` trailing occurrences of `content` (HF's Strip on one token). */
function stripChars(token: string, content: string, start: number, stop: number): string {
  let from = 0;
  let to = token.length;
  for (let i = 0; i < start && token.startsWith(content, from); i++) from += content.length;
  for (let i = 0; i < stop && to - content.length >= from && token.endsWith(content, to); i++)
    to -= content.length;
  return token.slice(from, to);
}
