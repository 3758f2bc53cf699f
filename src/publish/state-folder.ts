/**
 * The local state folder (wrangler's --persist-to) checked before anything opens it; no heavy
 * imports, so `npm start` checks it before loading the build.
 */
import { statSync } from "node:fs";

/**
 * Why `persistTo` cannot hold local state: it exists and is not a folder (a file: read-only
 * commands would take it for "no state yet", deploy would fail deep in Miniflare). Null when it is a
 * folder or does not exist (whether that is allowed is the caller's rule).
 */
export function persistToProblem(persistTo: string): string | null {
  try {
    return statSync(persistTo).isDirectory() ? null : "is not a folder";
  } catch {
    return null;
  }
}
