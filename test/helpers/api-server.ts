/**
 * The real API in workerd for tests (src/bench/local-api.ts) over variants built from stories260K,
 * cached in node_modules/.cache and rebuilt only when the pipeline or config changes.
 */
import { fileURLToPath } from "node:url";
import { type ApiServer, type RateLimits, startLocalApi } from "../../src/bench/local-api.ts";
import { buildVariants, DEFAULT_CONFIG } from "../../src/compress/build-variants.ts";
import type { VariantsIndex } from "../../src/compress/variant-store.ts";
import { sharedModelPath } from "./paths.ts";

export {
  type ApiServer,
  FROZEN_CLOCK_FROM_ENV,
  startLocalApi,
  workerCompatibilityFlags,
  wranglerSetting,
} from "../../src/bench/local-api.ts";

export const TEST_VARIANTS_DIR = fileURLToPath(
  new URL("../../node_modules/.cache/shardlm/test-variants", import.meta.url),
);

export async function buildTestVariants(): Promise<{ dir: string; index: VariantsIndex }> {
  const r = await buildVariants({
    model: sharedModelPath(),
    config: DEFAULT_CONFIG,
    out: TEST_VARIANTS_DIR,
    log: () => {},
  });
  return { dir: r.out, index: r.index };
}

/** The API over the cached stories260K test variants (built on first use). */
export async function startApiServer(
  bindings: Record<string, string> = {},
  ratelimits?: RateLimits,
): Promise<ApiServer> {
  return startLocalApi(await buildTestVariants(), bindings, ratelimits);
}
