/** Where the shared test models live, and throwaway output folders under os.tmpdir(). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** repo-root/../shared/models/<name>: shared between checkouts, never copied into the repo. */
export function sharedModelPath(name = "stories260K.gguf"): string {
  return fileURLToPath(new URL(`../../../shared/models/${name}`, import.meta.url));
}

/** Temp folders for one test file: `make()` in tests, `cleanup()` in afterAll. */
export function tempDirs(prefix: string): { make(): string; cleanup(): void } {
  const made: string[] = [];
  return {
    make() {
      const dir = mkdtempSync(join(tmpdir(), `shardlm-${prefix}-`));
      made.push(dir);
      return dir;
    },
    cleanup() {
      for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
