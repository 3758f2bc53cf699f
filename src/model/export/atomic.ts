/**
 * Write-then-rename, so a failed export never leaves a half-written file or folder at the target:
 * the output is built under a hidden temporary name next to the target (same filesystem, so the
 * rename is atomic) and removed again if anything throws.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ModelExportError } from "./errors.ts";

function tempSibling(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** Best-effort removal: cleanup must never mask the error that made it necessary. */
async function remove(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => {});
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Runs `write(tempPath)` and renames the result onto `target` (a file; an existing one is replaced). */
export async function writeFileAtomically(
  target: string,
  write: (tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = tempSibling(target);
  try {
    await write(tmp);
    await rename(tmp, target);
  } catch (e) {
    await remove(tmp);
    if (e instanceof ModelExportError) throw e;
    throw new ModelExportError(target, `write failed (${describe(e)})`);
  }
}

/**
 * Runs `write(tempDir)` on a fresh folder and renames it onto `target`. An existing target is
 * refused unless `overwrite`, in which case it is replaced only after the new folder is complete.
 */
export async function writeFolderAtomically(
  target: string,
  overwrite: boolean,
  write: (tmp: string) => Promise<void>,
): Promise<void> {
  if (existsSync(target) && !overwrite) {
    throw new ModelExportError(target, "already exists (pass overwrite: true to replace it)");
  }
  const tmp = tempSibling(target);
  const old = `${tmp}.old`;
  let created = false;
  try {
    await mkdir(tmp);
    created = true;
    await write(tmp);
    if (existsSync(target)) await rename(target, old);
    await rename(tmp, target);
  } catch (e) {
    if (created) await remove(tmp);
    if (existsSync(old) && !existsSync(target)) await rename(old, target);
    if (e instanceof ModelExportError) throw e;
    throw new ModelExportError(target, `write failed (${describe(e)})`);
  }
  await remove(old);
}
