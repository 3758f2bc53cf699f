/**
 * Ids -> text, shared by every vocabulary kind. Each token stands for a run of bytes; the bytes of
 * consecutive tokens are joined and decoded as UTF-8. decode() is implemented with the stream decoder,
 * so the two can never disagree.
 */

import type { DecodeOptions, StreamDecoder } from "./types.ts";
import { TokenizerError } from "./types.ts";
import { concatBytes } from "./utf8.ts";

export interface PieceRenderer {
  readonly vocabSize: number;
  /** Bytes of a token in the output; empty for tokens that render as nothing. */
  bytesOf(id: number, skipSpecial: boolean): Uint8Array;
  /**
   * Removed (up to `count` times) from the start of a decoded text: the space that sentencepiece's
   * prefix rule added during encoding (llama.cpp's detokenize, HF's Strip/Metaspace decoders).
   */
  readonly leadingStrip: { bytes: Uint8Array; count: number } | null;
}

const EMPTY = new Uint8Array(0);

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

class Utf8StreamDecoder implements StreamDecoder {
  // ignoreBOM: a text that starts with U+FEFF must decode to itself.
  private readonly utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  private readonly skipSpecial: boolean;
  private stripLeft: number;
  /** Bytes held back while we cannot yet tell whether they start with the strip character. */
  private head: Uint8Array = EMPTY;

  constructor(
    private readonly renderer: PieceRenderer,
    opts: DecodeOptions | undefined,
  ) {
    this.skipSpecial = opts?.skipSpecial ?? true;
    this.stripLeft = opts?.continuation ? 0 : (renderer.leadingStrip?.count ?? 0);
  }

  push(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.renderer.vocabSize) {
      throw new TokenizerError(`token id ${id} is out of range [0, ${this.renderer.vocabSize})`);
    }
    let bytes = this.renderer.bytesOf(id, this.skipSpecial);
    if (this.stripLeft > 0) {
      bytes = this.stripStart(concatBytes(this.head, bytes));
      if (this.stripLeft > 0) return "";
    }
    return bytes.length === 0 ? "" : this.utf8.decode(bytes, { stream: true });
  }

  flush(): string {
    // A held-back partial strip character is not the strip character after all: emit it.
    const rest = this.head;
    this.head = EMPTY;
    this.stripLeft = 0;
    return (rest.length > 0 ? this.utf8.decode(rest, { stream: true }) : "") + this.utf8.decode();
  }

  /** Drops leading strip characters; keeps bytes in `head` while the answer is still open. */
  private stripStart(bytes: Uint8Array): Uint8Array {
    const strip = this.renderer.leadingStrip!.bytes;
    this.head = EMPTY;
    while (this.stripLeft > 0 && bytes.length > 0) {
      if (startsWith(bytes, strip)) {
        bytes = bytes.subarray(strip.length);
        this.stripLeft--;
      } else if (startsWith(strip, bytes)) {
        this.head = bytes; // could still become the strip character
        return EMPTY;
      } else {
        this.stripLeft = 0;
      }
    }
    return bytes;
  }
}

export function createStreamDecoder(renderer: PieceRenderer, opts?: DecodeOptions): StreamDecoder {
  return new Utf8StreamDecoder(renderer, opts);
}

export function decodeIds(renderer: PieceRenderer, ids: readonly number[], opts?: DecodeOptions): string {
  const stream = new Utf8StreamDecoder(renderer, opts);
  let text = "";
  for (const id of ids) text += stream.push(id);
  return text + stream.flush();
}
