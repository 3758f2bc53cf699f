/**
 * GPT-2's byte-level alphabet: every byte gets a printable character, so a BPE vocabulary over these
 * characters covers all byte strings. Printable Latin-1 bytes map to themselves, the others (controls,
 * space, ...) to U+0100 upwards in byte order — "Ġ" (U+0120) is the space byte 0x20.
 */

const byteToChar: string[] = new Array(256);
const charToByte = new Map<string, number>();

{
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0x100;
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCharCode(printable(b) ? b : next++);
    byteToChar[b] = ch;
    charToByte.set(ch, b);
  }
}

/** Text -> its UTF-8 bytes spelled in the byte-level alphabet. */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += byteToChar[b];
  return out;
}

/** Byte-level spelling -> bytes, or null if some character is outside the alphabet. */
export function byteLevelToBytes(text: string): Uint8Array | null {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const b = charToByte.get(text[i]!);
    if (b === undefined) return null;
    out[i] = b;
  }
  return out;
}
