/** Small UTF-8 helpers shared by the tokenizers. */

const encoder = new TextEncoder();

export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Replaces lone UTF-16 surrogates with U+FFFD. Tokenizers work on UTF-8, where a lone surrogate
 * cannot exist; doing it up front keeps code-point iteration and byte fallback consistent.
 */
export function toWellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, "\uFFFD");
}

/** Code points of a string as substrings ("😀" is one entry). */
export function codePoints(text: string): string[] {
  return Array.from(text);
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** The byte a sentencepiece byte-fallback piece like "<0x0A>" stands for, or null. */
export function parseBytePiece(piece: string): number | null {
  const m = BYTE_PIECE.exec(piece);
  return m ? Number.parseInt(m[1]!, 16) : null;
}

/** "<0x0A>" for 10: the spelling llama.cpp and Hugging Face look up (upper-case hex). */
export function bytePiece(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
