/** Positioned reads from a model file, with truncation reported as a clear import error. */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ModelImportError } from "../../format/model.ts";

export function fileSize(path: string): number {
  try {
    const fd = openSync(path, "r");
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new ModelImportError(path, `cannot open file (${(e as Error).message})`);
  }
}

/** Reads exactly `length` bytes at `offset`; a short read means the file is truncated. */
export function readRange(path: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const fd = openSync(path, "r");
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) {
        throw new ModelImportError(
          path,
          `truncated: wanted bytes ${offset}..${offset + length}, file ends early`,
        );
      }
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
