/**
 * Hugging Face tokenizers compile their split patterns with Oniguruma; JavaScript's RegExp (with the
 * `u` flag) understands almost all of what tokenizer.json files use. The differences handled here:
 * - `(?i:...)` scoped case-insensitivity (GPT-2/Llama 3/Qwen2 contractions) has no JS equivalent in
 *   Node 20: letters inside are expanded to `[sS]`-style classes.
 * - `\s`, `\d`, `\w` are Unicode-aware in Oniguruma (`\s` includes U+0085, excludes U+FEFF), ASCII or
 *   ECMAScript-specific in JS: they are spelled out as Unicode classes.
 * - `\x{HHHH}` becomes `\u{HHHH}`.
 * Possessive quantifiers and atomic groups are rejected with a clear error.
 */
import { TokenizerError } from "./types.ts";

const CLASS_BODY: Record<string, string> = {
  s: "\\t-\\r\\x85\\p{Z}",
  d: "\\p{Nd}",
  w: "\\p{L}\\p{M}\\p{Nd}\\p{Pc}",
};

function otherCase(ch: string): string | null {
  const lower = ch.toLowerCase();
  const upper = ch.toUpperCase();
  const other = ch === lower ? upper : lower;
  return other !== ch && [...other].length === 1 ? other : null;
}

/** Converts an Oniguruma pattern from tokenizer.json to JS RegExp source (to be used with the `u` flag). */
export function onigurumaToJs(pattern: string): string {
  let out = "";
  let inClass = false;
  // One entry per open group: whether it is case-insensitive.
  const groups: boolean[] = [];
  const caseless = () => groups.length > 0 && groups[groups.length - 1] === true;

  for (let i = 0; i < pattern.length; ) {
    const ch = String.fromCodePoint(pattern.codePointAt(i)!);
    if (ch === "\\") {
      const esc = pattern[i + 1];
      if (esc === undefined)
        throw new TokenizerError(`regex ${JSON.stringify(pattern)} ends with a lone backslash`);
      const lowerEsc = esc.toLowerCase();
      if (lowerEsc in CLASS_BODY) {
        const body = CLASS_BODY[lowerEsc]!;
        const negated = esc !== lowerEsc;
        if (inClass) {
          if (negated)
            out += `\\${esc}`; // a negated class inside a class cannot be spelled out: keep JS's
          else out += body;
        } else {
          out += negated ? `[^${body}]` : `[${body}]`;
        }
        i += 2;
        continue;
      }
      if ((esc === "p" || esc === "P") && pattern[i + 2] === "{") {
        const end = pattern.indexOf("}", i);
        out += pattern.slice(i, end + 1);
        i = end + 1;
        continue;
      }
      if (esc === "x" && pattern[i + 2] === "{") {
        const end = pattern.indexOf("}", i);
        out += `\\u{${pattern.slice(i + 3, end)}}`;
        i = end + 1;
        continue;
      }
      out += `\\${esc}`;
      i += 2;
      continue;
    }
    if (inClass) {
      if (ch === "]") inClass = false;
      if (ch === "-" && caseless() && pattern[i + 1] !== "]") {
        throw new TokenizerError(
          `regex ${JSON.stringify(pattern)}: ranges inside (?i:...) are not supported`,
        );
      }
      const other = caseless() ? otherCase(ch) : null;
      out += other ? ch + other : ch;
      i += ch.length;
      continue;
    }
    if (ch === "[") {
      inClass = true;
      out += ch;
      i++;
      if (pattern[i] === "^") {
        out += "^";
        i++;
      }
      // A "]" right after "[" or "[^" is a literal in Oniguruma.
      if (pattern[i] === "]") {
        out += "\\]";
        i++;
      }
      continue;
    }
    if (ch === "(") {
      if (pattern.startsWith("(?i:", i)) {
        groups.push(true);
        out += "(?:";
        i += 4;
        continue;
      }
      if (pattern.startsWith("(?>", i) || /^\(\?[imx-]+[:)]/.test(pattern.slice(i))) {
        throw new TokenizerError(`regex ${JSON.stringify(pattern)}: unsupported group syntax at ${i}`);
      }
      groups.push(caseless());
      out += ch;
      i++;
      continue;
    }
    if (ch === ")") {
      groups.pop();
      out += ch;
      i++;
      continue;
    }
    if ((ch === "+" || ch === "*" || ch === "?" || ch === "}") && pattern[i + 1] === "+") {
      throw new TokenizerError(`regex ${JSON.stringify(pattern)}: possessive quantifiers are not supported`);
    }
    const other = caseless() ? otherCase(ch) : null;
    out += other ? `[${ch}${other}]` : ch;
    i += ch.length;
  }
  return out;
}

/** Escapes regex syntax characters (only those: with the `u` flag, escaping e.g. "-" is an error). */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A global, Unicode RegExp for an Oniguruma pattern, with an error that names the pattern. */
export function compileOniguruma(pattern: string): RegExp {
  const source = onigurumaToJs(pattern);
  try {
    return new RegExp(source, "gu");
  } catch (e) {
    throw new TokenizerError(`regex ${JSON.stringify(pattern)} is not supported: ${(e as Error).message}`);
  }
}
