/**
 * Which model the CLIs (build:variants, eval, start, deploy) use when none is named: the real
 * default (SmolLM2-135M-Instruct GGUF via fetch-model's cache, downloaded when missing), or the
 * 260K-parameter stories model as the announced offline fallback when it cannot be had.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultModelGguf, FetchModelError } from "./fetch-model.ts";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The offline fallback: a 260K-parameter toy (../shared/models, next to the repository). */
export const TINY_MODEL = resolve(root, "../shared/models/stories260K.gguf");

export interface DefaultModel {
  path: string;
  /** True when the real model could not be obtained and the toy stands in. */
  fallback: boolean;
}

/**
 * $SHARDLM_MODEL if set, else the real default model (fetched into the cache when missing), else
 * TINY_MODEL with a line on `log` saying so. Throws FetchModelError when neither exists.
 */
export async function resolveDefaultModel(
  log: (m: string) => void = (m) => console.error(m),
): Promise<DefaultModel> {
  const named = process.env.SHARDLM_MODEL;
  if (named) return { path: named, fallback: false };
  try {
    return { path: await defaultModelGguf({ log }), fallback: false };
  } catch (e) {
    if (!(e instanceof FetchModelError) || !existsSync(TINY_MODEL)) throw e;
    log(
      `${e.message}\nOFFLINE FALLBACK: serving the 260K-parameter toy ${TINY_MODEL} instead of the real model`,
    );
    return { path: TINY_MODEL, fallback: true };
  }
}
