/**
 * Usage errors (a bad flag or value) exit 2 in every script, as CLIs do for bad arguments; every
 * other failure exits 1. node:util parseArgs' own errors count as usage errors.
 */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export const USAGE_EXIT_CODE = 2;

export function isUsageError(e: unknown): boolean {
  return (
    e instanceof UsageError || String((e as { code?: unknown })?.code ?? "").startsWith("ERR_PARSE_ARGS")
  );
}

/** Exit code for an error that reached a script's top level. */
export const exitCodeFor = (e: unknown): number => (isUsageError(e) ? USAGE_EXIT_CODE : 1);
