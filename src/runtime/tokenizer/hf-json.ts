/** Validation helpers for tokenizer.json: every failure names the part of the file and the problem. */
import { z } from "zod";
import { compileOniguruma, escapeRegExp } from "./hf-regex.ts";
import { TokenizerError } from "./types.ts";

export function parsePart<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new TokenizerError(`tokenizer.json ${where}: ${z.prettifyError(result.error)}`);
  return result.data;
}

const TypedNode = z.looseObject({ type: z.string() });

/** The "type" of a component node such as {"type": "ByteLevel", ...}. */
export function nodeType(value: unknown, where: string): string {
  return parsePart(TypedNode, value, where).type;
}

export function unsupported(where: string, type: string, supported: readonly string[]): TokenizerError {
  return new TokenizerError(
    `tokenizer.json ${where}: unsupported type "${type}" (supported: ${supported.join(", ")})`,
  );
}

/** {"String": " "} or {"Regex": "\\s+"} as used by Replace and Split. */
export const PatternJson = z.union([z.object({ String: z.string() }), z.object({ Regex: z.string() })]);
export type PatternJson = z.infer<typeof PatternJson>;

export function compilePattern(pattern: PatternJson): RegExp {
  return "String" in pattern
    ? new RegExp(escapeRegExp(pattern.String), "gu")
    : compileOniguruma(pattern.Regex);
}

/** Replace every match of a compiled global pattern (literal replacement, no $-substitutions). */
export function replaceAllLiteral(text: string, pattern: RegExp, content: string): string {
  return text.replace(pattern, () => content);
}
