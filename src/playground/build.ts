/**
 * Bundles the playground's in-browser engine (./engine.ts) into one ES module for browsers, with the
 * WASM kernels inlined, written as build/playground/engine.js.txt: the Worker imports it as a string
 * (wrangler's default Text rule for .txt; esbuild's text loader in the test harness) and serves it at
 * GET /playground/engine.js. Node only. CLI: scripts/build-playground.ts (npm run build:playground);
 * npm start and the tests' global setup call it too, with the kernel binaries they built.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const PLAYGROUND_ENGINE_PATH = path.join(root, "build/playground/engine.js.txt");

/** `shardlm:kernels/relaxed` and `shardlm:kernels/simd`: the kernels' bytes as Uint8Arrays. */
function kernelsPlugin(files: { relaxed: string; simd: string }): Plugin {
  return {
    name: "shardlm-kernels",
    setup(b) {
      b.onResolve({ filter: /^shardlm:kernels\// }, (args) => ({ path: args.path, namespace: "kernels" }));
      b.onLoad({ filter: /.*/, namespace: "kernels" }, async (args) => {
        const which = args.path.endsWith("/relaxed") ? files.relaxed : files.simd;
        return { contents: await readFile(which), loader: "binary" };
      });
    },
  };
}

/** Writes the bundle; `kernels` are the built .wasm files (src/kernels/wasm/build.ts). Returns its path. */
export async function buildPlayground(kernels: { relaxed: string; simd: string }): Promise<string> {
  const result = await build({
    entryPoints: [path.join(root, "src/playground/engine.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    plugins: [kernelsPlugin(kernels)],
    logLevel: "silent",
  });
  await mkdir(path.dirname(PLAYGROUND_ENGINE_PATH), { recursive: true });
  await writeFile(PLAYGROUND_ENGINE_PATH, result.outputFiles[0]!.text);
  return PLAYGROUND_ENGINE_PATH;
}
